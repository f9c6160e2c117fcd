//! The typed values of the configuration, each parsed from the string a
//! person writes (`FromStr`, whose error is what was expected) and kept
//! typed until it reaches the engine: no enum goes back to a string and
//! forward again on its way to bollard.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A keyword value of the configuration: strum spells each word once
/// (kebab-case), and a refusal lists them all, each with its hint
/// (`#[strum(message = "...")]`) when it has one.
pub trait Keyword: strum::IntoEnumIterator + AsRef<str> + strum::EnumMessage {
    /// How the refusal lists the words.
    const LIST: List;
}

/// The two ways a refusal lists the words a keyword takes.
pub enum List {
    /// `expected one of "a", "b", "c"`.
    OneOf,
    /// `expected "a" (hint), "b" or "c"`.
    Either,
}

/// Reads a keyword: one of `T`'s words, or what was expected.
pub fn keyword<T: Keyword>(s: &str) -> Result<T, String> {
    T::iter().find(|k| k.as_ref() == s).ok_or_else(|| {
        let words: Vec<String> = T::iter()
            .map(|k| match k.get_message() {
                Some(hint) => format!("\"{}\" ({hint})", k.as_ref()),
                None => format!("\"{}\"", k.as_ref()),
            })
            .collect();
        match (T::LIST, words.split_last()) {
            (List::Either, Some((last, rest))) if !rest.is_empty() => {
                format!("expected {} or {last}", rest.join(", "))
            }
            _ => format!("expected one of {}", words.join(", ")),
        }
    })
}

/// `FromStr` (and the refusal's style) for keyword enums.
macro_rules! keywords {
    ($($t:ty: $list:ident),* $(,)?) => {$(
        impl $crate::config::values::Keyword for $t {
            const LIST: $crate::config::values::List = $crate::config::values::List::$list;
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $crate::config::values::keyword(s)
            }
        }
    )*};
}
pub(crate) use keywords;

keywords!(DockerSource: OneOf, PullPolicy: OneOf, RestartPolicy: OneOf);

/// Where Docker's packages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::AsRefStr, strum::Display, strum::EnumMessage)]
#[strum(serialize_all = "kebab-case")]
pub enum DockerSource {
    /// The distribution's `docker.io` on Debian and Ubuntu, docker-ce elsewhere.
    Auto,
    /// The distribution's own package (Debian and Ubuntu only).
    Distro,
    /// Docker CE from `mirror`.
    DockerCe,
}

/// When the image is pulled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter, strum::AsRefStr, strum::Display, strum::EnumMessage)]
#[strum(serialize_all = "kebab-case")]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// Docker's restart policy for the container.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    strum::EnumIter,
    strum::AsRefStr,
    strum::Display,
    strum::EnumMessage,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    Always,
    UnlessStopped,
    OnFailure,
}

/// Host address and port the container port is published on. Port 0 lets
/// Docker choose a free port (useful for tests and for several agents on one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Publish {
    pub address: IpAddr,
    pub port: u16,
}

impl Publish {
    /// Where this host reaches the published port: a wildcard address is
    /// reached on loopback.
    pub fn reachable_address(&self) -> IpAddr {
        match self.address {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            other => other,
        }
    }
}

impl FromStr for Publish {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let expected = || {
            "expected \"ADDRESS:PORT\" or \"PORT\" with an IP address and a port from 0 to 65535 (0: Docker picks one), e.g. \"0.0.0.0:8888\"".to_string()
        };
        let (addr, port) = match s.rsplit_once(':') {
            Some((a, p)) => (a.trim_start_matches('[').trim_end_matches(']'), p),
            None => ("0.0.0.0", s),
        };
        let address: IpAddr = addr.parse().map_err(|_| expected())?;
        let port: u16 = port.parse().map_err(|_| expected())?;
        Ok(Publish { address, port })
    }
}

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
        }
    }
}

/// A bind mount: `"/host:/container"`, `"/host:/container:ro"`; the host
/// may be the word `workspace` (the materials' directory), resolved by
/// [`Volume::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub host: PathBuf,
    pub container: String,
    pub read_only: bool,
}

/// What stands for the workspace directory as a volume's host path.
const WORKSPACE: &str = "workspace";

impl Volume {
    /// The form Docker's `HostConfig.Binds` takes.
    pub fn bind(&self) -> String {
        let mode = if self.read_only { ":ro" } else { "" };
        format!("{}:{}{mode}", self.host.display(), self.container)
    }

