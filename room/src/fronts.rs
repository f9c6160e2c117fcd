//! The participants' fronts over HTTP(S), many at once: the progress JSON
//! for `watch` (no token), and the token-bearing requests of `collect` and
//! `update`.
//!
//! Certificates (docs/room.md#certificates): an instance's front serves a
//! trusted ACME certificate or a self-signed one (docs/tls.md).
//!
//! - The progress JSON carries no secret and is sent none: any certificate
//!   is accepted (a machine in the middle could only show a wrong phase).
//! - A request that carries a participant's token (download, update) is
//!   sent only to a front whose certificate is trusted by the system's
//!   roots for its address, or whose SHA-256 fingerprint is the one the
//!   participant's own setup reported in the room's signal (the ready
//!   signal's `note` for a self-signed certificate). Anything else is
//!   refused before the request is sent, for that participant alone;
//!   `--insecure` lifts the check, for a network the organiser trusts.
//! - A front with TLS off (`http://`) gets the token in the clear, as the
//!   participant's own login link does.
//!
//! No redirect is followed (the token stays with the front it is for), no
//! proxy from the environment is used, and the token header is marked
//! sensitive.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use jupyter_proto::certificate_check::{any_certificate, CertificateCheck, Presented};
use reqwest::header::HeaderValue;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::snapshot::Seat;
use crate::text::{one_line, scrub};

/// The progress JSON's path on every front.
pub const PROGRESS_PATH: &str = "/_agent/progress";
/// "Download my work".
pub const DOWNLOAD_PATH: &str = "/_agent/download";
/// "Take the organiser's fixes".
pub const UPDATE_PATH: &str = "/_agent/update";

/// Progress requests in flight at once: more than a room of 200, so that a
/// round is one wave even when every front is silent.
pub const PROBES_AT_ONCE: usize = 256;
/// A front that does not accept the connection by then is unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A progress answer later than this is no answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// A round ends by then whatever is still in flight.
pub const ROUND_DEADLINE: Duration = Duration::from_millis(1900);
/// The largest progress JSON read (the agent's is a few hundred bytes).
const MAX_PROGRESS: usize = 64 * 1024;

/// The crypto provider, installed once per process as the agent does.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        // Err only when a provider is installed already: that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a token may be sent to (module doc).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Accept any certificate (`--insecure`).
    pub insecure: bool,
    /// Host (the front's IP address or name, as in its URL) -> the SHA-256
    /// fingerprints reported for it (one, unless several participants'
    /// fronts share a host on different ports, as on a test machine).
    pub pins: HashMap<String, Vec<[u8; 32]>>,
}

impl Trust {
    /// The pins of `fingerprints` (participant -> fingerprint) for the
    /// hosts of those participants' fronts.
    pub fn pinned(insecure: bool, seats: &[Seat], fingerprints: &BTreeMap<String, [u8; 32]>) -> Trust {
        let mut pins: HashMap<String, Vec<[u8; 32]>> = HashMap::new();
        for (host, fp) in
            seats.iter().filter_map(|s| Some((host_of(s.front.as_deref()?)?, *fingerprints.get(&s.name)?)))
        {
            let known = pins.entry(host).or_default();
            if !known.contains(&fp) {
                known.push(fp);
            }
        }
        Trust { insecure, pins }
    }
}

/// The host of a front's base URL, without brackets or port.
pub fn host_of(front: &str) -> Option<String> {
    let rest = front.split_once("://")?.1;
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| canonical(h));
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    (!host.is_empty()).then(|| canonical(host))
}

/// An address as rustls names it to the verifier (`IpAddr`'s form), a name
/// lowercased.
fn canonical(host: &str) -> String {
    host.parse::<std::net::IpAddr>().map_or_else(|_| host.to_ascii_lowercase(), |ip| ip.to_string())
}

/// The SHA-256 fingerprint (`AB:CD:...`, 32 bytes) a participant's ready
/// note gives for a self-signed certificate, if any.
pub fn fingerprint_in(note: &str) -> Option<[u8; 32]> {
    note.split(|c: char| !(c.is_ascii_hexdigit() || c == ':')).find_map(|word| {
        let parts: Vec<&str> = word.split(':').collect();
        if parts.len() != 32 || parts.iter().any(|p| p.len() != 2) {
            return None;
        }
        let mut out = [0u8; 32];
        for (b, p) in out.iter_mut().zip(parts) {
            *b = u8::from_str_radix(p, 16).ok()?;
        }
        Some(out)
    })
}

