//! The agent's state on disk: the state document (`jupyter_proto::state`,
//! docs/api.md) written so that a crash never leaves half a file, the lock
//! that keeps two agents from converging the same host at once, and the
//! recorder that writes and publishes every change of one run.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

pub use jupyter_proto::fs::write_atomic;
pub use jupyter_proto::state::*;

/// The document this agent starts with.
pub fn fresh() -> State {
    State::new(env!("CARGO_PKG_VERSION"))
}

/// Why the state directory could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another jupyter-agent (pid {pid}) is already converging this host (lock {path}); wait for it to finish, or stop it")]
    Busy { path: PathBuf, pid: String },
    #[error("cannot use the state directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The state directory, held under an exclusive lock for as long as this lives.
pub struct StateStore {
    file: PathBuf,
    _lock: Flock<File>,
}

impl StateStore {
    /// Creates `dir` (mode 0700) if needed and takes its lock without waiting.
    pub fn lock(dir: &Path) -> Result<StateStore, LockError> {
        let io_err = |source| LockError::Io { path: dir.to_path_buf(), source };
        ensure_private_dir(dir).map_err(io_err)?;
        let lock_path = dir.join("agent.lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = if pid.trim().is_empty() { "unknown".into() } else { pid.trim().to_string() };
                return Err(LockError::Busy { path: lock_path, pid });
            }
            Err((_, errno)) => return Err(io_err(io::Error::from(errno))),
        };
        // Name the holder, for the message a second agent prints.
        lock.set_len(0).map_err(io_err)?;
        lock.rewind().map_err(io_err)?;
        write!(lock, "{}", std::process::id()).map_err(io_err)?;
        Ok(StateStore { file: dir.join("state.json"), _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Writes the state atomically, mode 0600.
    pub fn save(&self, state: &State) -> io::Result<()> {
        let mut json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
        json.push(b'\n');
        write_atomic(&self.file, &json, 0o600)
    }
}

/// The state of one run, written to the store at every change and published
/// to the local API's watchers.
pub struct Recorder<'a> {
    pub state: State,
    store: &'a StateStore,
    /// The local API's side of the state: every change is sent here.
    watchers: Option<tokio::sync::watch::Sender<State>>,
    /// The last write of the state file that failed, if any: the converge
    /// fails on it (nobody could follow it).
    unsaved: Option<String>,
    /// When a progress line was last written (they are throttled).
    progress_saved: Option<std::time::Instant>,
}

impl<'a> Recorder<'a> {
    /// Starts a fresh state and writes it; its revision continues the
    /// published one, so that watchers see every change as newer. `Err`
    /// when even this first write fails: nothing could follow the agent.
    pub fn new(store: &'a StateStore, watchers: Option<tokio::sync::watch::Sender<State>>) -> io::Result<Recorder<'a>> {
        let mut state = fresh();
        if let Some(tx) = &watchers {
            state.revision = tx.borrow().revision;
        }
        let mut r = Recorder { state, store, watchers, unsaved: None, progress_saved: None };
        r.save();
        match r.unsaved.take() {
            Some(e) => Err(io::Error::other(e)),
            None => Ok(r),
        }
    }

    /// Writes the state and publishes it. A write that fails is logged as
    /// an error and remembered ([`Recorder::unsaved`]); the step goes on.
    pub fn save(&mut self) {
        self.state.revision += 1;
        if let Err(e) = self.store.save(&self.state) {
            let path = self.store.path().display();
            tracing::error!(path = %path, error = %e, "cannot write the state file");
            self.unsaved = Some(format!("cannot write the state file {path}: {e}"));
        }
        if let Some(tx) = &self.watchers {
            tx.send_replace(self.state.clone());
        }
    }

    /// Why the state file could not be written, if a write failed.
    pub fn unsaved(&self) -> Option<&str> {
        self.unsaved.as_deref()
    }

    pub fn begin(&mut self, step: &str, phase: Phase) {
        tracing::info!(step, phase = phase.as_str(), "step started");
        self.state.begin(step, phase);
        self.save();
    }

    /// Sets the running step's progress line; written and published at most
    /// every half second (a pull reports many times a second), and always
    /// when `force`.
    pub fn progress(&mut self, line: String, force: bool) {
        let line = jupyter_proto::redact::bound(&crate::secrets::redact(&line), 160);
        let Some(step) = self.state.steps.iter_mut().rev().find(|s| s.status == StepStatus::Running) else { return };
        if step.progress.as_deref() == Some(line.as_str()) {
            return;
        }
        step.progress = Some(line);
        let due = self.progress_saved.is_none_or(|at| at.elapsed() >= std::time::Duration::from_millis(500));
        if force || due {
            self.progress_saved = Some(std::time::Instant::now());
            self.save();
        }
    }

    pub fn done(&mut self, step: &str, detail: String) {
        let detail = crate::secrets::redact(&detail);
        tracing::info!(step, detail = %detail, "step done");
        self.state.end(step, StepStatus::Done, Some(detail));
        self.save();
    }

    /// The failure of the running step (or of `fallback` when none runs),
    /// not yet recorded: see [`Recorder::record_failure`].
    pub fn failure(&self, fallback: &str, cause: String, exit_code: Option<i64>, log_tail: Vec<String>) -> Failure {
        let step = self.state.running_step().map_or_else(|| fallback.to_string(), |s| s.name.clone());
        // The run's one redactor: tokens and every secret the configuration names.
        let log_tail = log_tail.iter().map(|l| crate::secrets::redact(l)).collect();
        Failure { step, cause: crate::secrets::redact(&cause), exit_code, log_tail }
    }

    /// Records `failure` as the state's and publishes it.
    pub fn record_failure(&mut self, failure: Failure) {
        self.state.fail(failure);
        self.save();
    }

    /// Records a failure of the running step (or of `fallback` when none runs).
    pub fn fail(&mut self, fallback: &str, cause: String, exit_code: Option<i64>, log_tail: Vec<String>) -> Failure {
        let failure = self.failure(fallback, cause, exit_code, log_tail);
        self.record_failure(failure.clone());
        failure
    }
}

/// Makes `dir` the agent's private directory, the one way every command
/// makes the state directory: mode 0700 (directories made above it 0755),
/// one of root's that others may read tightened to 0700, and one that
/// someone else owns or may write to, or that is below such a directory,
/// refused and left as it was (docs/threat-model.md#what-runs-where).
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    let refused = |why: String| io::Error::new(io::ErrorKind::PermissionDenied, why);
    if let Some(why) = crate::config::paths::dir_refusal(dir) {
        return Err(refused(why));
    }
    if let Some(parent) = dir.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o755).create(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    // Checked through the directory itself, then again with the chain:
    // nothing may have been put in its place in between.
    let opened = crate::config::paths::open_dir(dir)?;
    let meta = opened.metadata()?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 && mode & 0o022 == 0 && crate::config::paths::dir_refusal(dir).is_none() {
        opened.set_permissions(fs::Permissions::from_mode(0o700))?;
    }
    match crate::config::paths::dir_refusal(dir) {
        Some(why) => Err(refused(why)),
        None => Ok(()),
    }
}

/// Reads a state file; `Ok(None)` when there is none yet.
pub fn load(path: &Path) -> anyhow::Result<Option<State>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::anyhow!(e).context(format!("reading the state file {}", path.display()))),
    };
    State::from_json(&bytes, "jupyter-agent")
        .map(Some)
        .map_err(|e| anyhow::anyhow!("the state file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    #[test]
    fn the_store_writes_0600_atomically_and_locks() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::lock(dir.path()).unwrap();
        let mut s = fresh();
        s.begin("engine", Phase::InstallingDocker);
        store.save(&s).unwrap();
        let mode = fs::metadata(store.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load(store.path()).unwrap().unwrap(), s);
        // No temporary file is left beside it.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // A second store on the same directory is refused, naming the holder.
        match StateStore::lock(dir.path()) {
            Err(LockError::Busy { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("second lock must be refused"),
        }
        drop(store);
        StateStore::lock(dir.path()).unwrap();
    }

    /// One function makes every copy of the state directory: 0700, a loose
    /// one of root's tightened, and one that others may write to or that is
    /// someone else's refused and left as it was (issue 22, items 7 and 10).
    #[test]
    fn the_state_directory_is_made_0700_and_an_unsafe_one_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let fresh = dir.path().join("a/b/state");
        ensure_private_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o755, "the directories above are not made private");

        let loose = dir.path().join("loose");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&loose).unwrap();
        assert_eq!(mode(&loose), 0o700, "tightened");

        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir(&open).unwrap_err().to_string();
        assert!(err.contains("may be written by users other than root (mode 777)"), "{err}");
        assert_eq!(mode(&open), 0o777, "left as it was");
        let err = ensure_private_dir(&open.join("state")).unwrap_err().to_string();
        assert!(err.contains("which users other than root may write to (mode 777)"), "{err}");
        assert!(!open.join("state").exists(), "nothing made below it");

        let theirs = dir.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
        let err = ensure_private_dir(&theirs).unwrap_err().to_string();
        assert!(err.contains("belongs to uid 65534"), "{err}");

        // A link to a private directory is followed; the directory is checked.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&loose, &link).unwrap();
        ensure_private_dir(&link).unwrap();
        std::os::unix::fs::symlink(&open, dir.path().join("open-link")).unwrap();
        assert!(ensure_private_dir(&dir.path().join("open-link")).is_err());

        let err = ensure_private_dir(Path::new("/tmp")).unwrap_err().to_string();
        assert!(err.contains("(mode 1777)"), "{err}");
        assert!(StateStore::lock(Path::new("/tmp")).is_err());
        assert!(!Path::new("/tmp/agent.lock").exists() || fs::metadata("/tmp/agent.lock").unwrap().uid() != 0);
    }

    #[test]
    fn newer_versions_and_garbage_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        assert!(load(&p).unwrap().is_none());
        fs::write(&p, "{\"version\": 99}").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("version 99, newer"));
        fs::write(&p, "not json").unwrap();
        assert!(
            load(&p).unwrap_err().to_string().contains("is not a jupyter-agent state document")
                || load(&p).unwrap_err().to_string().contains("not a jupyter-agent state document")
        );
    }
}
