//! Carrying out a plan: each command with a timeout and its output captured,
//! transient failures retried with backoff within a budget, a held
//! package-manager lock waited for (bounded, and said), files written below
//! the root.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use jupyter_proto::retry::{retry, Policy, Transient};
use nix::fcntl::{Flock, FlockArg};
use tracing::{info, warn};

use super::plan::{Action, PackageManager};

/// A command that failed for a transient reason (network, mirror, lock):
/// at most 5 attempts, from 2 s apart up to 60 s (120 s with jitter), and no
/// new attempt after 10 minutes; a running command is never cut by this
/// budget (its own timeout bounds it).
const COMMAND_RETRY: Policy =
    Policy::new(Duration::from_secs(2), Duration::from_secs(60), Duration::from_secs(10 * 60)).attempts(5).waits_only();
/// How long a held package-manager lock is waited for.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Looking again whether another process still holds the package manager's
/// lock: every 0.5 to 1 s, within `Executor::lock_timeout`.
const LOCK_POLL: Policy = Policy::new(Duration::from_millis(500), Duration::from_millis(500), Duration::ZERO);
/// The PATH commands run with (cloud-init's may lack the sbin directories).
pub(super) const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Receives the sub-steps of an install as they start and end, to record
/// them in the state.
pub trait Progress {
    fn begin(&mut self, step: &str);
    fn done(&mut self, step: &str, detail: String);
    /// A line the running command printed (the package manager's output).
    fn output(&mut self, _line: &str) {}
}

/// Runs actions against a root file system (`/`, or another root with `chroot`).
pub struct Executor {
    pub root: PathBuf,
    pub package_manager: PackageManager,
    /// Every command's output is appended here.
    pub log: Option<PathBuf>,
    /// How long to wait for another process's package-manager lock.
    pub lock_timeout: Duration,
}

impl Executor {
    /// Runs in `root` with `package_manager`'s locks, appending every
    /// command's output to `log`, waiting [`LOCK_TIMEOUT`] for a held lock.
    pub fn new(root: &Path, package_manager: PackageManager, log: Option<PathBuf>) -> Self {
        Executor { root: root.to_path_buf(), package_manager, log, lock_timeout: LOCK_TIMEOUT }
    }

    /// Carries out `actions` in order, each the step `name(action)` of an
    /// install; the first failure ends it.
    pub async fn run_steps(
        &self,
        actions: &[Action],
        name: impl Fn(&Action) -> String,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        for action in actions {
            let name = name(action);
            progress.begin(&name);
            let (detail, _) = self.run_step(action, progress).await?;
            progress.done(&name, detail);
        }
        Ok(())
    }

    fn chrooted(&self) -> bool {
        self.root != Path::new("/")
    }

    /// A path of the plan, below the root.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The install log, opened for one command's output (after a `$ cmd`
    /// line); `None` without a log or when it cannot be written.
    fn open_log(&self, cmd: &str) -> Option<fs::File> {
        let log = self.log.as_ref()?;
        let open = || -> std::io::Result<fs::File> {
            if let Some(dir) = log.parent() {
                fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            }
            let mut f = OpenOptions::new().create(true).append(true).open(log)?;
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            writeln!(f, "$ {cmd}")?;
            Ok(f)
        };
        open().map_err(|e| warn!(log = %log.display(), error = %e, "cannot write the install log")).ok()
    }

    /// Carries out one action; returns a short detail for the state.
    pub async fn run(&self, action: &Action) -> Result<String> {
        self.run_with_lines(action, None).await
    }

