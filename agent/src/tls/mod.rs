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
/// 100 min, as Let's Encrypt's integration guide says; then every
/// [`retry_cap`] (docs/tls.md#retries).
const RETRY_DELAYS: [Duration; 3] = [Duration::from_secs(60), Duration::from_secs(600), Duration::from_secs(6000)];

/// The lifetime assumed before any ACME certificate is known: Let's
/// Encrypt's `shortlived` profile, 160 hours.
const SHORTLIVED: Duration = Duration::from_secs(160 * 3600);

/// How often the CA's renewal window is asked for (its `Retry-After`),
/// within these bounds: at least twice a day, as Let's Encrypt's
/// integration guide asks (docs/tls.md#ari).
const ARI_POLL: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(12 * 3600));

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
    /// What the listener serves.
    served: Served,
    /// The latest ACME certificate for the host, served or not (after the
    /// fallback): what ARI is asked about, what a renewal replaces.
    acme: Option<Served>,
    /// Why the last attempt failed, until one succeeds.
    last_error: Option<String>,
    failures: usize,
    /// The CA's renewal window for `acme` when it offers ARI.
    ari: Option<Ari>,
    /// Whether the directory offers ARI; unknown until asked.
    ari_offered: Option<bool>,
    /// The fallback could not be made at its time: tried again after the
    /// next attempt.
    fallback_failed: bool,
    /// When the CA is asked next ([`Renewal::schedule`]).
    next: DateTime<Utc>,
    updates: mpsc::UnboundedSender<TlsState>,
}

