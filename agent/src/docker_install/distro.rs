//! Which distribution this is, from `/etc/os-release` (`ID`, `ID_LIKE`,
//! `VERSION_ID`, `VERSION_CODENAME`), per the os-release(5) format, and
//! whether the installer supports it (docs/docker-install.md#distributions).

use std::fmt;
use std::path::Path;

/// The fields of os-release the installer reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub id_like: Vec<String>,
    pub version_id: String,
    /// `VERSION_CODENAME`, else `UBUNTU_CODENAME`.
    pub codename: Option<String>,
    pub pretty_name: Option<String>,
}

/// Parses os-release text: `KEY=value` lines, values optionally quoted with
/// `"` or `'`, backslash escapes inside double quotes, `#` comments.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    let mut ubuntu_codename = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else { continue };
        let value = unquote(raw.trim());
        match key.trim() {
            "ID" => os.id = value.to_ascii_lowercase(),
            "ID_LIKE" => os.id_like = value.split_whitespace().map(str::to_ascii_lowercase).collect(),
            "VERSION_ID" => os.version_id = value,
            "VERSION_CODENAME" if !value.is_empty() => os.codename = Some(value),
            "UBUNTU_CODENAME" if !value.is_empty() => ubuntu_codename = Some(value),
            "PRETTY_NAME" => os.pretty_name = Some(value),
            _ => {}
        }
    }
    if os.codename.is_none() {
        os.codename = ubuntu_codename;
    }
    os
}

fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let mut out = String::new();
        let mut chars = v[1..v.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        out
    } else if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        v[1..v.len() - 1].to_string()
    } else {
        v.to_string()
    }
}

/// Reads `<root>/etc/os-release`, else `<root>/usr/lib/os-release`.
pub fn read_os_release(root: &Path) -> std::io::Result<(std::path::PathBuf, OsRelease)> {
    let etc = root.join("etc/os-release");
    let lib = root.join("usr/lib/os-release");
    let path = if etc.exists() { etc } else { lib };
    let text = std::fs::read_to_string(&path)?;
    Ok((path, parse_os_release(&text)))
}

/// How Docker gets installed on a distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Alibaba Cloud Linux 3: dnf, docker-ce with the releasever adapter from alinux3-plus.
    Alinux3,
    /// Alibaba Cloud Linux 2: yum, docker-ce with the releasever adapter from plus.
    Alinux2,
    /// CentOS 7 and other RHEL 7 likes: yum and docker-ce.
    Rhel7,
    /// CentOS 8, Rocky, AlmaLinux, Anolis, Oracle Linux, RHEL 8+ and other RHEL 8+ likes: dnf and docker-ce.
    Rhel8Plus,
    Ubuntu,
    Debian,
}

impl Family {
    /// Installs with rpm packages (yum or dnf), where docker-ce conflicts
    /// with the distribution's own container packages.
    pub fn uses_rpm(self) -> bool {
        matches!(self, Family::Alinux3 | Family::Alinux2 | Family::Rhel7 | Family::Rhel8Plus)
    }
}

/// A supported distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distro {
    pub family: Family,
    pub id: String,
    pub version_id: String,
    /// The suite name apt repositories use (`bookworm`, `jammy`).
    pub codename: Option<String>,
    pub name: String,
}

/// What is supported, for the refusal message.
pub const SUPPORTED: &str = "Alibaba Cloud Linux 2 and 3 (alinux), CentOS 7 and 8, Rocky Linux, AlmaLinux, Anolis OS, \
     Oracle Linux and RHEL 7 or later, other RHEL-likes (ID_LIKE rhel or centos) 7 or later, Ubuntu 18.04 to 24.04, Debian 10 to 13";

/// A distribution the installer refuses; nothing has been changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Unsupported {
    pub id: String,
    pub version_id: String,
    pub reason: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = if self.id.is_empty() { "(none)" } else { &self.id };
        let version = if self.version_id.is_empty() { "(none)" } else { &self.version_id };
        write!(f, "cannot install Docker on ID={id} VERSION_ID={version}: {}; supported: {SUPPORTED}", self.reason)
    }
}

