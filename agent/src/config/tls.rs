//! `[tls]`: HTTPS in front of Jupyter, with a certificate from an ACME CA for
//! the instance's address or a self-signed one (docs/tls.md).

use std::path::PathBuf;

use super::section::{toml_str, Section};
use super::{ConfigError, Publish};

/// Let's Encrypt's production directory: the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// The Let's Encrypt profile that allows IP addresses (160-hour certificates).
pub const DEFAULT_PROFILE: &str = "shortlived";

super::values::keywords!(TlsMode: Either, Challenge: Either, Fallback: Either);

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::AsRefStr, strum::Display, strum::EnumMessage)]
#[strum(serialize_all = "kebab-case")]
pub enum TlsMode {
    /// Plain http, Jupyter published as configured.
    Off,
    /// A certificate from an ACME CA, renewed by the agent.
    Acme,
    /// A self-signed certificate, kept in the state directory.
    SelfSigned,
}

/// How the instance proves to the CA that it holds the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::AsRefStr, strum::Display, strum::EnumMessage)]
#[strum(serialize_all = "kebab-case")]
pub enum Challenge {
    /// A plain HTTP answer on port 80.
    #[strum(to_string = "http-01", message = "port 80")]
    Http01,
    /// A special certificate in a TLS handshake on port 443.
    #[strum(to_string = "tls-alpn-01", message = "port 443")]
    TlsAlpn01,
}

/// What is served while ACME fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::AsRefStr, strum::Display, strum::EnumMessage)]
#[strum(serialize_all = "kebab-case")]
pub enum Fallback {
    #[strum(message = "serve one while ACME fails")]
    SelfSigned,
    Fail,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub mode: TlsMode,
    /// The ACME directory URL.
    pub directory: String,
    pub challenge: Challenge,
    /// Where the challenge is answered: 80 or 443, as the CA connects there;
    /// another port only for a test CA told to connect elsewhere.
    pub challenge_port: u16,
    /// The certificate profile ordered when the directory offers profiles.
    pub profile: String,
    pub fallback: Fallback,
    /// More CA certificates (PEM) to trust: for the directory's HTTPS and for
    /// checking the served chain (a private or test CA).
    pub ca_file: Option<PathBuf>,
}

impl TlsMode {
    /// The kind of certificate the mode serves; none when off.
    pub fn cert_kind(self) -> Option<jupyter_proto::state::CertKind> {
        use jupyter_proto::state::CertKind;
        match self {
            TlsMode::Off => None,
            TlsMode::Acme => Some(CertKind::Acme),
            TlsMode::SelfSigned => Some(CertKind::SelfSigned),
        }
    }
}

impl TlsConfig {
    pub fn is_on(&self) -> bool {
        self.mode != TlsMode::Off
    }
}

pub(super) fn tls_config(mut s: Section, publish: &Publish) -> Result<TlsConfig, ConfigError> {
    let mode = s.parsed("mode")?.unwrap_or(TlsMode::Off);
    let directory = s.https_url("directory")?;
    if let Some(d) = directory.as_deref().filter(|d| !d.starts_with("https://")) {
        return Err(s.err("directory", Some(toml_str(d)), "expected an https:// URL (ACME runs over HTTPS only)"));
    }
    let challenge = s.parsed("challenge")?.unwrap_or(Challenge::Http01);
    let challenge_port = s.port("challenge_port", false)?.unwrap_or(match challenge {
        Challenge::Http01 => 80,
        Challenge::TlsAlpn01 => 443,
    });
    let profile = s.string("profile")?.unwrap_or_else(|| DEFAULT_PROFILE.into());
    if profile.is_empty() || !profile.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(s.err("profile", Some(toml_str(&profile)), "expected a profile name such as \"shortlived\""));
    }
    let fallback = s.parsed("fallback")?.unwrap_or(Fallback::SelfSigned);
    let ca_file = s.abs_path("ca_file")?;
    if mode == TlsMode::Acme && challenge == Challenge::Http01 && challenge_port == publish.port {
        return Err(s.err(
            "challenge_port",
            Some(challenge_port.to_string()),
            "is also [container] publish's port, where the agent serves HTTPS; http-01 needs a port of its own (80), or set challenge = \"tls-alpn-01\"",
        ));
    }
    s.finish()?;
    Ok(TlsConfig {
        mode,
        directory: directory.unwrap_or_else(|| LETS_ENCRYPT.into()),
        challenge,
        challenge_port,
        profile,
        fallback,
        ca_file,
    })
}
