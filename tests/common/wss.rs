//! Clients for the agent's HTTPS front of Jupyter, blocking like the rest of
//! the tests: TLS streams that trust exactly the roots a test gives (or any
//! certificate, to read which one a server presents), an HTTPS client, and
//! a Jupyter kernel channel that runs code and returns its result, over
//! tungstenite's WebSocket client on such a stream (or any other).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use jupyter_proto::certificate_check::any_certificate;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest as _;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::{HeaderName, HeaderValue};
use tungstenite::{Message, WebSocket};

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
/// roots, any certificate (the handshake's signatures still checked).
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
        None => builder.dangerous().with_custom_certificate_verifier(any_certificate(ring())).with_no_client_auth(),
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
    handshake(TcpStream::connect(("127.0.0.1", port))?, config)
}

/// A TLS handshake for the server name 127.0.0.1 over `sock`, already
/// connected (e.g. from another source address), accepting any server
/// certificate (as [`served_leaf`]): for tests of the listener itself.
pub fn tls_over(sock: TcpStream) -> io::Result<TlsStream> {
    handshake(sock, client_config(None))
}

fn handshake(sock: TcpStream, config: ClientConfig) -> io::Result<TlsStream> {
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

/// 16 random bytes from the kernel, in hex (message ids, the session).
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("/dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    /// (`base_path` ends with `/`) over `stream`, connected to `host` (the
    /// `Host` header, e.g. `127.0.0.1:8443`), with `headers` added (e.g.
    /// `Origin`); `Err(status)` when the server answers other than 101.
    pub fn open(
        stream: S,
        host: &str,
        base_path: &str,
        kernel: &str,
        token: &str,
        headers: &[(&str, &str)],
    ) -> Result<KernelSocket<S>, u16> {
        // The scheme only shapes the request: the stream is already connected (TLS or not).
        let url = format!("ws://{host}{base_path}api/kernels/{kernel}/channels?token={token}");
        let mut request = url.as_str().into_client_request().unwrap_or_else(|e| panic!("{e}: a WebSocket request"));
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("a header name");
            request.headers_mut().insert(name, HeaderValue::from_str(value).expect("a header value"));
        }
        match tungstenite::client::client(request, stream) {
            Ok((ws, _)) => Ok(KernelSocket { ws, session: random_hex() }),
            Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => Err(response.status().as_u16()),
            Err(e) => panic!("the WebSocket handshake with {host}: {e}"),
        }
    }

    /// The next message, or `None` once `deadline` has passed. A read that
    /// times out loses nothing: tungstenite keeps what it has read of a
    /// frame for the next call.
    fn recv_until(&mut self, deadline: Instant) -> tungstenite::Result<Option<Message>> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.ws.get_ref().set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match self.ws.read() {
                Ok(message) => return Ok(Some(message)),
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stays connected and silent for `time`, as an idle browser tab does:
    /// reads what the server sends (answering its pings, as a browser
    /// does) and sends nothing of its own. The number of pings seen.
    pub fn idle(&mut self, time: Duration) -> usize {
        let deadline = Instant::now() + time;
        let mut pings = 0;
        loop {
            match self.recv_until(deadline) {
                Ok(None) => return pings,
                Ok(Some(Message::Ping(_))) => pings += 1,
                Ok(Some(Message::Close(frame))) => panic!("the server closed the idle kernel socket: {frame:?}"),
                Ok(Some(_)) => {}
                Err(e) => panic!("the idle kernel socket failed after {pings} pings: {e}"),
            }
        }
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
        self.ws.send(Message::text(request.to_string())).expect("send the execute_request");

        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        let mut printed = String::new();
        loop {
            let message = match self.recv_until(deadline) {
                Ok(Some(message)) => message,
                Ok(None) => panic!("no result for {code:?} within {timeout:?}; seen:\n{}", seen.join("\n")),
                Err(e) => panic!("the kernel socket failed ({e}) running {code:?}; seen:\n{}", seen.join("\n")),
            };
            let text = match message {
                Message::Text(text) => text.to_string(),
                Message::Binary(data) => {
                    seen.push(format!("(binary, {} bytes)", data.len()));
                    continue;
                }
                // tungstenite answers pings itself.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                Message::Close(frame) => {
                    panic!("the server closed the kernel socket ({frame:?}); seen:\n{}", seen.join("\n"))
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
}
