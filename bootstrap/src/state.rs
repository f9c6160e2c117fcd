//! The agent's state document as this client reads it (docs/api.md, "The
//! state document"): only the fields it uses, and strings for the phase and
//! step status so that a newer agent's new values are shown, not refused.

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// The newest document version this client understands; a newer one is refused.
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct State {
    pub version: u32,
    /// Grows by one at every change; the `after` of the next long poll.
    pub revision: u64,
    /// `pending`, `installing-docker`, ..., `ready`, `failed`.
    pub phase: String,
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Present only when ready.
    #[serde(default)]
    pub jupyter: Option<Jupyter>,
    /// Present only when failed.
    #[serde(default)]
    pub error: Option<Failure>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Step {
    pub name: String,
    /// `running`, `done` or `failed`.
    pub status: String,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Jupyter {
    /// The login URL; its token reads `<redacted>` unless asked with `show_token=true`.
    pub url: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Failure {
    pub step: String,
    pub cause: String,
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub log_tail: Vec<String>,
}

/// The answer of `GET /v1/wait`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WaitAnswer {
    pub timed_out: bool,
    pub state: State,
}

impl State {
    pub fn is_ready(&self) -> bool {
        self.phase == "ready"
    }

    pub fn is_failed(&self) -> bool {
        self.phase == "failed"
    }

    /// The step running now, else the last one.
    pub fn current_step(&self) -> Option<&Step> {
        self.steps.iter().rev().find(|s| s.status == "running").or(self.steps.last())
    }

    /// The failure, or one made from the failed step when the agent sent none.
    pub fn failure(&self) -> Failure {
        self.error.clone().unwrap_or_else(|| Failure {
            step: self
                .steps
                .iter()
                .rev()
                .find(|s| s.status == "failed")
                .map_or_else(|| "unknown".to_string(), |s| s.name.clone()),
            cause: "the agent reported a failure without details (see jupyter-agent status)".into(),
            ..Failure::default()
        })
    }
}

/// Refuses a document newer than this client understands.
pub fn check_version(v: u32) -> Result<(), String> {
    if v > STATE_VERSION {
        return Err(format!(
            "the agent's state document has version {v}, newer than this jupyter-bootstrap understands \
             ({STATE_VERSION}): use the jupyter-bootstrap that came with the agent"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_example_and_ignores_unknown_fields() {
        let doc = r#"{
          "version": 1, "revision": 12, "phase": "ready", "agent_version": "0.1.0",
          "started_at": "2026-11-27T04:17:37.406Z", "updated_at": "2026-11-27T04:17:38.658Z",
          "steps": [
            {"name": "engine", "phase": "installing-docker", "status": "done",
             "started_at": "2026-11-27T04:17:37.406Z", "ended_at": "2026-11-27T04:17:37.500Z",
             "detail": "answered at unix:///var/run/docker.sock"},
            {"name": "token", "phase": "waiting-for-token", "status": "done",
             "started_at": "2026-11-27T04:17:37.600Z", "ended_at": "2026-11-27T04:17:38.658Z"}
          ],
          "image": {"reference": "notebook:latest", "source": "build", "id": "sha256:x"},
          "container": {"id": "c", "name": "notebook", "host_address": "127.0.0.1", "host_port": 8888},
          "jupyter": {"url": "http://203.0.113.7:8888/tree?token=<redacted>", "token": "<redacted>",
                      "token_source": "log"},
          "error": null,
          "some_future_field": [1, 2]
        }"#;
        let s: State = serde_json::from_str(doc).unwrap();
        assert_eq!(s.revision, 12);
        assert!(s.is_ready());
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.current_step().unwrap().name, "token");
        assert_eq!(s.jupyter.unwrap().url, "http://203.0.113.7:8888/tree?token=<redacted>");
    }

    #[test]
    fn a_failure_without_details_names_the_failed_step() {
        let s: State = serde_json::from_str(
            r#"{"version":1,"revision":3,"phase":"failed","steps":[{"name":"image","status":"failed"}]}"#,
        )
        .unwrap();
        assert_eq!(s.failure().step, "image");
        assert!(s.failure().cause.contains("without details"));
    }

    #[test]
    fn newer_versions_are_refused() {
        assert!(check_version(1).is_ok());
        assert!(check_version(2).unwrap_err().contains("version 2, newer than"));
    }
}
