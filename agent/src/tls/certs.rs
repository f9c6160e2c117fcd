//! Certificates on disk and in memory: the PEM file that holds a key and
//! its chain (0600, in `<state_dir>/tls/`), what a certificate says
//! (address, issuer, expiry, fingerprint), the self-signed certificate, and
//! whether a chain verifies (docs/tls.md#files).

use std::net::IpAddr;

pub use crate::config::Host;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// `<state_dir>/tls`, created 0700.
pub fn dir(state_dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = state_dir.join("tls");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Which kind of certificate a file holds: the state document's (docs/api.md).
pub use jupyter_proto::state::CertKind as Kind;

/// The file in `<state_dir>/tls` that keeps a kind of certificate.
pub fn path(kind: Kind, state_dir: &Path) -> PathBuf {
    state_dir.join("tls").join(match kind {
        Kind::Acme => "acme.pem",
        Kind::SelfSigned | Kind::Other => "self-signed.pem",
    })
}

/// A key and the chain it serves, leaf first, with what the leaf says.
#[derive(Clone)]
pub struct Served {
    pub kind: Kind,
    pub chain: Vec<CertificateDer<'static>>,
    /// The file's text: the private key, then the chain.
    pem: String,
    pub info: Info,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served").field("kind", &self.kind).field("info", &self.info).finish_non_exhaustive()
    }
}

/// What the leaf certificate says.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    /// Its IP address subject alternative names.
    pub addresses: Vec<IpAddr>,
    /// Its DNS names.
    pub names: Vec<String>,
    pub issuer: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// SHA-256 of the DER, `AB:CD:...` as browsers show it.
    pub fingerprint: String,
}

impl Info {
    /// `IP 203.0.113.7`, `DNS example.org`.
    pub fn subject(&self) -> String {
        let ips = self.addresses.iter().map(|a| format!("IP {a}"));
        ips.chain(self.names.iter().map(|n| format!("DNS {n}"))).collect::<Vec<_>>().join(", ")
    }

    /// Whether the certificate is for `host` (an address or a name).
    pub fn covers(&self, host: &Host) -> bool {
        match host {
            Host::Ip(ip) => self.addresses.contains(ip),
            Host::Name(name) => self.names.iter().any(|n| n.eq_ignore_ascii_case(name)),
        }
    }

    /// Half the lifetime: Let's Encrypt's advice for certificates valid
    /// less than ten days (docs/tls.md#when-to-renew).
    pub fn renew_at(&self) -> DateTime<Utc> {
        self.not_before + self.lifetime() / 2
    }

    /// From `not_before` to `not_after`.
    pub fn lifetime(&self) -> chrono::Duration {
        self.not_after - self.not_before
    }

    /// When an ACME certificate that could not be renewed gives way to the
    /// fallback: the last tenth of its life, at most a day before it
    /// expires (16 hours of 160; docs/tls.md#when-renewals-fail).
    pub fn fallback_at(&self) -> DateTime<Utc> {
        self.not_after - (self.lifetime() / 10).min(chrono::Duration::days(1))
    }
}

/// The SHA-256 fingerprint in the form browsers show.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Reads what a certificate says.
pub fn info(der: &[u8]) -> Result<Info> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| anyhow!("not an X.509 certificate: {e}"))?;
    let mut addresses = Vec::new();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::IPAddress(b) if b.len() == 4 => addresses.push(IpAddr::from(<[u8; 4]>::try_from(*b)?)),
                GeneralName::IPAddress(b) if b.len() == 16 => addresses.push(IpAddr::from(<[u8; 16]>::try_from(*b)?)),
                GeneralName::DNSName(n) => names.push(n.to_string()),
                _ => {}
            }
        }
    }
    let time = |t: x509_parser::time::ASN1Time| {
        DateTime::from_timestamp(t.timestamp(), 0).ok_or_else(|| anyhow!("a certificate time out of range"))
    };
    Ok(Info {
        addresses,
        names,
        issuer: cert.issuer().to_string(),
        not_before: time(cert.validity().not_before)?,
        not_after: time(cert.validity().not_after)?,
        fingerprint: fingerprint(der),
    })
}

