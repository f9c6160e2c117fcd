//! Fetching the workshop materials onto the instance: a tarball over http(s),
//! verified against its sha256 and checked entry by entry before anything is
//! written, or a git repository checked out at a branch, tag or commit with
//! the `git` command-line tool. Either is assembled in a staging directory
//! beside the destination and renamed into place, so the destination holds
//! all of the materials or does not exist.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::future::Future;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use backon::{ExponentialBuilder, Retryable};
use sha2::{Digest, Sha256};
use tar::EntryType;
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole download; materials can be a few hundred MB on a slow link.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A transfer that stalls this long is given up (and retried), long before the whole timeout.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const CLONE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// `git rev-parse` and `git checkout` on the clone.
const LOCAL_GIT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// Symbolic links followed while resolving one path before the kernel gives up (MAXSYMLINKS).
const MAX_SYMLINK_HOPS: u32 = 40;
/// How much of an error page goes into a message.
const ERROR_BODY_CHARS: usize = 200;
const USER_AGENT: &str = concat!("jupyter-agent/", env!("CARGO_PKG_VERSION"));
/// Environment variables that would point git at another repository or configuration.
const GIT_ENV_REMOVED: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "SSH_ASKPASS",
    "LANGUAGE",
];
/// Configuration for every git command, so that nothing of the user's (helpers, hooks, prompts) takes part.
const GIT_CONFIG: &[&str] = &[
    "credential.helper=",
    "core.askPass=",
    "core.hooksPath=/dev/null",
    "advice.detachedHead=false",
    // A transfer slower than 1 kB/s for a minute is a stall: give up (and retry) long before the timeout.
    "http.lowSpeedLimit=1000",
    "http.lowSpeedTime=60",
];

/// Where the materials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A tarball (.tar, .tar.gz / .tgz) at an http(s) URL, verified against its sha256 (hex, 64 chars).
    Tarball { url: String, sha256: String },
    /// A git repository URL (https://, http://, file://, or a local path) at a branch, tag or commit.
    Git { url: String, reference: String },
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

/// Why a fetch failed; the caller branches on the kind (retry is done inside).
/// URLs in these errors have their credentials replaced by `***`.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The download's sha256 is not the configured one; nothing was extracted.
    #[error("the tarball at {url} has sha256 {actual}, not the expected {expected}; nothing was written")]
    Checksum { url: String, expected: String, actual: String },
    /// The repository has no branch, tag or commit by that name.
    #[error("the repository {url} has no branch, tag or commit `{reference}`")]
    UnknownRef { url: String, reference: String },
    /// An archive entry would land outside the destination, or is a device; nothing was written.
    /// `reason` reads after the entry's name: "has a `..` component".
    #[error("refusing the tarball: entry `{entry}` {reason}; nothing was written")]
    Unsafe { entry: String, reason: String },
    /// Anything else, transient failures included once the retry budget is spent.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Fetches `source` into `dest`, a directory that must not exist yet (its parent exists).
/// On success `dest` holds the materials; on any error nothing is left at `dest`
/// (and no temporary files beside it). Transient failures (network, 5xx, 408, 429,
/// git's "could not resolve host"/"connection" errors) are retried with exponential
/// backoff within `retry_budget`. Returns the resolved identity: the commit id for git,
/// the verified sha256 for a tarball.
pub async fn fetch(source: &Source, dest: &Path, retry_budget: Duration) -> Result<String, FetchError> {
    fetch_with(GIT, source, dest, retry_budget).await
}

/// The git program; tests name a missing one.
const GIT: &str = "git";

async fn fetch_with(git: &str, source: &Source, dest: &Path, retry_budget: Duration) -> Result<String, FetchError> {
    let url = source.display_url();
    let deadline = Instant::now() + retry_budget;
    let staging = Staging::create(dest)?;
    info!(url = %url, dest = %dest.display(), "fetching the workspace");
    let identity = match source {
        Source::Tarball { url: raw_url, sha256 } => fetch_tarball(raw_url, sha256, &staging, dest, deadline).await?,
        Source::Git { url: raw_url, reference } => {
            let git = Git { program: git, raw_url, url: &url };
            fetch_git(&git, reference, &staging, dest, deadline).await?
        }
    };
    info!(url = %url, dest = %dest.display(), identity = %identity, "workspace fetched");
    Ok(identity)
}

/// A directory beside the destination where the materials are assembled; removed when dropped,
/// on every path, after its result has been renamed out of it.
struct Staging {
    dir: PathBuf,
}

impl Staging {
    fn create(dest: &Path) -> Result<Self, FetchError> {
        match fs::symlink_metadata(dest) {
            Ok(_) => {
                return Err(anyhow!(
                    "{} already exists; the workspace is fetched once and never overwritten (remove it to fetch again)",
                    dest.display()
                )
                .into())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow!(e).context(format!("looking at {}", dest.display())).into()),
        }
        let name = dest.file_name().ok_or_else(|| anyhow!("{} does not name a directory", dest.display()))?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !parent.is_dir() {
            return Err(anyhow!(
                "the directory {} (where {} goes) does not exist; create it first",
                parent.display(),
                dest.display()
            )
            .into());
        }
        let prefix = format!(".{}.fetch-{}-", name.to_string_lossy(), std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(parent)
            .with_context(|| format!("creating a staging directory in {}", parent.display()))?
            .keep();
        Ok(Staging { dir })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        remove_tree(&self.dir);
    }
}

/// Removes a directory tree, making its directories writable first if the archive made them read-only.
fn remove_tree(path: &Path) {
    let result = match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(path);
            fs::remove_dir_all(path)
        }
        other => other,
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            warn!(path = %path.display(), error = %e, "cannot remove the staging directory; remove it by hand");
        }
        _ => {}
    }
}

fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else { return };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(meta.permissions().mode() | 0o700));
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

/// Renames the assembled materials to `dest`, which must still not exist.
fn publish(root: &Path, dest: &Path) -> Result<(), FetchError> {
    rename_no_replace(root, dest).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            anyhow!("{} appeared while the workspace was being fetched; it was left as it is", dest.display())
        } else {
            anyhow!(e).context(format!("moving the fetched workspace into place at {}", dest.display()))
        }
    })?;
    Ok(())
}

/// A rename that fails rather than replace `to` (plain rename(2) replaces an empty directory).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        // A file system without RENAME_NOREPLACE: look, then rename.
        Err(Errno::EINVAL | Errno::ENOSYS) => rename_if_absent(from, to),
        Err(e) => Err(io::Error::from(e)),
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    rename_if_absent(from, to)
}

fn rename_if_absent(from: &Path, to: &Path) -> io::Result<()> {
    if fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    fs::rename(from, to)
}

/// One attempt's failure, and whether another attempt may do better.
struct Attempt {
    error: FetchError,
    transient: bool,
}