    /// The volume with `workspace` as its host replaced by the workspace
    /// directory; `Err` when there is none.
    pub fn resolve(self, workspace: Option<&Path>) -> Result<Volume, String> {
        if self.host != Path::new(WORKSPACE) {
            return Ok(self);
        }
        match workspace {
            Some(w) => Ok(Volume { host: w.to_path_buf(), ..self }),
            None => Err("names the workspace, but there is no [workspace] section".into()),
        }
    }
}

impl FromStr for Volume {
    type Err = String;

    fn from_str(item: &str) -> Result<Self, String> {
        let expected = || {
            "expected \"/host/path:/container/path\" or \"/host/path:/container/path:ro\" (the host path may be \"workspace\")"
                .to_string()
        };
        let parts: Vec<&str> = item.split(':').collect();
        let (host, container, read_only) = match parts.as_slice() {
            [h, c] => (*h, *c, false),
            [h, c, "ro"] => (*h, *c, true),
            [h, c, "rw"] => (*h, *c, false),
            _ => return Err(expected()),
        };
        if !(host == WORKSPACE || host.starts_with('/')) || !container.starts_with('/') {
            return Err(expected());
        }
        Ok(Volume { host: PathBuf::from(host), container: container.to_string(), read_only })
    }
}

/// The host in the login URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlHost {
    /// Ask the ECS metadata service, else use the machine's primary address.
    Auto,
    Explicit(Host),
}

impl FromStr for UrlHost {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(UrlHost::Auto),
            host => host.parse().map(UrlHost::Explicit),
        }
    }
}

/// A URL's host, parsed once: an IP address (written `[...]` in a URL when
/// it is IPv6) or a DNS name. The certificate's name, the ACME identifier
/// and the login URL are all made from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl FromStr for Host {
    type Err = String;

    /// An address (IPv6 with or without brackets) or a name of letters,
    /// digits, dots and dashes; nothing else (no port, no path).
    fn from_str(s: &str) -> Result<Self, String> {
        let bare = s.strip_prefix('[').and_then(|b| b.strip_suffix(']'));
        if let Some(ip) = bare.and_then(|b| b.parse::<std::net::Ipv6Addr>().ok()) {
            return Ok(Host::Ip(IpAddr::V6(ip)));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)) {
            return Ok(Host::Name(s.to_string()));
        }
        Err("expected \"auto\", a host name or an IP address, without a port (the port is [container] publish's)"
            .into())
    }
}

impl Host {
    /// Without the brackets of an IPv6 address: a certificate's name, an
    /// ACME identifier's value.
    pub fn name(&self) -> String {
        match self {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }

    /// The address, when the host is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Name(_) => None,
        }
    }
}

/// As in a URL: `203.0.113.7`, `[2001:db8::7]`, `lab.example.org`.
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// An image reference, always with a tag (an empty tag would pull every tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef(pub String);

impl FromStr for ImageRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // Docker's reference grammar caps a repository name at 255 characters.
        let valid = !s.is_empty()
            && s.len() <= 255
            && !s.starts_with(['-', ':', '/', '@'])
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
            && !s.ends_with([':', '/', '@']);
        if !valid {
            return Err("expected an image reference of at most 255 characters such as \"notebook:latest\" or \"registry.example:5000/team/notebook:1.0\"".into());
        }
        // Docker refuses capitals in the repository (the tag may have them).
        let repository = match s.split_once('@') {
            Some((repo, _)) => repo,
            None => match s.rfind(':') {
                Some(i) if !s[i..].contains('/') => &s[..i],
                _ => s,
            },
        };
        let path = repository.split_once('/').filter(|(first, _)| first.contains(['.', ':']) || *first == "localhost");
        let path = path.map_or(repository, |(_, rest)| rest);
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(
                "expected a repository name in lowercase (Docker refuses capitals), e.g. \"notebook:latest\"".into()
            );
        }
        Ok(ImageRef(with_tag(s)))
    }
}

/// `name` with `:latest` appended when it names no tag or digest.
pub fn with_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// The longest container name the agent takes: Docker sets no limit of its
/// own, but a name travels in every request's URL, where a very long one
/// fails late ("URI too long") after the state was written.
pub const MAX_CONTAINER_NAME: usize = 128;

/// A container name as Docker accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerName(pub String);

impl FromStr for ContainerName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut chars = s.chars();
        let valid = s.len() <= MAX_CONTAINER_NAME
            && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return Err(format!(
                "expected a container name of at most {MAX_CONTAINER_NAME} characters: letters, digits, '_', '.' and '-', starting with a letter or digit"
            ));
        }
        Ok(ContainerName(s.to_string()))
    }
}

/// The engine's address: `unix:///path`, `tcp://host:port` or `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerHost(pub String);

