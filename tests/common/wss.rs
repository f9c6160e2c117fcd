//! Clients for the agent's HTTPS front of Jupyter, blocking like the rest of
//! the tests: TLS streams that trust exactly the roots a test gives (or any
//! certificate, to read which one a server presents), an HTTPS client, a
//! minimal RFC 6455 WebSocket client over any stream, and a Jupyter kernel
//! channel on top of it that runs code and returns its result.
//!
//! The WebSocket client is hand-written (no crate): the tests need the
//! handshake's status when it is refused (a foreign `Origin` gets 403), the
//! headers a browser sends, and nothing of a full client's API.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use serde_json::{json, Value};

/// A TLS connection to 127.0.0.1, as [`tls_stream`] returns it.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// How long a read on a [`tls_stream`] waits before failing, unless a caller
/// sets another timeout: a test that waits on a silent server fails instead
/// of hanging.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

fn ring() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration on ring (named here, not the process default)
/// trusting exactly the certificates in `roots` (a PEM file), or with no
/// roots, any certificate ([`AnyCertificate`]).
fn client_config(roots: Option<&Path>) -> ClientConfig {
    let builder =
        ClientConfig::builder_with_provider(ring()).with_safe_default_protocol_versions().expect("ring's TLS versions");
    match roots {
        Some(pem) => {
            let mut store = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(pem).unwrap_or_else(|e| panic!("{}: {e}", pem.display())) {
                store.add(cert.unwrap_or_else(|e| panic!("{}: {e}", pem.display()))).expect("a usable root");
            }
            assert!(!store.is_empty(), "{} holds no certificate", pem.display());
            builder.with_root_certificates(store).with_no_client_auth()
        }
        None => builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate)).with_no_client_auth(),
    }
}

/// Connects to 127.0.0.1:`port` and completes a TLS handshake for the
/// server name 127.0.0.1 (an IP address SAN), trusting exactly the
/// certificates in `roots_pem`. The error says why the handshake failed (an
/// untrusted or expired certificate is `InvalidData` with rustls' reason),
/// for tests that expect it to.
pub fn try_tls_stream(port: u16, roots_pem: &Path) -> io::Result<TlsStream> {
    connect(port, client_config(Some(roots_pem)))
}

/// [`try_tls_stream`], panicking when the connection or handshake fails.
pub fn tls_stream(port: u16, roots_pem: &Path) -> TlsStream {
    try_tls_stream(port, roots_pem)
        .unwrap_or_else(|e| panic!("TLS to 127.0.0.1:{port} trusting {}: {e}", roots_pem.display()))
}

fn connect(port: u16, config: ClientConfig) -> io::Result<TlsStream> {
    let sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(READ_TIMEOUT))?;
    let name = ServerName::try_from("127.0.0.1").expect("an IP address server name");
    let conn = ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// The DER of the leaf certificate the server at 127.0.0.1:`port` presents,
/// whoever signed it and whatever names it holds (no trust is checked; the
/// handshake signatures are): to compare with the certificate a test
/// expects, e.g. by [`sha256_fingerprint`].
pub fn served_leaf(port: u16) -> Vec<u8> {
    let stream = connect(port, client_config(None)).unwrap_or_else(|e| panic!("TLS to 127.0.0.1:{port}: {e}"));
    let chain = stream.conn.peer_certificates().expect("the server sent certificates");
    chain.first().expect("a leaf certificate").to_vec()
}

/// Accepts any server certificate (the handshake's signatures are still
/// checked, with ring's algorithms): for [`served_leaf`].
#[derive(Debug)]
struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &ring().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &ring().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ring().signature_verification_algorithms.supported_schemes()
    }
}

/// SHA-256 of `der` as browsers show it: uppercase hex pairs joined by
/// colons (`AB:CD:...`).
pub fn sha256_fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// A blocking HTTPS client that trusts only the certificates in `roots_pem`
/// (no built-in or system roots) and no proxy. The workspace builds reqwest
/// with rustls and no default crypto provider, so ring is installed as the
/// process default once, as [`super::http`] does.
pub fn https_client(roots_pem: &Path) -> reqwest::blocking::Client {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let pem = std::fs::read(roots_pem).unwrap_or_else(|e| panic!("{}: {e}", roots_pem.display()));
    let roots = reqwest::Certificate::from_pem_bundle(&pem).unwrap_or_else(|e| panic!("{}: {e}", roots_pem.display()));
    assert!(!roots.is_empty(), "{} holds no certificate", roots_pem.display());
    reqwest::blocking::Client::builder().no_proxy().tls_certs_only(roots).build().expect("an HTTPS client")
}

/// `n` random bytes from the kernel (WebSocket keys and masks, message ids).
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("/dev/urandom");
    bytes
}

fn random_hex() -> String {
    random_bytes::<16>().iter().map(|b| format!("{b:02x}")).collect()
}

