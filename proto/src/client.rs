//! The client of the agent's local API (docs/api.md): HTTP/1.1 on a Unix
//! socket, one connection per request, JSON answers. Both binaries ask the
//! agent through here: `status`, `token`, `url`, `wait` and `logs` of the
//! agent's CLI, and `jupyter-bootstrap wait`; and the agent's actions
//! (`workspace reset`, `hand raise` and `hand lower`).
//!
//! It is built on hyper's client connection alone (no pool, no resolver, no
//! TLS), so that a `status` call costs a connect, a write and a read.
//!
//! Before it trusts an answer it checks who could have put the socket there
//! ([`crate::trust`]: the socket and each directory above it owned by root,
//! writable by no one else) and who serves it (the peer's uid): an answer
//! from anyone else could be a ready URL of theirs.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::redact::bound;
use crate::state::{check_version, HandAnswer, ResetAnswer, State, WaitAnswer};
use crate::trust::{self, TrustError};

/// How long the agent may take to answer a plain request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// What a long poll may take beyond the timeout it asked for.
const LONG_POLL_GRACE: Duration = Duration::from_secs(15);
/// The API's own cap on a long poll's `timeout` (docs/api.md).
pub const MAX_LONG_POLL: Duration = Duration::from_secs(3600);
/// How long a reset may take to answer: the agent waits for a converge that
/// runs (at most 10 minutes), then fetches the materials (docs/api.md).
pub const RESET_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// Not there (yet), or went away: no socket, connection refused, no or a
    /// cut answer, a 5xx. Worth waiting for.
    #[error("{0}")]
    Unavailable(String),
    /// It answered, but not as docs/api.md says (or we may not ask): waiting
    /// longer will not help.
    #[error("{0}")]
    Broken(String),
    /// Someone other than root could have put the socket there, or serves
    /// it: nothing was asked, and nothing it says may be believed.
    #[error("{0}")]
    Untrusted(String),
}

/// What a long poll waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The phase is `ready` or `failed`.
    Ready,
    /// The revision passes this one.
    Change(u64),
}

/// The agent's API on its socket; `program` names the caller in messages.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    program: &'static str,
}

