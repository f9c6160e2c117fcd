//! The workshop materials (the `[workspace]` section): fetched onto the
//! instance once ([`fetch`]), never overwritten afterwards.
//!
//! The first converge populates `path` and remembers what it fetched (every
//! file's sha256) in `<state_dir>/workspace.json`. Later converges leave
//! `path` alone whatever happens to it. When the configured source changes,
//! the new version is fetched beside the old one (`<path>.new`) and the
//! difference is reported; only `jupyter-agent workspace reset` replaces the
//! participant's copy, and it first moves that copy aside with a timestamp.
//! [`update`] takes the organiser's fixes instead (a push to the configured
//! branch, or a changed source): merged into the copy in place, file by
//! file, never overwriting a participant's change ([`merge`],
//! docs/workspace-update.md); [`check`] shows what it would do.

pub mod download;
mod entries;
mod failure;
pub mod fetch;
mod git;
pub mod merge;
pub mod pristine;
mod staging;
mod tarball;
#[cfg(test)]
pub(crate) mod test_support;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::WorkspaceConfig;
pub use merge::{Beside, Renamed, Updated};

/// How long transient fetch failures are retried.
const RETRY_BUDGET: Duration = Duration::from_secs(5 * 60);

/// A fetched copy: where it came from and every file as it was fetched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Copy {
    /// The source as configured (userinfo removed).
    pub source: String,
    /// The commit (git) or the verified sha256 (tarball).
    pub identity: String,
    pub path: PathBuf,
    pub fetched_at: DateTime<Utc>,
    /// Relative path -> sha256 of the content as fetched (`.git` and the env file left out).
    pub files: BTreeMap<String, String>,
}

/// What the agent remembers: the participant's copy, and a newer version
/// fetched beside it when the source changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub copy: Copy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// The identity the container was made with, once `workspace update`
    /// has merged a newer version into the copy in place: the container
    /// mounts the same directory and is not re-created for it (only a
    /// reset, which replaces the copy, changes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounted: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub copy: Copy,
    pub difference: Difference,
}

/// How a newer version differs, and what the participant changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// Files the new version adds, removes or changes, against the copy as fetched.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Files the participant created or edited in their copy (kept by any reset, moved aside).
    pub edited_here: Vec<String>,
}

impl Difference {
    pub fn summary(&self) -> String {
        format!(
            "{} added, {} removed, {} changed upstream; {} file(s) edited here",
            self.added.len(),
            self.removed.len(),
            self.changed.len(),
            self.edited_here.len()
        )
    }
}

/// What `ensure` did, for the step's detail.
#[derive(Debug, Clone)]
pub struct Ensured {
    /// Identifies the copy the container mounts (changes only when it is replaced).
    pub identity: String,
    pub detail: String,
    /// The materials as fetched, the build context (none for a copy the
    /// agent did not fetch).
    pub pristine: Option<PathBuf>,
}

fn record_path(state_dir: &Path) -> PathBuf {
    state_dir.join("workspace.json")
}

