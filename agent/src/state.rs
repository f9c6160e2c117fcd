//! The agent's state: a versioned JSON document that says where the converge
//! is, written so that a crash never leaves half a file, plus the lock that
//! keeps two agents from converging the same host at once.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::token::redact;

/// Bumped when a field changes meaning; readers refuse a newer version.
pub const STATE_VERSION: u32 = 1;
/// How many log lines a failure keeps.
pub const LOG_TAIL_LINES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Pending,
    InstallingDocker,
    FetchingWorkspace,
    PreparingImage,
    StartingContainer,
    WaitingForToken,
    Ready,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::InstallingDocker => "installing-docker",
            Phase::FetchingWorkspace => "fetching-workspace",
            Phase::PreparingImage => "preparing-image",
            Phase::StartingContainer => "starting-container",
            Phase::WaitingForToken => "waiting-for-token",
            Phase::Ready => "ready",
            Phase::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepStatus {
    Running,
    Done,
    Failed,
}

/// One step of the converge, as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// `engine`, `image`, `container`, `token`, `proof`.
    pub name: String,
    pub phase: Phase,
    pub status: StepStatus,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// What the step did, in a few words (`reused`, `recreated: configuration changed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageState {
    pub reference: String,
    /// `pull`, `archive` or `build`.
    pub source: String,
    pub id: Option<String>,
    /// Per-layer pull progress, keyed by layer id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub layers: BTreeMap<String, LayerProgress>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerProgress {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub name: String,
    /// The hash recorded in the container's label.
    pub config_hash: String,
    /// Docker's own start time of the running container.
    pub started_at: Option<String>,
    /// The host address and port the Jupyter port is published on.
    pub host_address: String,
    pub host_port: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JupyterState {
    /// The login URL, with the token.
    pub url: String,
    pub token: String,
    /// Where the token came from: `log` or `server-list`.
    pub token_source: String,
    /// When the agent read the token (to compare with Docker's timestamp of the log line).
    pub token_seen_at: DateTime<Utc>,
    /// When `/api/status` accepted the token and refused a wrong one.
    pub proven_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The step that failed.
    pub step: String,
    /// The error chain, outermost first.
    pub cause: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The container's last log lines, tokens redacted.
    #[serde(default)]
    pub log_tail: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Grows by one at every change of the document.
    #[serde(default)]
    pub revision: u64,
    pub phase: Phase,
    pub agent_version: String,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub steps: Vec<Step>,
    pub image: Option<ImageState>,
    pub container: Option<ContainerState>,
    pub jupyter: Option<JupyterState>,
    pub error: Option<Failure>,
}

impl State {
    pub fn new() -> State {
        let now = Utc::now();
        State {
            version: STATE_VERSION,
            revision: 0,
            phase: Phase::Pending,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: now,
            updated_at: now,
            steps: Vec::new(),
            image: None,
            container: None,
            jupyter: None,
            error: None,
        }
    }

    /// Starts a step and moves to its phase.
    pub fn begin(&mut self, name: &str, phase: Phase) {
        let now = Utc::now();
        self.phase = phase;
        self.updated_at = now;
        self.steps.push(Step {
            name: name.to_string(),
            phase,
            status: StepStatus::Running,
            started_at: now,
            ended_at: None,
            detail: None,
        });
    }

    /// Ends the running step named `name`.
    pub fn end(&mut self, name: &str, status: StepStatus, detail: Option<String>) {
        let now = Utc::now();
        self.updated_at = now;
        if let Some(step) = self.steps.iter_mut().rev().find(|s| s.name == name && s.status == StepStatus::Running) {
            step.status = status;
            step.ended_at = Some(now);
            if detail.is_some() {
                step.detail = detail;
            }
        }
    }

    pub fn ready(&mut self, jupyter: JupyterState) {
        self.phase = Phase::Ready;
        self.updated_at = Utc::now();
        self.jupyter = Some(jupyter);
        self.error = None;
    }

    /// Marks the converge failed; a step still running is the one that failed.
    pub fn fail(&mut self, failure: Failure) {
        self.end(&failure.step.clone(), StepStatus::Failed, None);
        self.phase = Phase::Failed;
        self.updated_at = Utc::now();
        self.jupyter = None;
        self.error = Some(failure);
    }

    /// The step running now, if any.
    pub fn running_step(&self) -> Option<&Step> {
        self.steps.iter().rev().find(|s| s.status == StepStatus::Running)
    }

    /// A copy fit to show: no token anywhere.
    pub fn redacted(&self) -> State {
        let mut s = self.clone();
        if let Some(j) = &mut s.jupyter {
            j.token = "<redacted>".into();
            j.url = redact(&j.url);
        }
        if let Some(e) = &mut s.error {
            e.log_tail = e.log_tail.iter().map(|l| redact(l)).collect();
            e.cause = redact(&e.cause);
        }
        s
    }
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
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
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err)?;
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
    publish: Option<tokio::sync::watch::Sender<State>>,
}

