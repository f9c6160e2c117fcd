//! What taking the organiser's fixes did to a participant's copy, file by
//! file: what `jupyter-agent workspace update --json` prints and the pages
//! answer a script (docs/workspace-update.md, docs/pages.md#for-scripts),
//! and what `jupyter-room update` reads.

use serde::{Deserialize, Serialize};

/// A file changed on both sides: the participant's `path`, and where the
/// new version went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beside {
    pub path: String,
    pub new_version: String,
}

/// A file created here under a name the new version uses: the
/// participant's file is now `yours`, the new one at `path`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renamed {
    pub path: String,
    pub yours: String,
}

/// What an update did (or, from `check`, would do), file by file; paths
/// relative to the workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Updated {
    /// The source as configured (credentials and query hidden).
    pub source: String,
    /// The version the copy had (commit or sha256), and the one it has now.
    pub from: String,
    pub to: String,
    /// Nothing to take: the source has not moved since the copy was fetched or last updated.
    pub up_to_date: bool,
    /// Changed upstream and untouched here: replaced by the new version.
    pub updated: Vec<String>,
    /// New upstream.
    pub added: Vec<String>,
    /// Deleted here and present upstream: back, in the new version.
    pub restored: Vec<String>,
    /// Changed here and upstream: the participant's kept, the new version beside it.
    pub kept_beside: Vec<Beside>,
    /// Created here under a name upstream now uses: the participant's renamed.
    pub renamed: Vec<Renamed>,
    /// Removed upstream and untouched here: removed.
    pub removed: Vec<String>,
    /// Removed upstream but changed here: kept.
    pub kept_removed_upstream: Vec<String>,
    /// Changed here only: left as they are.
    pub left: Vec<String>,
}

impl Updated {
    /// What it does, file by file, as a person reads it: (what, which file);
    /// the command line and the pages list these.
    pub fn changes(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let each = |out: &mut Vec<_>, what, files: &[String]| out.extend(files.iter().map(|f| (what, f.clone())));
        each(&mut out, "updated", &self.updated);
        each(&mut out, "added", &self.added);
        each(&mut out, "restored (deleted here)", &self.restored);
        out.extend(
            self.kept_beside
                .iter()
                .map(|b| ("yours kept, the new version beside it", format!("{} -> {}", b.path, b.new_version))),
        );
        out.extend(
            self.renamed
                .iter()
                .map(|r| ("yours renamed, the new file takes its name", format!("{} -> {}", r.path, r.yours))),
        );
        each(&mut out, "removed upstream, removed", &self.removed);
        each(&mut out, "removed upstream, yours kept", &self.kept_removed_upstream);
        each(&mut out, "yours, left as it is", &self.left);
        out
    }

    /// Whether the update writes anything into the copy.
    pub fn changes_files(&self) -> bool {
        !(self.updated.is_empty()
            && self.added.is_empty()
            && self.restored.is_empty()
            && self.kept_beside.is_empty()
            && self.renamed.is_empty()
            && self.removed.is_empty())
    }
}
