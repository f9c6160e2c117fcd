//! One ACME order for the instance's address (RFC 8555, RFC 8738 for IP
//! identifiers), with instant-acme over the agent's own HTTP client: the
//! account (kept, 0600), the order (with the configured profile when the
//! directory offers profiles), the HTTP-01 or TLS-ALPN-01 answer, the CSR
//! with an empty subject, and the chain as returned (docs/tls.md#acme);
//! and, where the directory offers it, ARI (RFC 9773): the CA's suggested
//! renewal window, and `replaces` naming the certificate a renewal replaces
//! (docs/tls.md#ari).

use crate::config::Host;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, CertificateIdentifier, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use tracing::{info, warn};

use super::certs::{self, Served};
use crate::config::{Challenge, TlsConfig};
use crate::front::{ChallengeListener, Challenges};

/// How long one whole attempt may take, validation included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(180);
/// Polling the order while the CA validates and issues.
const POLL: RetryPolicy =
    RetryPolicy::new().initial_delay(Duration::from_millis(250)).backoff(1.5).timeout(Duration::from_secs(90));

/// instant-acme's requests through reqwest (rustls on ring, as everywhere in
/// the agent), trusting the system's CAs and `[tls] ca_file`.
struct Reqwest(reqwest::Client);

impl HttpClient for Reqwest {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e.without_url())))?;
            Ok(BytesResponse::from(http::Response::<reqwest::Body>::from(response)))
        })
    }
}

fn http_client(cfg: &TlsConfig) -> Result<Box<dyn HttpClient>> {
    let mut builder = crate::http::client()
        .user_agent(concat!("jupyter-agent/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30));
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path).with_context(|| format!("reading [tls] ca_file {}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("reading [tls] ca_file {}", path.display()))?;
        builder = builder.tls_certs_merge(certs);
    }
    Ok(Box::new(Reqwest(builder.build().context("building the ACME client")?)))
}

/// The stored account: its credentials, for the directory they belong to.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    directory: String,
    credentials: AccountCredentials,
}

/// The account at `cfg.directory`: the stored one, or a new one (stored, 0600).
async fn account(cfg: &TlsConfig, state_dir: &Path) -> Result<Account> {
    let path = certs::dir(state_dir)?.join("acme-account.json");
    if let Ok(text) = std::fs::read(&path) {
        if let Ok(stored) = serde_json::from_slice::<Stored>(&text) {
            if stored.directory == cfg.directory {
                return Account::builder_with_http(http_client(cfg)?)
                    .from_credentials(stored.credentials)
                    .await
                    .map_err(|e| anyhow!("the ACME directory {}: {e}", cfg.directory));
            }
        }
    }
    let new = NewAccount { contact: &[], terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) = Account::builder_with_http(http_client(cfg)?)
        .create(&new, cfg.directory.clone(), None)
        .await
        .map_err(|e| anyhow!("creating an account at the ACME directory {}: {e}", cfg.directory))?;
    let stored = Stored { directory: cfg.directory.clone(), credentials };
    let json = serde_json::to_vec(&stored)?;
    jupyter_proto::fs::write_atomic(&path, &json, 0o600).with_context(|| format!("writing {}", path.display()))?;
    info!(directory = %cfg.directory, "created an ACME account");
    Ok(account)
}

/// The ACME identifier for the URL's host.
fn identifier(host: &Host) -> Identifier {
    match host {
        Host::Ip(ip) => Identifier::Ip(*ip),
        Host::Name(name) => Identifier::Dns(name.clone()),
    }
}

/// What one order needs.
pub struct Request<'a> {
    pub cfg: &'a TlsConfig,
    pub state_dir: &'a Path,
    /// The URL's host: the certificate's only name.
    pub host: &'a Host,
    /// Where the answers to the CA's challenges are put.
    pub challenges: &'a Arc<Challenges>,
    /// The agent's HTTPS listener's port: it answers TLS-ALPN-01 itself
    /// when the challenge port is that port.
    pub front_port: u16,
    /// The certificate this order renews: named in the order's `replaces`
    /// when the directory offers ARI.
    pub replaces: Option<&'a Served>,
}

