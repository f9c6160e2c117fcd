//! The state document (docs/api.md, "The state document"): where the
//! converge is, versioned. The agent writes it (its state file, its local
//! API); the CLI and `jupyter-bootstrap` read it. Readers take what they
//! know and keep the rest as it came: a phase or step status that a newer
//! agent adds reads as [`Phase::Other`], shown by name, not refused.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::redact::{redact, MARK};

/// Bumped when a field changes meaning; readers refuse a newer version.
pub const STATE_VERSION: u32 = 1;
/// How many log lines a failure keeps.
pub const LOG_TAIL_LINES: usize = 20;

/// Where the converge is.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, strum::Display, strum::EnumString, strum::AsRefStr,
)]
#[serde(from = "String", into = "String")]
#[strum(serialize_all = "kebab-case")]
pub enum Phase {
    #[default]
    Pending,
    InstallingDocker,
    /// The host's NVIDIA driver and Container Toolkit (`[container] gpus`).
    PreparingGpu,
    FetchingWorkspace,
    PreparingImage,
    StartingContainer,
    WaitingForToken,
    Ready,
    Failed,
    /// The agent was stopped (SIGTERM) before the converge ended; it goes
    /// on when the agent starts again.
    Stopped,
    /// A phase this reader does not know (a newer agent's), by its name.
    #[strum(default, to_string = "{0}")]
    Other(String),
}

impl Phase {
    /// The phase's name, as the state document spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Phase::Other(name) => name,
            known => known.as_ref(),
        }
    }

    /// `ready` and `failed` end a converge.
    pub fn is_final(&self) -> bool {
        matches!(self, Phase::Ready | Phase::Failed)
    }
}

impl From<String> for Phase {
    fn from(name: String) -> Phase {
        name.parse().unwrap_or(Phase::Other(name))
    }
}

impl From<Phase> for String {
    fn from(p: Phase) -> String {
        p.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::Display, strum::EnumString, strum::AsRefStr)]
#[serde(from = "String", into = "String")]
#[strum(serialize_all = "kebab-case")]
pub enum StepStatus {
    Running,
    Done,
    Failed,
    /// A status this reader does not know, by its name.
    #[strum(default, to_string = "{0}")]
    Other(String),
}

impl StepStatus {
    /// The status's name, as the state document spells it.
    pub fn as_str(&self) -> &str {
        match self {
            StepStatus::Other(name) => name,
            known => known.as_ref(),
        }
    }
}

impl From<String> for StepStatus {
    fn from(name: String) -> StepStatus {
        name.parse().unwrap_or(StepStatus::Other(name))
    }
}

impl From<StepStatus> for String {
    fn from(s: StepStatus) -> String {
        s.to_string()
    }
}

/// Where the image came from (`[image]`'s source, docs/images.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum ImageSourceKind {
    #[default]
    Pull,
    Archive,
    Build,
    /// A source this reader does not know (a newer agent's).
    #[serde(other)]
    Other,
}

/// Where the login token came from (docs/jupyter.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum TokenSource {
    /// The agent's own token, given to the server and proven.
    Agent,
    /// A login URL in the container's log.
    #[default]
    Log,
    /// `jupyter server list --json` (or `notebook list`) in the container.
    ServerList,
    /// The server checks no token (`[jupyter] token = "none"`).
    Server,
    /// A source this reader does not know (a newer agent's).
    #[serde(other)]
    Other,
}

/// A certificate's kind, in `[tls] mode` and as served (docs/tls.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum CertKind {
    /// Issued by an ACME CA (Let's Encrypt).
    #[default]
    Acme,
    /// Made by the agent: the mode itself, or the fallback while ACME fails.
    SelfSigned,
    /// A kind this reader does not know (a newer agent's).
    #[serde(other)]
    Other,
}

