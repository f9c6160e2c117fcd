//! The HTTPS listener in front of Jupyter: TLS is terminated here, at the
//! TCP level, and the bytes are copied both ways to Jupyter's port on the
//! host's loopback, so HTTP and WebSockets (kernels, terminals) pass
//! unchanged. The certificate is swapped in place at renewal: new handshakes
//! get the new one, open connections keep theirs. A ClientHello offering
//! `acme-tls/1` gets the TLS-ALPN-01 challenge certificate instead; a
//! connection that starts with plain HTTP is redirected to https://
//! (docs/tls.md#the-listener).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::LazyConfigAcceptor;
use tracing::debug;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate new handshakes get.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    // Browsers send no server name for an IP address: every hello gets it.
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().expect("not poisoned").clone())
    }
}

/// The answers to the CA's challenges while an order is open.
#[derive(Default)]
pub struct Challenges {
    /// HTTP-01: token -> key authorization.
    http: Mutex<HashMap<String, String>>,
    /// TLS-ALPN-01: the validation certificate.
    alpn: Mutex<Option<Arc<CertifiedKey>>>,
}

impl Challenges {
    pub fn set_http(&self, token: &str, key_authorization: &str) {
        self.http.lock().expect("not poisoned").insert(token.to_string(), key_authorization.to_string());
    }

    pub fn set_alpn(&self, key: Arc<CertifiedKey>) {
        *self.alpn.lock().expect("not poisoned") = Some(key);
    }

    pub fn clear(&self) {
        self.http.lock().expect("not poisoned").clear();
        *self.alpn.lock().expect("not poisoned") = None;
    }

    fn http(&self, token: &str) -> Option<String> {
        self.http.lock().expect("not poisoned").get(token).cloned()
    }

    fn alpn(&self) -> Option<Arc<CertifiedKey>> {
        self.alpn.lock().expect("not poisoned").clone()
    }
}

/// The listener, running until dropped.
pub struct Front {
    current: Arc<Current>,
    backend: watch::Sender<Option<SocketAddr>>,
    /// Where it listens (the port the system chose for port 0).
    pub local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// TLS 1.2 and 1.3 with the ring provider, no ALPN (the bytes go to
/// Tornado, which speaks HTTP/1.1 only).
fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>> {
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("{e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(Arc::new(config))
}

impl Front {
    /// Listens on `addr` and serves `first` until [`Front::set_certificate`].
    /// Connections wait for a backend ([`Front::set_backend`]); until then
    /// they are closed after the handshake.
    pub async fn bind(addr: SocketAddr, first: Arc<CertifiedKey>, challenges: Arc<Challenges>) -> Result<Front> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr} for HTTPS ([container] publish)"))?;
        let local = listener.local_addr()?;
        let current = Arc::new(Current(RwLock::new(first)));
        let (backend, backend_rx) = watch::channel(None);
        let config = server_config(current.clone())?;
        let task = tokio::spawn(serve(listener, config, challenges, Some(backend_rx)));
        Ok(Front { current, backend, local, task })
    }

    pub fn set_certificate(&self, key: Arc<CertifiedKey>) {
        *self.current.0.write().expect("not poisoned") = key;
    }

    /// Where Jupyter answers now (its published port changes when the container starts again).
    pub fn set_backend(&self, addr: SocketAddr) {
        self.backend.send_replace(Some(addr));
    }

    /// The address a client on this host reaches the listener at.
    pub fn reachable(&self) -> SocketAddr {
        let mut addr = self.local;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        addr
    }
}

/// A listener for the challenges alone, while an order is open: HTTP-01's
/// plain HTTP answers, or TLS-ALPN-01's handshakes. Stops when dropped.
pub struct ChallengeListener(tokio::task::JoinHandle<()>);

impl Drop for ChallengeListener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ChallengeListener {
    pub async fn http01(port: u16, challenges: Arc<Challenges>) -> Result<ChallengeListener> {
        let listener = bind_any(port).await?;
        Ok(ChallengeListener(tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let challenges = challenges.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer_http01(tcp, &challenges).await {
                        debug!(error = %e, "an HTTP-01 connection ended");
                    }
                });
            }
        })))
    }

    pub async fn tls_alpn01(port: u16, challenges: Arc<Challenges>) -> Result<ChallengeListener> {
        let listener = bind_any(port).await?;
        // The real certificate is never asked for here: only acme-tls/1 hellos are answered.
        let placeholder = challenges.alpn().ok_or_else(|| anyhow!("no TLS-ALPN-01 certificate set"))?;
        let config = server_config(Arc::new(Current(RwLock::new(placeholder))))?;
        Ok(ChallengeListener(tokio::spawn(serve(listener, config, challenges, None))))
    }
}