/// Each participant's certificate fingerprint from the input's ready
/// signals (`{"url": ..., "note": "... fingerprint ... is AB:CD:..."}`),
/// wherever they sit in it: the GetStack answer's Room output, its value
/// alone, the wait condition's Data, each possibly a string holding JSON.
pub fn fingerprints(text: &str) -> BTreeMap<String, [u8; 32]> {
    let mut out = BTreeMap::new();
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(text.trim_start_matches('\u{feff}')) {
        walk(&value, 0, &mut out);
    }
    out
}

fn walk(value: &serde_json::Value, depth: usize, out: &mut BTreeMap<String, [u8; 32]>) {
    use serde_json::Value;
    if depth > 12 {
        return;
    }
    match value {
        Value::String(s) if s.trim_start().starts_with(['{', '[', '"']) => {
            if let Ok(inner) = serde_json::from_str::<Value>(s) {
                walk(&inner, depth + 1, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| walk(v, depth + 1, out)),
        Value::Object(map) => {
            for (key, v) in map {
                let data = match v {
                    Value::String(s) => serde_json::from_str::<Value>(s).ok(),
                    other => Some(other.clone()),
                };
                let note = data.as_ref().filter(|d| d.get("url").is_some()).and_then(|d| d.get("note")?.as_str());
                match note.and_then(fingerprint_in) {
                    Some(fp) => {
                        out.insert(key.trim().to_string(), fp);
                    }
                    None => walk(v, depth + 1, out),
                }
            }
        }
        _ => {}
    }
}

/// Why a certificate was refused, in the message the organiser reads.
pub const NOT_TRUSTED: &str = "its certificate is neither trusted by this system nor the one the participant's \
     setup reported (a self-signed certificate without a fingerprint in the input?); the token was not sent \
     (--insecure sends it anyway)";

/// The system's roots for the address, or the pinned fingerprint when the
/// participant's setup reported one for this host.
fn pinned_or_trusted(trust: &Trust, provider: Arc<CryptoProvider>) -> Arc<dyn ServerCertVerifier> {
    let pins: HashMap<String, Vec<[u8; 32]>> = trust.pins.clone();
    let system = rustls_platform_verifier::Verifier::new(provider.clone()).ok();
    Arc::new(CertificateCheck::new("pinned or trusted", provider, move |presented: &Presented<'_>| {
        let host = match presented.server_name {
            ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            ServerName::DnsName(name) => name.as_ref().to_ascii_lowercase(),
            _ => String::new(),
        };
        let seen: [u8; 32] = Sha256::digest(presented.end_entity.as_ref()).into();
        let pinned = pins.get(&host);
        if pinned.is_some_and(|fps| fps.contains(&seen)) {
            return Ok(());
        }
        // A trusted certificate serves too: the instance may have had its
        // ACME certificate since it reported the self-signed one.
        let trusted = system.as_ref().is_some_and(|system| {
            system
                .verify_server_cert(
                    presented.end_entity,
                    presented.intermediates,
                    presented.server_name,
                    presented.ocsp_response,
                    presented.now,
                )
                .is_ok()
        });
        match (trusted, pinned) {
            (true, _) => Ok(()),
            (false, Some(_)) => Err(rustls::Error::General(format!(
                "its certificate's fingerprint ({}) is not the one the participant's setup reported, nor is the \
                 certificate trusted by this system (a machine in the middle, or a new certificate); the token was \
                 not sent (--insecure sends it anyway)",
                colon_hex(&seen)
            ))),
            (false, None) => Err(rustls::Error::General(NOT_TRUSTED.into())),
        }
    }))
}

/// `AB:CD:...`, as the agent shows fingerprints.
pub fn colon_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn tls(verifier: Arc<dyn ServerCertVerifier>, provider: Arc<CryptoProvider>) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

fn builder(verifier: Arc<dyn ServerCertVerifier>, provider: Arc<CryptoProvider>) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls(verifier, provider))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .http1_only()
        .connect_timeout(CONNECT_TIMEOUT)
}