fn load_record(state_dir: &Path) -> Result<Option<Record>> {
    let path = record_path(state_dir);
    match fs::read(&path) {
        Ok(bytes) => {
            let mut record: Record =
                serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?;
            // Written before a URL's query was hidden: the same source, shown as it is now.
            for copy in std::iter::once(&mut record.copy).chain(record.pending.as_mut().map(|p| &mut p.copy)) {
                copy.source = crate::config::workspace::shown_label(&copy.source);
            }
            Ok(Some(record))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Written before a first fetch moves the materials into place and removed
/// once their record is saved: a run killed in between leaves it, and the
/// next run adopts the copy as the agent's own instead of calling it
/// unmanaged for ever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fetching {
    source: String,
    path: PathBuf,
}

fn fetching_path(state_dir: &Path) -> PathBuf {
    state_dir.join("workspace.fetching")
}

fn load_fetching(state_dir: &Path) -> Option<Fetching> {
    serde_json::from_slice(&fs::read(fetching_path(state_dir)).ok()?).ok()
}

/// The record of a copy that an interrupted run fetched into `cfg.path`.
fn adopt(cfg: &WorkspaceConfig) -> Result<Copy> {
    let identity = match &cfg.source {
        fetch::Source::Tarball { sha256, .. } => sha256.clone(),
        fetch::Source::Git { .. } => {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(&cfg.path)
                .args(["rev-parse", "HEAD"])
                .output()
                .context("running git rev-parse HEAD in the fetched copy")?;
            anyhow::ensure!(out.status.success(), "git rev-parse HEAD failed in {}", cfg.path.display());
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
    };
    let files = manifest(&cfg.path, env_rel(cfg)).with_context(|| format!("reading {}", cfg.path.display()))?;
    Ok(Copy { source: cfg.source_label(), identity, path: cfg.path.clone(), fetched_at: Utc::now(), files })
}

fn save_record(state_dir: &Path, record: &Record) -> Result<()> {
    crate::state::ensure_private_dir(state_dir)
        .with_context(|| format!("cannot use the state directory {}", state_dir.display()))?;
    crate::state::write_atomic(&record_path(state_dir), &record_json(record), 0o600)
        .context("writing the workspace record")
}

fn record_json(record: &Record) -> Vec<u8> {
    let mut json = serde_json::to_vec_pretty(record).expect("a record serializes");
    json.push(b'\n');
    json
}

/// Workspace changes (a converge's fetch, a reset) take turns.
fn lock(state_dir: &Path) -> Result<Flock<File>> {
    crate::state::ensure_private_dir(state_dir)
        .with_context(|| format!("cannot use the state directory {}", state_dir.display()))?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(state_dir.join("workspace.lock"))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
        anyhow::anyhow!("another jupyter-agent is changing the workspace right now; try again in a moment")
    })
}

/// `<path>` with a suffix on its file name: `/root/x` -> `/root/x.new`.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!("{name}{suffix}"))
}

/// Every regular file (and link) below `root` with the sha256 of its content;
/// `skip` (relative to `root`: the env file) and the top-level `.git` left out.
pub fn manifest(root: &Path, skip: Option<&Path>) -> io::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let rel_path = path.strip_prefix(root).expect("below root");
            if Some(rel_path) == skip || (dir == root && entry.file_name() == ".git") {
                continue;
            }
            let rel = rel_path.to_string_lossy().into_owned();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if let Some(hash) = entry_hash(&path)? {
                out.insert(rel, hash);
            }
        }
    }
    Ok(out)
}

/// What [`manifest`] records for one path: the sha256 of a regular file's
/// content, `link:<target>` for a link; `None` for a directory, anything
/// else, or nothing there.
pub(crate) fn entry_hash(path: &Path) -> io::Result<Option<String>> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        return Ok(Some(format!("link:{}", fs::read_link(path)?.display())));
    }
    if !meta.is_file() {
        return Ok(None);
    }
    let mut hasher = Sha256::new();
    let mut f = File::open(path)?;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Some(hex::encode(hasher.finalize())))
}

/// Files of `new` that are not in `old`, files of `old` not in `new`, and files in both that differ.
pub fn compare(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let added = new.keys().filter(|k| !old.contains_key(*k)).cloned().collect();
    let removed = old.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
    let changed = new.iter().filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v)).map(|(k, _)| k.clone()).collect();
    (added, removed, changed)
}

/// The env file relative to the workspace, when it lives inside it.
fn env_rel(cfg: &WorkspaceConfig) -> Option<&Path> {
    cfg.env_file.as_deref().and_then(|f| f.strip_prefix(&cfg.path).ok())
}

async fn fetch_copy(cfg: &WorkspaceConfig, dest: &Path) -> Result<Copy> {
    let identity = fetch::fetch(&cfg.source, dest, RETRY_BUDGET).await?;
    let files = manifest(dest, env_rel(cfg)).with_context(|| format!("reading {}", dest.display()))?;
    Ok(Copy { source: cfg.source_label(), identity, path: cfg.path.clone(), fetched_at: Utc::now(), files })
}

fn is_empty_dir(path: &Path) -> bool {
    fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
}

