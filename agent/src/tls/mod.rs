//! HTTPS in front of Jupyter (`[tls]`, docs/tls.md): a certificate for the
//! URL's host (from an ACME CA, or self-signed), the listener on
//! `[container] publish` that terminates TLS and copies the bytes to Jupyter
//! on the host's loopback, and the renewal that swaps the certificate while
//! connections and kernels go on.

pub mod acme;
pub mod certs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::{Config, Fallback, Host, TlsConfig, TlsMode, LETS_ENCRYPT};
use crate::front::{Challenges, Front};
use crate::state::{State, TlsState};
use certs::{Kind, Served};

/// After a failed ACME attempt, the next one comes after 1 min, 10 min,
/// 100 min, then every 4 hours: Let's Encrypt asks for backoff, and allows
/// 5 failed validations per hour (docs/tls.md#renewal).
const RETRY_DELAYS: [Duration; 4] =
    [Duration::from_secs(60), Duration::from_secs(600), Duration::from_secs(6000), Duration::from_secs(4 * 3600)];

/// The HTTPS listener with its certificate, and the task that renews it.
pub struct Tls {
    front: Arc<Front>,
    /// What the state says of it now.
    pub state: TlsState,
    /// New states from the renewal task.
    updates: mpsc::UnboundedReceiver<TlsState>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Tls {
    fn drop(&mut self) {
        if let Some(task) = &self.renewer {
            task.abort();
        }
    }
}

/// What the renewal task works with.
struct Renewal {
    cfg: TlsConfig,
    state_dir: PathBuf,
    host: Host,
    challenges: Arc<Challenges>,
    front: Arc<Front>,
    served: Served,
    acme_error: Option<String>,
    failures: usize,
    /// When the CA is asked next ([`Renewal::schedule`]).
    next: DateTime<Utc>,
    updates: mpsc::UnboundedSender<TlsState>,
}

impl Tls {
    /// The `tls` step: a certificate for `host` (the stored one while it
    /// serves, else a new one), and the listener on `[container] publish`.
    /// With ACME failing, the fallback the configuration allows.
    /// The front on `[container] publish` shows the progress from `state`.
    pub async fn start(cfg: &Config, host: &Host, state: Option<watch::Receiver<State>>) -> Result<Tls> {
        let tls = &cfg.tls;
        certs::dir(&cfg.state_dir)?;
        let listen = SocketAddr::new(cfg.container.publish.address, cfg.container.publish.port);
        let challenges = Arc::new(Challenges::default());
        let self_signed = || keep_self_signed(&cfg.state_dir, host);
        let (updates_tx, updates) = mpsc::unbounded_channel();
        match tls.mode {
            TlsMode::Off => bail!("[tls] mode = \"off\""),
            TlsMode::SelfSigned => {
                let served = self_signed()?;
                let front = Arc::new(Front::bind(listen, Some((served.certified_key()?, challenges)), state).await?);
                let state = state_of(tls, &front, &served, None, None);
                Ok(Tls { front, state, updates, renewer: None })
            }
            TlsMode::Acme => {
                let stored = Served::load(Kind::Acme, &cfg.state_dir).unwrap_or_else(|e| {
                    warn!("{e:#}; ordering a new certificate");
                    None
                });
                let stored = stored.filter(|s| s.usable_for(host));
                // Until the CA answers, the listener (which may have to
                // answer TLS-ALPN-01 itself) serves a self-signed certificate.
                let first = match &stored {
                    Some(s) => s.clone(),
                    None => self_signed()?,
                };
                let front =
                    Arc::new(Front::bind(listen, Some((first.certified_key()?, challenges.clone())), state).await?);
                let mut renewal = Renewal {
                    cfg: tls.clone(),
                    state_dir: cfg.state_dir.clone(),
                    host: host.clone(),
                    challenges,
                    front: front.clone(),
                    served: first,
                    acme_error: None,
                    failures: 0,
                    next: Utc::now(),
                    updates: updates_tx,
                };
                renewal.schedule();
                match stored {
                    Some(s) => {
                        info!(subject = %s.info.subject(), not_after = %s.info.not_after, "serving the stored certificate")
                    }
                    None => {
                        if let Err(e) = renewal.attempt().await {
                            if tls.fallback == Fallback::Fail {
                                return Err(e.context("[tls] fallback = \"fail\""));
                            }
                            warn!("{e:#}; serving a self-signed certificate meanwhile ([tls] fallback)");
                        }
                    }
                }
                let state = renewal.state();
                Ok(Tls { front, state, updates, renewer: Some(tokio::spawn(renewal.run())) })
            }
        }
    }