impl Attempt {
    fn transient(error: anyhow::Error) -> Self {
        Attempt { error: error.into(), transient: true }
    }

    fn permanent(error: impl Into<FetchError>) -> Self {
        Attempt { error: error.into(), transient: false }
    }
}

/// Runs `op` until it succeeds, fails for good, or the next wait would pass `deadline`;
/// waits grow exponentially (with jitter, so that a room of instances does not retry in step).
async fn with_retry<T, F, Fut>(deadline: Instant, what: &str, url: &str, mut op: F) -> Result<T, FetchError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    let started = Instant::now();
    let mut attempts = 0u32;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(FIRST_RETRY_DELAY)
        .with_max_delay(MAX_RETRY_DELAY)
        .with_jitter()
        .without_max_times();
    let result = (|| {
        attempts += 1;
        op()
    })
    .retry(backoff)
    .sleep(tokio::time::sleep)
    .when(|a: &Attempt| a.transient)
    .adjust(|_: &Attempt, delay: Option<Duration>| delay.filter(|d| Instant::now() + *d <= deadline))
    .notify(|a: &Attempt, delay| {
        warn!(url = %url, error = %describe(&a.error), "{what} failed; retrying in {}", seconds(delay));
    })
    .await;
    result.map_err(|a| match a.error {
        FetchError::Other(e) if a.transient && attempts > 1 => FetchError::Other(e.context(format!(
            "{what}: gave up after {attempts} attempts in {} (retry budget spent)",
            seconds(started.elapsed())
        ))),
        other => other,
    })
}

fn seconds(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs().max(1))).to_string()
}

/// The whole chain of an error, for a log line.
fn describe(e: &FetchError) -> String {
    match e {
        FetchError::Other(e) => format!("{e:#}"),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Tarballs

async fn fetch_tarball(
    raw_url: &str,
    sha256: &str,
    staging: &Staging,
    dest: &Path,
    deadline: Instant,
) -> Result<String, FetchError> {
    let url = redact_url(raw_url);
    let expected = sha256.to_ascii_lowercase();
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(anyhow!("the sha256 of {url} must be 64 hexadecimal digits, not {sha256:?}").into());
    }
    let scheme = raw_url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("http" | "https")) {
        return Err(anyhow!("cannot download {url}: a tarball is fetched over http:// or https:// only").into());
    }
    let client = http_client()?;
    let download = staging.dir.join("download");
    let actual =
        with_retry(deadline, "downloading the tarball", &url, || download_once(&client, raw_url, &url, &download))
            .await?;
    if actual != expected {
        return Err(FetchError::Checksum { url, expected, actual });
    }
    let tree = staging.dir.join("tree");
    let root = tokio::task::spawn_blocking(move || unpack_checked(&download, &tree, &url))
        .await
        .context("unpacking the tarball")??;
    publish(&root, dest)?;
    Ok(actual)
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .timeout(DOWNLOAD_TIMEOUT)
        .build()
        .context("building the HTTP client")
}

/// Downloads into `path` (replacing what an earlier attempt left), returning the sha256 of what was written.
async fn download_once(client: &reqwest::Client, raw_url: &str, url: &str, path: &Path) -> Result<String, Attempt> {
    // reqwest names the URL, credentials and all, in its messages: drop it and name the redacted one.
    let failed = |e: reqwest::Error| Attempt {
        transient: !(e.is_builder() || e.is_redirect()),
        error: anyhow!(e.without_url()).context(format!("downloading {url}")).into(),
    };
    let mut response = client.get(raw_url).send().await.map_err(failed)?;
    let status = response.status();
    if !status.is_success() {
        let transient = status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        // The start of the error page, which often says why.
        let mut page = Vec::new();
        while page.len() < 4 * ERROR_BODY_CHARS {
            match response.chunk().await {
                Ok(Some(chunk)) => page.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let page = String::from_utf8_lossy(&page);
        let body: String =
            page.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(ERROR_BODY_CHARS).collect();
        let message = if body.is_empty() {
            format!("downloading {url}: the server answered {status}")
        } else {
            format!("downloading {url}: the server answered {status}: {}", redact_text(&body))
        };
        return Err(Attempt { error: anyhow!(message).into(), transient });
    }
    let write_failed = |e: io::Error| Attempt::permanent(anyhow!(e).context(format!("writing {}", path.display())));
    let mut file = tokio::fs::File::create(path).await.map_err(write_failed)?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(write_failed)?;
    }
    file.flush().await.map_err(write_failed)?;
    Ok(hex::encode(hasher.finalize()))
}

/// One entry of an archive, as listed before anything is written.
struct Listed {
    path: PathBuf,
    kind: EntryType,
    link: Option<PathBuf>,
}

/// Checks every entry of the archive, then unpacks it into `tree`; returns the directory to publish
/// (the single top-level directory of a GitHub-style archive, or `tree`).
fn unpack_checked(archive: &Path, tree: &Path, url: &str) -> Result<PathBuf, FetchError> {
    let listed = list_entries(archive).with_context(|| format!("reading the tarball from {url}"))?;
    check_entries(&listed)?;
    fs::create_dir(tree).with_context(|| format!("creating {}", tree.display()))?;
    fs::set_permissions(tree, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the mode of {}", tree.display()))?;
    let mut unpacker =
        tar::Archive::new(open_archive(archive).with_context(|| format!("reading {}", archive.display()))?);
    // Modes are kept without the setuid, setgid and sticky bits; files belong to the agent's user.
    unpacker.set_preserve_permissions(false);
    unpacker.set_preserve_ownerships(false);
    unpacker.set_unpack_xattrs(false);
    unpacker.unpack(tree).with_context(|| format!("unpacking the tarball from {url}"))?;
    Ok(single_top_dir(tree).with_context(|| format!("listing {}", tree.display()))?)
}

/// The archive's reader: gzip by its magic bytes, else plain tar.
fn open_archive(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut file = fs::File::open(path)?;
    let mut magic = Vec::with_capacity(2);
    (&mut file).take(2).read_to_end(&mut magic)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(if magic == [0x1f, 0x8b] {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))))
    } else {
        Box::new(BufReader::new(file))
    })
}

fn list_entries(archive: &Path) -> io::Result<Vec<Listed>> {
    let mut reader = tar::Archive::new(open_archive(archive)?);
    let mut listed = Vec::new();
    for entry in reader.entries()? {
        let entry = entry?;
        listed.push(Listed {
            path: bytes_path(&entry.path_bytes()),
            kind: entry.header().entry_type(),
            link: entry.link_name_bytes().map(|b| bytes_path(&b)),
        });
    }
    Ok(listed)
}