/// The CA's suggested renewal window for a certificate (RFC 9773 §4.2).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub start: chrono::DateTime<chrono::Utc>,
    pub end: chrono::DateTime<chrono::Utc>,
    /// When to ask again (the answer's `Retry-After`).
    pub retry_after: Duration,
    /// The CA's page on why the window is where it is, if it gave one.
    pub explanation: Option<String>,
}

/// The certificate's ARI identifier: base64url(AKI keyIdentifier) "."
/// base64url(serial) (RFC 9773 §4.1).
pub fn ari_id(served: &Served) -> Result<CertificateIdentifier<'static>> {
    let leaf = served.chain.first().ok_or_else(|| anyhow!("an empty chain"))?;
    CertificateIdentifier::try_from(leaf).map(CertificateIdentifier::into_owned).map_err(|e| anyhow!("{e}"))
}

/// The CA's renewal window for `served`; `None` when the directory offers
/// no `renewalInfo` (pebble 2.4).
pub async fn renewal_window(cfg: &TlsConfig, state_dir: &Path, served: &Served) -> Result<Option<Window>> {
    let id = ari_id(served)?;
    let account = account(cfg, state_dir).await?;
    let to_chrono = |t: time::OffsetDateTime| {
        chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond())
            .ok_or_else(|| anyhow!("a renewal window time out of range"))
    };
    match account.renewal_info(&id).await {
        Ok((info, retry_after)) => Ok(Some(Window {
            start: to_chrono(info.suggested_window.start)?,
            end: to_chrono(info.suggested_window.end)?,
            retry_after,
            explanation: info.explanation_url,
        })),
        Err(instant_acme::Error::Unsupported(_)) => Ok(None),
        Err(e) => Err(anyhow!("asking the ACME directory {} for the renewal window: {e}", cfg.directory)),
    }
}

/// Orders a certificate, within [`ATTEMPT_TIMEOUT`].
pub async fn obtain(req: &Request<'_>) -> Result<Served> {
    let result = tokio::time::timeout(ATTEMPT_TIMEOUT, order(req)).await;
    req.challenges.clear();
    match result {
        Ok(result) => result,
        Err(_) => bail!("the ACME order did not complete within {}", humantime::format_duration(ATTEMPT_TIMEOUT)),
    }
}

