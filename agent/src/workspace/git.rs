//! Git sources: the `git` command line run without the user's configuration,
//! the clone (retried when the failure is transient), resolving a branch, tag
//! or commit, and checking it out, the clone's size watched all along and git
//! stopped past `[workspace] max_size` (git has no such bound of its own for a
//! fetch: docs/configuration.md).

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::failure::{with_retry, Attempt, FetchError};
use super::staging::{move_into_place, remove_tree, Staging};
use crate::transfer::seconds;
use jupyter_proto::redact::redact_url_credentials as redact_text;

const CLONE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// `git rev-parse` and `git checkout` on the clone.
const LOCAL_GIT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How often the clone's size is measured while git writes it.
const SIZE_CHECK_INTERVAL: Duration = Duration::from_millis(250);
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

/// The `git` command line, for one repository URL.
pub(super) struct Git<'a> {
    pub(super) program: &'a str,
    /// The URL git is given, without credentials (they are in `auth_header`).
    pub(super) raw_url: &'a str,
    /// The URL for messages and logs.
    pub(super) url: &'a str,
    /// `Authorization: Basic ...` from the configured URL's user and
    /// password: handed to git through its environment, scoped to the URL.
    pub(super) auth_header: Option<&'a str>,
    /// The most the clone may take, `.git` included (bytes).
    pub(super) max_size: u64,
}

/// Moves an http(s) URL's user and password out of it: git gets (and keeps
/// in the clone's `.git/config`) the URL without them, and the credentials
/// as an `Authorization` header in its environment, which only root can
/// read (docs/threat-model.md#a-local-user-on-the-instance-not-root). Other
/// URLs are returned as they are.
pub(super) fn split_credentials(raw: &str) -> (String, Option<String>) {
    use base64::Engine;
    use percent_encoding::percent_decode_str;
    let Ok(mut url) = reqwest::Url::parse(raw) else { return (raw.to_string(), None) };
    if !matches!(url.scheme(), "http" | "https") || (url.username().is_empty() && url.password().is_none()) {
        return (raw.to_string(), None);
    }
    let user = percent_decode_str(url.username()).decode_utf8_lossy().into_owned();
    let password = url.password().map(|p| percent_decode_str(p).decode_utf8_lossy().into_owned()).unwrap_or_default();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    (url.to_string(), Some(format!("Authorization: Basic {encoded}")))
}

enum GitFailure {
    Timeout,
    /// The clone grew past `max_size` (its size then, in bytes): git was stopped.
    TooLarge(u64),
    Fatal(FetchError),
}

impl Git<'_> {
    /// The refusal of a clone past `max_size`, not retried: the same
    /// repository would be as large again.
    fn too_large(&self, shown: &str, size: u64) -> FetchError {
        anyhow!(
            "`{shown}` was stopped: the clone of {} took {size} bytes, more than [workspace] max_size ({} bytes); nothing was written (raise max_size if the materials really are that large)",
            self.url,
            self.max_size
        )
        .into()
    }
}

/// The bytes of the files below `dir` (links not followed), as the clone
/// takes them; what cannot be read counts nothing.
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else { continue };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => pending.push(entry.path()),
                Ok(m) => total = total.saturating_add(m.len()),
                Err(_) => {}
            }
        }
    }
    total
}

pub(super) async fn fetch_git(
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
    with_retry(deadline, "cloning the repository", || git.clone_into(&repo)).await?;
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
    move_into_place(&repo, dest)?;
    Ok(commit)
}