impl Served {
    /// From a PEM text holding the private key and the chain, leaf first.
    pub fn from_pem(kind: Kind, pem: &str) -> Result<Served> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!("reading the certificates: {e}"))?;
        let Some(leaf) = chain.first() else { bail!("no certificate in the file") };
        PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| anyhow!("reading the private key: {e}"))?;
        Ok(Served { kind, info: info(leaf)?, chain, pem: pem.to_string() })
    }

    /// Reads `<state_dir>/tls/<kind>.pem`; `None` when there is none.
    pub fn load(kind: Kind, state_dir: &Path) -> Result<Option<Served>> {
        let path = path(kind, state_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(anyhow!("reading {}: {e}", path.display())),
        };
        Served::from_pem(kind, &text).with_context(|| format!("reading {}", path.display())).map(Some)
    }

    /// Writes it to `<state_dir>/tls/<kind>.pem`, 0600, atomically.
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        dir(state_dir)?;
        let path = path(self.kind, state_dir);
        jupyter_proto::fs::write_atomic(&path, self.pem.as_bytes(), 0o600)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// For rustls: the chain and its signing key.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>> {
        let key = PrivateKeyDer::from_pem_slice(self.pem.as_bytes()).map_err(|e| anyhow!("the key: {e}"))?;
        let provider = rustls::crypto::ring::default_provider();
        let key = provider.key_provider.load_private_key(key).map_err(|e| anyhow!("the key: {e}"))?;
        Ok(Arc::new(CertifiedKey::new(self.chain.clone(), key)))
    }

    /// Whether it can be served for `host` now: for it, and not expired.
    pub fn usable_for(&self, host: &Host) -> bool {
        self.info.covers(host) && self.info.not_after > Utc::now()
    }
}

/// A key and a chain as the ACME CA returned them (PEM).
pub fn from_acme(key_pem: &str, chain_pem: &str) -> Result<Served> {
    Served::from_pem(Kind::Acme, &format!("{}\n{chain_pem}", key_pem.trim_end()))
}

/// A new self-signed certificate for `host`, valid for a year.
pub fn self_signed(host: &Host) -> Result<Served> {
    let mut params = rcgen::CertificateParams::new(vec![host.name()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "jupyter-agent self-signed");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Served::from_pem(Kind::SelfSigned, &format!("{}{}", key.serialize_pem(), cert.pem()))
}

/// The CA certificates to check a chain against: the system's bundle and
/// `extra` (`[tls] ca_file`).
pub fn roots(extra: Option<&Path>) -> Result<rustls::RootCertStore> {
    let mut store = rustls::RootCertStore::empty();
    for bundle in ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"] {
        if let Ok(iter) = CertificateDer::pem_file_iter(bundle) {
            store.add_parsable_certificates(iter.flatten());
            break;
        }
    }
    if let Some(path) = extra {
        let certs: Vec<_> = CertificateDer::pem_file_iter(path)
            .map_err(|e| anyhow!("reading {}: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!("reading {}: {e}", path.display()))?;
        let (_, refused) = store.add_parsable_certificates(certs);
        if refused > 0 {
            bail!("{}: {refused} certificate(s) could not be used as CA certificates", path.display());
        }
    }
    Ok(store)
}

/// Whether `served`'s chain verifies for `host` against `roots`: `Err` says why not.
pub fn verify(served: &Served, host: &Host, roots: rustls::RootCertStore) -> Result<()> {
    use rustls::client::danger::ServerCertVerifier;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| anyhow!("{e}"))?;
    let name = ServerName::try_from(host.name()).map_err(|e| anyhow!("{host}: {e}"))?;
    let (leaf, intermediates) = served.chain.split_first().ok_or_else(|| anyhow!("an empty chain"))?;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_for_the_address_and_reads_back_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let host = |s: &str| s.parse::<Host>().unwrap();
        let served = self_signed(&host("203.0.113.7")).unwrap();
        assert_eq!(served.info.addresses, vec!["203.0.113.7".parse::<IpAddr>().unwrap()]);
        assert!(served.info.covers(&host("203.0.113.7")) && !served.info.covers(&host("203.0.113.8")));
        assert_eq!(served.info.subject(), "IP 203.0.113.7");
        assert_eq!(served.info.fingerprint.len(), 32 * 3 - 1);
        served.save(dir.path()).unwrap();
        let path = path(Kind::SelfSigned, dir.path());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let again = Served::load(Kind::SelfSigned, dir.path()).unwrap().unwrap();
        assert_eq!(again.info, served.info);
        again.certified_key().unwrap();
        // Nobody vouches for it.
        assert!(verify(&served, &host("203.0.113.7"), rustls::RootCertStore::empty()).is_err());
        assert!(Served::load(Kind::Acme, dir.path()).unwrap().is_none());
    }

    #[test]
    fn renewal_at_half_life_and_the_fallback_in_the_last_tenth_at_most_a_day_before_expiry() {
        let at = |h: i64| DateTime::from_timestamp(1_700_000_000 + h * 3600, 0).unwrap();
        let info = |hours: i64| Info {
            addresses: vec![],
            names: vec![],
            issuer: String::new(),
            not_before: at(0),
            not_after: at(hours),
            fingerprint: String::new(),
        };
        // Let's Encrypt's shortlived profile: 160 hours.
        assert_eq!((info(160).renew_at(), info(160).fallback_at()), (at(80), at(144)));
        // 90 days: a day before.
        assert_eq!(info(90 * 24).fallback_at(), at(89 * 24));
        let test = Info { not_after: info(0).not_before + chrono::Duration::seconds(60), ..info(0) };
        assert_eq!(test.fallback_at() - test.not_before, chrono::Duration::seconds(54));
    }
}