/// A stream whose reads can be given a timeout, so that a wait for a
/// WebSocket message can end at a deadline.
pub trait ReadTimeout {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl ReadTimeout for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

impl ReadTimeout for TlsStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(timeout)
    }
}

/// A whole WebSocket message as received.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    /// The peer closed (already answered): its status code and reason.
    Close(Option<u16>, String),
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A client end of a WebSocket (RFC 6455) over `stream`: masked frames out;
/// text, binary, fragmented, ping (answered with a pong) and close frames in.
pub struct WebSocket<S> {
    stream: S,
    /// Bytes read and not yet parsed: the rest of the handshake's response,
    /// a frame cut by a read timeout.
    buf: Vec<u8>,
    /// A fragmented message's opcode and payload so far.
    partial: Option<(u8, Vec<u8>)>,
    closed: bool,
}

impl<S: Read + Write> WebSocket<S> {
    /// The opening handshake: `GET path` on `host` (the `Host` header, e.g.
    /// `127.0.0.1:8443`) with a random key and `headers` (e.g. `Origin`,
    /// `Cookie`). `Err(status)` when the server answers other than 101;
    /// panics when it answers 101 with a wrong `Sec-WebSocket-Accept`.
    pub fn connect(mut stream: S, host: &str, path: &str, headers: &[(&str, &str)]) -> Result<WebSocket<S>, u16> {
        let key = base64::engine::general_purpose::STANDARD.encode(random_bytes::<16>());
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).and_then(|()| stream.flush()).expect("send the WebSocket handshake");

        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).expect("read the WebSocket handshake's response");
            assert!(n > 0, "the server closed during the handshake: {}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {head}"));
        if status != 101 {
            return Err(status);
        }
        let accept = head
            .lines()
            .find_map(|l| l.split_once(':').filter(|(n, _)| n.trim().eq_ignore_ascii_case("sec-websocket-accept")))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| panic!("101 without Sec-WebSocket-Accept: {head}"));
        assert_eq!(accept, accept_for(&key), "Sec-WebSocket-Accept for key {key}: {head}");
        buf.drain(..end);
        Ok(WebSocket { stream, buf, partial: None, closed: false })
    }

    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send_frame(OP_TEXT, text.as_bytes())
    }

    /// Sends a close frame with `code` (once; the peer's answer is read by
    /// [`WebSocket::recv`]).
    pub fn close(&mut self, code: u16) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.send_frame(OP_CLOSE, &code.to_be_bytes())
    }

    /// One frame, final, masked with a random key (clients must mask).
    fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = random_bytes::<4>();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame)?;
        self.stream.flush()
    }

    /// The next whole message, blocking. A read that times out is an error
    /// of kind `WouldBlock` or `TimedOut` and loses nothing: the bytes read
    /// so far wait in the buffer for the next call.
    pub fn recv(&mut self) -> io::Result<Message> {
        loop {
            let Some((fin, opcode, payload)) = self.take_frame() else {
                let mut chunk = [0u8; 16384];
                let n = self.stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the WebSocket's stream ended"));
                }
                self.buf.extend_from_slice(&chunk[..n]);
                continue;
            };
            match opcode {
                OP_PING => self.send_frame(OP_PONG, &payload)?,
                OP_PONG => {}
                OP_CLOSE => {
                    let code = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
                    if !self.closed {
                        self.closed = true;
                        self.send_frame(OP_CLOSE, payload.get(..2).unwrap_or_default())?;
                    }
                    return Ok(Message::Close(code, reason));
                }
                OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                    let (opcode, mut data) = match (opcode, self.partial.take()) {
                        (OP_CONTINUATION, Some(partial)) => partial,
                        (OP_CONTINUATION, None) => panic!("a continuation frame with no message begun"),
                        (op, None) => (op, Vec::new()),
                        (_, Some(_)) => panic!("a new message inside a fragmented one"),
                    };
                    data.extend_from_slice(&payload);
                    if !fin {
                        self.partial = Some((opcode, data));
                        continue;
                    }
                    return Ok(if opcode == OP_TEXT {
                        Message::Text(String::from_utf8(data).expect("a text message in UTF-8"))
                    } else {
                        Message::Binary(data)
                    });
                }
                other => panic!("a frame with the reserved opcode {other:#x}"),
            }
        }
    }

    /// Parses one frame off the front of the buffer, if it holds a whole one.
    fn take_frame(&mut self) -> Option<(bool, u8, Vec<u8>)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let (fin, opcode, masked) = (b[0] & 0x80 != 0, b[0] & 0x0F, b[1] & 0x80 != 0);
        let (len, mut at) = match b[1] & 0x7F {
            126 => (u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as usize, 4),
            127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize, 10),
            n => (n as usize, 2),
        };
        let mask = if masked {
            at += 4;
            Some(<[u8; 4]>::try_from(b.get(at - 4..at)?).ok()?)
        } else {
            None
        };
        let mut payload = b.get(at..at + len)?.to_vec();
        if let Some(mask) = mask {
            payload.iter_mut().enumerate().for_each(|(i, byte)| *byte ^= mask[i % 4]);
        }
        self.buf.drain(..at + len);
        Some((fin, opcode, payload))
    }
}

