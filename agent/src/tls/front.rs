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
use tokio::io::AsyncWriteExt;
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
                    let answer = move |req: &hyper::Request<hyper::body::Incoming>| http01_answer(req, &challenges);
                    if let Err(e) = plain_http(tcp, answer).await {
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
        return plain_http(tcp, redirect_to_https).await;
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

type Reply = hyper::Response<http_body_util::Full<bytes::Bytes>>;

fn reply(status: hyper::StatusCode, location: Option<hyper::header::HeaderValue>, body: String) -> Reply {
    let mut response = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *response.status_mut() = status;
    if let Some(location) = location {
        response.headers_mut().insert(hyper::header::LOCATION, location);
    }
    response
}

/// One plain HTTP/1.1 connection (hyper), each request answered by `answer`,
/// within the handshake timeout, then closed.
async fn plain_http(
    tcp: TcpStream,
    answer: impl Fn(&hyper::Request<hyper::body::Incoming>) -> Reply + Send + Sync + 'static,
) -> Result<()> {
    let answer = Arc::new(answer);
    let service = hyper::service::service_fn(move |req| {
        let answer = answer.clone();
        async move { Ok::<_, std::convert::Infallible>(answer(&req)) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
    tokio::time::timeout(HANDSHAKE_TIMEOUT, connection).await??;
    Ok(())
}

/// `http://` typed on the HTTPS port: a redirect to the same place over https://.
fn redirect_to_https<B>(req: &hyper::Request<B>) -> Reply {
    let host = req.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok());
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = host
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .and_then(|h| hyper::header::HeaderValue::from_str(&format!("https://{h}{path}")).ok());
    match location {
        Some(location) => reply(hyper::StatusCode::MOVED_PERMANENTLY, Some(location), String::new()),
        None => reply(hyper::StatusCode::BAD_REQUEST, None, String::new()),
    }
}

/// `GET /.well-known/acme-challenge/<token>`: the key authorization, or 404.
fn http01_answer<B>(req: &hyper::Request<B>, challenges: &Challenges) -> Reply {
    let answer = req.uri().path().strip_prefix("/.well-known/acme-challenge/").and_then(|token| challenges.http(token));
    match answer {
        Some(body) => reply(hyper::StatusCode::OK, None, body),
        None => reply(hyper::StatusCode::NOT_FOUND, None, String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_on_the_https_port_is_sent_to_https_and_only_known_tokens_are_answered() {
        let request = |path: &str, host: Option<&str>| {
            let mut builder = hyper::Request::builder().uri(path);
            if let Some(host) = host {
                builder = builder.header("host", host);
            }
            builder.body(()).unwrap()
        };
        let moved = redirect_to_https(&request("/tree?token=x", Some("1.2.3.4:8888")));
        assert_eq!(moved.status(), 301);
        assert_eq!(moved.headers()["location"], "https://1.2.3.4:8888/tree?token=x");
        assert_eq!(redirect_to_https(&request("/", None)).status(), 400);
        // A Host that would make another URL of the Location is not taken.
        assert_eq!(redirect_to_https(&request("/", Some("a b"))).status(), 400);

        let challenges = Challenges::default();
        challenges.set_http("tok", "tok.thumb");
        assert_eq!(http01_answer(&request("/.well-known/acme-challenge/tok", None), &challenges).status(), 200);
        assert_eq!(http01_answer(&request("/.well-known/acme-challenge/other", None), &challenges).status(), 404);
        assert_eq!(http01_answer(&request("/tok", None), &challenges).status(), 404);
    }
}