fn bytes_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// Refuses the archive unless every entry lands inside the destination: no absolute path, no `..`,
/// no device or fifo, no entry below one of the archive's symbolic links, every symbolic link resolving
/// inside the root (following the archive's other links, as the kernel would), every hard link to a
/// path inside the root that is not itself a symbolic link.
fn check_entries(entries: &[Listed]) -> Result<(), FetchError> {
    let refuse = |e: &Listed, reason: String| FetchError::Unsafe { entry: e.path.display().to_string(), reason };
    let mut kept: Vec<(&Listed, PathBuf)> = Vec::new();
    let mut links: HashMap<PathBuf, &Path> = HashMap::new();
    let mut count: HashMap<PathBuf, usize> = HashMap::new();
    for e in entries {
        match e.kind {
            // Metadata for the entries that follow, never written.
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink => continue,
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link => {}
            EntryType::Char => return Err(refuse(e, "is a character device".into())),
            EntryType::Block => return Err(refuse(e, "is a block device".into())),
            EntryType::Fifo => return Err(refuse(e, "is a fifo (named pipe)".into())),
            other => {
                return Err(refuse(e, format!("has an unsupported entry type ({:?})", char::from(other.as_byte()))))
            }
        }
        let path = normal_path(&e.path).map_err(|reason| refuse(e, reason.into()))?;
        if path.as_os_str().is_empty() {
            if e.kind == EntryType::Directory {
                continue; // `./`, the root itself
            }
            return Err(refuse(e, "has an empty path".into()));
        }
        if matches!(e.kind, EntryType::Symlink | EntryType::Link) && e.link.is_none() {
            return Err(refuse(e, "is a link without a target".into()));
        }
        if e.kind == EntryType::Symlink {
            links.insert(path.clone(), e.link.as_deref().unwrap_or(Path::new("")));
        }
        *count.entry(path.clone()).or_default() += 1;
        kept.push((e, path));
    }
    for (e, path) in kept {
        if let Some(link) = path.ancestors().skip(1).find(|a| links.contains_key(*a)) {
            return Err(refuse(e, format!("is below the symbolic link {}", link.display())));
        }
        let target = e.link.as_deref().unwrap_or(Path::new(""));
        match e.kind {
            EntryType::Symlink => {
                if count[&path] > 1 {
                    return Err(refuse(e, "is a symbolic link, and another entry has the same path".into()));
                }
                if target.has_root() {
                    return Err(refuse(e, format!("is a symbolic link to the absolute path {}", target.display())));
                }
                let dir = path.parent().unwrap_or(Path::new(""));
                if !resolves_inside(&links, dir, target) {
                    return Err(refuse(
                        e,
                        format!("is a symbolic link to {}, which leads outside the archive", target.display()),
                    ));
                }
            }
            EntryType::Link => {
                if target.has_root() {
                    return Err(refuse(e, format!("is a hard link to the absolute path {}", target.display())));
                }
                check_hard_link(&links, target).map_err(|reason| refuse(e, reason))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The path's normal components: `./` dropped, an absolute path or `..` refused.
fn normal_path(path: &Path) -> Result<PathBuf, &'static str> {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => return Err("has an absolute path"),
            Component::ParentDir => return Err("has a `..` component"),
            Component::CurDir => {}
            Component::Normal(name) => normal.push(name),
        }
    }
    Ok(normal)
}

/// A hard link's target is a path from the archive's root; link(2) follows symbolic links on the
/// way but not the last one, which would make the new name a symbolic link resolved from elsewhere.
fn check_hard_link(links: &HashMap<PathBuf, &Path>, target: &Path) -> Result<(), String> {
    let outside = || format!("is a hard link to {}, which leads outside the archive", target.display());
    let mut current = PathBuf::new();
    let mut components = target.components().peekable();
    while let Some(component) = components.next() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !current.pop() {
                    return Err(outside());
                }
            }
            Component::Normal(name) => {
                current.push(name);
                if links.contains_key(&current) {
                    let how = if components.peek().is_some() { "through" } else { "to" };
                    return Err(format!("is a hard link {how} the symbolic link {}", current.display()));
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    Ok(())
}

/// Whether `target`, read from the directory `dir` (both relative to the root), stays inside the root
/// when resolved as the kernel would, following the archive's symbolic links. A chain too long to
/// follow stays inside: the kernel refuses it (ELOOP) rather than go anywhere.
fn resolves_inside(links: &HashMap<PathBuf, &Path>, dir: &Path, target: &Path) -> bool {
    let mut current = dir.to_path_buf();
    let mut pending: Vec<Component> = target.components().rev().collect();
    let mut hops = 0;
    while let Some(component) = pending.pop() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !current.pop() {
                    return false;
                }
            }
            Component::Normal(name) => {
                current.push(name);
                if let Some(next) = links.get(&current) {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return true;
                    }
                    current.pop();
                    pending.extend(next.components().rev());
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// GitHub-style archives hold one top-level directory (`repo-<sha>/`): its contents are the materials.
fn single_top_dir(tree: &Path) -> io::Result<PathBuf> {
    let entries = fs::read_dir(tree)?.collect::<io::Result<Vec<_>>>()?;
    match entries.as_slice() {
        [only] if only.file_type()?.is_dir() => Ok(only.path()),
        _ => Ok(tree.to_path_buf()),
    }
}

// ---------------------------------------------------------------------------
// Git repositories

/// The `git` command line, for one repository URL.
struct Git<'a> {
    program: &'a str,
    /// The URL as given, credentials included: only ever an argument of git.
    raw_url: &'a str,
    /// The URL for messages and logs.
    url: &'a str,
}

enum GitFailure {
    Timeout,
    Fatal(FetchError),
}

async fn fetch_git(
    git: &Git<'_>,
    reference: &str,
    staging: &Staging,
    dest: &Path,
    deadline: Instant,
) -> Result<String, FetchError> {
    let url = git.url;
    if git.raw_url.is_empty() {
        return Err(anyhow!("no repository URL given").into());
    }
    if reference.is_empty() {
        return Err(anyhow!("no branch, tag or commit given for {url}").into());
    }
    if reference.starts_with('-') || reference.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(anyhow!("`{reference}` is not a branch, tag or commit name (for {url})").into());
    }
    let repo = staging.dir.join("repo");
    with_retry(deadline, "cloning the repository", url, || git.clone_into(&repo)).await?;
    let (commit, branch) = match git.resolve(&repo, reference, deadline).await? {
        Some(found) => found,
        None => return Err(FetchError::UnknownRef { url: url.to_string(), reference: reference.to_string() }),
    };
    let checkout: Vec<String> = match &branch {
        // A branch stays a branch (tracking its remote one) so that participants can pull.
        Some(name) => {
            vec!["checkout".into(), "--quiet".into(), "-B".into(), name.clone(), format!("refs/remotes/origin/{name}")]
        }
        None => vec!["checkout".into(), "--quiet".into(), "--detach".into(), commit.clone()],
    };
    git.check(&repo, &checkout, LOCAL_GIT_TIMEOUT).await?;
    let head = git.check(&repo, &["rev-parse".into(), "HEAD".into()], LOCAL_GIT_TIMEOUT).await?;
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    if head != commit {
        return Err(anyhow!("after checking out {commit} from {url}, HEAD is {head}").into());
    }
    publish(&repo, dest)?;
    Ok(commit)
}

impl Git<'_> {
    /// Runs git; `Ok` whatever its exit status, which the caller judges.
    async fn run(&self, cwd: Option<&Path>, args: &[&OsStr], timeout: Duration) -> Result<Output, GitFailure> {
        let mut command = tokio::process::Command::new(self.program);
        for setting in GIT_CONFIG {
            command.arg("-c").arg(setting);
        }
        command.args(args);
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        for name in GIT_ENV_REMOVED {
            command.env_remove(name);
        }
        command
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("LC_ALL", "C");
        if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
            command.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let child = command.spawn().map_err(|e| {
            GitFailure::Fatal(if e.kind() == io::ErrorKind::NotFound {
                anyhow!(
                    "the `git` command was not found; install git (`apt-get install git`) to fetch the workspace from {}",
                    self.url
                )
                .into()
            } else {
                anyhow!(e).context("starting `git`").into()
            })
        })?;
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(e)) => Err(GitFailure::Fatal(anyhow!(e).context("waiting for `git`").into())),
            Err(_) => Err(GitFailure::Timeout),
        }
    }

    /// Runs git in the clone; its exit status must be 0.
    async fn check(&self, repo: &Path, args: &[String], timeout: Duration) -> Result<Output, FetchError> {
        let shown = format!("git {}", args.join(" "));
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        match self.run(Some(repo), &args, timeout).await {
            Ok(output) if output.status.success() => Ok(output),
            Ok(output) => Err(anyhow!("{}", self.failure(&shown, &output)).into()),
            Err(GitFailure::Timeout) => Err(anyhow!("`{shown}` did not finish within {}", seconds(timeout)).into()),
            Err(GitFailure::Fatal(e)) => Err(e),
        }
    }

    /// `git clone --no-checkout` into `repo`, replacing what an earlier attempt left.
    async fn clone_into(&self, repo: &Path) -> Result<(), Attempt> {
        remove_tree(repo);
        let shown = format!("git clone {}", self.url);
        let args = ["clone", "--no-checkout", "--quiet", "--", self.raw_url].map(OsStr::new);
        let args = [&args[..], &[repo.as_os_str()]].concat();
        match self.run(None, &args, CLONE_TIMEOUT).await {
            Ok(output) if output.status.success() => Ok(()),
            Ok(output) => Err(Attempt {
                transient: is_transient_git(&String::from_utf8_lossy(&output.stderr)),
                error: anyhow!("{}", self.failure(&shown, &output)).into(),
            }),
            Err(GitFailure::Timeout) => {
                Err(Attempt::transient(anyhow!("`{shown}` did not finish within {}", seconds(CLONE_TIMEOUT))))
            }
            Err(GitFailure::Fatal(e)) => Err(Attempt::permanent(e)),
        }
    }

    /// The commit `reference` names (a tag, then a branch, then anything `git rev-parse` takes, as git
    /// itself ranks them), and the branch when it is one; `None` when the repository has no such thing.
    async fn resolve(
        &self,
        repo: &Path,
        reference: &str,
        deadline: Instant,
    ) -> Result<Option<(String, Option<String>)>, FetchError> {
        let candidates =
            [(format!("refs/tags/{reference}"), false), (format!("refs/remotes/origin/{reference}"), true)];
        for (name, is_branch) in candidates {
            if let Some(commit) = self.commit_of(repo, &name).await? {
                return Ok(Some((commit, is_branch.then(|| reference.to_string()))));
            }
        }
        if let Some(commit) = self.commit_of(repo, reference).await? {
            return Ok(Some((commit, None)));
        }
        // A full commit id on no branch or tag: servers such as GitHub's hand out any commit they hold.
        if is_full_commit_id(reference) && self.fetch_commit(repo, reference, deadline).await? {
            return Ok(self.commit_of(repo, reference).await?.map(|c| (c, None)));
        }
        Ok(None)
    }

    async fn commit_of(&self, repo: &Path, name: &str) -> Result<Option<String>, FetchError> {
        let spec = format!("{name}^{{commit}}");
        let args = ["rev-parse", "--verify", "--quiet", &spec].map(OsStr::new);
        match self.run(Some(repo), &args, LOCAL_GIT_TIMEOUT).await {
            Ok(output) if output.status.success() => {
                Ok(Some(String::from_utf8_lossy(&output.stdout).trim().to_string()))
            }
            // --verify --quiet: 1 for "no such object", and for an ambiguous abbreviation.
            Ok(output) if output.status.code() == Some(1) => Ok(None),
            Ok(output) => Err(anyhow!("{}", self.failure(&format!("git rev-parse --verify {spec}"), &output)).into()),
            Err(GitFailure::Timeout) => {
                Err(anyhow!("`git rev-parse` did not finish within {}", seconds(LOCAL_GIT_TIMEOUT)).into())
            }
            Err(GitFailure::Fatal(e)) => Err(e),
        }
    }

    /// Asks the server for one commit; `false` when it will not hand it out.
    async fn fetch_commit(&self, repo: &Path, commit: &str, deadline: Instant) -> Result<bool, FetchError> {
        let args = &["fetch", "--quiet", "origin", commit].map(OsStr::new);
        with_retry(deadline, "fetching the commit", self.url, || async move {
            let args = &args[..];
            match self.run(Some(repo), args, CLONE_TIMEOUT).await {
                Ok(output) if output.status.success() => Ok(true),
                Ok(output) if is_transient_git(&String::from_utf8_lossy(&output.stderr)) => Err(Attempt::transient(
                    anyhow!("{}", self.failure(&format!("git fetch {} {commit}", self.url), &output)),
                )),
                Ok(_) => Ok(false),
                Err(GitFailure::Timeout) => {
                    Err(Attempt::transient(anyhow!("`git fetch` did not finish within {}", seconds(CLONE_TIMEOUT))))
                }
                Err(GitFailure::Fatal(e)) => Err(Attempt::permanent(e)),
            }
        })
        .await
    }

    /// "`git clone URL` failed (exit status: 128): fatal: ..." with credentials removed.
    fn failure(&self, shown: &str, output: &Output) -> String {
        let mut stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if self.raw_url != self.url {
            stderr = stderr.replace(self.raw_url, self.url);
        }
        let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(5)..].join("; ");
        let tail = if tail.is_empty() { "no message".to_string() } else { redact_text(&tail) };
        format!("`{shown}` failed ({}): {tail}", output.status)
    }
}

