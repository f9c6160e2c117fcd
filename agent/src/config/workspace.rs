//! `[workspace] source`: where the workshop materials come from
//! (docs/configuration.md); `workspace::fetch` fetches them.

use jupyter_proto::redact::redact_url;

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
    fn raw_url(&self) -> &str {
        match self {
            Source::Tarball { url, .. } | Source::Git { url, .. } => url,
        }
    }

    /// The URL with any credentials in it replaced by `***`, for messages and logs.
    pub fn display_url(&self) -> String {
        redact_url(self.raw_url())
    }
}
