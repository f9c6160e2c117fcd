//! `[workspace] source`: where the workshop materials come from
//! (docs/configuration.md); `workspace::fetch` fetches them.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use jupyter_proto::redact::{redact_url, without_query, MARK};

use super::section::{toml_str, Section};
use super::ConfigError;

/// `[workspace] max_size` when not set: 1 GiB, for a tarball and a git
/// clone alike (docs/configuration.md).
pub const DEFAULT_MAX_SIZE: u64 = 1 << 30;

/// Where the materials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A tarball (.tar, .tar.gz / .tgz) at an http(s) URL, verified against its sha256 (hex, 64 chars).
    Tarball {
        url: String,
        sha256: String,
        /// The most the download, and the unpacked materials, may take (bytes).
        max_size: u64,
    },
    /// A git repository URL (https://, http://, file://, or a local path) at a branch, tag or commit.
    Git {
        url: String,
        reference: String,
        /// The most the clone, its history (`.git`) included, may take (bytes).
        max_size: u64,
    },
}

impl Source {
    /// The URL as given, credentials included: never for messages or logs.
    pub(crate) fn raw_url(&self) -> &str {
        match self {
            Source::Tarball { url, .. } | Source::Git { url, .. } => url,
        }
    }

    /// The URL with any credentials in it replaced by `***` and its query
    /// (a signed URL's signature) by `<redacted>`, for messages, logs and
    /// the workspace record.
    pub fn display_url(&self) -> String {
        shown(self.raw_url())
    }
}

/// `url` as [`Source::display_url`] shows it; a URL already shown so is
/// left as it is.
pub fn shown(url: &str) -> String {
    let bare = redact_url(&without_query(url));
    match url.split('#').next().unwrap_or_default().contains('?') {
        true => format!("{bare}?{MARK}"),
        false => bare,
    }
}

/// A source label (`<url> (sha256 ...)`, `<url> (ref ...)`) with its URL
/// shown as [`shown`] shows it: what records written before the query was
/// hidden become.
pub fn shown_label(label: &str) -> String {
    match label.split_once(' ') {
        Some((url, rest)) => format!("{} {rest}", shown(url)),
        None => shown(label),
    }
}

/// `[workspace] download_exclude`: an array of globs, each one that
/// [`Exclude`] accepts (an empty array is the
/// default, nothing left out but what is always left out).
pub(super) fn download_exclude(s: &mut Section) -> Result<Vec<String>, ConfigError> {
    const EXPECTED: &str = "expected an array of globs relative to the workspace, e.g. [\"data/**\", \"*.parquet\"]";
    let items = match s.take("download_exclude") {
        None => return Ok(Vec::new()),
        Some(toml::Value::Array(items)) => items,
        Some(v) => return Err(s.err("download_exclude", Some(v.to_string()), EXPECTED)),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let toml::Value::String(glob) = item else {
            return Err(s.err("download_exclude", Some(item.to_string()), EXPECTED));
        };
        if let Err(why) = Exclude::new(std::slice::from_ref(&glob)) {
            return Err(s.err("download_exclude", Some(toml_str(&glob)), &why));
        }
        out.push(glob);
    }
    Ok(out)
}

/// What is left out of the archive: the organiser's globs
/// (`[workspace] download_exclude`) and what always is.
#[derive(Debug, Clone)]
pub struct Exclude {
    /// Globs with a `/`: matched against the whole path from the root.
    rooted: GlobSet,
    /// Globs without a `/`: matched against the name, at any depth (as in `.gitignore`).
    anywhere: GlobSet,
    /// Relative paths always left out (`.git`, the env file).
    always: Vec<String>,
}

