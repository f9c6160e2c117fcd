//! A server-certificate check of the caller's own for rustls clients
//! (feature `tls`; the bootstrap links no TLS stack). rustls's
//! `ServerCertVerifier` has four methods, three of which every custom check
//! writes the same way: the handshake's signatures verified with the
//! provider's algorithms. [`CertificateCheck`] writes them once; the caller
//! gives only what decides whether the certificate is accepted: the
//! agent's pin on its own certificate (agent/src/tls), `jupyter-room`'s
//! pins or system roots (room/src/fronts.rs), a check that accepts any
//! certificate for requests that carry no secret, and the tests' clients.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// What the server presented, as rustls gives it to a verifier.
pub struct Presented<'a> {
    pub end_entity: &'a CertificateDer<'a>,
    pub intermediates: &'a [CertificateDer<'a>],
    pub server_name: &'a ServerName<'a>,
    pub ocsp_response: &'a [u8],
    pub now: UnixTime,
}

/// Accepts the certificates `accept` accepts; the handshake's signatures
/// are checked with `provider`'s algorithms, whatever `accept` says.
pub struct CertificateCheck<F> {
    /// What the check is, for `Debug` (rustls asks verifiers for it).
    name: &'static str,
    provider: Arc<CryptoProvider>,
    accept: F,
}

impl<F> CertificateCheck<F>
where
    F: Fn(&Presented<'_>) -> Result<(), rustls::Error> + Send + Sync,
{
    pub fn new(name: &'static str, provider: Arc<CryptoProvider>, accept: F) -> CertificateCheck<F> {
        CertificateCheck { name, provider, accept }
    }
}

/// Accepts any certificate (the signatures still checked): for requests
/// that carry no secret, or what a user asked for with `--insecure`.
pub fn any_certificate(provider: Arc<CryptoProvider>) -> Arc<dyn ServerCertVerifier> {
    Arc::new(CertificateCheck::new("any certificate", provider, |_| Ok(())))
}

impl<F> std::fmt::Debug for CertificateCheck<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CertificateCheck").field(&self.name).finish()
    }
}

impl<F> ServerCertVerifier for CertificateCheck<F>
where
    F: Fn(&Presented<'_>) -> Result<(), rustls::Error> + Send + Sync,
{
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        (self.accept)(&Presented { end_entity, intermediates, server_name, ocsp_response, now })?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
