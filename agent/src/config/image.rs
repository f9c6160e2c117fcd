//! The `[image]` section: where the image comes from (a registry, an archive
//! on this host or on a web server, or a build), docs/images.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jupyter_proto::redact::without_query;

use super::section::{is_web_url, toml_str, Section};
use super::values::{ByteSize, ImageRef, PullPolicy};
use super::ConfigError;

/// `[image] max_size` when not set: 16 GiB, above the largest Jupyter
/// images gzip makes (docs/configuration.md).
pub const DEFAULT_ARCHIVE_MAX_SIZE: u64 = 16 << 30;

/// `[image] download_timeout` when not set (docs/configuration.md).
pub const DEFAULT_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig {
    /// The reference the container runs, always with a tag.
    pub reference: String,
    pub source: ImageSource,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    Pull(Pull),
    Archive(Archive),
    Build(BuildConfig),
}

impl ImageSource {
    /// Which source it is, as the state document says.
    pub fn kind(&self) -> jupyter_proto::state::ImageSourceKind {
        use jupyter_proto::state::ImageSourceKind;
        match self {
            ImageSource::Pull(_) => ImageSourceKind::Pull,
            ImageSource::Archive(_) => ImageSourceKind::Archive,
            ImageSource::Build(_) => ImageSourceKind::Build,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pull {
    pub policy: PullPolicy,
    /// A root-only file with the registry's `username` and `password`
    /// (read at each pull, never kept in the configuration).
    pub credentials: Option<PathBuf>,
}

/// An image archive (`docker save` output, plain or gzip).
#[derive(Debug, Clone, PartialEq)]
pub struct Archive {
    pub location: ArchiveLocation,
    /// Lower-case hex; required with a URL, optional with a path.
    pub sha256: Option<String>,
    /// The most a download from a URL may write (bytes).
    pub max_size: u64,
    /// The most a download from a URL may take, its retries included.
    pub download_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ArchiveLocation {
    Path(PathBuf),
    /// May carry a signature in its query: shown only through [`Archive::label`].
    Url(String),
}

impl Archive {
    /// The archive for messages, logs and the state: a URL without its query
    /// (a signed OSS URL's signature is a credential).
    pub fn label(&self) -> String {
        match &self.location {
            ArchiveLocation::Path(p) => p.display().to_string(),
            ArchiveLocation::Url(u) => jupyter_proto::redact::redact_url(&without_query(u)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BuildConfig {
    pub context: PathBuf,
    /// Relative to the context.
    pub dockerfile: String,
    pub args: std::collections::BTreeMap<String, String>,
    /// Files never sent with the context (the env files, when inside it).
    pub withhold: Vec<PathBuf>,
}

pub(super) fn image_config(mut s: Section, workspace: Option<&Path>) -> Result<ImageConfig, ConfigError> {
    let name = s.parsed::<ImageRef>("name")?.map(|r| r.0);
    let pull = s.parsed::<PullPolicy>("pull")?;
    let credentials = s.abs_path("credentials")?;
    let archive = archive_location(&mut s)?;
    let sha256 = s.string("sha256")?;
    let max_size = s.parsed::<ByteSize>("max_size")?.map(|b| b.0);
    let download_timeout = s.at_least_a_second("download_timeout")?;
    let tag = s.parsed::<ImageRef>("tag")?.map(|r| r.0);
    let build = match s.take("build") {
        None => None,
        Some(v) => Some(build_config(&s, v, workspace)?),
    };
    let sources = [name.is_some(), archive.is_some(), build.is_some()];
    if sources.iter().filter(|x| **x).count() != 1 {
        let found: Vec<&str> =
            ["name", "archive", "build"].iter().zip(sources).filter(|(_, on)| *on).map(|(k, _)| *k).collect();
        let found = if found.is_empty() { "none".to_string() } else { found.join(" and ") };
        return Err(s.err(
            "[image]",
            None,
            &format!(
                "found {found}; expected exactly one image source: name (pull), archive (docker load, a path or an http(s) URL) or build"
            ),
        ));
    }
    if sha256.is_some() && archive.is_none() {
        return Err(s.err("sha256", None, "only goes with archive: it is the archive's sha256sum"));
    }
    for (key, set) in [("max_size", max_size.is_some()), ("download_timeout", download_timeout.is_some())] {
        if set && !matches!(archive, Some(ArchiveLocation::Url(_))) {
            return Err(s.err(key, None, "only goes with an archive URL: it bounds the download"));
        }
    }
    if credentials.is_some() && name.is_none() {
        return Err(s.err(
            "credentials",
            None,
            "only goes with name: they log in to the registry the image is pulled from",
        ));
    }
    let out = if let Some(reference) = name {
        if tag.is_some() {
            return Err(s.err(
                "tag",
                None,
                "only goes with archive or build; with name, the tag is part of the name (name = \"repo:tag\")",
            ));
        }
        ImageConfig {
            reference,
            source: ImageSource::Pull(Pull { policy: pull.unwrap_or(PullPolicy::IfNotPresent), credentials }),
        }
    } else {
        if pull.is_some() {
            return Err(s.err(
                "pull",
                None,
                "only goes with name; an archive is loaded and a build is built, never pulled",
            ));
        }
        let reference = tag.ok_or_else(|| {
            s.err(
                "tag",
                None,
                "missing; expected the name:tag the loaded or built image gets, e.g. tag = \"notebook:latest\"",
            )
        })?;
        match (archive, build) {
            (Some(location), _) => {
                let sha256 = match sha256 {
                    Some(sha) if sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()) => {
                        Some(sha.to_ascii_lowercase())
                    }
                    Some(sha) => {
                        return Err(s.err(
                            "sha256",
                            Some(toml_str(&sha)),
                            "expected 64 hexadecimal digits (sha256sum of the archive; jupyter-agent image export prints it)",
                        ))
                    }
                    None if matches!(location, ArchiveLocation::Url(_)) => {
                        return Err(s.err(
                            "sha256",
                            None,
                            "missing; an archive from a URL is verified before it is loaded: set sha256 to its sha256sum (jupyter-agent image export prints it)",
                        ))
                    }
                    None => None,
                };
                let archive = Archive {
                    location,
                    sha256,
                    max_size: max_size.unwrap_or(DEFAULT_ARCHIVE_MAX_SIZE),
                    download_timeout: download_timeout.unwrap_or(DEFAULT_DOWNLOAD_TIMEOUT),
                };
                ImageConfig { reference, source: ImageSource::Archive(archive) }
            }
            (_, Some(b)) => ImageConfig { reference, source: ImageSource::Build(b) },
            _ => unreachable!("exactly one source was checked above"),
        }
    };
    s.finish()?;
    Ok(out)
}

/// `archive`: an absolute path, or an http(s) URL (shown without its query).
fn archive_location(s: &mut Section) -> Result<Option<ArchiveLocation>, ConfigError> {
    let Some(a) = s.string("archive")? else { return Ok(None) };
    if a.starts_with('/') {
        return Ok(Some(ArchiveLocation::Path(PathBuf::from(a))));
    }
    if is_web_url(&a) {
        return Ok(Some(ArchiveLocation::Url(a)));
    }
    Err(s.err(
        "archive",
        Some(toml_str(&without_query(&a))),
        "expected an absolute path (starting with /) or an http:// or https:// URL with a host",
    ))
}

fn build_config(s: &Section, v: toml::Value, workspace: Option<&Path>) -> Result<BuildConfig, ConfigError> {
    let t = s.expect_table("build", v)?;
    let mut b = Section::new(s.file, "image.build", t);
    let context = match b.string("context")?.as_deref() {
        None => {
            return Err(b.err(
                "context",
                None,
                "missing; expected the absolute path of the build context directory, or \"workspace\"",
            ))
        }
        Some("workspace") => workspace.map(Path::to_path_buf).ok_or_else(|| {
            b.err("context", Some(toml_str("workspace")), "names the workspace, but there is no [workspace] section")
        })?,
        Some(p) if p.starts_with('/') => PathBuf::from(p),
        Some(p) => {
            return Err(b.err(
                "context",
                Some(toml_str(p)),
                "expected an absolute path (starting with /) or \"workspace\"",
            ))
        }
    };
    let dockerfile = b.string("dockerfile")?.unwrap_or_else(|| "Dockerfile".into());
    if dockerfile.is_empty() || dockerfile.starts_with('/') || dockerfile.split('/').any(|p| p == "..") {
        return Err(b.err(
            "dockerfile",
            Some(toml_str(&dockerfile)),
            "expected a path relative to the build context, inside it",
        ));
    }
    let args = b.string_map("args")?.unwrap_or_default();
    b.finish()?;
    Ok(BuildConfig { context, dockerfile, args, withhold: Vec::new() })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn parse(image: &str) -> Result<ImageConfig, String> {
        Config::parse(Path::new("c.toml"), &format!("[image]\n{image}\n")).map(|c| c.image).map_err(|e| e.to_string())
    }

    #[test]
    fn an_archive_url_needs_its_sha256_and_is_never_shown_with_its_query() {
        let sha = "ab".repeat(32);
        let url = "https://b.example/nb.tar.gz?Expires=1&Signature=SIG";
        let c = parse(&format!("archive = \"{url}\"\nsha256 = \"{}\"\ntag = \"nb:1\"", sha.to_uppercase())).unwrap();
        let ImageSource::Archive(a) = &c.source else { panic!("{c:?}") };
        assert_eq!(a.location, ArchiveLocation::Url(url.into()));
        assert_eq!(a.sha256.as_deref(), Some(sha.as_str()), "kept in lower case");
        assert_eq!(a.label(), "https://b.example/nb.tar.gz");
        assert_eq!((a.max_size, a.download_timeout), (16 << 30, Duration::from_secs(7200)), "the defaults");

        let err = parse(&format!("archive = \"{url}\"\ntag = \"nb:1\"")).unwrap_err();
        assert_eq!(err, "c.toml: [image] sha256: missing; an archive from a URL is verified before it is loaded: set sha256 to its sha256sum (jupyter-agent image export prints it)");
        let err = parse("archive = \"ftp://b.example/nb.tar?Signature=SIG\"\ntag = \"nb:1\"").unwrap_err();
        assert_eq!(err, "c.toml: [image] archive = \"ftp://b.example/nb.tar\": expected an absolute path (starting with /) or an http:// or https:// URL with a host");
        let err = parse(&format!("archive = \"{url}\"\nsha256 = \"abc\"\ntag = \"nb:1\"")).unwrap_err();
        assert!(err.starts_with("c.toml: [image] sha256 = \"abc\": expected 64 hexadecimal digits"), "{err}");
        assert!(!err.contains("SIG"));

        let c = parse("archive = \"/srv/nb.tar\"\ntag = \"nb:1\"").unwrap();
        assert_eq!(
            c.source,
            ImageSource::Archive(Archive {
                location: ArchiveLocation::Path("/srv/nb.tar".into()),
                sha256: None,
                max_size: DEFAULT_ARCHIVE_MAX_SIZE,
                download_timeout: DEFAULT_DOWNLOAD_TIMEOUT,
            }),
            "a path may go without sha256"
        );
        let err = parse(&format!("name = \"nb:1\"\nsha256 = \"{sha}\"")).unwrap_err();
        assert_eq!(err, "c.toml: [image] sha256: only goes with archive: it is the archive's sha256sum");
    }

    #[test]
    fn an_archive_download_is_bounded_in_size_and_time() {
        let sha = "ab".repeat(32);
        let url = format!("archive = \"https://b.example/nb.tar\"\nsha256 = \"{sha}\"\ntag = \"nb:1\"");
        let c = parse(&format!("{url}\nmax_size = \"2GiB\"\ndownload_timeout = \"30m\"")).unwrap();
        let ImageSource::Archive(a) = &c.source else { panic!("{c:?}") };
        assert_eq!((a.max_size, a.download_timeout), (2 << 30, Duration::from_secs(1800)));
        let cases = [
            (format!("{url}\nmax_size = \"10\""), "c.toml: [image] max_size = \"10\": expected a size with its unit"),
            (format!("{url}\ndownload_timeout = \"0.5s\""), "c.toml: [image] download_timeout = \"0.5s\": expected"),
            (
                "archive = \"/srv/nb.tar\"\ntag = \"nb:1\"\nmax_size = \"1GiB\"".into(),
                "c.toml: [image] max_size: only goes with an archive URL: it bounds the download",
            ),
            (
                "name = \"nb:1\"\ndownload_timeout = \"1h\"".into(),
                "c.toml: [image] download_timeout: only goes with an archive URL: it bounds the download",
            ),
        ];
        for (image, expected) in cases {
            let err = parse(&image).unwrap_err();
            assert!(err.starts_with(expected), "{image}: {err}");
        }
    }

    #[test]
    fn credentials_go_with_a_pull_only() {
        let c = parse("name = \"r.example/team/nb:1\"\ncredentials = \"/etc/jupyter-agent/registry.toml\"").unwrap();
        assert_eq!(
            c.source,
            ImageSource::Pull(Pull {
                policy: PullPolicy::IfNotPresent,
                credentials: Some("/etc/jupyter-agent/registry.toml".into())
            })
        );
        let err = parse("archive = \"/srv/nb.tar\"\ntag = \"nb:1\"\ncredentials = \"/etc/r.toml\"").unwrap_err();
        assert_eq!(
            err,
            "c.toml: [image] credentials: only goes with name: they log in to the registry the image is pulled from"
        );
        let err = parse("name = \"nb:1\"\ncredentials = \"r.toml\"").unwrap_err();
        assert_eq!(err, "c.toml: [image] credentials = \"r.toml\": expected an absolute path (starting with /)");
    }
}