fn is_full_commit_id(reference: &str) -> bool {
    matches!(reference.len(), 40 | 64) && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether git's message (in the C locale) looks like the network, worth another try.
fn is_transient_git(stderr: &str) -> bool {
    const PATTERNS: &[&str] = &[
        "could not resolve host",
        "couldn't resolve host",
        "temporary failure in name resolution",
        "failed to connect",
        "couldn't connect",
        "could not connect",
        "connection",
        "timed out",
        "operation too slow",
        "network is unreachable",
        "early eof",
        "the remote end hung up",
        "rpc failed",
        "returned error: 5",
        "returned error: 408",
        "returned error: 429",
        "gnutls",
        "ssl_connect",
        "ssl_read",
    ];
    let stderr = stderr.to_ascii_lowercase();
    PATTERNS.iter().any(|p| stderr.contains(p))
}

// ---------------------------------------------------------------------------
// Credentials in URLs

/// The URL with the credentials of its authority (`user:token@`) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    redact(url, |c| matches!(c, '/' | '?' | '#' | '\\'))
}

/// Every URL in `text` with its credentials replaced by `***`; a URL ends at white space or a quote.
fn redact_text(text: &str) -> String {
    redact(text, |c| {
        matches!(c, '/' | '?' | '#' | '\\' | '\'' | '"' | '`' | '<' | '>' | '(' | ')') || c.is_whitespace()
    })
}

