//! The HTTPS test harness itself, before any test of the agent relies on it:
//! `common::pebble` starts a pebble that answers over the CA it made and
//! serves its issuing root, and refuses accounts when asked; `common::wss`'s
//! TLS, WebSocket and kernel channel clients work against a small TLS server
//! in this module that plays a Jupyter kernel channel.
//!
//! No Docker engine: pebble (Debian's package) and loopback sockets only.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::{json, Value};

use crate::common::pebble::{free_port, LoopbackCert, Pebble, PebbleOptions};
use crate::common::wss::{
    accept_for, https_client, served_leaf, sha256_fingerprint, start_kernel, tls_stream, try_tls_stream, KernelSocket,
    Message,
};

fn options(refuse_accounts: bool) -> PebbleOptions {
    PebbleOptions { http_port: free_port(), tls_port: free_port(), validity_secs: 60, refuse_accounts }
}

/// The directory answers over the listener CA in `ca_file`, which also
/// holds the issuing root; the log has the request lines `new_orders` counts.
#[test]
fn pebble_serves_its_directory_and_its_issuing_root() {
    let dir = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(dir.path(), &options(false));
    let directory: Value = https_client(&pebble.ca_file).get(&pebble.directory).send().unwrap().json().unwrap();
    assert!(directory["newOrder"].as_str().is_some_and(|u| u.starts_with("https://127.0.0.1:")), "{directory}");
    assert_eq!(directory["meta"]["externalAccountRequired"], false, "{directory}");

    let ca_file = std::fs::read_to_string(&pebble.ca_file).unwrap();
    assert_eq!(ca_file.matches("-----BEGIN CERTIFICATE-----").count(), 2, "{ca_file}");
    assert!(ca_file.ends_with(&pebble.root_pem));
    assert_eq!(std::fs::read_to_string(pebble.root_file()).unwrap(), pebble.root_pem);
    // The same " -> calling handler()" lines as the newOrder one it counts.
    assert!(pebble.log_text().contains(" GET /dir -> calling handler()"), "{}", pebble.log_text());
    assert_eq!(pebble.new_orders(), 0);
}

/// With `refuse_accounts`, the directory says external account binding is
/// required (and pebble knows no key, so every new account is refused).
#[test]
fn pebble_refusing_accounts_says_so_in_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let pebble = Pebble::start(dir.path(), &options(true));
    let directory: Value = https_client(&pebble.ca_file).get(&pebble.directory).send().unwrap().json().unwrap();
    assert_eq!(directory["meta"]["externalAccountRequired"], true, "{directory}");
}

/// Against [`fake_kernel_channel`]: `served_leaf`, `tls_stream` (which
/// trusts the roots it is given, no others), `https_client` and
/// `start_kernel`, the WebSocket handshake (refused for a foreign Origin),
/// and `KernelSocket::execute` through pings, fragments, other requests'
/// replies and long frames.
#[test]
fn wss_clients_talk_to_a_tls_kernel_channel() {
    // RFC 6455's own example.
    assert_eq!(accept_for("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    let cert = LoopbackCert::generate("jupyter-agent e2e wss CA");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert.ca_pem).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.cert_der.clone())], PrivateKeyDer::Pkcs8(cert.key_der.into()))
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = Arc::new(config);
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || fake_kernel_channel(tcp, config, port));
        }
    });

    let leaf = served_leaf(port);
    assert_eq!(leaf, cert.cert_der);
    let fingerprint = sha256_fingerprint(&leaf);
    assert_eq!(fingerprint.len(), 32 * 3 - 1, "{fingerprint}");
    assert!(fingerprint.chars().all(|c| c == ':' || c.is_ascii_digit() || c.is_ascii_uppercase()), "{fingerprint}");

    let other = dir.path().join("other-ca.pem");
    std::fs::write(&other, LoopbackCert::generate("another CA").ca_pem).unwrap();
    let untrusted = try_tls_stream(port, &other).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(untrusted.contains("UnknownIssuer"), "{untrusted}");

    let host = format!("127.0.0.1:{port}");
    let kernel_id = start_kernel(&https_client(&ca), &format!("https://{host}/"), "tok");
    assert_eq!(kernel_id, "k1");
    let foreign = [("Origin", "https://elsewhere.example")];
    let refused = KernelSocket::open(tls_stream(port, &ca), &host, "/", "k1", "tok", &foreign);
    assert_eq!(refused.err(), Some(403));

    let origin = format!("https://{host}");
    let headers = [("Origin", origin.as_str()), ("Cookie", "a=b")];
    let mut kernel = KernelSocket::open(tls_stream(port, &ca), &host, "/", "k1", "tok", &headers)
        .unwrap_or_else(|status| panic!("the handshake got {status}"));
    assert_eq!(kernel.execute(&"1".repeat(70_000), Duration::from_secs(10)), "70000");
    assert_eq!(kernel.execute("print:hello", Duration::from_secs(10)), "hello");
    kernel.socket().close(1000).unwrap();
    let closed = kernel.socket().recv().unwrap();
    assert_eq!(closed, Message::Close(Some(1000), String::new()));
}