/// Makes sure the participant's copy exists; never overwrites it.
pub async fn ensure(cfg: &WorkspaceConfig, state_dir: &Path) -> Result<Ensured> {
    let _lock = lock(state_dir)?;
    let record = load_record(state_dir)?;
    if let Some(r) = &record {
        // A record written before a URL's query was hidden is written again without it.
        if fs::read(record_path(state_dir)).is_ok_and(|raw| raw != record_json(r)) {
            save_record(state_dir, r)?;
        }
    }
    let path = &cfg.path;
    let source = cfg.source_label();

    if !path.exists() || is_empty_dir(path) {
        if path.exists() {
            fs::remove_dir(path).with_context(|| format!("replacing the empty directory {}", path.display()))?;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        info!(source = %source, path = %path.display(), "fetching the workspace");
        let marker = serde_json::to_vec(&Fetching { source: source.clone(), path: path.clone() })?;
        crate::state::write_atomic(&fetching_path(state_dir), &marker, 0o600).context("writing the fetch marker")?;
        let copy = fetch_copy(cfg, path).await?;
        let detail = format!("fetched {} into {} ({} files)", copy.identity, path.display(), copy.files.len());
        return record_new_copy(cfg, state_dir, copy, detail).await;
    }

    if record.is_none() && load_fetching(state_dir) == Some(Fetching { source: source.clone(), path: path.clone() }) {
        // A run was killed between moving the materials into place and saving their record.
        let copy = adopt(cfg)?;
        let detail = format!("adopted {} in {}, fetched by an interrupted run", copy.identity, path.display());
        return record_new_copy(cfg, state_dir, copy, detail).await;
    }

    let Some(mut record) = record else {
        write_env_file(cfg)?;
        return Ok(Ensured {
            identity: format!("unmanaged:{}", path.display()),
            detail: format!("{} exists and was not fetched by the agent: left as it is", path.display()),
            pristine: None,
        });
    };
    let identity = container_identity(&record);
    // The participant's copy stays what it is, and so does the build.
    let pristine = Some(pristine::ensure(cfg, state_dir, &identity, None).await?);
    if record.copy.source == source {
        write_env_file(cfg)?;
        return Ok(Ensured {
            identity,
            detail: format!("present ({}), left as it is", record.copy.identity),
            pristine,
        });
    }

    // The source changed: fetch the new version beside the participant's copy.
    let new_path = beside(path, ".new");
    let already = record.pending.as_ref().is_some_and(|p| p.copy.source == source) && new_path.exists();
    if !already {
        stage(cfg, state_dir, &mut record).await?;
    }
    write_env_file(cfg)?;
    let pending = record.pending.as_ref().expect("set above");
    warn!(
        "the workspace source changed; {} holds the new version ({}); {} is left as it is; jupyter-agent workspace update takes it in, keeping the participant's changes (workspace reset replaces the copy, moving it aside first)",
        new_path.display(),
        pending.difference.summary(),
        path.display()
    );
    Ok(Ensured {
        identity,
        pristine,
        detail: format!(
            "source changed: new version {} in {} ({}); your copy is left as it is (jupyter-agent workspace update takes it in; workspace reset replaces it)",
            pending.copy.identity,
            new_path.display(),
            pending.difference.summary()
        ),
    })
}

/// A copy just put in place (fetched, or adopted from an interrupted run):
/// its pristine copy, its record, the fetch marker gone, the env file.
async fn record_new_copy(cfg: &WorkspaceConfig, state_dir: &Path, copy: Copy, detail: String) -> Result<Ensured> {
    let identity = copy_identity(&copy);
    let pristine = pristine::ensure(cfg, state_dir, &identity, Some(&cfg.path)).await?;
    save_record(state_dir, &Record { copy, pending: None, mounted: None })?;
    let _ = fs::remove_file(fetching_path(state_dir));
    write_env_file(cfg)?;
    Ok(Ensured { identity, detail, pristine: Some(pristine) })
}

fn copy_identity(copy: &Copy) -> String {
    format!("{}@{}", copy.identity, copy.fetched_at.to_rfc3339())
}

/// What the container's configuration hash takes from the workspace: the
/// copy as first fetched (or reset), kept across updates.
fn container_identity(record: &Record) -> String {
    record.mounted.clone().unwrap_or_else(|| copy_identity(&record.copy))
}

/// Fetches the configured source's version beside the participant's copy
/// (`<path>.new`, an older one there replaced) and records it as pending,
/// with how it differs.
async fn stage(cfg: &WorkspaceConfig, state_dir: &Path, record: &mut Record) -> Result<()> {
    let path = &cfg.path;
    let new_path = beside(path, ".new");
    if fs::symlink_metadata(&new_path).is_ok() {
        // An older pending version, the agent's own: replaced.
        fs::remove_dir_all(&new_path).with_context(|| format!("replacing {}", new_path.display()))?;
    }
    info!(source = %cfg.source_label(), path = %new_path.display(), "fetching the new version beside the copy");
    let mut new_copy = fetch_copy(cfg, &new_path).await?;
    new_copy.path = new_path.clone();
    let here = manifest(path, env_rel(cfg)).with_context(|| format!("reading {}", path.display()))?;
    let (added, removed, changed) = compare(&record.copy.files, &new_copy.files);
    let (created, _, edited) = compare(&record.copy.files, &here);
    let mut edited_here: Vec<String> = created.into_iter().chain(edited).collect();
    edited_here.sort();
    record.pending = Some(Pending { copy: new_copy, difference: Difference { added, removed, changed, edited_here } });
    save_record(state_dir, record)
}

/// How long `check` and `update` retry asking a git server where its branch is.
const ASK_BUDGET: Duration = Duration::from_secs(30);

/// The record with the version to take staged as pending (`<path>.new`),
/// or `None` when the source has not moved: the configured source is the
/// one fetched and, for git, its branch (or tag) still points to the commit
/// fetched (`git ls-remote`). A new tarball comes with a new configuration
/// (URL, sha256), which the converge stages too.
async fn moved(cfg: &WorkspaceConfig, state_dir: &Path) -> Result<Option<Record>> {
    let Some(mut record) = load_record(state_dir)? else {
        anyhow::bail!("{} has not been fetched by the agent yet: jupyter-agent run fetches it", cfg.path.display());
    };
    let source = cfg.source_label();
    let new_path = beside(&cfg.path, ".new");
    let wanted = if record.copy.source != source {
        None
    } else if let fetch::Source::Git { url, reference, max_size } = &cfg.source {
        match git::remote_commit("git", url, reference, *max_size, ASK_BUDGET).await? {
            Some(commit) if commit != record.copy.identity => Some(commit),
            _ => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    let staged = record.pending.as_ref().filter(|p| p.copy.source == source && new_path.is_dir());
    let ready = staged.is_some_and(|p| wanted.as_ref().is_none_or(|c| *c == p.copy.identity));
    if !ready {
        stage(cfg, state_dir, &mut record).await?;
    }
    Ok(Some(record))
}

/// What an update would do now (`None`: the source has not moved). The new
/// version is fetched beside the copy when it is not there yet; the copy is
/// not touched. For the page to show before the action.
pub async fn check(cfg: &WorkspaceConfig, state_dir: &Path) -> Result<Option<Updated>> {
    let _lock = lock(state_dir)?;
    let Some(record) = moved(cfg, state_dir).await? else { return Ok(None) };
    let pending = record.pending.as_ref().expect("staged");
    let here = manifest(&cfg.path, env_rel(cfg)).with_context(|| format!("reading {}", cfg.path.display()))?;
    let plan = merge::plan(&record.copy.files, &here, &pending.copy.files);
    let preview = merge::preview(&cfg.path, &plan, &pending.copy.files, Utc::now())?;
    Ok(Some(Updated {
        source: pending.copy.source.clone(),
        from: record.copy.identity.clone(),
        to: pending.copy.identity.clone(),
        ..preview
    }))
}

/// Takes the organiser's fixes: merges the source's newer version into the
/// participant's copy in place, file by file ([`merge`],
/// docs/workspace-update.md), never overwriting nor deleting the
/// participant's work. The record's base becomes the new version (the next
/// update compares against it), the staged copy is removed, and the
/// container's identity stays the same (the container is not re-created).
pub async fn update(cfg: &WorkspaceConfig, state_dir: &Path) -> Result<Updated> {
    let _lock = lock(state_dir)?;
    let Some(mut record) = moved(cfg, state_dir).await? else {
        let record = load_record(state_dir)?.expect("read by moved");
        return Ok(Updated {
            source: record.copy.source.clone(),
            from: record.copy.identity.clone(),
            to: record.copy.identity,
            up_to_date: true,
            ..Updated::default()
        });
    };
    let pending = record.pending.take().expect("staged");
    let path = &cfg.path;
    let here = manifest(path, env_rel(cfg)).with_context(|| format!("reading {}", path.display()))?;
    let plan = merge::plan(&record.copy.files, &here, &pending.copy.files);
    let applied =
        merge::apply(path, &pending.copy.path, &plan, &record.copy.files, &here, &pending.copy.files, Utc::now())
            .with_context(|| format!("merging {} into {}", pending.copy.path.display(), path.display()))?;
    let updated = Updated {
        source: pending.copy.source.clone(),
        from: record.copy.identity.clone(),
        to: pending.copy.identity.clone(),
        ..applied
    };
    record.mounted = Some(container_identity(&record));
    record.copy = Copy { path: path.clone(), fetched_at: Utc::now(), ..pending.copy };
    save_record(state_dir, &record)?;
    let staged = beside(path, ".new");
    staging::remove_tree(&staged);
    write_env_file(cfg)?;
    info!(from = %updated.from, to = %updated.to, path = %path.display(), "merged the new version into the copy");
    Ok(updated)
}

/// What a reset did.
#[derive(Debug, Clone)]
pub struct Reset {
    /// Where the participant's copy went.
    pub aside: PathBuf,
    pub identity: String,
}

/// Replaces the participant's copy with the configured source's version:
/// the copy is first moved aside (`<path>.bak-<UTC timestamp>`), never deleted.
pub async fn reset(cfg: &WorkspaceConfig, state_dir: &Path) -> Result<Reset> {
    let _lock = lock(state_dir)?;
    let record = load_record(state_dir)?;
    if let Some(r) = &record {
        // A record written before a URL's query was hidden is written again without it.
        if fs::read(record_path(state_dir)).is_ok_and(|raw| raw != record_json(r)) {
            save_record(state_dir, r)?;
        }
    }
    let path = &cfg.path;
    let source = cfg.source_label();
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mut aside = beside(path, &format!(".bak-{stamp}"));
    let mut n = 1;
    while aside.exists() {
        aside = beside(path, &format!(".bak-{stamp}-{n}"));
        n += 1;
    }
    let new_path = beside(path, ".new");
    let pending = record.and_then(|r| r.pending).filter(|p| p.copy.source == source && new_path.exists());
    // Fetch first (when nothing is pending), so that a failed fetch leaves the copy in place.
    let staged = match pending {
        Some(p) => p.copy,
        None => {
            if new_path.exists() {
                fs::remove_dir_all(&new_path).with_context(|| format!("replacing {}", new_path.display()))?;
            }
            let mut copy = fetch_copy(cfg, &new_path).await?;
            copy.path = new_path.clone();
            copy
        }
    };
    if path.exists() {
        fs::rename(path, &aside).with_context(|| format!("moving {} aside to {}", path.display(), aside.display()))?;
        info!(from = %path.display(), to = %aside.display(), "moved the participant's copy aside");
    }
    fs::rename(&new_path, path).with_context(|| format!("moving {} to {}", new_path.display(), path.display()))?;
    let copy = Copy { path: path.clone(), fetched_at: Utc::now(), ..staged };
    let identity = copy.identity.clone();
    pristine::ensure(cfg, state_dir, &copy_identity(&copy), Some(path)).await?;
    save_record(state_dir, &Record { copy, pending: None, mounted: None })?;
    write_env_file(cfg)?;
    Ok(Reset { aside, identity })
}

/// The pending difference, if the source changed since the copy was fetched.
pub fn pending(state_dir: &Path) -> Result<Option<Record>> {
    load_record(state_dir)
}

/// Writes the container's env file from `[workspace.env]` (mode 0600), when
/// its content differs. Values never reach a log.
pub fn write_env_file(cfg: &WorkspaceConfig) -> Result<bool> {
    let Some(path) = &cfg.env_file else { return Ok(false) };
    // The header marks the file as the agent's own to rewrite (config::host).
    let content: String = std::iter::once(format!("{}\n", crate::config::host::ENV_FILE_HEADER))
        .chain(cfg.env.iter().map(|(k, v)| format!("{k}={v}\n")))
        .collect();
    if fs::read_to_string(path).is_ok_and(|old| old == content) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    crate::state::write_atomic(path, content.as_bytes(), 0o600)
        .with_context(|| format!("writing the env file {} ([workspace] env_file)", path.display()))?;
    info!(file = %path.display(), variables = cfg.env.len(), "wrote the env file (values not shown)");
    Ok(true)
}

#[cfg(test)]
mod tests;