impl FromStr for DockerHost {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let ok = ["unix:///", "tcp://", "http://"].iter().any(|p| s.starts_with(p) && s.len() > p.len());
        if !ok {
            return Err("expected unix:///path/to/docker.sock, tcp://HOST:PORT or http://HOST:PORT".into());
        }
        Ok(DockerHost(s.to_string()))
    }
}

/// `[jupyter] token`: where Jupyter's login token comes from
/// (docs/jupyter.md#a-stable-login-token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenChoice {
    /// One token for the instance, chosen by the agent and kept (the default).
    Generate,
    /// Whatever the server prints (a new one at each start).
    Image,
    /// A server that checks no token: anyone who reaches the port logs in.
    None,
    /// The organiser's own, from a root-only file.
    File(std::path::PathBuf),
}

impl FromStr for TokenChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "generate" => Ok(TokenChoice::Generate),
            "image" => Ok(TokenChoice::Image),
            "none" => Ok(TokenChoice::None),
            p if p.starts_with('/') && !p.split('/').any(|c| c == "..") => Ok(TokenChoice::File(p.into())),
            _ => Err("expected \"generate\" (one token for the instance, kept across restarts), \"image\" (whatever the server prints), \"none\" (a server that checks no token: anyone who reaches the port logs in) or the absolute path of a root-only file holding the token".into()),
        }
    }
}

/// A size in bytes, written with its unit: `"500MB"`, `"2GiB"`, `"1024KiB"`
/// (decimal kB, MB, GB; binary KiB, MiB, GiB; `B` for bytes), at most 1 TiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        const EXPECTED: &str = "expected a size with its unit, such as \"500MB\" or \"2GiB\" (B, kB, MB, GB, KiB, MiB, GiB), from 1 byte to 1 TiB";
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let factor: u64 = match unit.trim() {
            "B" => 1,
            "kB" | "KB" => 1000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(EXPECTED.into()),
        };
        let n: u64 = number.parse().map_err(|_| EXPECTED.to_string())?;
        match n.checked_mul(factor) {
            Some(b) if b > 0 && b <= 1 << 40 => Ok(ByteSize(b)),
            _ => Err(EXPECTED.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_need_a_unit_and_a_bound() {
        assert_eq!("500MB".parse::<ByteSize>(), Ok(ByteSize(500_000_000)));
        assert_eq!("2GiB".parse::<ByteSize>(), Ok(ByteSize(2 << 30)));
        assert_eq!("1 KiB".parse::<ByteSize>(), Ok(ByteSize(1024)));
        for bad in ["500", "0MB", "1TB", "2048GiB", "99999999999999999999GB", "-1MB", "1.5GB", "MB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_are_always_named() {
        assert_eq!(with_tag("notebook"), "notebook:latest");
        assert_eq!(with_tag("notebook:6"), "notebook:6");
        assert_eq!(with_tag("localhost:5000/notebook"), "localhost:5000/notebook:latest");
        assert_eq!(with_tag("localhost:5000/notebook:1"), "localhost:5000/notebook:1");
        assert_eq!(with_tag("nb@sha256:abc"), "nb@sha256:abc");
    }

    #[test]
    fn publish_forms_and_where_they_are_reached() {
        let p: Publish = "127.0.0.1:0".parse().unwrap();
        assert_eq!(p, Publish { address: "127.0.0.1".parse().unwrap(), port: 0 });
        assert_eq!("9999".parse::<Publish>().unwrap().port, 9999);
        assert_eq!("[::1]:8888".parse::<Publish>().unwrap().to_string(), "[::1]:8888");
        assert!("0.0.0.0:99999".parse::<Publish>().is_err());
        let reach = |s: &str| s.parse::<Publish>().unwrap().reachable_address().to_string();
        assert_eq!(reach("0.0.0.0:1"), "127.0.0.1");
        assert_eq!(reach("[::]:1"), "::1");
        assert_eq!(reach("10.1.2.3:1"), "10.1.2.3");
    }

    #[test]
    fn volumes_and_the_workspace() {
        let v: Volume = "workspace:/home/jupyter/w:ro".parse().unwrap();
        assert_eq!(v.clone().resolve(Some(Path::new("/root/w"))).unwrap().bind(), "/root/w:/home/jupyter/w:ro");
        assert!(v.resolve(None).unwrap_err().contains("no [workspace] section"));
        assert!("data:/data".parse::<Volume>().is_err());
        assert!("/a:b".parse::<Volume>().is_err());
        assert_eq!("/a:/b:rw".parse::<Volume>().unwrap().bind(), "/a:/b");
    }

    #[test]
    fn restart_policies_serialize_as_docker_names_them() {
        for name in ["no", "always", "unless-stopped", "on-failure"] {
            let p: RestartPolicy = name.parse().unwrap();
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{name}\""));
        }
    }
}