/// One connection of a TLS server playing Jupyter's kernel API for the
/// token `tok`: `POST /api/kernels` starts the kernel `k1`; a WebSocket on
/// `/api/kernels/k1/channels?token=tok` gets 403 unless the Origin is its
/// own or absent; then for each `execute_request`, `print:TEXT` answers with TEXT
/// as a stream message in two fragments and idle, anything else with a
/// ping (the client must pong before it goes on), another request's
/// result, and the code's length as the result.
fn fake_kernel_channel(tcp: TcpStream, config: Arc<ServerConfig>, port: u16) {
    let mut s = StreamOwned::new(ServerConnection::new(config).unwrap(), tcp);
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return, // served_leaf: a handshake and nothing more.
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
    };
    if head.starts_with("POST /api/kernels ") {
        let length: usize = header("content-length").map_or(0, |l| l.parse().unwrap());
        let mut body = vec![0u8; length];
        s.read_exact(&mut body).unwrap();
        let status = if header("authorization") == Some("token tok") { "201 Created" } else { "403 Forbidden" };
        let body = r#"{"id": "k1", "name": "python3"}"#;
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(response.as_bytes()).unwrap();
        s.conn.send_close_notify();
        let _ = s.flush();
        return;
    }
    let origin_ok = header("origin").is_none_or(|o| o == format!("https://127.0.0.1:{port}"));
    if !head.starts_with("GET /api/kernels/k1/channels?token=tok ") || !origin_ok {
        let _ = s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    }
    let accept = accept_for(header("sec-websocket-key").unwrap());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    s.write_all(response.as_bytes()).unwrap();

    let reply = |s: &mut StreamOwned<ServerConnection, TcpStream>, parent: &str, msg_type: &str, content: Value| {
        let message = json!({"channel": "iopub", "header": {"msg_type": msg_type}, "parent_header": {"msg_id": parent},
                             "content": content});
        s.write_all(&frame(true, 0x1, message.to_string().as_bytes())).unwrap();
    };
    while let Some((opcode, payload)) = read_frame(&mut s) {
        if opcode == 0x8 {
            s.write_all(&frame(true, 0x8, &payload)).unwrap();
            return;
        }
        let request: Value = serde_json::from_slice(&payload).unwrap();
        let (id, code) = (request["header"]["msg_id"].as_str().unwrap(), request["content"]["code"].as_str().unwrap());
        if let Some(text) = code.strip_prefix("print:") {
            let message = json!({"channel": "iopub", "header": {"msg_type": "stream"}, "parent_header": {"msg_id": id},
                                 "content": {"name": "stdout", "text": text}})
            .to_string();
            let (first, rest) = message.split_at(message.len() / 2);
            s.write_all(&frame(false, 0x1, first.as_bytes())).unwrap();
            s.write_all(&frame(true, 0x0, rest.as_bytes())).unwrap();
            reply(&mut s, id, "status", json!({"execution_state": "idle"}));
        } else {
            s.write_all(&frame(true, 0x9, b"ping")).unwrap();
            if read_frame(&mut s) != Some((0xA, b"ping".to_vec())) {
                return;
            }
            reply(&mut s, "another", "execute_result", json!({"data": {"text/plain": "not ours"}}));
            reply(&mut s, id, "execute_result", json!({"data": {"text/plain": code.len().to_string()}}));
        }
    }
}

/// A server's frame: unmasked.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => f.push(n as u8),
        n if n <= 0xFFFF => f.extend([&[126][..], &(n as u16).to_be_bytes()].concat()),
        n => f.extend([&[127][..], &(n as u64).to_be_bytes()].concat()),
    }
    f.extend_from_slice(payload);
    f
}

/// A client's frame (masked, as clients must), unmasked: opcode and payload.
fn read_frame(s: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut b = [0u8; 2];
    s.read_exact(&mut b).ok()?;
    assert!(b[1] & 0x80 != 0, "an unmasked client frame");
    let len = match b[1] & 0x7F {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).ok()?;
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).ok()?;
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut mask = [0u8; 4];
    s.read_exact(&mut mask).ok()?;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    payload.iter_mut().enumerate().for_each(|(i, p)| *p ^= mask[i % 4]);
    Some((b[0] & 0x0F, payload))
}