fn redact(text: &str, ends_authority: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, after) = rest.split_at(i + 3);
        out.push_str(head);
        let end = after.find(&ends_authority).unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;
    use std::net::TcpListener;
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const BUDGET: Duration = Duration::from_secs(30);

    /// An HTTP/1.1 server on 127.0.0.1 answering one scripted response per request, in order
    /// (the last one again for any later request); `hits` counts the requests.
    struct Server {
        base: String,
        hits: Arc<AtomicUsize>,
    }

    fn serve(responses: Vec<(u16, Vec<u8>)>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let (status, body) = &responses[n.min(responses.len() - 1)];
                let reason = match status {
                    200 => "OK",
                    404 => "Not Found",
                    503 => "Service Unavailable",
                    _ => "Whatever",
                };
                let head = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
            }
        });
        Server { base, hits }
    }

    /// An archive entry, written with raw headers: tar's builder refuses some of these paths.
    enum Item {
        Dir(&'static str),
        File(&'static str, &'static [u8], u32),
        Symlink(&'static str, &'static str),
        HardLink(&'static str, &'static str),
        Special(&'static str, EntryType),
        /// The `pax_global_header` GitHub's archives begin with.
        GlobalPax,
    }

    fn tar_bytes(items: &[Item]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for item in items {
            let mut header = tar::Header::new_gnu();
            let (path, kind, data, mode, link): (&str, EntryType, &[u8], u32, Option<&str>) = match item {
                Item::Dir(p) => (p, EntryType::Directory, b"", 0o755, None),
                Item::File(p, data, mode) => (p, EntryType::Regular, data, *mode, None),
                Item::Symlink(p, to) => (p, EntryType::Symlink, b"", 0o777, Some(to)),
                Item::HardLink(p, to) => (p, EntryType::Link, b"", 0o644, Some(to)),
                Item::Special(p, kind) => (p, *kind, b"", 0o644, None),
                Item::GlobalPax => (
                    "pax_global_header",
                    EntryType::XGlobalHeader,
                    b"52 comment=0123456789abcdef0123456789abcdef01234567\n",
                    0o666,
                    None,
                ),
            };
            let name = &mut header.as_old_mut().name;
            name.fill(0);
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(data.len() as u64);
            header.set_mtime(1_700_000_000);
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// A temporary directory with `home/` in it: `home/work` is the destination.
    fn destination() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("home")).unwrap();
        let dest = tmp.path().join("home/work");
        (tmp, dest)
    }

    /// The names in a directory, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn message(e: FetchError) -> String {
        format!("{:#}", anyhow::Error::from(e))
    }

    #[tokio::test]
    async fn a_github_style_tarball_is_retried_verified_and_stripped_of_its_top_directory() {
        let archive = gzip(&tar_bytes(&[
            Item::GlobalPax,
            Item::Dir("repo-0123abc/"),
            Item::File("repo-0123abc/README.md", b"hello\n", 0o644),
            Item::Dir("repo-0123abc/bin/"),
            Item::File("repo-0123abc/bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755),
            Item::File("repo-0123abc/bin/setuid", b"x", 0o6755),
            Item::Symlink("repo-0123abc/docs", "README.md"),
            Item::Symlink("repo-0123abc/bin/readme", "../README.md"),
            Item::HardLink("repo-0123abc/copy.md", "repo-0123abc/README.md"),
        ]));
        let sha = sha256_hex(&archive);
        let server = serve(vec![(503, b"busy".to_vec()), (200, archive)]);
        let (tmp, dest) = destination();
        // The expected sha256 is compared without regard to case.
        let source = Source::Tarball { url: format!("{}/materials.tgz", server.base), sha256: sha.to_uppercase() };

        let identity = fetch(&source, &dest, BUDGET).await.unwrap();

        assert_eq!(identity, sha);
        assert_eq!(server.hits.load(Ordering::SeqCst), 2, "one 503, then the tarball");
        assert_eq!(names(&dest), ["README.md", "bin", "copy.md", "docs"]);
        assert_eq!(fs::read_to_string(dest.join("README.md")).unwrap(), "hello\n");
        assert_eq!(fs::read_to_string(dest.join("copy.md")).unwrap(), "hello\n");
        assert_eq!(fs::read_to_string(dest.join("bin/readme")).unwrap(), "hello\n");
        assert_eq!(fs::read_link(dest.join("docs")).unwrap(), Path::new("README.md"));
        assert_eq!(mode(&dest.join("README.md")), 0o644);
        assert_eq!(mode(&dest.join("bin/run.sh")), 0o755);
        assert_eq!(mode(&dest.join("bin/setuid")), 0o755, "setuid and setgid dropped");
        assert_eq!(names(&tmp.path().join("home")), ["work"], "no staging left beside the destination");
    }

    #[tokio::test]
    async fn archives_without_a_single_top_directory_are_kept_as_they_are() {
        let cases: &[(&str, bool, &[Item], &[&str])] = &[
            (
                "plain tar, two top entries",
                false,
                &[Item::File("a.txt", b"a", 0o644), Item::Dir("b/")],
                &["a.txt", "b"],
            ),
            ("gzip, one top file", true, &[Item::File("only.txt", b"o", 0o600)], &["only.txt"]),
            (
                "gzip, ./ prefixed",
                true,
                &[Item::Dir("./"), Item::File("./x/y.txt", b"y", 0o644), Item::File("./z", b"z", 0o644)],
                &["x", "z"],
            ),
        ];
        for (name, gzipped, items, expected) in cases {
            let tar = tar_bytes(items);
            let archive = if *gzipped { gzip(&tar) } else { tar };
            let sha = sha256_hex(&archive);
            let server = serve(vec![(200, archive)]);
            let (_tmp, dest) = destination();
            let source = Source::Tarball { url: format!("{}/m.tar", server.base), sha256: sha.clone() };
            assert_eq!(fetch(&source, &dest, BUDGET).await.unwrap(), sha, "{name}");
            assert_eq!(names(&dest), *expected, "{name}");
        }
    }

    #[tokio::test]
    async fn a_wrong_checksum_writes_nothing() {
        let archive = gzip(&tar_bytes(&[Item::File("a.txt", b"a", 0o644)]));
        let actual = sha256_hex(&archive);
        let server = serve(vec![(200, archive)]);
        let (tmp, dest) = destination();
        let expected = "0".repeat(64);
        let url = format!("{}/m.tgz", server.base);
        let source = Source::Tarball { url: url.clone(), sha256: expected.clone() };

        let err = fetch(&source, &dest, BUDGET).await.unwrap_err();

        assert!(matches!(err, FetchError::Checksum { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("the tarball at {url} has sha256 {actual}, not the expected {expected}; nothing was written")
        );
        assert!(!dest.exists());
        assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new());
        assert_eq!(server.hits.load(Ordering::SeqCst), 1, "a checksum mismatch is not retried");
    }

    #[tokio::test]
    async fn unsafe_archives_are_refused_before_anything_is_written() {
        let cases: &[(&str, &[Item], &str, &str)] = &[
            (
                "parent",
                &[Item::File("ok.txt", b"ok", 0o644), Item::File("../evil", b"x", 0o644)],
                "../evil",
                "has a `..` component",
            ),
            ("parent inside", &[Item::File("a/../../evil", b"x", 0o644)], "a/../../evil", "has a `..` component"),
            (
                "absolute",
                &[Item::File("ok.txt", b"ok", 0o644), Item::File("/etc/evil", b"x", 0o644)],
                "/etc/evil",
                "has an absolute path",
            ),
            (
                "symlink escaping",
                &[Item::Dir("top/"), Item::Symlink("top/link", "../../outside")],
                "top/link",
                "is a symbolic link to ../../outside, which leads outside the archive",
            ),
            (
                "symlink absolute",
                &[Item::Symlink("passwd", "/etc/passwd")],
                "passwd",
                "is a symbolic link to the absolute path /etc/passwd",
            ),
            (
                "symlinks composed",
                &[Item::Symlink("b", "."), Item::Symlink("a", "b/..")],
                "a",
                "is a symbolic link to b/.., which leads outside the archive",
            ),
            (
                "written through a symlink",
                &[Item::Dir("sub/"), Item::Symlink("s", "sub"), Item::File("s/f", b"x", 0o644)],
                "s/f",
                "is below the symbolic link s",
            ),
            (
                "symlink declared twice",
                &[Item::Symlink("d", "sub"), Item::Dir("d/")],
                "d",
                "is a symbolic link, and another entry has the same path",
            ),
            (
                "hard link escaping",
                &[Item::HardLink("x", "../x")],
                "x",
                "is a hard link to ../x, which leads outside the archive",
            ),
            (
                "hard link absolute",
                &[Item::HardLink("shadow", "/etc/shadow")],
                "shadow",
                "is a hard link to the absolute path /etc/shadow",
            ),
            (
                "hard link to a symlink",
                &[Item::Dir("deep/"), Item::Symlink("deep/s", "../x"), Item::HardLink("h", "deep/s")],
                "h",
                "is a hard link to the symbolic link deep/s",
            ),
            (
                "hard link through a symlink",
                &[Item::Symlink("d", "."), Item::HardLink("h", "d/f")],
                "h",
                "is a hard link through the symbolic link d",
            ),
            ("fifo", &[Item::Special("pipe", EntryType::Fifo)], "pipe", "is a fifo (named pipe)"),
            ("char device", &[Item::Special("tty", EntryType::Char)], "tty", "is a character device"),
            ("block device", &[Item::Special("sda", EntryType::Block)], "sda", "is a block device"),
        ];
        for (name, items, entry, reason) in cases {
            let archive = gzip(&tar_bytes(items));
            let server = serve(vec![(200, archive.clone())]);
            let (tmp, dest) = destination();
            let source = Source::Tarball { url: format!("{}/m.tgz", server.base), sha256: sha256_hex(&archive) };

            let err = fetch(&source, &dest, BUDGET).await.unwrap_err();

            match &err {
                FetchError::Unsafe { entry: e, reason: r } => {
                    assert_eq!((e.as_str(), r.as_str()), (*entry, *reason), "{name}")
                }
                other => panic!("{name}: {other:?}"),
            }
            assert_eq!(
                err.to_string(),
                format!("refusing the tarball: entry `{entry}` {reason}; nothing was written"),
                "{name}"
            );
            assert!(!dest.exists(), "{name}");
            assert_eq!(names(tmp.path()), ["home"], "{name}");
            assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new(), "{name}");
        }
    }

    #[test]
    fn symbolic_links_that_stay_inside_are_accepted() {
        let entries = |items: &[(&str, EntryType, Option<&str>)]| -> Vec<Listed> {
            items
                .iter()
                .map(|(p, kind, link)| Listed { path: p.into(), kind: *kind, link: link.map(PathBuf::from) })
                .collect()
        };
        let cases: &[&[(&str, EntryType, Option<&str>)]] = &[
            &[("a/b/up", EntryType::Symlink, Some("../../c"))],
            &[("self", EntryType::Symlink, Some("."))],
            &[("loop", EntryType::Symlink, Some("loop"))],
            &[("a", EntryType::Symlink, Some("b")), ("b", EntryType::Symlink, Some("a"))],
            &[("x/y", EntryType::Symlink, Some("./../x/./z")), ("h", EntryType::Link, Some("x/../x/z"))],
        ];
        for items in cases {
            assert!(check_entries(&entries(items)).is_ok(), "{:?}", items.iter().map(|i| i.0).collect::<Vec<_>>());
        }
    }

    #[tokio::test]
    async fn http_errors_other_than_transient_ones_fail_at_once() {
        let server = serve(vec![(404, b"<html>\n  no such\n  file\n</html>".to_vec())]);
        let (tmp, dest) = destination();
        let url = format!("{}/m.tgz", server.base);
        let source = Source::Tarball { url: url.clone(), sha256: "a".repeat(64) };

        let err = fetch(&source, &dest, BUDGET).await.unwrap_err();

        assert_eq!(
            message(err),
            format!("downloading {url}: the server answered 404 Not Found: <html> no such file </html>")
        );
        assert_eq!(server.hits.load(Ordering::SeqCst), 1);
        assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new());
    }

    #[tokio::test]
    async fn transient_errors_are_retried_within_the_budget_only() {
        let server = serve(vec![(503, Vec::new())]);
        let (tmp, dest) = destination();
        let url = format!("{}/m.tgz", server.base);
        let source = Source::Tarball { url: url.clone(), sha256: "a".repeat(64) };

        let err = fetch(&source, &dest, Duration::ZERO).await.unwrap_err();

        assert_eq!(message(err), format!("downloading {url}: the server answered 503 Service Unavailable"));
        assert_eq!(server.hits.load(Ordering::SeqCst), 1);
        assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new());

        // The first wait is 1 to 2 s (with jitter), the second 2 to 4 s: only one retry fits in 2.5 s.
        let err = message(fetch(&source, &dest, Duration::from_millis(2500)).await.unwrap_err());
        assert_eq!(server.hits.load(Ordering::SeqCst), 3);
        assert!(err.starts_with("downloading the tarball: gave up after 2 attempts in "), "{err}");
        assert!(
            err.ends_with(&format!(
                " (retry budget spent): downloading {url}: the server answered 503 Service Unavailable"
            )),
            "{err}"
        );
        assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new());
    }

    #[tokio::test]
    async fn bad_arguments_and_an_existing_destination_are_refused() {
        let (tmp, dest) = destination();
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("notes.txt"), "mine").unwrap();
        let tarball = |url: &str, sha: &str| Source::Tarball { url: url.into(), sha256: sha.into() };
        let git = |url: &str, reference: &str| Source::Git { url: url.into(), reference: reference.into() };
        let fresh = tmp.path().join("home/fresh");
        let cases = [
            (
                tarball("http://127.0.0.1:9/m.tgz", &"a".repeat(64)),
                dest.clone(),
                format!(
                    "{} already exists; the workspace is fetched once and never overwritten (remove it to fetch again)",
                    dest.display()
                ),
            ),
            (
                tarball("http://127.0.0.1:9/m.tgz", "abc"),
                fresh.clone(),
                "the sha256 of http://127.0.0.1:9/m.tgz must be 64 hexadecimal digits, not \"abc\"".into(),
            ),
            (
                tarball("ftp://u:pw@127.0.0.1/m.tgz", &"a".repeat(64)),
                fresh.clone(),
                "cannot download ftp://***@127.0.0.1/m.tgz: a tarball is fetched over http:// or https:// only".into(),
            ),
            (git("/srv/repo", ""), fresh.clone(), "no branch, tag or commit given for /srv/repo".into()),
            (git("", "main"), fresh.clone(), "no repository URL given".into()),
            (
                git("/srv/repo", "--upload-pack=evil"),
                fresh.clone(),
                "`--upload-pack=evil` is not a branch, tag or commit name (for /srv/repo)".into(),
            ),
            (
                tarball("http://127.0.0.1:9/m.tgz", &"a".repeat(64)),
                tmp.path().join("missing/work"),
                format!(
                    "the directory {} (where {} goes) does not exist; create it first",
                    tmp.path().join("missing").display(),
                    tmp.path().join("missing/work").display()
                ),
            ),
        ];
        for (source, dest, expected) in cases {
            let err = fetch(&source, &dest, BUDGET).await.unwrap_err();
            assert!(matches!(err, FetchError::Other(_)), "{err:?}");
            assert_eq!(message(err), expected);
        }
        assert_eq!(fs::read_to_string(dest.join("notes.txt")).unwrap(), "mine", "left as it was");
        assert_eq!(names(&tmp.path().join("home")), ["work"]);
    }

    #[test]
    fn credentials_are_redacted() {
        let cases = [
            ("https://user:token@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
            ("https://ghp_secret@github.com/org/repo", "https://***@github.com/org/repo"),
            ("http://a:b@c@host:8080/x?y=z", "http://***@host:8080/x?y=z"),
            ("https://user:token@host", "https://***@host"),
            ("https://github.com/org/repo", "https://github.com/org/repo"),
            ("https://host/people/someone@example.com", "https://host/people/someone@example.com"),
            ("file:///srv/repo", "file:///srv/repo"),
            ("/srv/materials", "/srv/materials"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "{url}");
        }
        assert_eq!(
            redact_text("fatal: unable to access 'https://u:p@host/r.git/': Could not resolve host: host"),
            "fatal: unable to access 'https://***@host/r.git/': Could not resolve host: host"
        );
        assert_eq!(redact_text("see http://x:y@h and https://k@h2/p"), "see http://***@h and https://***@h2/p");
    }

    #[tokio::test]
    async fn credentials_never_reach_a_message() {
        let archive = tar_bytes(&[Item::File("a", b"a", 0o644)]);
        let server = serve(vec![(200, archive), (404, b"gone".to_vec())]);
        let (tmp, dest) = destination();
        let port = server.base.rsplit(':').next().unwrap();
        let secret = "s3cret-t0ken";

        let tarball =
            Source::Tarball { url: format!("http://alice:{secret}@127.0.0.1:{port}/m.tar"), sha256: "0".repeat(64) };
        assert_eq!(tarball.display_url(), format!("http://***@127.0.0.1:{port}/m.tar"));
        let checksum = fetch(&tarball, &dest, BUDGET).await.unwrap_err().to_string();
        let not_found = message(fetch(&tarball, &dest, BUDGET).await.unwrap_err());
        // Nothing listens on port 9 (discard): connection refused, and with no budget, no retry.
        let refused =
            Source::Tarball { url: format!("http://alice:{secret}@127.0.0.1:9/m.tar"), sha256: "0".repeat(64) };
        let refused = message(fetch(&refused, &dest, Duration::ZERO).await.unwrap_err());
        let git = Source::Git { url: format!("http://alice:{secret}@127.0.0.1:9/r.git"), reference: "main".into() };
        let cloned = message(fetch(&git, &dest, Duration::ZERO).await.unwrap_err());

        for text in [&checksum, &not_found, &refused, &cloned] {
            assert!(!text.contains(secret), "{text}");
            assert!(text.contains("http://***@127.0.0.1:"), "{text}");
        }
        assert!(checksum.starts_with("the tarball at http://***@127.0.0.1:"), "{checksum}");
        assert!(refused.starts_with("downloading http://***@127.0.0.1:9/m.tar: error sending request"), "{refused}");
        assert!(cloned.starts_with("`git clone http://***@127.0.0.1:9/r.git` failed (exit status: 128): "), "{cloned}");
        assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new());
    }

    /// git for building the test repository, ignoring the machine's configuration.
    fn git(dir: &Path, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgSign=false"])
            .args(["-c", "tag.gpgSign=false"])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    /// A repository with `main` (one, two), a tag `v1` on one, and `workshop` (one, then b.txt).
    struct Repo {
        _tmp: tempfile::TempDir,
        path: PathBuf,
        one: String,
        two: String,
        workshop: String,
    }

    fn repository() -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("src");
        fs::create_dir(&path).unwrap();
        git(&path, &["init", "--quiet", "--initial-branch=main"]);
        fs::write(path.join("a.txt"), "one\n").unwrap();
        git(&path, &["add", "a.txt"]);
        git(&path, &["commit", "--quiet", "-m", "one"]);
        let one = git(&path, &["rev-parse", "HEAD"]);
        git(&path, &["tag", "-a", "v1", "-m", "version 1"]);
        fs::write(path.join("a.txt"), "two\n").unwrap();
        git(&path, &["commit", "--quiet", "-am", "two"]);
        let two = git(&path, &["rev-parse", "HEAD"]);
        git(&path, &["checkout", "--quiet", "-b", "workshop", &one]);
        fs::write(path.join("b.txt"), "workshop\n").unwrap();
        git(&path, &["add", "b.txt"]);
        git(&path, &["commit", "--quiet", "-m", "workshop"]);
        let workshop = git(&path, &["rev-parse", "HEAD"]);
        git(&path, &["checkout", "--quiet", "main"]);
        Repo { _tmp: tmp, path, one, two, workshop }
    }

    #[tokio::test]
    async fn git_checks_out_branches_tags_and_commits() {
        let repo = repository();
        let file_url = format!("file://{}", repo.path.display());
        let path_url = repo.path.display().to_string();
        // (reference, url, commit, a.txt, b.txt present, the branch checked out)
        let cases = [
            ("workshop", &file_url, &repo.workshop, "one\n", true, Some("workshop")),
            ("main", &path_url, &repo.two, "two\n", false, Some("main")),
            ("v1", &file_url, &repo.one, "one\n", false, None),
            (repo.two.as_str(), &file_url, &repo.two, "two\n", false, None),
            (&repo.two[..7], &path_url, &repo.two, "two\n", false, None),
            (&repo.workshop[..10], &file_url, &repo.workshop, "one\n", true, None),
        ];
        for (reference, url, commit, a, has_b, branch) in cases {
            let (tmp, dest) = destination();
            let source = Source::Git { url: url.clone(), reference: reference.to_string() };

            let identity = fetch(&source, &dest, BUDGET).await.unwrap();

            assert_eq!(&identity, commit, "{reference}");
            assert_eq!(fs::read_to_string(dest.join("a.txt")).unwrap(), a, "{reference}");
            assert_eq!(dest.join("b.txt").exists(), has_b, "{reference}");
            assert!(dest.join(".git").is_dir(), "{reference}: .git kept");
            assert_eq!(git(&dest, &["rev-parse", "HEAD"]), *commit, "{reference}");
            assert_eq!(git(&dest, &["status", "--porcelain"]), "", "{reference}: a clean checkout");
            let head = git(&dest, &["rev-parse", "--symbolic-full-name", "HEAD"]);
            assert_eq!(head, branch.map_or("HEAD".to_string(), |b| format!("refs/heads/{b}")), "{reference}");
            assert_eq!(names(&tmp.path().join("home")), ["work"], "{reference}");
        }
    }

    #[tokio::test]
    async fn an_unknown_git_reference_leaves_nothing() {
        let repo = repository();
        let url = format!("file://{}", repo.path.display());
        for reference in ["no-such-branch", "0123456789abcdef0123456789abcdef01234567", "v2"] {
            let (tmp, dest) = destination();
            let source = Source::Git { url: url.clone(), reference: reference.into() };

            let err = fetch(&source, &dest, BUDGET).await.unwrap_err();

            assert!(matches!(err, FetchError::UnknownRef { .. }), "{err:?}");
            assert_eq!(err.to_string(), format!("the repository {url} has no branch, tag or commit `{reference}`"));
            assert!(!dest.exists());
            assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new());
        }
    }

    #[tokio::test]
    async fn a_tarball_made_by_git_archive_is_unpacked() {
        let repo = repository();
        let output = Command::new("git")
            .args(["archive", "--format=tar.gz", "--prefix=src-1234567/", "workshop"])
            .current_dir(&repo.path)
            .output()
            .unwrap();
        assert!(output.status.success());
        let sha = sha256_hex(&output.stdout);
        let server = serve(vec![(200, output.stdout)]);
        let (tmp, dest) = destination();
        let source = Source::Tarball { url: format!("{}/workshop.tar.gz", server.base), sha256: sha.clone() };

        assert_eq!(fetch(&source, &dest, BUDGET).await.unwrap(), sha);
        assert_eq!(names(&dest), ["a.txt", "b.txt"]);
        assert_eq!(fs::read_to_string(dest.join("b.txt")).unwrap(), "workshop\n");
        assert_eq!(names(&tmp.path().join("home")), ["work"]);
    }

    #[test]
    fn a_destination_that_appears_meanwhile_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, dest) = (tmp.path().join("staged"), tmp.path().join("work"));
        fs::create_dir(&root).unwrap();
        fs::create_dir(&dest).unwrap();

        let err = message(publish(&root, &dest).unwrap_err());

        assert_eq!(
            err,
            format!("{} appeared while the workspace was being fetched; it was left as it is", dest.display())
        );
        assert!(root.is_dir());
        assert_eq!(names(&dest), Vec::<String>::new());
    }

    #[tokio::test]
    async fn git_failures_are_explained() {
        let (tmp, dest) = destination();
        let missing = tmp.path().join("no-repo");
        let source = Source::Git { url: missing.display().to_string(), reference: "main".into() };

        let err = message(fetch(&source, &dest, BUDGET).await.unwrap_err());
        assert_eq!(
            err,
            format!(
                "`git clone {0}` failed (exit status: 128): fatal: repository '{0}' does not exist",
                missing.display()
            )
        );

        let err = message(fetch_with("/nonexistent/bin/git", &source, &dest, BUDGET).await.unwrap_err());
        assert_eq!(
            err,
            format!(
                "the `git` command was not found; install git (`apt-get install git`) to fetch the workspace from {}",
                missing.display()
            )
        );
        assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new());
    }

    #[test]
    fn transient_git_failures() {
        let cases = [
            ("fatal: unable to access 'https://h/r/': Could not resolve host: h", true),
            ("fatal: unable to access 'https://h/r/': Failed to connect to h port 443: Connection refused", true),
            ("error: RPC failed; curl 56 GnuTLS recv error (-9)", true),
            ("fatal: unable to access 'https://h/r/': The requested URL returned error: 503", true),
            ("remote: Repository not found.\nfatal: repository 'https://h/r/' not found", false),
            ("fatal: Authentication failed for 'https://h/r/'", false),
            ("fatal: could not read Username for 'https://h': terminal prompts disabled", false),
        ];
        for (stderr, transient) in cases {
            assert_eq!(is_transient_git(stderr), transient, "{stderr}");
        }
    }

    #[test]
    fn fetching_is_send() {
        fn assert_send<T: Send>(_: T) {}
        let source = Source::Git { url: "/srv/repo".into(), reference: "main".into() };
        assert_send(fetch(&source, Path::new("/nonexistent/work"), BUDGET));
    }
}