async fn order(req: &Request<'_>) -> Result<Served> {
    let Request { cfg, state_dir, host, challenges, front_port, replaces } = *req;
    let account = account(cfg, state_dir).await?;
    let offered: Vec<String> = account.profiles().map(|p| p.name.to_string()).collect();
    let identifiers = [identifier(host)];
    if !offered.is_empty() && !offered.contains(&cfg.profile) {
        bail!(
            "the ACME directory offers the profiles {} but not [tls] profile = \"{}\"",
            offered.join(", "),
            cfg.profile
        );
    }
    let new_order = |replaces: Option<CertificateIdentifier<'static>>| {
        let mut new_order = NewOrder::new(&identifiers);
        if !offered.is_empty() {
            new_order = new_order.profile(&cfg.profile);
        }
        match replaces {
            Some(id) => new_order.replaces(id),
            None => new_order,
        }
    };
    // A renewal names the certificate it replaces (RFC 9773 §5): Let's
    // Encrypt exempts such renewals from its rate limits. A directory
    // without ARI, or a certificate already replaced, gets a plain order.
    let replaced = replaces.filter(|r| r.info.covers(host)).and_then(|r| ari_id(r).ok());
    let placed = match replaced {
        Some(id) => match account.new_order(&new_order(Some(id))).await {
            Err(instant_acme::Error::Unsupported(_)) => None,
            Err(instant_acme::Error::Api(p))
                if p.r#type.as_deref().is_some_and(|t| t.ends_with(":alreadyReplaced")) =>
            {
                warn!("the ACME CA says the certificate was already replaced: ordering without `replaces`");
                None
            }
            other => Some(other),
        },
        None => None,
    };
    let placed = match placed {
        Some(placed) => placed,
        None => account.new_order(&new_order(None)).await,
    };
    let mut order = placed.map_err(|e| anyhow!("placing the order for {host}: {e}"))?;

    // Answer every pending authorization (one: the address).
    let mut listener = None;
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| anyhow!("reading the authorization: {e}"))?;
        if authz.status == AuthorizationStatus::Valid {
            continue;
        }
        let kind = match cfg.challenge {
            Challenge::Http01 => ChallengeType::Http01,
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut challenge = authz
            .challenge(kind.clone())
            .ok_or_else(|| anyhow!("the CA offers no {} challenge for {host}", cfg.challenge))?;
        let key_auth = challenge.key_authorization();
        match cfg.challenge {
            Challenge::Http01 => {
                challenges.set_http(&challenge.token, key_auth.as_str());
                if listener.is_none() {
                    listener = Some(ChallengeListener::http01(cfg.challenge_port, challenges.clone()).await?);
                }
            }
            Challenge::TlsAlpn01 => {
                challenges.set_alpn(alpn_certificate(host, key_auth.digest().as_ref())?);
                if listener.is_none() && cfg.challenge_port != front_port {
                    listener = Some(ChallengeListener::tls_alpn01(cfg.challenge_port, challenges.clone()).await?);
                }
            }
        }
        challenge.set_ready().await.map_err(|e| anyhow!("the {} challenge: {e}", cfg.challenge))?;
    }

    let status = order.poll_ready(&POLL).await.map_err(|e| anyhow!("validating {host}: {e}"))?;
    drop(listener);
    if status != OrderStatus::Ready {
        // The reason is on the challenge.
        let mut why = String::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authz)) = authorizations.next().await {
            if let Ok(state) = authz.refresh().await {
                for c in &state.challenges {
                    if let Some(problem) = &c.error {
                        why = problem.to_string();
                    }
                }
            }
        }
        bail!(
            "the CA could not validate {host} over {} on port {}: {}",
            cfg.challenge,
            cfg.challenge_port,
            if why.is_empty() { format!("the order is {status:?}") } else { why }
        );
    }

    // The CSR: the address as its only name, an empty subject (Let's Encrypt
    // refuses an IP address in the common name).
    let mut params = rcgen::CertificateParams::new(vec![host.name()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let key = rcgen::KeyPair::generate()?;
    let csr = params.serialize_request(&key)?;
    order.finalize_csr(csr.der()).await.map_err(|e| anyhow!("finalizing the order: {e}"))?;
    let chain = order.poll_certificate(&POLL).await.map_err(|e| anyhow!("fetching the certificate: {e}"))?;
    let served = certs::from_acme(&key.serialize_pem(), &chain)?;
    if !served.info.covers(host) {
        bail!("the CA issued a certificate for {} instead of {host}", served.info.subject());
    }
    info!(subject = %served.info.subject(), not_after = %served.info.not_after, issuer = %served.info.issuer, "obtained a certificate");
    Ok(served)
}

/// The TLS-ALPN-01 validation certificate (RFC 8737): self-signed, for the
/// address alone, with the critical acmeIdentifier extension.
fn alpn_certificate(host: &Host, digest: &[u8]) -> Result<Arc<rustls::sign::CertifiedKey>> {
    let mut params = rcgen::CertificateParams::new(vec![host.name()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| anyhow!("the validation key: {e}"))?;
    // Not CertifiedKey::from_der: it refuses the critical extension (docs/tls.md).
    Ok(Arc::new(rustls::sign::CertifiedKey::new(vec![cert.der().clone()], signing)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9773 §4.1's example: keyIdentifier 69:88:5B:...:C8:D4, serial
    /// 00:87:65:43:21.
    #[test]
    fn the_ari_identifier_is_the_authority_key_id_and_the_serial_in_base64url() {
        let aki = [
            0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01,
            0xC8, 0xD4,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(aki.to_vec());
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec!["203.0.113.7".into()]).unwrap();
        leaf.use_authority_key_identifier_extension = true;
        leaf.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x00, 0x87, 0x65, 0x43, 0x21]));
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        let served = certs::from_acme(&key.serialize_pem(), &cert.pem()).unwrap();
        assert_eq!(ari_id(&served).unwrap().to_string(), "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
        // A certificate without the extension (the self-signed one) has none.
        let own = certs::self_signed(&"203.0.113.7".parse().unwrap()).unwrap();
        assert!(ari_id(&own).is_err());
    }
}