    /// [`Executor::run`] as a step of an install: each line the command
    /// prints reaches `progress` as it comes. Returns the detail and the
    /// last line printed (`git --version`'s answer).
    pub async fn run_step(&self, action: &Action, progress: &mut dyn Progress) -> Result<(String, String)> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let run = self.run_with_lines(action, Some(tx));
        tokio::pin!(run);
        let mut last = String::new();
        let detail = loop {
            tokio::select! {
                done = &mut run => break done?,
                Some(line) = rx.recv() => {
                    progress.output(&line);
                    last = line;
                }
            }
        };
        while let Ok(line) = rx.try_recv() {
            last = line;
        }
        Ok((detail, last))
    }

    /// [`Executor::run`], sending each line a command prints to `lines` as
    /// it comes (the state shows the last one while the step runs).
    pub async fn run_with_lines(&self, action: &Action, lines: Option<Lines>) -> Result<String> {
        match action {
            Action::Write { path, content, mode } => {
                let target = self.host_path(path);
                if let Some(dir) = target.parent() {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o755)
                        .create(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                crate::state::write_atomic(&target, content.as_bytes(), *mode)
                    .with_context(|| format!("writing {}", target.display()))?;
                Ok("written".into())
            }
            Action::Remove { path } => {
                let target = self.host_path(path);
                match fs::remove_file(&target) {
                    Ok(()) => Ok("removed".into()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("already gone".into()),
                    Err(e) => Err(e).with_context(|| format!("removing {}", target.display())),
                }
            }
            Action::Run { argv, env, timeout, retry: retried, needs_lock, may_fail } => {
                let cmd = argv.join(" ");
                let attempts = AtomicU32::new(0);
                let policy = if *retried { COMMAND_RETRY } else { COMMAND_RETRY.attempts(1) };
                let outcome = retry(
                    &policy,
                    |_| async {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        if *needs_lock {
                            self.wait_for_locks().await.map_err(CommandFailed::Fatal)?;
                        }
                        self.run_command(&cmd, argv, env, *timeout, lines.clone()).await
                    },
                    |e, delay| {
                        let attempt = attempts.load(Ordering::Relaxed);
                        warn!(command = %cmd, attempt, "transient failure, retrying in {}s: {e}", delay.as_secs());
                    },
                )
                .await;
                match outcome {
                    Ok(()) => match attempts.load(Ordering::Relaxed) {
                        1 => Ok("done".into()),
                        n => Ok(format!("done after {n} attempts")),
                    },
                    Err(jupyter_proto::retry::Error::Permanent(CommandFailed::Fatal(e))) => Err(e),
                    Err(e) => {
                        let message = e.last_message().unwrap_or_else(|| format!("`{cmd}` failed"));
                        if *may_fail {
                            warn!("{message}; going on: a later step finishes what it left");
                            return Ok(format!("left unfinished, going on: {message}"));
                        }
                        Err(anyhow!(message))
                    }
                }
            }
        }
    }

    /// One run of a command: its output goes to the install log, a failure
    /// says whether another attempt may do better.
    async fn run_command(
        &self,
        cmd: &str,
        argv: &[String],
        env: &[(String, String)],
        timeout: Duration,
        lines: Option<Lines>,
    ) -> Result<(), CommandFailed> {
        let log = self.open_log(cmd);
        match self.run_once(argv, env, timeout, log, lines).await {
            Ok(output) => {
                if output.status.success() {
                    return Ok(());
                }
                let code = output.status.code().map_or_else(|| "a signal".to_string(), |c| c.to_string());
                let text = String::from_utf8_lossy(&[output.stdout, output.stderr.clone()].concat()).into_owned();
                let transient = is_transient(&argv[0], output.status.code(), &text);
                let tail = tail_lines(&String::from_utf8_lossy(&output.stderr), 10);
                Err(CommandFailed::Exited { message: format!("`{cmd}` exited with {code}: {tail}"), transient })
            }
            Err(RunError::Timeout) => Err(CommandFailed::Exited {
                message: format!("`{cmd}` did not finish within {}", humantime::format_duration(timeout)),
                transient: true,
            }),
            Err(RunError::Spawn(e)) => Err(CommandFailed::Fatal(e)),
        }
    }

    async fn run_once(
        &self,
        argv: &[String],
        env: &[(String, String)],
        timeout: Duration,
        log: Option<fs::File>,
        lines: Option<Lines>,
    ) -> Result<std::process::Output, RunError> {
        let mut command = if self.chrooted() {
            let mut c = tokio::process::Command::new("chroot");
            c.arg(&self.root).args(argv);
            c
        } else {
            let mut c = tokio::process::Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        };
        command
            .env("PATH", PATH)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| RunError::Spawn(anyhow!(e).context(format!("starting `{}`", argv.join(" ")))))?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let log = std::sync::Mutex::new(log);
        // Each line into the install log and to `lines` as it comes, not
        // when the command ends: a long install shows where it is.
        let follow = |stream: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
            let lines = lines.clone();
            let log = &log;
            async move {
                let mut all = Vec::new();
                let Some(stream) = stream else { return all };
                let mut reader = tokio::io::BufReader::new(stream);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match tokio::io::AsyncBufReadExt::read_until(&mut reader, b'\n', &mut line).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    all.extend_from_slice(&line);
                    if let Some(f) = log.lock().expect("not poisoned").as_mut() {
                        let _ = f.write_all(&line);
                    }
                    let text = String::from_utf8_lossy(&line);
                    // A progress bar's \r-rewritten line: its last state.
                    let text = text.trim_end().rsplit('\r').next().unwrap_or_default().trim().to_string();
                    if let (Some(tx), false) = (&lines, text.is_empty()) {
                        let _ = tx.send(text);
                    }
                }
                all
            }
        };
        let run = async {
            let (out, err) = tokio::join!(
                follow(stdout.map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>)),
                follow(stderr.map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>))
            );
            child.wait().await.map(|status| std::process::Output { status, stdout: out, stderr: err })
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(e)) => Err(RunError::Spawn(anyhow!(e).context(format!("waiting for `{}`", argv.join(" "))))),
            Err(_) => Err(RunError::Timeout),
        }
    }

    /// Waits, bounded, until no other process holds the package manager's locks.
    async fn wait_for_locks(&self) -> Result<()> {
        let held = || self.package_manager.lock_files().iter().map(|rel| self.root.join(rel)).find(|p| lock_is_held(p));
        let started = Instant::now();
        let mut said = false;
        let waited = retry(
            &Policy { budget: self.lock_timeout, ..LOCK_POLL },
            |_| std::future::ready(held().map_or(Ok(()), |path| Err(LockHeld(path)))),
            |LockHeld(path), _| {
                if !said {
                    info!(
                        lock = %path.display(),
                        "waiting for the package manager lock, held by another process (at first boot often unattended upgrades); waiting up to {}",
                        humantime::format_duration(self.lock_timeout)
                    );
                    said = true;
                }
            },
        )
        .await;
        match waited {
            Ok(()) if said => {
                info!(waited = %humantime::format_duration(Duration::from_secs(started.elapsed().as_secs())), "the package manager lock was released; going on");
                Ok(())
            }
            Ok(()) => Ok(()),
            Err(_) => {
                let path = held().unwrap_or_default();
                bail!(
                    "another process held the package manager lock {} for more than {}; find it with `fuser -v {}` and let it finish or stop it",
                    path.display(),
                    humantime::format_duration(self.lock_timeout),
                    path.display()
                )
            }
        }
    }
}