impl Exclude {
    /// The globs of `[workspace] download_exclude`, plus the top-level
    /// `.git`. A glob matches a path relative to the workspace root (`*`
    /// and `?` within one name, `**` across directories); one without a
    /// `/` matches a name at any depth; a directory matched is left out
    /// with everything in it; a trailing `/` is allowed (`data/`). The
    /// error says what is wrong with the first bad glob, for the config
    /// message.
    pub fn new(patterns: &[String]) -> Result<Exclude, String> {
        let mut rooted = GlobSetBuilder::new();
        let mut anywhere = GlobSetBuilder::new();
        for raw in patterns {
            let p = raw.strip_prefix("./").unwrap_or(raw);
            let p = p.strip_suffix('/').unwrap_or(p);
            if p.trim().is_empty() {
                return Err("expected a glob such as \"data/**\" or \"*.parquet\", not an empty string".into());
            }
            if p.starts_with('/') {
                return Err("expected a glob relative to the workspace, e.g. \"data/**\", not an absolute path".into());
            }
            if p.split('/').any(|c| c == "..") {
                return Err("expected a glob inside the workspace, without ..".into());
            }
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("is not a glob ({}); expected e.g. \"data/**\" or \"*.parquet\"", e.kind()))?;
            match p.contains('/') {
                true => rooted.add(glob),
                false => anywhere.add(glob),
            };
            // `data/**` leaves out the directory itself too, not only what is in it.
            if let Some(dir) = p.strip_suffix("/**").filter(|d| !d.is_empty() && !d.ends_with("**")) {
                let glob = GlobBuilder::new(dir).literal_separator(true).backslash_escape(true).build();
                let glob = glob
                    .map_err(|e| format!("is not a glob ({}); expected e.g. \"data/**\" or \"*.parquet\"", e.kind()))?;
                rooted.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| b.build().map_err(|e| format!("is not a glob ({})", e.kind()));
        Ok(Exclude { rooted: build(rooted)?, anywhere: build(anywhere)?, always: vec![".git".into()] })
    }

    /// Leaves `rel` (relative to the root) out too, whatever the globs say.
    pub fn also(&mut self, rel: String) {
        self.always.push(rel);
    }

    /// Whether the entry at `rel` (relative to the root, `/`-separated) is left out.
    pub fn matches(&self, rel: &str) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        self.always.iter().any(|a| a == rel) || self.rooted.is_match(rel) || self.anywhere.is_match(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_exclude_is_a_list_of_globs_checked_when_read() {
        let f = "/etc/jupyter-agent/config.toml";
        let parse = |extra: &str| {
            let text = format!(
                "[workspace]\nsource = \"/srv/repo\"\nref = \"main\"\npath = \"/w\"\n{extra}\n[image]\nname = \"x\"\n"
            );
            crate::config::Config::parse(std::path::Path::new(f), &text)
                .map(|c| c.download_exclude)
                .map_err(|e| e.to_string())
        };
        assert_eq!(parse(""), Ok(vec![]));
        assert_eq!(parse("download_exclude = []"), Ok(vec![]));
        assert_eq!(
            parse("download_exclude = [\"data/**\", \"*.parquet\"]"),
            Ok(vec!["data/**".to_string(), "*.parquet".to_string()])
        );
        let expected = "expected an array of globs relative to the workspace, e.g. [\"data/**\", \"*.parquet\"]";
        for (extra, want) in [
            ("download_exclude = \"data/**\"", format!("{f}: [workspace] download_exclude = \"data/**\": {expected}")),
            ("download_exclude = [1]", format!("{f}: [workspace] download_exclude = 1: {expected}")),
            (
                "download_exclude = [\"ok/**\", \"data/[a\"]",
                format!("{f}: [workspace] download_exclude = \"data/[a\": is not a glob (unclosed character class; missing ']'); expected e.g. \"data/**\" or \"*.parquet\""),
            ),
            (
                "download_exclude = [\"../other\"]",
                format!("{f}: [workspace] download_exclude = \"../other\": expected a glob inside the workspace, without .."),
            ),
        ] {
            assert_eq!(parse(extra), Err(want), "{extra}");
        }
    }

    #[test]
    fn urls_are_shown_without_credentials_or_query_and_old_labels_become_so() {
        for (url, want) in [
            ("https://b.oss.example/m.tgz?Expires=1&Signature=s1g", "https://b.oss.example/m.tgz?<redacted>"),
            ("https://u:p@h/r.git", "https://***@h/r.git"),
            ("https://h/m.tgz", "https://h/m.tgz"),
            ("https://h/m.tgz?<redacted>", "https://h/m.tgz?<redacted>"),
            ("/srv/repo", "/srv/repo"),
        ] {
            assert_eq!(shown(url), want, "{url}");
        }
        assert_eq!(
            shown_label("https://h/m.tgz?Signature=s1g (sha256 abc)"),
            "https://h/m.tgz?<redacted> (sha256 abc)"
        );
        assert_eq!(shown_label("https://***@h/r.git (ref main)"), "https://***@h/r.git (ref main)");
    }
}
