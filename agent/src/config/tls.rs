//! `[tls]`: HTTPS in front of Jupyter, with a certificate from an ACME CA for
//! the instance's address or a self-signed one (docs/tls.md).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;

use super::section::{toml_str, Section};
use super::{ConfigError, Publish};

/// Let's Encrypt's production directory: the default CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// The Let's Encrypt profile that allows IP addresses (160-hour certificates).
pub const DEFAULT_PROFILE: &str = "shortlived";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain http, Jupyter published as configured.
    Off,
    /// A certificate from an ACME CA, renewed by the agent.
    Acme,
    /// A self-signed certificate, kept in the state directory.
    SelfSigned,
}

impl FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(TlsMode::Off),
            "acme" => Ok(TlsMode::Acme),
            "self-signed" => Ok(TlsMode::SelfSigned),
            _ => Err("expected \"off\", \"acme\" or \"self-signed\"".into()),
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Off => "off",
            TlsMode::Acme => "acme",
            TlsMode::SelfSigned => "self-signed",
        })
    }
}

/// How the instance proves to the CA that it holds the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// A plain HTTP answer on port 80.
    Http01,
    /// A special certificate in a TLS handshake on port 443.
    TlsAlpn01,
}

impl FromStr for Challenge {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http-01" => Ok(Challenge::Http01),
            "tls-alpn-01" => Ok(Challenge::TlsAlpn01),
            _ => Err("expected \"http-01\" (port 80) or \"tls-alpn-01\" (port 443)".into()),
        }
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Challenge::Http01 => "http-01",
            Challenge::TlsAlpn01 => "tls-alpn-01",
        })
    }
}

/// What is served while ACME fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    SelfSigned,
    Fail,
}

impl FromStr for Fallback {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "self-signed" => Ok(Fallback::SelfSigned),
            "fail" => Ok(Fallback::Fail),
            _ => Err("expected \"self-signed\" (serve one while ACME fails) or \"fail\"".into()),
        }
    }
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

impl TlsConfig {
    pub fn is_on(&self) -> bool {
        self.mode != TlsMode::Off
    }

    /// Where Jupyter's port is published when the agent serves TLS in front
    /// of it: the host's loopback, a port Docker picks.
    pub fn jupyter_publish(&self, configured: &Publish) -> Publish {
        match self.mode {
            TlsMode::Off => *configured,
            _ => Publish { address: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 0 },
        }
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
