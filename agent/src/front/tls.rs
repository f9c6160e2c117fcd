//! The TLS side of the front (docs/tls.md#the-listener): the certificate new
//! handshakes get, swapped in place at renewal; the TLS-ALPN-01 challenge
//! answered on the same port; the HTTP-01 answers for the port-80 responder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{anyhow, Result};
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The certificate new handshakes get.
#[derive(Debug)]
pub struct Current(RwLock<Arc<CertifiedKey>>);

impl Current {
    pub fn new(first: Arc<CertifiedKey>) -> Arc<Current> {
        Arc::new(Current(RwLock::new(first)))
    }

    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write().expect("not poisoned") = key;
    }
}

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

    pub(super) fn http(&self, token: &str) -> Option<String> {
        self.http.lock().expect("not poisoned").get(token).cloned()
    }

    pub(super) fn alpn(&self) -> Option<Arc<CertifiedKey>> {
        self.alpn.lock().expect("not poisoned").clone()
    }
}

/// TLS 1.2 and 1.3 with the ring provider; ALPN says HTTP/1.1, the one
/// protocol the front and Jupyter (Tornado) speak.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("{e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The HTTPS side of a front: its configuration and the challenges it answers.
pub struct Side {
    pub current: Arc<Current>,
    pub config: Arc<ServerConfig>,
    pub challenges: Arc<Challenges>,
}

/// What a TLS handshake came to.
pub enum Handshake<IO> {
    /// A client to serve (boxed: rustls' state is about 1 KiB).
    Done(Box<TlsStream<IO>>),
    /// A TLS-ALPN-01 validation, answered by the handshake itself (or no
    /// order open): nothing more to do.
    Challenge,
}

/// The handshake of a connection whose first byte was a TLS record; a
/// ClientHello offering `acme-tls/1` gets the challenge certificate.
/// Errors are the client's (a bad hello, a closed socket): the caller logs
/// them at debug.
pub async fn handshake<IO: AsyncRead + AsyncWrite + Unpin>(io: IO, side: &Side) -> Result<Handshake<IO>> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), io).await?;
    let offers_acme = start.client_hello().alpn().is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
    if !offers_acme {
        return Ok(Handshake::Done(Box::new(start.into_stream(side.config.clone()).await?)));
    }
    let Some(key) = side.challenges.alpn() else { return Ok(Handshake::Challenge) };
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| anyhow!("{e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    let mut tls = start.into_stream(Arc::new(config)).await?;
    // The validation is the handshake itself.
    let _ = tls.shutdown().await;
    Ok(Handshake::Challenge)
}