impl<'a> Recorder<'a> {
    /// Starts a fresh state and writes it; its revision continues the
    /// published one, so that watchers see every change as newer.
    pub fn new(store: &'a StateStore, publish: Option<tokio::sync::watch::Sender<State>>) -> Recorder<'a> {
        let mut state = State::new();
        if let Some(tx) = &publish {
            state.revision = tx.borrow().revision;
        }
        let mut r = Recorder { state, store, publish };
        r.save();
        r
    }

    /// Writes the state and publishes it; a write failure is logged, never
    /// fatal (the converge goes on).
    pub fn save(&mut self) {
        self.state.revision += 1;
        if let Err(e) = self.store.save(&self.state) {
            tracing::warn!(path = %self.store.path().display(), error = %e, "cannot write the state file");
        }
        if let Some(tx) = &self.publish {
            tx.send_replace(self.state.clone());
        }
    }

    pub fn begin(&mut self, step: &str, phase: Phase) {
        tracing::info!(step, phase = phase.as_str(), "step started");
        self.state.begin(step, phase);
        self.save();
    }

    pub fn done(&mut self, step: &str, detail: String) {
        tracing::info!(step, detail = %detail, "step done");
        self.state.end(step, StepStatus::Done, Some(detail));
        self.save();
    }

    /// The failure of the running step (or of `fallback` when none runs),
    /// not yet recorded: see [`Recorder::record_failure`].
    pub fn failure(&self, fallback: &str, cause: String, exit_code: Option<i64>, log_tail: Vec<String>) -> Failure {
        let step = self.state.running_step().map_or_else(|| fallback.to_string(), |s| s.name.clone());
        Failure { step, cause: redact(&cause), exit_code, log_tail }
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

/// Reads a state file; `Ok(None)` when there is none yet.
pub fn load(path: &Path) -> anyhow::Result<Option<State>> {
    use anyhow::Context;
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading the state file {}", path.display())),
    };
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let v: Versioned = serde_json::from_slice(&bytes)
        .with_context(|| format!("the state file {} is not a jupyter-agent state document", path.display()))?;
    if v.version > STATE_VERSION {
        anyhow::bail!(
            "the state file {} has version {}, newer than this agent understands ({STATE_VERSION}): use the newer jupyter-agent",
            path.display(),
            v.version
        );
    }
    let state = serde_json::from_slice(&bytes).with_context(|| format!("reading the state file {}", path.display()))?;
    Ok(Some(state))
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new
/// one, never a mix: temporary file in the same directory, fsync, rename,
/// directory fsync.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", path.file_name().and_then(|n| n.to_str()).unwrap_or("state")))
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_record_each_step() {
        let mut s = State::new();
        assert_eq!(s.phase, Phase::Pending);
        s.begin("engine", Phase::InstallingDocker);
        assert_eq!(s.running_step().unwrap().name, "engine");
        s.end("engine", StepStatus::Done, Some("answered".into()));
        s.begin("image", Phase::PreparingImage);
        assert_eq!(s.phase, Phase::PreparingImage);
        s.fail(Failure { step: "image".into(), cause: "no such image".into(), ..Default::default() });
        assert_eq!(s.phase, Phase::Failed);
        assert_eq!(s.steps[0].status, StepStatus::Done);
        assert_eq!(s.steps[0].detail.as_deref(), Some("answered"));
        assert_eq!(s.steps[1].status, StepStatus::Failed);
        assert!(s.steps[1].ended_at.is_some());
        assert!(s.running_step().is_none());
    }

    #[test]
    fn ready_clears_an_old_error_and_redaction_hides_the_token() {
        let mut s = State::new();
        s.fail(Failure {
            step: "token".into(),
            cause: "x".into(),
            log_tail: vec!["http://h/?token=abc".into()],
            ..Default::default()
        });
        assert_eq!(s.redacted().error.unwrap().log_tail, vec!["http://h/?token=<redacted>".to_string()]);
        s.ready(JupyterState {
            url: "http://h:8888/tree?token=s3cret".into(),
            token: "s3cret".into(),
            token_source: "log".into(),
            token_seen_at: Utc::now(),
            proven_at: Utc::now(),
        });
        assert_eq!(s.phase, Phase::Ready);
        assert!(s.error.is_none());
        let shown = serde_json::to_string(&s.redacted()).unwrap();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("http://h:8888/tree?token=<redacted>"));
    }

    #[test]
    fn the_store_writes_0600_atomically_and_locks() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::lock(dir.path()).unwrap();
        let mut s = State::new();
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

    #[test]
    fn newer_versions_and_garbage_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        assert!(load(&p).unwrap().is_none());
        fs::write(&p, "{\"version\": 99}").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("version 99, newer"));
        fs::write(&p, "not json").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("is not a jupyter-agent state document"));
    }
}