/// Where a command's lines go as it prints them.
pub type Lines = tokio::sync::mpsc::UnboundedSender<String>;

/// Another process holds this lock.
struct LockHeld(PathBuf);

impl Transient for LockHeld {
    fn is_transient(&self) -> bool {
        true
    }
}

impl std::fmt::Display for LockHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is held", self.0.display())
    }
}

/// Why one run of a command failed.
enum CommandFailed {
    /// It ran and failed, or timed out; `transient` when the cause looks like
    /// the network, a mirror or a lock.
    Exited { message: String, transient: bool },
    /// It could not be started (or the lock wait gave up): no retry.
    Fatal(anyhow::Error),
}

impl Transient for CommandFailed {
    fn is_transient(&self) -> bool {
        matches!(self, CommandFailed::Exited { transient: true, .. })
    }
}

impl std::fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandFailed::Exited { message, .. } => f.write_str(message),
            CommandFailed::Fatal(e) => write!(f, "{e:#}"),
        }
    }
}

enum RunError {
    Timeout,
    Spawn(anyhow::Error),
}

/// Whether another process holds `path`: a pid file naming a live process,
/// or a file locked with flock(2) or with a POSIX record lock (dpkg and apt
/// use the latter).
pub fn lock_is_held(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "pid") {
        return fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
    }
    let Ok(file) = OpenOptions::new().read(true).write(true).open(path) else { return false };
    let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => match locked.unlock() {
            Ok(file) => file,
            Err((_, _)) => return false,
        },
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => return true,
        Err(_) => return false,
    };
    // A POSIX record lock: ask whether one would conflict, without taking it.
    let mut probe = nix::libc::flock {
        l_type: nix::libc::F_WRLCK as i16,
        l_whence: nix::libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    match nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_GETLK(&mut probe)) {
        Ok(_) => probe.l_type != nix::libc::F_UNLCK as i16,
        Err(_) => false,
    }
}

/// Whether a failure looks like the network or a mirror, worth another try.
pub fn is_transient(program: &str, code: Option<i32>, output: &str) -> bool {
    const PATTERNS: &[&str] = &[
        "temporary failure resolving",
        "could not resolve",
        "failed to fetch",
        "connection timed out",
        "connection refused",
        "connection reset",
        "could not connect",
        "network is unreachable",
        "hash sum mismatch",
        "cannot find a valid baseurl",
        "curl error",
        "failed to download",
        "errors during downloading metadata",
        "timed out",
        "503 service unavailable",
        "502 bad gateway",
        "504 gateway",
        "could not get lock",
        "unable to acquire",
        "mirror sync in progress",
    ];
    // curl: resolve, connect, timeout, TLS handshake, empty reply, receive errors.
    if program == "curl" && matches!(code, Some(6 | 7 | 28 | 35 | 52 | 56)) {
        return true;
    }
    let lower = output.to_lowercase();
    PATTERNS.iter().any(|p| lower.contains(p))
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    if tail.is_empty() {
        "(no error output)".into()
    } else {
        tail.join(" | ")
    }
}

#[cfg(test)]
mod tests;