/// The client for the progress JSON: any certificate, short deadlines.
pub fn progress_client() -> reqwest::Client {
    let provider = provider();
    builder(any_certificate(provider.clone()), provider)
        .timeout(PROBE_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(15))
        .build()
        .expect("an HTTP client")
}

/// A client for requests that carry a token, under `trust`: it connects
/// within `connect`, and a transfer that stalls for `stall` fails.
pub fn token_client(trust: &Trust, connect: Duration, stall: Duration, total: Option<Duration>) -> reqwest::Client {
    let provider = provider();
    let verifier = match trust.insecure {
        true => any_certificate(provider.clone()),
        false => pinned_or_trusted(trust, provider.clone()),
    };
    let mut b = builder(verifier, provider).connect_timeout(connect).read_timeout(stall);
    if let Some(total) = total {
        b = b.timeout(total);
    }
    b.build().expect("an HTTP client")
}

/// `Authorization: token <token>`, marked sensitive (never logged).
pub fn authorization(token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("token {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Why a request got no answer, in one line for a table: the innermost
/// cause (connection refused, the certificate refused, no answer in time),
/// with any token or URL credential redacted.
pub fn reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".into();
    }
    let mut cause: &dyn std::error::Error = e;
    let mut messages = vec![e.to_string()];
    while let Some(next) = cause.source() {
        messages.push(next.to_string());
        cause = next;
    }
    // The innermost cause says most ("Connection refused"); a certificate's
    // refusal is a level or two above the I/O error that carries it.
    let text = messages
        .iter()
        .rev()
        .find(|m| m.contains("certificate"))
        .or_else(|| messages.last())
        .cloned()
        .unwrap_or_default();
    let text = match text.find(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    // rustls's Display of our own refusal (Error::General).
    let text = text.strip_prefix("unexpected error: ").unwrap_or(&text);
    let text = if e.is_connect() && !text.contains("certificate") {
        format!("cannot connect: {text}")
    } else {
        text.to_string()
    };
    one_line(&scrub(&text))
}

/// The progress JSON as the agent serves it (agent/src/front/progress.rs);
/// every field optional, so that an older or newer agent still shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Progress {
    pub phase: String,
    pub step: Option<String>,
    pub progress: Option<String>,
    pub ready: bool,
    pub failed_step: Option<String>,
    pub certificate: Option<String>,
    pub hand: Option<Hand>,
}

/// A raised hand: when, and the participant's message (their text: defuse
/// it wherever it is shown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Hand {
    pub raised_at: String,
    pub message: Option<String>,
}

/// Whether a [`reason`] is our own refusal to send a token (the
/// certificate), rather than the front not answering.
pub fn refused_to_send(reason: &str) -> bool {
    reason.contains("the token was not sent")
}

/// What one front said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// No front known yet (no address, or not ready in a saved answer).
    NoFront,
    /// The progress JSON.
    Answered(Progress),
    /// No usable answer: why, in one line.
    Unreachable(String),
}

/// Asks one front for its progress.
pub async fn probe(client: &reqwest::Client, front: &str, left: Duration) -> Probe {
    let url = format!("{}{PROGRESS_PATH}", front.trim_end_matches('/'));
    let request = client.get(&url).header("Accept", "application/json").timeout(left.min(PROBE_TIMEOUT));
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Probe::Unreachable(reason(&e)),
    };
    let status = response.status();
    // 503 is the agent's own answer while Jupyter does not answer.
    if !(status.is_success() || status.as_u16() == 503) {
        return Probe::Unreachable(format!("answered HTTP {} instead of the progress", status.as_u16()));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_PROGRESS {
                    return Probe::Unreachable("answered more than a progress JSON".into());
                }
            }
            Ok(None) => break,
            Err(e) => return Probe::Unreachable(reason(&e)),
        }
    }
    match serde_json::from_slice::<Progress>(&body) {
        Ok(p) => Probe::Answered(p),
        Err(_) => Probe::Unreachable(format!("answered HTTP {} without the progress JSON", status.as_u16())),
    }
}