impl Client {
    pub fn new(socket: &Path, program: &'static str) -> Client {
        Client { socket: socket.to_path_buf(), program }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /v1/status`, with the token only when asked.
    pub async fn status(&self, show_token: bool) -> Result<State, AgentError> {
        let query = if show_token { "?show_token=true" } else { "" };
        let body = self.get_bytes(&format!("/v1/status{query}"), REQUEST_TIMEOUT).await?;
        State::from_json(&body, self.program).map_err(|e| self.broken("/v1/status", &e))
    }

    /// `GET /v1/wait?until=...&timeout=S`: blocks until the condition holds or
    /// `timeout` (rounded up to whole seconds, at most [`MAX_LONG_POLL`]) runs out.
    pub async fn wait(&self, until: Until, timeout: Duration, show_token: bool) -> Result<WaitAnswer, AgentError> {
        let secs = timeout.min(MAX_LONG_POLL).as_secs_f64().ceil() as u64;
        let until = match until {
            Until::Ready => "until=ready".to_string(),
            Until::Change(after) => format!("until=change&after={after}"),
        };
        let show = if show_token { "&show_token=true" } else { "" };
        let path = format!("/v1/wait?{until}&timeout={secs}{show}");
        let body = self.get_bytes(&path, Duration::from_secs(secs) + LONG_POLL_GRACE).await?;
        #[derive(serde::Deserialize)]
        struct Versioned {
            state: VersionOnly,
        }
        #[derive(serde::Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let v: Versioned = self.decode(&path, &body)?;
        check_version(v.state.version, self.program).map_err(|e| self.broken(&path, &e))?;
        self.decode(&path, &body)
    }

    /// `GET /v1/events`: the state now, then one document per change, for
    /// as long as the agent runs.
    pub async fn events(&self, show_token: bool) -> Result<Events, AgentError> {
        let path = format!("/v1/events{}", if show_token { "?show_token=true" } else { "" });
        let (status, body) =
            tokio::time::timeout(REQUEST_TIMEOUT, self.request(&path)).await.map_err(|_| self.timed_out())??;
        if !status.is_success() {
            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Err(self.refused(&path, status, &bytes));
        }
        Ok(Events { body: LogStream { body, what: self.what(&path) }, partial: Vec::new(), program: self.program })
    }

    /// `GET /v1/logs`: the container's last `tail` lines, and with `follow`
    /// what comes after, as the body arrives (chunks do not align with lines).
    pub async fn logs(&self, tail: u64, follow: bool, show_token: bool) -> Result<LogStream, AgentError> {
        let path = format!("/v1/logs?tail={tail}&follow={follow}{}", if show_token { "&show_token=true" } else { "" });
        let (status, body) =
            tokio::time::timeout(REQUEST_TIMEOUT, self.request(&path)).await.map_err(|_| self.timed_out())??;
        if status.is_success() {
            return Ok(LogStream { body, what: self.what(&path) });
        }
        let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        Err(self.refused(&path, status, &bytes))
    }

    /// `POST /v1/workspace/reset`: the participant's copy moved aside and
    /// the materials fetched fresh; the agent then re-creates the container
    /// on them (follow it with [`Client::wait`]).
    pub async fn reset(&self) -> Result<ResetAnswer, AgentError> {
        let path = "/v1/workspace/reset";
        let body = self.post_bytes(path, Bytes::new(), RESET_TIMEOUT).await?;
        self.decode_as(&Method::POST, path, &body)
    }

    /// `POST /v1/hand`: raise the hand (with an optional message), or lower
    /// it (`raise` false); the hand as it is now.
    pub async fn hand(&self, raise: bool, message: Option<&str>) -> Result<HandAnswer, AgentError> {
        let path = "/v1/hand";
        let request = match (raise, message) {
            (true, Some(m)) => serde_json::json!({ "raise": true, "message": m }),
            (raise, _) => serde_json::json!({ "raise": raise }),
        };
        let body = self.post_bytes(path, Bytes::from(request.to_string()), REQUEST_TIMEOUT).await?;
        self.decode_as(&Method::POST, path, &body)
    }

    /// A POST whose refusal is the agent's word: its message as it is (a
    /// 4xx other than 404 and 405 is an answer about the request, not about
    /// versions).
    async fn post_bytes(&self, path: &str, body: Bytes, timeout: Duration) -> Result<Bytes, AgentError> {
        let exchange = async {
            let (status, answer) = self.send(Method::POST, path, body).await?;
            let what = self.what_method(&Method::POST, path);
            let bytes = answer.collect().await.map_err(|e| AgentError::Unavailable(format!("{what}: {e}")))?.to_bytes();
            match status {
                s if s.is_success() => Ok(bytes),
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Err(AgentError::Broken(format!(
                    "{what}: {status}: {} (is this {} as new as the agent?)",
                    error_message(&bytes),
                    self.program
                ))),
                s if s.is_server_error() => Err(AgentError::Unavailable(error_message(&bytes))),
                _ => Err(AgentError::Broken(error_message(&bytes))),
            }
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| self.timed_out())?
    }

    async fn get_bytes(&self, path: &str, timeout: Duration) -> Result<Bytes, AgentError> {
        let exchange = async {
            let (status, body) = self.request(path).await?;
            let bytes = body
                .collect()
                .await
                .map_err(|e| AgentError::Unavailable(format!("{}: {e}", self.what(path))))?
                .to_bytes();
            if status.is_success() {
                Ok(bytes)
            } else {
                Err(self.refused(path, status, &bytes))
            }
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| self.timed_out())?
    }

    /// Checks the socket, connects, checks who serves it, sends `GET path`,
    /// and returns the status and the body to read.
    async fn request(&self, path: &str) -> Result<(StatusCode, Incoming), AgentError> {
        self.send(Method::GET, path, Bytes::new()).await
    }

    /// [`Client::request`] with any method and a body (JSON when not empty).
    async fn send(&self, method: Method, path: &str, body: Bytes) -> Result<(StatusCode, Incoming), AgentError> {
        let socket = trust::check_socket(&self.socket).map_err(|e| match e {
            TrustError::Io(e) => self.connect_error(&e),
            untrusted => self.untrusted(&untrusted.to_string()),
        })?;
        let stream = UnixStream::connect(&socket).await.map_err(|e| self.connect_error(&e))?;
        let peer = stream.peer_cred().map_err(|e| self.untrusted(&format!("cannot tell who serves it: {e}")))?;
        if !trust::trusted_uids().contains(&peer.uid()) {
            return Err(self.untrusted(&format!("it is served by a process of uid {}, not root", peer.uid())));
        }
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| AgentError::Unavailable(format!("{}: {e}", self.what_method(&method, path))))?;
        // Drives the connection until the body is read; ends with it.
        tokio::spawn(connection);
        // The host is ignored on a Unix socket; `localhost` is what curl users write.
        let mut request = Request::builder().method(method.clone()).uri(path).header(hyper::header::HOST, "localhost");
        if !body.is_empty() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(body)).expect("a valid request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| AgentError::Unavailable(format!("{}: {e}", self.what_method(&method, path))))?;
        Ok((response.status(), response.into_body()))
    }

    fn decode<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<T, AgentError> {
        self.decode_as(&Method::GET, path, body)
    }

    fn decode_as<T: DeserializeOwned>(&self, method: &Method, path: &str, body: &[u8]) -> Result<T, AgentError> {
        serde_json::from_slice(body).map_err(|e| {
            AgentError::Broken(format!(
                "{}: the answer is not the documented JSON: {e}",
                self.what_method(method, path)
            ))
        })
    }

    fn what(&self, path: &str) -> String {
        self.what_method(&Method::GET, path)
    }

    fn what_method(&self, method: &Method, path: &str) -> String {
        let path = path.split('?').next().unwrap_or(path);
        format!("{method} {path} on {}", self.socket.display())
    }

    fn broken(&self, path: &str, why: &str) -> AgentError {
        AgentError::Broken(format!("{}: {why}", self.what(path)))
    }

    fn timed_out(&self) -> AgentError {
        AgentError::Unavailable(format!("the agent at {} did not answer in time", self.socket.display()))
    }

    /// A 5xx is worth waiting for; any other refusal is not.
    fn refused(&self, path: &str, status: StatusCode, body: &[u8]) -> AgentError {
        let what = self.what(path);
        if status.is_server_error() {
            return AgentError::Unavailable(format!("{what}: {status}: {}", error_message(body)));
        }
        AgentError::Broken(format!(
            "{what}: {status}: {} (is this {} as new as the agent?)",
            error_message(body),
            self.program
        ))
    }

    /// Someone else could have put the socket there, or serves it: whatever
    /// it answers is not the agent's word. Waiting will not help.
    fn untrusted(&self, why: &str) -> AgentError {
        AgentError::Untrusted(format!(
            "refusing the agent's socket {}: {why}; the socket and every directory above it must belong to root \
             and be writable by no one else (docs/api.md#the-socket)",
            self.socket.display()
        ))
    }

    /// Sorts a failed connect: nobody there yet (wait), or we may not ask (stop).
    fn connect_error(&self, e: &io::Error) -> AgentError {
        let socket = self.socket.display();
        match e.kind() {
            io::ErrorKind::NotFound => AgentError::Unavailable(format!("no socket at {socket}")),
            io::ErrorKind::ConnectionRefused => {
                AgentError::Unavailable(format!("nobody listens on {socket} (connection refused)"))
            }
            io::ErrorKind::PermissionDenied => AgentError::Broken(format!(
                "permission denied on {socket}: the agent's socket is root's only (mode 0600); run as root"
            )),
            _ => AgentError::Unavailable(format!("the agent at {socket}: {e}")),
        }
    }
}

/// The body of `/v1/logs`, chunk by chunk.
pub struct LogStream {
    body: Incoming,
    what: String,
}

impl LogStream {
    /// The next chunk of the log, or `None` at its end.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, AgentError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(AgentError::Unavailable(format!("{}: {e}", self.what))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

/// The body of `/v1/events`: newline-delimited state documents.
pub struct Events {
    body: LogStream,
    /// The start of a document whose newline has not arrived yet.
    partial: Vec<u8>,
    program: &'static str,
}

impl Events {
    /// The next state document, or `None` when the agent ended the stream.
    pub async fn next_state(&mut self) -> Result<Option<State>, AgentError> {
        loop {
            if let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=end).collect();
                return State::from_json(&line, self.program)
                    .map(Some)
                    .map_err(|e| AgentError::Broken(format!("{}: {e}", self.body.what)));
            }
            match self.body.next_chunk().await? {
                Some(chunk) => self.partial.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
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
        Err(_) => bound(String::from_utf8_lossy(body).trim(), 200),
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
        let client = Client::new(&dir.path().join("agent.sock"), "test");
        let err = client.status(false).await.unwrap_err();
        assert!(matches!(&err, AgentError::Unavailable(m) if m.starts_with("no socket at ")), "{err:?}");
    }

    #[tokio::test]
    async fn a_socket_nobody_listens_on_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let client = Client::new(&path, "test");
        let err = client.status(false).await.unwrap_err();
        assert!(matches!(&err, AgentError::Unavailable(m) if m.contains("connection refused")), "{err:?}");
    }

    #[tokio::test]
    async fn a_socket_in_a_directory_anyone_may_write_is_refused_before_anything_is_asked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let path = open.join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let err = Client::new(&path, "test").status(false).await.unwrap_err();
        let want = format!(
            "refusing the agent's socket {}: {} is writable by other users (mode 0777)",
            path.display(),
            std::fs::canonicalize(&open).unwrap().display()
        );
        assert!(matches!(&err, AgentError::Untrusted(m) if m.starts_with(&want)), "{err:?}");
        assert!(listener.accept().is_err(), "nobody connected");
    }

    /// A one-shot server that answers every request with `reply`.
    fn serve_once(path: &Path, reply: &'static str) {
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            conn.write_all(reply.as_bytes()).unwrap();
        });
    }

    #[tokio::test]
    async fn answers_are_sorted_by_what_waiting_can_fix() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 18\r\n\r\n{\"error\":\"later\"}\n",
                AgentError::Unavailable(String::new()),
                "503 Service Unavailable: later",
            ),
            (
                "HTTP/1.1 404 Not Found\r\nContent-Length: 17\r\n\r\n{\"error\":\"gone\"}\n",
                AgentError::Broken(String::new()),
                "404 Not Found: gone (is this test as new as the agent?)",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{\"version\": 99}\n",
                AgentError::Broken(String::new()),
                "version 99, newer than this test understands",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnope",
                AgentError::Broken(String::new()),
                "not a jupyter-agent",
            ),
        ];
        for (i, (reply, kind, want)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("s{i}.sock"));
            serve_once(&path, reply);
            let err = Client::new(&path, "test").status(false).await.unwrap_err();
            assert_eq!(std::mem::discriminant(&err), std::mem::discriminant(&kind), "{err:?}");
            assert!(err.to_string().contains(want), "{err}");
            assert!(err.to_string().starts_with("GET /v1/status on "), "{err}");
        }
    }
}