/// One step of the converge, as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// `engine`, `image`, `container`, `token`, `docker: ...`.
    pub name: String,
    #[serde(default)]
    pub phase: Phase,
    pub status: StepStatus,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    /// What the step did, in a few words (`reused`, `recreated: configuration changed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// While it runs, how far it is, in one line: a pull's bytes and
    /// percent, a build's `Step N/M`, the package manager's last line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageState {
    pub reference: String,
    pub source: ImageSourceKind,
    #[serde(default)]
    pub id: Option<String>,
    /// Per-layer pull progress, keyed by layer id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub layers: BTreeMap<String, LayerProgress>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerProgress {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub name: String,
    /// The hash recorded in the container's label.
    #[serde(default)]
    pub config_hash: String,
    /// Docker's own start time of the running container.
    #[serde(default)]
    pub started_at: Option<String>,
    /// The host address and port the Jupyter port is published on.
    pub host_address: IpAddr,
    pub host_port: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JupyterState {
    /// The login URL, with the token (`<redacted>` unless asked for).
    pub url: String,
    #[serde(default)]
    pub token: String,
    /// Where the token came from.
    #[serde(default)]
    pub token_source: TokenSource,
    /// When the agent read the token (to compare with Docker's timestamp of the log line).
    #[serde(default)]
    pub token_seen_at: DateTime<Utc>,
    /// When `/api/status` accepted the token and refused a wrong one.
    #[serde(default)]
    pub proven_at: DateTime<Utc>,
    /// What the participant must know about this URL, when it is not the
    /// stable one: the server ignored the agent's token (the URL changes at
    /// every start), or the server checks no token at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The GPUs `nvidia-smi -L` listed inside the container, by name
    /// (`Tesla T4`), with `[container] gpus` (the `gpu` step, docs/gpu.md);
    /// absent without GPUs, and from older agents' documents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The step that failed.
    pub step: String,
    /// The error chain, outermost first.
    pub cause: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// The container's last log lines, secrets redacted.
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
    #[serde(default)]
    pub agent_version: String,
    #[serde(default)]
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Present once the image step began.
    #[serde(default)]
    pub image: Option<ImageState>,
    #[serde(default)]
    pub container: Option<ContainerState>,
    /// Present only when ready.
    #[serde(default)]
    pub jupyter: Option<JupyterState>,
    /// Present only when failed.
    #[serde(default)]
    pub error: Option<Failure>,
    /// The certificate the agent serves in front of Jupyter, when `[tls]`
    /// is on (docs/tls.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsState>,
    /// The agent run that writes this document (docs/api.md): readers of
    /// the state file tell the current run's document from an ended one's.
    /// Absent from older agents' documents and the one-off commands'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<AgentRun>,
    /// The participant asked for help (docs/api.md#raise-a-hand); absent
    /// when no hand is raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hand: Option<Hand>,
}

/// A raised hand: the participant asked for help, with an optional short
/// message (docs/api.md#raise-a-hand). The message is the participant's
/// text, stored as typed: whoever shows it in HTML escapes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hand {
    pub raised_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The answer of `POST /v1/workspace/reset`: where the participant's copy
/// went, and what the fresh one holds. The container is re-created on it
/// after the answer (follow the state, or `GET /v1/wait?until=ready`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetAnswer {
    /// The participant's copy, moved aside (`<path>.bak-<UTC timestamp>`).
    pub aside: std::path::PathBuf,
    /// The fresh copy's commit (git) or sha256 (tarball).
    pub identity: String,
}

/// The answer of `POST /v1/hand`: the hand as it is now (none once lowered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandAnswer {
    pub hand: Option<Hand>,
}

/// One run of `jupyter-agent run`: its process, and whether it ends with
/// its converge (`run --once`: its last document stays the answer) or
/// keeps watching (a service: once it is gone, its document is the ended
/// run's, and the next run's is awaited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRun {
    pub pid: u32,
    pub once: bool,
}

/// The HTTPS the agent serves in front of Jupyter (docs/tls.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsState {
    /// The configured mode: `acme` or `self-signed`.
    pub mode: CertKind,
    /// What is served now: `acme` (a CA's certificate) or `self-signed`
    /// (the mode itself, or the fallback while ACME fails).
    pub served: CertKind,
    /// Where the agent listens with TLS: `0.0.0.0:8888`.
    pub listen: SocketAddr,
    /// The names and addresses the certificate is for: `IP 203.0.113.7`.
    pub subject: String,
    pub issuer: String,
    pub not_after: DateTime<Utc>,
    /// SHA-256 of the certificate (DER), colon-separated hex, as browsers show it.
    pub fingerprint: String,
    /// When the agent next asks the ACME CA (renewal, or a retry after a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_renewal: Option<DateTime<Utc>>,
    /// Why the last ACME attempt failed, until one succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_error: Option<String>,
}