/// One round: every seat's front asked at once (at most
/// [`PROBES_AT_ONCE`] in flight), all done by [`ROUND_DEADLINE`]; the
/// probes in the seats' order, and how long the round took.
pub async fn probe_all(client: &reqwest::Client, seats: &[Seat]) -> (Vec<Probe>, Duration) {
    let started = Instant::now();
    let mut probes: Vec<Probe> = vec![Probe::NoFront; seats.len()];
    let jobs = seats.iter().enumerate().filter_map(|(i, s)| Some((i, s.front.clone()?)));
    let answers: Vec<(usize, Probe)> = stream::iter(jobs)
        .map(|(i, front)| async move {
            let left = ROUND_DEADLINE.saturating_sub(started.elapsed());
            if left.is_zero() {
                return (i, Probe::Unreachable("not asked in this round's time".into()));
            }
            (i, probe(client, &front, left).await)
        })
        .buffer_unordered(PROBES_AT_ONCE)
        .collect()
        .await;
    for (i, p) in answers {
        probes[i] = p;
    }
    (probes, started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

    #[test]
    fn hosts_of_fronts() {
        assert_eq!(host_of("https://1.2.3.4:8888").as_deref(), Some("1.2.3.4"));
        assert_eq!(host_of("https://[2001:DB8::1]:8888").as_deref(), Some("2001:db8::1"));
        assert_eq!(host_of("http://example.org").as_deref(), Some("example.org"));
        assert_eq!(host_of("nothing"), None);
    }

    #[test]
    fn the_fingerprint_is_read_from_the_ready_note_wherever_the_signal_sits() {
        let fp = fingerprint_in(FP).unwrap();
        assert_eq!(colon_hex(&fp), FP);
        assert_eq!(fingerprint_in(&format!("accept it only if the SHA-256 fingerprint they show is {FP}")), Some(fp));
        assert_eq!(fingerprint_in("AB:CD"), None);
        assert_eq!(fingerprint_in(&FP.replace("AB:CD:EF:01", "AB:CD:EF:0")), None);

        let note = format!(
            "self-signed certificate: browsers warn once; accept it only if the SHA-256 fingerprint they show is {FP}"
        );
        let data = serde_json::json!({"url": "https://1.2.3.4:8888/?token=t", "note": note}).to_string();
        let get_stack = serde_json::json!({"Outputs": [
            {"OutputKey": "Room", "OutputValue": serde_json::json!({"alice": data, "bob": {"url": "https://5.6.7.8:8888/?token=u"}}).to_string()}
        ]});
        let found = fingerprints(&get_stack.to_string());
        assert_eq!(found.into_iter().collect::<Vec<_>>(), [("alice".to_string(), fp)]);
        let bare = serde_json::json!({"carol": {"url": "https://9.9.9.9:8888/?token=c", "note": note}});
        assert_eq!(fingerprints(&bare.to_string()).len(), 1);
        assert!(fingerprints("not json").is_empty());
    }

    #[test]
    fn pins_follow_the_participants_fronts() {
        use crate::input::State;
        let seat = |name: &str, front: Option<&str>| Seat {
            name: name.into(),
            stack: "r".into(),
            front: front.map(Into::into),
            state: State::Waiting,
        };
        let fp = fingerprint_in(FP).unwrap();
        let fps: BTreeMap<String, [u8; 32]> = [("alice".to_string(), fp), ("bob".to_string(), fp)].into();
        let trust = Trust::pinned(false, &[seat("alice", Some("https://1.2.3.4:8888")), seat("bob", None)], &fps);
        assert_eq!(trust.pins.len(), 1);
        assert_eq!(trust.pins.get("1.2.3.4"), Some(&vec![fp]));
        assert_eq!(host_of("https://[2001:0db8:0000::1]:8888").as_deref(), Some("2001:db8::1"));
    }

    #[test]
    fn the_progress_json_reads_as_the_agent_writes_it_and_tolerates_more_or_less() {
        let p: Progress = serde_json::from_str(
            r#"{"phase":"preparing-image","step":"image","progress":"45%","ready":false,"failed_step":null,
                "certificate":null,"hand":{"raised_at":"2026-12-07T10:00:00Z","message":"stuck"},"new":1}"#,
        )
        .unwrap();
        assert_eq!(p.phase, "preparing-image");
        assert_eq!(p.hand.unwrap().message.as_deref(), Some("stuck"));
        let p: Progress = serde_json::from_str(r#"{"phase":"ready","ready":true}"#).unwrap();
        assert!(p.ready && p.hand.is_none());
    }

    #[test]
    fn the_token_header_is_sensitive() {
        let h = authorization("abc").unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "token abc");
        assert!(authorization("a\nb").is_none());
    }
}
