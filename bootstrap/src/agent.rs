//! The client of the agent's local API (docs/api.md): HTTP/1.1 on a Unix
//! socket, JSON answers. Only what waiting needs: `GET /v1/status` and the
//! long poll `GET /v1/wait?until=change`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::state::{check_version, State, WaitAnswer};

/// How long the agent may take to answer a plain request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// What a long poll may take beyond the timeout it asked for.
const LONG_POLL_GRACE: Duration = Duration::from_secs(15);
/// The agent's own cap on `timeout` is 3600 s; shorter polls notice a dead agent sooner.
pub const MAX_LONG_POLL: Duration = Duration::from_secs(300);

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentError {
    /// Not there (yet), or went away: no socket, connection refused, no or a
    /// cut answer, a 5xx. Worth waiting for.
    Unavailable(String),
    /// It answered, but not as docs/api.md says (or we may not ask): waiting
    /// longer will not help.
    Broken(String),
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentError::Unavailable(m) | AgentError::Broken(m) => f.write_str(m),
        }
    }
}

pub struct AgentClient {
    http: reqwest::Client,
    socket: PathBuf,
}

impl AgentClient {
    pub fn new(socket: &Path) -> anyhow::Result<AgentClient> {
        let http = reqwest::Client::builder()
            .unix_socket(socket)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {}", chain(&e)))?;
        Ok(AgentClient { http, socket: socket.to_path_buf() })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /v1/status`, with the token only when asked.
    pub async fn status(&self, show_token: bool) -> Result<State, AgentError> {
        let query = if show_token { "?show_token=true" } else { "" };
        let state: State = self.get(&format!("/v1/status{query}"), REQUEST_TIMEOUT).await?;
        check_version(state.version).map_err(AgentError::Broken)?;
        Ok(state)
    }

    /// `GET /v1/wait?until=change&after=REV&timeout=S`: blocks until the
    /// revision passes `after` or `timeout` (whole seconds, 1 to
    /// [`MAX_LONG_POLL`]) runs out.
    pub async fn wait_change(&self, after: u64, timeout: Duration) -> Result<WaitAnswer, AgentError> {
        let secs = timeout.as_secs_f64().ceil().clamp(1.0, MAX_LONG_POLL.as_secs_f64()) as u64;
        let path = format!("/v1/wait?until=change&after={after}&timeout={secs}");
        let answer: WaitAnswer = self.get(&path, Duration::from_secs(secs) + LONG_POLL_GRACE).await?;
        check_version(answer.state.version).map_err(AgentError::Broken)?;
        Ok(answer)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, timeout: Duration) -> Result<T, AgentError> {
        // The host is ignored on a Unix socket; `localhost` is what curl users write.
        let url = format!("http://localhost{path}");
        let what = || format!("GET {path} on {}", self.socket.display());
        let resp = self.http.get(&url).timeout(timeout).send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| AgentError::Unavailable(format!("{}: {}", what(), chain(&e))))?;
        if status.is_server_error() {
            return Err(AgentError::Unavailable(format!("{}: {status}: {}", what(), error_message(&body))));
        }
        if !status.is_success() {
            return Err(AgentError::Broken(format!(
                "{}: {status}: {} (is this jupyter-bootstrap as new as the agent?)",
                what(),
                error_message(&body)
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|e| AgentError::Broken(format!("{}: the answer is not the documented JSON: {e}", what())))
    }

    /// Sorts a failed request: nobody there yet (wait), or we may not ask (stop).
    fn transport_error(&self, e: &reqwest::Error) -> AgentError {
        let socket = self.socket.display();
        match io_kind(e) {
            Some(io::ErrorKind::NotFound) => AgentError::Unavailable(format!("no socket at {socket}")),
            Some(io::ErrorKind::ConnectionRefused) => {
                AgentError::Unavailable(format!("nobody listens on {socket} (connection refused)"))
            }
            Some(io::ErrorKind::PermissionDenied) => AgentError::Broken(format!(
                "permission denied on {socket}: the agent's socket is root's only (mode 0600); run as root"
            )),
            _ if e.is_timeout() => AgentError::Unavailable(format!("the agent at {socket} did not answer in time")),
            _ => AgentError::Unavailable(format!("the agent at {socket}: {}", chain(e))),
        }
    }
}

/// The kind of the first I/O error in the chain, if any.
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

/// An error and its causes on one line, without the URL reqwest adds.
pub fn chain(e: &reqwest::Error) -> String {
    let mut out = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = match err.downcast_ref::<reqwest::Error>() {
            Some(r) => strip_url(r),
            None => err.to_string(),
        };
        if !out.is_empty() && !out.ends_with(&text) {
            out.push_str(": ");
        }
        if !out.ends_with(&text) {
            out.push_str(&text);
        }
        cur = err.source();
    }
    out
}

fn strip_url(e: &reqwest::Error) -> String {
    let text = e.to_string();
    match e.url() {
        Some(url) => text.replace(&format!(" for url ({url})"), "").replace(&format!(" ({url})"), ""),
        None => text,
    }
}

/// The `error` of an `{"error": ...}` answer, else the body itself, short.
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ApiError {
        error: String,
    }
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => e.error,
        Err(_) => crate::redact::bound(String::from_utf8_lossy(body).trim(), 200),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_come_from_the_documented_error_object() {
        assert_eq!(error_message(br#"{"error": "after: expected a number"}"#), "after: expected a number");
        assert_eq!(error_message(b"  plain text\n"), "plain text");
    }

    #[tokio::test]
    async fn a_missing_socket_is_unavailable_not_broken() {
        let dir = tempfile::tempdir().unwrap();
        let client = AgentClient::new(&dir.path().join("agent.sock")).unwrap();
        let err = client.status(false).await.unwrap_err();
        assert!(matches!(&err, AgentError::Unavailable(m) if m.starts_with("no socket at ")), "{err:?}");
    }

    #[tokio::test]
    async fn a_socket_nobody_listens_on_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let client = AgentClient::new(&path).unwrap();
        let err = client.status(false).await.unwrap_err();
        assert!(matches!(&err, AgentError::Unavailable(m) if m.contains("connection refused")), "{err:?}");
    }
}