async fn bind_any(port: u16) -> Result<TcpListener> {
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    TcpListener::bind(addr).await.with_context(|| format!("listening on {addr} for the ACME challenge"))
}

async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    challenges: Arc<Challenges>,
    backend: Option<watch::Receiver<Option<SocketAddr>>>,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to close.
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (config, challenges, backend) = (config.clone(), challenges.clone(), backend.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(tcp, config, &challenges, backend).await {
                debug!(%peer, error = %e, "an HTTPS connection ended");
            }
        });
    }
}

async fn connection(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    challenges: &Challenges,
    backend: Option<watch::Receiver<Option<SocketAddr>>>,
) -> Result<()> {
    tcp.set_nodelay(true)?;
    let mut first = [0u8; 1];
    // 0x16: a TLS handshake record. Anything else is someone typing http://.
    if tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await?? == 0 {
        return Ok(());
    }
    if first[0] != 0x16 {
        return redirect_to_https(tcp).await;
    }
    let start = tokio::time::timeout(HANDSHAKE_TIMEOUT, LazyConfigAcceptor::new(Acceptor::default(), tcp)).await??;
    let offers_acme = start.client_hello().alpn().is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
    if offers_acme {
        let Some(key) = challenges.alpn() else { return Ok(()) };
        let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| anyhow!("{e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
        config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
        let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, start.into_stream(Arc::new(config))).await??;
        // The validation is the handshake itself.
        let _ = tls.shutdown().await;
        return Ok(());
    }
    let Some(backend) = backend else { return Ok(()) };
    let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, start.into_stream(config)).await??;
    let Some(addr) = *backend.borrow() else { return Ok(()) };
    let mut upstream = TcpStream::connect(addr).await.with_context(|| format!("connecting to Jupyter at {addr}"))?;
    upstream.set_nodelay(true)?;
    tokio::io::copy_bidirectional(&mut tls, &mut upstream).await?;
    Ok(())
}

/// Reads a request's head (at most 8 KiB, within the handshake timeout).
async fn read_head(tcp: &mut TcpStream) -> Result<String> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await??;
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The request line's path and the Host header.
fn path_and_host(head: &str) -> (Option<&str>, Option<&str>) {
    let mut lines = head.split("\r\n");
    let path = lines.next().and_then(|l| l.split(' ').nth(1)).filter(|p| p.starts_with('/'));
    let host = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("host").then(|| value.trim())
    });
    (path, host.filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic())))
}

/// `http://` typed on the HTTPS port: a redirect to the same place over https://.
async fn redirect_to_https(mut tcp: TcpStream) -> Result<()> {
    let head = read_head(&mut tcp).await?;
    let response = match path_and_host(&head) {
        (Some(path), Some(host)) if path.chars().all(|c| c.is_ascii_graphic()) => format!(
            "HTTP/1.1 301 Moved Permanently\r\nLocation: https://{host}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        _ => "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
    };
    tcp.write_all(response.as_bytes()).await?;
    let _ = tcp.shutdown().await;
    Ok(())
}

/// `GET /.well-known/acme-challenge/<token>`: the key authorization, or 404.
async fn answer_http01(mut tcp: TcpStream, challenges: &Challenges) -> Result<()> {
    let head = read_head(&mut tcp).await?;
    let answer = path_and_host(&head)
        .0
        .and_then(|p| p.strip_prefix("/.well-known/acme-challenge/"))
        .and_then(|token| challenges.http(token));
    let response = match answer {
        Some(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
    };
    tcp.write_all(response.as_bytes()).await?;
    let _ = tcp.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_gives_its_path_and_host() {
        let head = "GET /tree?token=x HTTP/1.1\r\nhost: 1.2.3.4:8888\r\nAccept: */*\r\n\r\n";
        assert_eq!(path_and_host(head), (Some("/tree?token=x"), Some("1.2.3.4:8888")));
        assert_eq!(path_and_host("GET / HTTP/1.0\r\n\r\n"), (Some("/"), None));
        assert_eq!(path_and_host("garbage"), (None, None));
        // A header value that would split the response is not taken.
        assert_eq!(path_and_host("GET / HTTP/1.1\r\nHost: a b\r\n\r\n").1, None);
    }
}