fn major(version: &str) -> Option<u32> {
    version.split('.').next()?.parse().ok()
}

/// `18.04` -> 1804.
fn ubuntu_number(version: &str) -> Option<u32> {
    let (y, m) = version.split_once('.')?;
    Some(y.parse::<u32>().ok()? * 100 + m.parse::<u32>().ok()?)
}

/// Decides whether and how Docker can be installed here.
pub fn detect(os: &OsRelease) -> Result<Distro, Unsupported> {
    let refuse =
        |reason: &str| Unsupported { id: os.id.clone(), version_id: os.version_id.clone(), reason: reason.into() };
    let major = major(&os.version_id);
    let name = os.pretty_name.clone().unwrap_or_else(|| format!("{} {}", os.id, os.version_id));
    let family = match os.id.as_str() {
        "alinux" => match major {
            Some(3) => Family::Alinux3,
            Some(2) => Family::Alinux2,
            _ => return Err(refuse("only Alibaba Cloud Linux 2 and 3 are supported")),
        },
        "debian" => match major {
            Some(10..=13) => Family::Debian,
            _ => return Err(refuse("only Debian 10 to 13 are supported")),
        },
        "ubuntu" => match ubuntu_number(&os.version_id) {
            Some(1804..=2404) => Family::Ubuntu,
            _ => return Err(refuse("only Ubuntu 18.04 to 24.04 are supported")),
        },
        id => {
            let rhel_like = matches!(id, "centos" | "rocky" | "almalinux" | "anolis" | "rhel" | "ol")
                || os.id_like.iter().any(|l| l == "rhel" || l == "centos");
            match (rhel_like, major) {
                (true, Some(7)) => Family::Rhel7,
                (true, Some(8..)) => Family::Rhel8Plus,
                (true, _) => return Err(refuse("RHEL-likes are supported from version 7")),
                (false, _) => return Err(refuse("this distribution is not one the installer knows")),
            }
        }
    };
    let codename = os.codename.clone();
    if matches!(family, Family::Debian | Family::Ubuntu) && codename.is_none() {
        return Err(refuse("os-release names no VERSION_CODENAME, which the apt repository needs"));
    }
    Ok(Distro { family, id: os.id.clone(), version_id: os.version_id.clone(), codename, name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_follows_os_release_5() {
        let os = parse_os_release(
            "# comment\nNAME=\"Alibaba Cloud Linux\"\nVERSION_ID='3'\nID=alinux\nID_LIKE=\"rhel fedora centos anolis\"\nPRETTY_NAME=\"A \\\"quoted\\\" name\"\nbroken line\n",
        );
        assert_eq!(os.id, "alinux");
        assert_eq!(os.version_id, "3");
        assert_eq!(os.id_like, ["rhel", "fedora", "centos", "anolis"]);
        assert_eq!(os.pretty_name.as_deref(), Some("A \"quoted\" name"));
        let ubuntu = parse_os_release("ID=ubuntu\nVERSION_ID=\"18.04\"\nUBUNTU_CODENAME=bionic\n");
        assert_eq!(ubuntu.codename.as_deref(), Some("bionic"));
    }

    #[test]
    fn refusals_name_id_version_and_what_is_supported() {
        let err = detect(&parse_os_release("ID=fedora\nVERSION_ID=40\nID_LIKE=\"\"\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot install Docker on ID=fedora VERSION_ID=40: this distribution is not one the installer knows; supported: {SUPPORTED}")
        );
        let err = detect(&parse_os_release("ID=arch\n")).unwrap_err();
        assert!(err.to_string().starts_with("cannot install Docker on ID=arch VERSION_ID=(none):"), "{err}");
        let err = detect(&parse_os_release("ID=debian\nVERSION_ID=9\nVERSION_CODENAME=stretch\n")).unwrap_err();
        assert!(err.to_string().contains("only Debian 10 to 13 are supported"), "{err}");
        let err = detect(&parse_os_release("ID=ubuntu\nVERSION_ID=16.04\n")).unwrap_err();
        assert!(err.to_string().contains("only Ubuntu 18.04 to 24.04"), "{err}");
    }
}