/// The answer of `GET /v1/wait`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitAnswer {
    pub timed_out: bool,
    pub state: State,
}

impl State {
    /// A fresh document of this version, `pending`, revision 0.
    pub fn new(agent_version: &str) -> State {
        let now = Utc::now();
        State {
            version: STATE_VERSION,
            revision: 0,
            phase: Phase::Pending,
            agent_version: agent_version.to_string(),
            started_at: now,
            updated_at: now,
            steps: Vec::new(),
            image: None,
            container: None,
            jupyter: None,
            error: None,
            tls: None,
            run: None,
            hand: None,
        }
    }

    /// Reads a document, refusing one newer than this reader (`program`,
    /// named in the message) understands.
    pub fn from_json(bytes: &[u8], program: &str) -> Result<State, String> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let v: Versioned =
            serde_json::from_slice(bytes).map_err(|e| format!("not a jupyter-agent state document: {e}"))?;
        check_version(v.version, program)?;
        serde_json::from_slice(bytes).map_err(|e| format!("not a jupyter-agent state document: {e}"))
    }

    /// Starts a step and moves to its phase.
    pub fn begin(&mut self, name: &str, phase: Phase) {
        let now = Utc::now();
        self.phase = phase.clone();
        self.updated_at = now;
        self.steps.push(Step {
            name: name.to_string(),
            phase,
            status: StepStatus::Running,
            started_at: Some(now),
            ended_at: None,
            detail: None,
            progress: None,
        });
    }

    /// Ends the running step named `name`.
    pub fn end(&mut self, name: &str, status: StepStatus, detail: Option<String>) {
        let now = Utc::now();
        self.updated_at = now;
        if let Some(step) = self.steps.iter_mut().rev().find(|s| s.name == name && s.status == StepStatus::Running) {
            step.status = status;
            step.ended_at = Some(now);
            step.progress = None;
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

    /// Marks the run stopped: the step running now ends as failed, and the
    /// error names it with `cause`.
    pub fn stop(&mut self, cause: &str) {
        let step = self.running_step().map_or_else(|| "agent".to_string(), |s| s.name.clone());
        self.end(&step, StepStatus::Failed, Some("stopped".into()));
        self.phase = Phase::Stopped;
        self.updated_at = Utc::now();
        self.jupyter = None;
        self.error = Some(Failure { step, cause: cause.to_string(), ..Failure::default() });
    }

    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    pub fn is_failed(&self) -> bool {
        self.phase == Phase::Failed
    }

    /// The step running now, if any.
    pub fn running_step(&self) -> Option<&Step> {
        self.steps.iter().rev().find(|s| s.status == StepStatus::Running)
    }

    /// The step running now, else the last one.
    pub fn current_step(&self) -> Option<&Step> {
        self.running_step().or(self.steps.last())
    }

    /// The failure, or one made from the failed step when the agent sent none.
    pub fn failure(&self) -> Failure {
        self.error.clone().unwrap_or_else(|| Failure {
            step: self
                .steps
                .iter()
                .rev()
                .find(|s| s.status == StepStatus::Failed)
                .map_or_else(|| "unknown".to_string(), |s| s.name.clone()),
            cause: "the agent reported a failure without details (see jupyter-agent status)".into(),
            ..Failure::default()
        })
    }

    /// A copy fit to show: no token anywhere.
    pub fn redacted(&self) -> State {
        let mut s = self.clone();
        if let Some(j) = &mut s.jupyter {
            j.token = MARK.into();
            j.url = redact(&j.url);
        }
        if let Some(e) = &mut s.error {
            e.log_tail = e.log_tail.iter().map(|l| redact(l)).collect();
            e.cause = redact(&e.cause);
        }
        s
    }
}

/// Refuses a document newer than `program` understands.
pub fn check_version(v: u32, program: &str) -> Result<(), String> {
    if v > STATE_VERSION {
        return Err(format!(
            "the state document has version {v}, newer than this {program} understands ({STATE_VERSION}): \
             use the {program} that came with the agent"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