impl Git<'_> {
    /// Runs git; `Ok` whatever its exit status, which the caller judges.
    /// With `watched`, the clone git writes: git is killed when it grows
    /// past `max_size`, and its size is checked once more when git ends
    /// (which may come between two measures).
    async fn run(
        &self,
        cwd: Option<&Path>,
        args: &[&OsStr],
        timeout: Duration,
        watched: Option<&Path>,
    ) -> Result<Output, GitFailure> {
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
        if let Some(header) = self.auth_header {
            // Git's configuration from the environment (git-config(1),
            // GIT_CONFIG_COUNT), never in its arguments; only for this URL.
            command
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", format!("http.{}.extraHeader", self.raw_url))
                .env("GIT_CONFIG_VALUE_0", header);
        }
        if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
            command.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        // A group of its own, so that git's helpers (index-pack, upload-pack,
        // remote-http) are stopped with it.
        command.process_group(0);
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
        let max_size = self.max_size;
        let measure = |dir: &Path| {
            let dir = dir.to_path_buf();
            async move { tokio::task::spawn_blocking(move || tree_size(&dir)).await.unwrap_or(0) }
        };
        let group = child.id().and_then(|id| i32::try_from(id).ok()).map(nix::unistd::Pid::from_raw);
        let output = child.wait_with_output();
        tokio::pin!(output);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(SIZE_CHECK_INTERVAL);
        let stopped = loop {
            tokio::select! {
                done = &mut output => break Ok(done),
                () = &mut deadline => break Err(GitFailure::Timeout),
                _ = tick.tick(), if watched.is_some() => {
                    let size = measure(watched.expect("watched")).await;
                    if size > max_size {
                        break Err(GitFailure::TooLarge(size));
                    }
                }
            }
        };
        let output = match stopped {
            Ok(done) => done,
            Err(why) => {
                // The whole group, then its end: git's output closes once
                // every process that could write into the clone is gone.
                if let Some(group) = group {
                    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                }
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut output).await;
                return Err(why);
            }
        };
        let output = output.map_err(|e| GitFailure::Fatal(anyhow!(e).context("waiting for `git`").into()))?;
        if let Some(dir) = watched {
            let size = measure(dir).await;
            if size > max_size {
                return Err(GitFailure::TooLarge(size));
            }
        }
        Ok(output)
    }

    /// Runs git in the clone; its exit status must be 0.
    async fn check(&self, repo: &Path, args: &[String], timeout: Duration) -> Result<Output, FetchError> {
        let shown = format!("git {}", args.join(" "));
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        match self.run(Some(repo), &args, timeout, Some(repo)).await {
            Ok(output) if output.status.success() => Ok(output),
            Ok(output) => Err(anyhow!("{}", self.failure(&shown, &output)).into()),
            Err(GitFailure::Timeout) => Err(anyhow!("`{shown}` did not finish within {}", seconds(timeout)).into()),
            Err(GitFailure::TooLarge(size)) => Err(self.too_large(&shown, size)),
            Err(GitFailure::Fatal(e)) => Err(e),
        }
    }

    /// `git clone --no-checkout` into `repo`, replacing what an earlier attempt left.
    async fn clone_into(&self, repo: &Path) -> Result<(), Attempt> {
        remove_tree(repo);
        let shown = format!("git clone {}", self.url);
        let args = ["clone", "--no-checkout", "--quiet", "--", self.raw_url].map(OsStr::new);
        let args = [&args[..], &[repo.as_os_str()]].concat();
        self.network_attempt(&shown, self.run(None, &args, CLONE_TIMEOUT, Some(repo)).await).map(drop)
    }

    /// One try of a git command that talks to the server (`shown`, run
    /// with [`CLONE_TIMEOUT`]), as [`with_retry`] takes it: its output when
    /// it succeeded; a failure the network may mend (git's words for it,
    /// or the time limit) is worth another try; one that is too large or
    /// the server's refusal is not.
    fn network_attempt(&self, shown: &str, ran: Result<Output, GitFailure>) -> Result<Output, Attempt> {
        match ran {
            Ok(output) if output.status.success() => Ok(output),
            Ok(output) => Err(Attempt {
                transient: is_transient_git(&String::from_utf8_lossy(&output.stderr)),
                error: anyhow!("{}", self.failure(shown, &output)).into(),
            }),
            Err(GitFailure::Timeout) => {
                Err(Attempt::transient(anyhow!("`{shown}` did not finish within {}", seconds(CLONE_TIMEOUT))))
            }
            Err(GitFailure::TooLarge(size)) => Err(Attempt::permanent(self.too_large(shown, size))),
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
        match self.run(Some(repo), &args, LOCAL_GIT_TIMEOUT, None).await {
            Ok(output) if output.status.success() => {
                Ok(Some(String::from_utf8_lossy(&output.stdout).trim().to_string()))
            }
            // --verify --quiet: 1 for "no such object", and for an ambiguous abbreviation.
            Ok(output) if output.status.code() == Some(1) => Ok(None),
            Ok(output) => Err(anyhow!("{}", self.failure(&format!("git rev-parse --verify {spec}"), &output)).into()),
            Err(GitFailure::Timeout) => {
                Err(anyhow!("`git rev-parse` did not finish within {}", seconds(LOCAL_GIT_TIMEOUT)).into())
            }
            Err(GitFailure::TooLarge(size)) => Err(self.too_large("git rev-parse", size)),
            Err(GitFailure::Fatal(e)) => Err(e),
        }
    }

    /// Asks the server for one commit; `false` when it will not hand it out.
    async fn fetch_commit(&self, repo: &Path, commit: &str, deadline: Instant) -> Result<bool, FetchError> {
        let args = &["fetch", "--quiet", "origin", commit].map(OsStr::new);
        with_retry(deadline, "fetching the commit", || async move {
            let shown = format!("git fetch {} {commit}", self.url);
            let ran = self.run(Some(repo), &args[..], CLONE_TIMEOUT, Some(repo)).await;
            // A failure that is not the network's: the server will not hand that commit out.
            let refused = matches!(&ran, Ok(output) if !output.status.success()
                && !is_transient_git(&String::from_utf8_lossy(&output.stderr)));
            match refused {
                true => Ok(false),
                false => self.network_attempt(&shown, ran).map(|_| true),
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

/// The commit the server's `reference` points to now (`git ls-remote`, with
/// the clone's credential handling): an annotated tag's commit, else the
/// tag's, else the branch's, as [`Git::resolve`] ranks them. `None` for a
/// commit id, which never moves; an error when the server has no such branch
/// or tag any more. How `workspace update` sees that the organiser pushed to
/// the configured branch (docs/workspace.md).
pub(super) async fn remote_commit(
    program: &str,
    raw_url: &str,
    reference: &str,
    max_size: u64,
    retry_budget: Duration,
) -> Result<Option<String>, FetchError> {
    let shown = crate::config::workspace::shown(raw_url);
    let (bare, header) = split_credentials(raw_url);
    let git = Git { program, raw_url: &bare, url: &shown, auth_header: header.as_deref(), max_size };
    if reference.is_empty() || reference.starts_with('-') || git.raw_url.starts_with('-') {
        return Err(anyhow!("`{reference}` at {shown} cannot be asked for with git ls-remote").into());
    }
    let tag = format!("refs/tags/{reference}");
    let (peeled, branch) = (format!("{tag}^{{}}"), format!("refs/heads/{reference}"));
    let deadline = Instant::now() + retry_budget;
    let git = &git;
    let listed = with_retry(deadline, "asking the repository for its branch", || {
        let args = ["ls-remote", "--", git.raw_url, &tag, &peeled, &branch].map(OsStr::new);
        async move {
            let shown = format!("git ls-remote {} {reference}", git.url);
            let output = git.network_attempt(&shown, git.run(None, &args, CLONE_TIMEOUT, None).await)?;
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        }
    })
    .await?;
    let refs: Vec<(&str, &str)> = listed.lines().filter_map(|l| l.split_once('\t')).map(|(c, r)| (r, c)).collect();
    let find = |name: &str| refs.iter().find(|(r, _)| *r == name).map(|(_, c)| c.to_string());
    match find(&peeled).or_else(|| find(&tag)).or_else(|| find(&branch)) {
        Some(commit) => Ok(Some(commit)),
        // A commit id, whole or abbreviated: it names the same commit for ever.
        None if reference.len() >= 4 && reference.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(None),
        None => Err(FetchError::UnknownRef { url: shown.clone(), reference: reference.to_string() }),
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

#[cfg(test)]
mod tests;