impl<S: Read + Write + ReadTimeout> WebSocket<S> {
    /// The next whole message, or `None` once `deadline` has passed.
    pub fn recv_until(&mut self, deadline: Instant) -> io::Result<Option<Message>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match self.recv() {
                Ok(message) => return Ok(Some(message)),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + the RFC's GUID)).
pub fn accept_for(key: &str) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// Starts a kernel of the server's default kind: `POST {base_url}api/kernels`
/// (`base_url` ends with `/`) with `Authorization: token T`; its id.
pub fn start_kernel(client: &reqwest::blocking::Client, base_url: &str, token: &str) -> String {
    let url = format!("{base_url}api/kernels");
    let response = client
        .post(&url)
        .header("Authorization", format!("token {token}"))
        .json(&json!({}))
        .send()
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status();
    let body = response.text().unwrap_or_default();
    assert!(status.is_success(), "POST {url}: {status}: {body}");
    let kernel: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("POST {url}: {e}: {body}"));
    kernel["id"].as_str().unwrap_or_else(|| panic!("POST {url}: no id in {body}")).to_string()
}

/// A kernel's channels WebSocket (`{base_path}api/kernels/{id}/channels`), in
/// the JSON text framing both Notebook 6 and jupyter_server 2 speak to a
/// client that asks for no subprotocol: one message a frame, with its
/// `channel`.
pub struct KernelSocket<S> {
    ws: WebSocket<S>,
    session: String,
}

impl<S: Read + Write + ReadTimeout> KernelSocket<S> {
    /// The handshake on `{base_path}api/kernels/{kernel}/channels?token=T`
    /// (`base_path` ends with `/`), with `headers` as in
    /// [`WebSocket::connect`]; `Err(status)` when refused.
    pub fn open(
        stream: S,
        host: &str,
        base_path: &str,
        kernel: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> Result<KernelSocket<S>, u16> {
        let path = format!("{base_path}api/kernels/{kernel}/channels?token={token}");
        let ws = WebSocket::connect(stream, host, &path, headers)?;
        Ok(KernelSocket { ws, session: random_hex() })
    }

    /// Runs `code` (an `execute_request` on `shell`, message spec 5.3) and
    /// returns the `text/plain` of its `execute_result`, or else the text
    /// its `stream` messages printed once the kernel is idle again. Panics
    /// on an `error` reply, and with every message seen when nothing
    /// answers within `timeout`.
    pub fn execute(&mut self, code: &str, timeout: Duration) -> String {
        let msg_id = random_hex();
        let request = json!({
            "header": {
                "msg_id": msg_id,
                "username": "e2e",
                "session": self.session,
                "date": chrono::Utc::now().to_rfc3339(),
                "msg_type": "execute_request",
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": code,
                "silent": false,
                "store_history": true,
                "user_expressions": {},
                "allow_stdin": false,
                "stop_on_error": true,
            },
            "channel": "shell",
        });
        self.ws.send_text(&request.to_string()).expect("send the execute_request");

        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut printed = String::new();
        loop {
            let message = match self.ws.recv_until(deadline) {
                Ok(Some(message)) => message,
                Ok(None) => panic!("no result for {code:?} within {timeout:?}; seen:\n{}", seen.join("\n")),
                Err(e) => panic!("the kernel socket failed ({e}) running {code:?}; seen:\n{}", seen.join("\n")),
            };
            let text = match message {
                Message::Text(text) => text,
                Message::Binary(data) => {
                    seen.push(format!("(binary, {} bytes)", data.len()));
                    continue;
                }
                Message::Close(status, reason) => {
                    panic!("the server closed the kernel socket ({status:?} {reason}); seen:\n{}", seen.join("\n"))
                }
            };
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
            let msg_type = v["header"]["msg_type"].as_str().or(v["msg_type"].as_str()).unwrap_or_default();
            let ours = v["parent_header"]["msg_id"] == msg_id;
            seen.push(format!("{} {msg_type}{}: {}", v["channel"], if ours { " (ours)" } else { "" }, v["content"]));
            if !ours {
                continue;
            }
            let content = &v["content"];
            match msg_type {
                "execute_result" => {
                    return content["data"]["text/plain"].as_str().unwrap_or_default().to_string();
                }
                "stream" => printed.push_str(content["text"].as_str().unwrap_or_default()),
                "error" => {
                    let traceback: Vec<&str> =
                        content["traceback"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    panic!("{code:?} raised {}: {}\n{}", content["ename"], content["evalue"], traceback.join("\n"))
                }
                "status" if content["execution_state"] == "idle" => return printed,
                _ => {}
            }
        }
    }

    /// The WebSocket underneath, e.g. to close it.
    pub fn socket(&mut self) -> &mut WebSocket<S> {
        &mut self.ws
    }
}