    /// The front it serves on.
    pub fn front(&self) -> &Arc<Front> {
        &self.front
    }

    /// The `tls` step's detail: where it listens and what it serves.
    pub fn summary(&self) -> String {
        let s = &self.state;
        let what = match (&s.acme_error, s.served) {
            (Some(e), _) => format!("ACME failed ({e}); serving a self-signed certificate, SHA-256 {}", s.fingerprint),
            (None, Kind::Acme) => format!("{} from {}, valid until {}", s.subject, s.issuer, s.not_after),
            (None, _) => format!("self-signed for {}, SHA-256 {}", s.subject, s.fingerprint),
        };
        format!("HTTPS on {}; {what}", s.listen)
    }

    /// Proves the path through the front: a TLS handshake that presents
    /// the certificate on record, and `/api/status` answering 200 to `token`.
    pub async fn prove(&self, path: &str, token: &str) -> Result<()> {
        let config = pinned_client_config(self.state.fingerprint.clone())?;
        self.front.prove(path, token, Some(config)).await
    }
}

/// The next state the renewal task sends; never, without TLS or a task.
pub async fn next_update(tls: &mut Option<Tls>) -> TlsState {
    let Some(tls) = tls else { return std::future::pending().await };
    match tls.updates.recv().await {
        Some(state) => {
            tls.state = state.clone();
            state
        }
        None => std::future::pending().await,
    }
}

/// The URL's whole note: `token_note` (the token's), then the certificate's.
pub fn with_note(token_note: Option<String>, tls: Option<&Tls>) -> Option<String> {
    match (token_note, tls.and_then(|t| note(&t.state))) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

/// The note next to the URL: what a participant must know of a certificate
/// browsers do not trust.
pub fn note(state: &TlsState) -> Option<String> {
    if state.served == Kind::Acme {
        return None;
    }
    let why = match &state.acme_error {
        Some(e) => {
            format!(" (the ACME CA failed: {e}; the agent retries and swaps in a trusted certificate, the URL stays)")
        }
        None => String::new(),
    };
    Some(format!(
        "self-signed certificate{why}: browsers warn once; accept it only if the SHA-256 fingerprint they show is {}",
        state.fingerprint
    ))
}

/// The self-signed certificate for `host`: the kept one (participants who
/// accepted it once are not asked again), or a new one.
fn keep_self_signed(state_dir: &Path, host: &Host) -> Result<Served> {
    if let Ok(Some(kept)) = Served::load(Kind::SelfSigned, state_dir) {
        if kept.usable_for(host) && kept.info.not_after > Utc::now() + chrono::Duration::days(30) {
            return Ok(kept);
        }
    }
    let made = certs::self_signed(host)?;
    made.save(state_dir)?;
    info!(subject = %made.info.subject(), fingerprint = %made.info.fingerprint, "made a self-signed certificate");
    Ok(made)
}

fn state_of(
    cfg: &TlsConfig,
    front: &Front,
    served: &Served,
    next: Option<DateTime<Utc>>,
    acme_error: Option<String>,
) -> TlsState {
    TlsState {
        mode: cfg.mode.cert_kind().unwrap_or_default(),
        served: served.kind,
        listen: front.local,
        subject: served.info.subject(),
        issuer: served.info.issuer.clone(),
        not_after: served.info.not_after,
        fingerprint: served.info.fingerprint.clone(),
        next_renewal: next,
        acme_error,
    }
}

/// The wait after `failures` failed attempts in a row (at least one).
fn retry_delay(failures: usize) -> Duration {
    RETRY_DELAYS[failures.saturating_sub(1).min(RETRY_DELAYS.len() - 1)]
}

impl Renewal {
    /// When to ask the CA next: at half the certificate's life, or after a
    /// delay that grows with each failure.
    fn schedule(&mut self) {
        self.next = match (self.served.kind, self.failures) {
            (Kind::Acme, 0) => self.served.info.renew_at(),
            (_, n) => Utc::now() + retry_delay(n),
        };
    }

    fn state(&self) -> TlsState {
        state_of(&self.cfg, &self.front, &self.served, Some(self.next), self.acme_error.clone())
    }

    /// One order; on success the new certificate is stored and served.
    async fn attempt(&mut self) -> Result<()> {
        let result = match private_address_refused(&self.cfg, &self.host) {
            Some(why) => Err(anyhow!(why)),
            None => {
                acme::obtain(&acme::Request {
                    cfg: &self.cfg,
                    state_dir: &self.state_dir,
                    host: &self.host,
                    challenges: &self.challenges,
                    front_port: self.front.local.port(),
                })
                .await
            }
        };
        let result = match result.and_then(|served| self.serve(served)) {
            Ok(()) => {
                self.failures = 0;
                self.acme_error = None;
                Ok(())
            }
            Err(e) => {
                self.failures += 1;
                self.acme_error = Some(jupyter_proto::redact::bound(&format!("{e:#}"), 400));
                Err(e)
            }
        };
        self.schedule();
        result
    }

    /// Stores the new certificate and hands it to the listener.
    fn serve(&mut self, served: Served) -> Result<()> {
        served.save(&self.state_dir)?;
        self.front.set_certificate(served.certified_key()?);
        self.served = served;
        Ok(())
    }

    async fn run(mut self) {
        loop {
            let wait = (self.next - Utc::now()).to_std().unwrap_or_default();
            info!(in_seconds = wait.as_secs(), "next ACME attempt");
            tokio::time::sleep(wait).await;
            match self.attempt().await {
                Ok(()) => info!(not_after = %self.served.info.not_after, "renewed the certificate"),
                Err(e) => warn!("the ACME attempt failed: {e:#}"),
            }
            if self.updates.send(self.state()).is_err() {
                return;
            }
        }
    }
}

/// Let's Encrypt cannot reach a private or loopback address: say so instead
/// of burning its failed-validation limit.
fn private_address_refused(cfg: &TlsConfig, host: &Host) -> Option<String> {
    let ip = host.ip()?;
    let private = match ip {
        std::net::IpAddr::V4(a) => {
            a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64
        }
        std::net::IpAddr::V6(a) => a.is_loopback() || (a.segments()[0] & 0xfe00) == 0xfc00,
    };
    (private && cfg.directory == LETS_ENCRYPT).then(|| {
        format!("the URL's host {ip} is not a public address (no public IP or EIP on this instance?): Let's Encrypt cannot validate it")
    })
}

/// A client configuration that trusts exactly the certificate whose
/// fingerprint is `expected`: the proof checks the listener serves what the
/// state says, whoever issued it.
pub(crate) fn pinned_client_config(expected: String) -> Result<rustls::ClientConfig> {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct Pinned(String, Arc<rustls::crypto::CryptoProvider>);
    impl ServerCertVerifier for Pinned {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            if certs::fingerprint(end_entity) == self.0 {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General("the listener serves another certificate than the one on record".into()))
            }
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.1.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.1.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.1.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("{e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned(expected, provider)))
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_encrypt_is_not_asked_for_an_address_it_cannot_reach() {
        let le = TlsConfig { directory: LETS_ENCRYPT.into(), ..Config::defaults().tls };
        for private in ["10.0.3.4", "172.16.0.1", "192.168.1.1", "127.0.0.1", "100.64.0.7", "169.254.1.1", "[fd00::1]"]
        {
            assert!(private_address_refused(&le, &private.parse().unwrap()).is_some(), "{private}");
        }
        for public in ["47.98.1.2", "203.0.113.7", "100.128.0.1", "example.org"] {
            assert_eq!(private_address_refused(&le, &public.parse().unwrap()), None, "{public}");
        }
        // A private or test CA may validate what it can reach.
        let pebble = TlsConfig { directory: "https://127.0.0.1:14000/dir".into(), ..le };
        assert_eq!(private_address_refused(&pebble, &"127.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn failed_attempts_back_off_to_every_four_hours() {
        let waits: Vec<u64> = (1..=6).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(waits, [60, 600, 6000, 14400, 14400, 14400]);
    }

    #[test]
    fn the_note_gives_the_fingerprint_and_why_acme_failed_and_none_for_a_trusted_certificate() {
        let mut state = TlsState {
            mode: Kind::Acme,
            served: Kind::SelfSigned,
            listen: "0.0.0.0:443".parse().unwrap(),
            subject: "IP 203.0.113.7".into(),
            issuer: "jupyter-agent self-signed".into(),
            not_after: Utc::now(),
            fingerprint: "AB:CD".into(),
            next_renewal: None,
            acme_error: None,
        };
        assert!(note(&state).unwrap().ends_with("the SHA-256 fingerprint they show is AB:CD"));
        state.acme_error = Some("port 80 closed".into());
        assert!(note(&state).unwrap().contains("the ACME CA failed: port 80 closed"));
        state.served = Kind::Acme;
        assert_eq!(note(&state), None);
    }
}