/// What ARI said of the current certificate.
#[derive(Debug, Clone, PartialEq)]
struct Ari {
    window: (DateTime<Utc>, DateTime<Utc>),
    /// The random time picked in the window: when to renew.
    at: DateTime<Utc>,
    /// When to ask for the window again.
    poll_at: DateTime<Utc>,
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
                let for_host = stored.filter(|s| s.info.covers(host));
                // One inside its last tenth is not served: it could expire
                // before the next attempt (docs/tls.md#when-renewals-fail).
                let stored = for_host.clone().filter(|s| Utc::now() < s.info.fallback_at());
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
                    acme: for_host,
                    last_error: None,
                    failures: 0,
                    ari: None,
                    ari_offered: None,
                    fallback_failed: false,
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
            (Some(e), Kind::SelfSigned) => {
                format!("ACME failed ({e}); serving a self-signed certificate, SHA-256 {}", s.fingerprint)
            }
            (_, Kind::Acme) => format!("{} from {}, valid until {}", s.subject, s.issuer, s.not_after),
            (_, _) => format!("self-signed for {}, SHA-256 {}", s.subject, s.fingerprint),
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
/// browsers do not trust, or of a trusted one that could not be renewed.
pub fn note(state: &TlsState) -> Option<String> {
    if state.served == Kind::Acme {
        let e = state.acme_error.as_ref()?;
        let retry = state.next_renewal.map_or(String::new(), |n| format!("; the agent retries at {}", when(n)));
        return Some(format!(
            "the trusted certificate (valid until {}) could not be renewed: {e}{retry}; unless a renewal succeeds first, a self-signed certificate replaces it before it expires ([tls] fallback)",
            when(state.not_after)
        ));
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

/// A time as the notes show it.
fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
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

/// The longest wait between failed attempts: a fortieth of the
/// certificate's lifetime (4 hours of 160), within 100 minutes and a day
/// (Let's Encrypt's "at most daily", reached from 40 days up).
fn retry_cap(lifetime: Duration) -> Duration {
    (lifetime / 40).clamp(RETRY_DELAYS[2], Duration::from_secs(24 * 3600))
}

/// The wait after `failures` failed attempts in a row (at least one), for
/// certificates that last `lifetime`.
fn retry_delay(failures: usize, lifetime: Duration) -> Duration {
    match RETRY_DELAYS.get(failures.saturating_sub(1)) {
        Some(delay) => *delay,
        None => retry_cap(lifetime),
    }
}

/// A uniformly random time in `[start, end]`, from `random` (RFC 9773 §4.2).
fn pick_in(window: (DateTime<Utc>, DateTime<Utc>), random: u64) -> DateTime<Utc> {
    let (start, end) = window;
    let span = (end - start).num_milliseconds().max(0) as u64;
    start + chrono::Duration::milliseconds((random % (span + 1)) as i64)
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // The pick only spreads renewals over the window; a failing random
    // source gives its start.
    let _ = rustls::crypto::ring::default_provider().secure_random.fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

impl Ari {
    /// From a new answer: the pick kept while the window is the same (a
    /// new one is picked when the CA moves it).
    fn from_window(window: &acme::Window, before: Option<&Ari>, now: DateTime<Utc>) -> Ari {
        let span = (window.start, window.end);
        let at = match before {
            Some(b) if b.window == span => b.at,
            _ => pick_in(span, random_u64()),
        };
        let poll = window.retry_after.clamp(ARI_POLL.0, ARI_POLL.1);
        Ari { window: span, at, poll_at: now + poll }
    }
}

impl Renewal {
    /// When to ask the CA next: the time picked in ARI's window (or when to
    /// ask ARI again), else at half the certificate's life; after a
    /// failure, a delay that grows with each failure.
    fn schedule(&mut self) {
        self.next = match (self.served.kind, self.failures) {
            (Kind::Acme, 0) => match &self.ari {
                Some(ari) => ari.at.min(ari.poll_at).min(self.served.info.fallback_at()),
                None => self.served.info.renew_at(),
            },
            (_, n) => Utc::now() + retry_delay(n, self.lifetime()),
        };
    }

    fn lifetime(&self) -> Duration {
        self.acme.as_ref().and_then(|a| a.info.lifetime().to_std().ok()).unwrap_or(SHORTLIVED)
    }

    /// When the served ACME certificate gives way to the fallback; none when
    /// a self-signed one is served or `[tls] fallback = "fail"`.
    fn fallback_at(&self) -> Option<DateTime<Utc>> {
        let falls_back = self.cfg.fallback == Fallback::SelfSigned && !self.fallback_failed;
        (self.served.kind == Kind::Acme && falls_back).then(|| self.served.info.fallback_at())
    }

    /// The state's `acme_error`: the last failure, and after the fallback,
    /// which certificate could not be renewed.
    fn acme_error(&self) -> Option<String> {
        let e = self.last_error.as_ref()?;
        match &self.acme {
            Some(acme) if self.served.kind != Kind::Acme => Some(format!(
                "the ACME certificate, valid until {}, could not be renewed: {e}",
                when(acme.info.not_after)
            )),
            _ => Some(e.clone()),
        }
    }

    fn state(&self) -> TlsState {
        state_of(&self.cfg, &self.front, &self.served, Some(self.next), self.acme_error())
    }

    /// One order; on success the new certificate is stored and served.
    async fn attempt(&mut self) -> Result<()> {
        // A fallback that could not be made is tried again after this attempt.
        self.fallback_failed = false;
        let result = match private_address_refused(&self.cfg, &self.host) {
            Some(why) => Err(anyhow!(why)),
            None => {
                acme::obtain(&acme::Request {
                    cfg: &self.cfg,
                    state_dir: &self.state_dir,
                    host: &self.host,
                    challenges: &self.challenges,
                    front_port: self.front.local.port(),
                    replaces: self.acme.as_ref(),
                })
                .await
            }
        };
        let result = match result.and_then(|served| self.serve(served)) {
            Ok(()) => {
                self.failures = 0;
                self.last_error = None;
                self.ari = None;
                Ok(())
            }
            Err(e) => {
                self.failures += 1;
                self.last_error = Some(jupyter_proto::redact::bound(&format!("{e:#}"), 400));
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
        self.acme = Some(served.clone());
        self.served = served;
        Ok(())
    }

    /// Asks the CA for the served certificate's renewal window, where the
    /// directory offers ARI; `next` follows it.
    async fn ask_ari(&mut self) {
        if self.served.kind != Kind::Acme || self.failures > 0 || self.ari_offered == Some(false) {
            return;
        }
        match acme::renewal_window(&self.cfg, &self.state_dir, &self.served).await {
            Ok(None) => {
                info!("the ACME directory offers no renewal information (ARI): renewing at half-life");
                self.ari_offered = Some(false);
                self.ari = None;
            }
            Ok(Some(window)) => {
                self.ari_offered = Some(true);
                let ari = Ari::from_window(&window, self.ari.as_ref(), Utc::now());
                info!(start = %window.start, end = %window.end, at = %ari.at, explanation = ?window.explanation, "the CA's renewal window (ARI)");
                self.ari = Some(ari);
            }
            Err(e) => {
                // Asked again later; meanwhile the last window, or half-life.
                warn!("{e:#}");
                let poll_at = Utc::now() + ARI_POLL.1.min(self.lifetime() / 40).max(ARI_POLL.0);
                if let Some(ari) = &mut self.ari {
                    ari.poll_at = poll_at;
                }
            }
        }
        self.schedule();
    }

    /// Serves the self-signed fallback in place of an ACME certificate near
    /// its expiry, as when the first order fails.
    fn fall_back(&mut self) {
        let made = keep_self_signed(&self.state_dir, &self.host).and_then(|s| Ok((s.certified_key()?, s)));
        match made {
            Ok((key, served)) => {
                warn!(
                    not_after = %self.served.info.not_after,
                    "the ACME certificate could not be renewed and expires soon: serving the self-signed fallback"
                );
                self.front.set_certificate(key);
                self.served = served;
                if self.failures == 0 {
                    // No attempt has failed (the host was suspended?): one now.
                    self.failures = 1;
                    self.last_error = Some("no renewal was attempted before the certificate's last tenth".into());
                    self.next = Utc::now();
                }
            }
            Err(e) => {
                warn!("{e:#}: still serving the ACME certificate");
                self.fallback_failed = true;
            }
        }
    }

    async fn run(mut self) {
        self.ask_ari().await;
        if self.updates.send(self.state()).is_err() {
            return;
        }
        loop {
            let wake = self.fallback_at().map_or(self.next, |f| f.min(self.next));
            let wait = (wake - Utc::now()).to_std().unwrap_or_default();
            info!(in_seconds = wait.as_secs(), "next ACME attempt or check");
            tokio::time::sleep(wait).await;
            let now = Utc::now();
            if now >= self.next {
                // Woken to ask for the window again, before the time picked in it.
                let deadline = self.served.info.fallback_at();
                let window_only = self.failures == 0
                    && self.served.kind == Kind::Acme
                    && self.ari.as_ref().is_some_and(|a| a.at.min(deadline) > now);
                if window_only {
                    // Only the window to refresh; the renewal comes at its time.
                    self.ask_ari().await;
                } else {
                    match self.attempt().await {
                        Ok(()) => {
                            info!(not_after = %self.served.info.not_after, "renewed the certificate");
                            self.ask_ari().await;
                        }
                        Err(e) => warn!("the ACME attempt failed: {e:#}"),
                    }
                }
            }
            if self.fallback_at().is_some_and(|f| f <= Utc::now()) {
                self.fall_back();
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("{e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(jupyter_proto::certificate_check::CertificateCheck::new(
            "the certificate on record",
            provider,
            move |presented| match certs::fingerprint(presented.end_entity) == expected {
                true => Ok(()),
                false => {
                    Err(rustls::Error::General("the listener serves another certificate than the one on record".into()))
                }
            },
        )))
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests;
