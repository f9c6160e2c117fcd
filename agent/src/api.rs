//! The local API (docs/api.md): HTTP/1.1 on a Unix socket, mode 0600, so that
//! `curl --unix-socket`, the CLI and `jupyter-bootstrap` can ask the running
//! agent. `serve` takes a bound listener and a shutdown future, so tests can
//! start it on a socket of their own. GETs read the state; the two POSTs
//! ask the running agent for an action (crate::actions).

use std::collections::HashMap;
use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::actions::{ActionError, Actions, HandChange};
use crate::config::DockerConfig;
use crate::state::{Phase, State};

use crate::token::LineAssembler;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What the handlers share: the published state, how to reach the engine
/// for logs, and the actions' channel (none when the agent takes no
/// actions: `run --once`, or a configuration it refused).
pub struct Shared {
    pub state: watch::Receiver<State>,
    pub docker: DockerConfig,
    pub actions: Option<Actions>,
}

/// The largest body a POST may carry.
const MAX_BODY: usize = 4096;

/// Binds the socket at `path` with mode 0600: bound under a temporary name,
/// restricted, then renamed over any stale socket, so that it is never
/// reachable with wider permissions. Its directory is created 0755 if
/// missing, and refused when someone other than root could replace what is
/// in it (it, or a directory above it, belongs to another user or is
/// writable by others): the clients would refuse the socket anyway
/// (docs/api.md#the-socket).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
        jupyter_proto::trust::check_dir_chain(dir).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "refusing to serve the API in {}: {e}; use a directory that root owns and no one else may write \
                     (docs/api.md#the-socket)",
                    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()).display()
                ),
            )
        })?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("jupyter-agent.sock");
    let tmp: PathBuf = path.with_file_name(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = std::os::unix::net::UnixListener::bind(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

/// Serves connections until `shutdown` resolves; then lets the connections
/// in flight finish their answers (at most two seconds) and closes them.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!(error = %e, "accepting a connection on the local API socket");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let mut closing = closing.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = async { let _ = closing.wait_for(|c| *c).await; } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                debug!(error = %e, "local API connection ended");
            }
        });
        // Reap finished connections as we go.
        while connections.try_join_next().is_some() {}
    }
    let _ = closing_tx.send(true);
    let _ =
        tokio::time::timeout(Duration::from_secs(2), async { while connections.join_next().await.is_some() {} }).await;
}

fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .body(Full::new(body.into()).boxed_unsync())
        .expect("a valid response")
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let mut body = serde_json::to_vec(value).expect("serializable");
    body.push(b'\n');
    full(status, "application/json", body)
}

/// A refused request: its status and the message naming what is wrong.
struct ApiError(StatusCode, String);

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

impl ApiError {
    fn into_response(self) -> Response<Body> {
        json(self.0, &serde_json::json!({ "error": self.1 }))
    }
}

type Answer = Result<Response<Body>, ApiError>;

fn streaming(content_type: &str, lines: impl Stream<Item = Bytes> + Send + 'static) -> Response<Body> {
    let body = StreamBody::new(lines.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    Response::builder()
        .status(StatusCode::OK)
        .header("Content-Type", content_type)
        .body(BodyExt::boxed_unsync(body))
        .expect("a valid response")
}

/// The query string as a map; values are plain words and numbers here.
fn query(req: &Request<hyper::body::Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

/// A numeric parameter in `min..=max`, or a 400 naming it.
fn number(q: &HashMap<String, String>, key: &str, default: u64, min: u64, max: u64) -> Result<u64, ApiError> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(error(StatusCode::BAD_REQUEST, format!("{key}={v}: expected a whole number from {min} to {max}"))),
        },
    }
}

fn flag(q: &HashMap<String, String>, key: &str) -> Result<bool, ApiError> {
    match q.get(key).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") | Some("") => Ok(true),
        Some(v) => Err(error(StatusCode::BAD_REQUEST, format!("{key}={v}: expected true or false"))),
    }
}

fn shown(state: &State, show_token: bool) -> State {
    if show_token {
        state.clone()
    } else {
        state.redacted()
    }
}

async fn handle(shared: Arc<Shared>, req: Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
    let q = query(&req);
    let path = req.uri().path().to_string();
    let get = req.method() == Method::GET;
    let response = match (path.as_str(), req.method()) {
        ("/v1/status", _) if get => status(&shared, &q),
        ("/v1/wait", _) if get => wait(&shared, &q).await,
        ("/v1/events", _) if get => events(&shared, &q),
        ("/v1/logs", _) if get => logs(&shared, &q).await,
        ("/v1/status" | "/v1/wait" | "/v1/events" | "/v1/logs", method) => {
            Err(error(StatusCode::METHOD_NOT_ALLOWED, format!("{method} {path}: only GET is served here")))
        }
        ("/v1/workspace/reset", &Method::POST) => reset(&shared).await,
        ("/v1/hand", &Method::POST) => hand(&shared, req.into_body()).await,
        ("/v1/workspace/reset" | "/v1/hand", method) => Err(error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} {path}: an action is asked with POST (docs/api.md#actions)"),
        )),
        (other, _) => Err(error(
            StatusCode::NOT_FOUND,
            format!(
                "{other}: no such endpoint; see /v1/status, /v1/wait, /v1/events, /v1/logs, \
                 and POST /v1/workspace/reset, /v1/hand"
            ),
        )),
    };
    Ok(response.unwrap_or_else(ApiError::into_response))
}

/// An action refused or failed, as its answer: 400 (the request as it is),
/// 409 (not with this configuration), 503 (busy: nothing was done), 500
/// (taken and failed).
fn refused(e: ActionError) -> ApiError {
    let status = match &e {
        ActionError::Invalid(_) => StatusCode::BAD_REQUEST,
        ActionError::Refused(_) => StatusCode::CONFLICT,
        ActionError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        ActionError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

fn actions(shared: &Shared) -> Result<&Actions, ApiError> {
    shared.actions.as_ref().ok_or_else(|| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this agent takes no actions (it runs with --once, or its configuration was refused): \
             run it as its service does, without --once",
        )
    })
}

/// `POST /v1/workspace/reset`: answered once the fresh copy is in place;
/// the converge that re-creates the container follows.
async fn reset(shared: &Shared) -> Answer {
    let done = actions(shared)?.reset().await.map_err(refused)?;
    Ok(json(StatusCode::OK, &done))
}

/// `POST /v1/hand` with `{"raise": true, "message": "..."}` or `{"raise": false}`.
async fn hand(shared: &Shared, body: hyper::body::Incoming) -> Answer {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct HandRequest {
        raise: bool,
        #[serde(default)]
        message: Option<String>,
    }
    let expected = r#"expected {"raise": true, "message": "..."} (the message is optional) or {"raise": false}"#;
    let bytes = http_body_util::Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("the body: {e} (at most {MAX_BODY} bytes)")))?
        .to_bytes();
    let asked: HandRequest = serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("the body: {e}; {expected}")))?;
    let change = match asked {
        HandRequest { raise: true, message } => HandChange::raise(message.as_deref()).map_err(refused)?,
        HandRequest { raise: false, message: None } => HandChange::Lower,
        HandRequest { raise: false, message: Some(_) } => {
            return Err(error(StatusCode::BAD_REQUEST, format!("a message goes with a raised hand only; {expected}")))
        }
    };
    let hand = actions(shared)?.hand(change).await.map_err(refused)?;
    Ok(json(StatusCode::OK, &jupyter_proto::state::HandAnswer { hand }))
}

fn status(shared: &Shared, q: &HashMap<String, String>) -> Answer {
    let show = flag(q, "show_token")?;
    Ok(json(StatusCode::OK, &shown(&shared.state.borrow(), show)))
}

async fn wait(shared: &Shared, q: &HashMap<String, String>) -> Answer {
    let show = flag(q, "show_token")?;
    let timeout = Duration::from_secs(number(q, "timeout", 300, 0, 3600)?);
    let mut rx = shared.state.clone();
    let current = rx.borrow_and_update().revision;
    let after = number(q, "after", current, 0, u64::MAX)?;
    let until = q.get("until").map_or("ready", String::as_str);
    let reached: Box<dyn FnMut(&State) -> bool + Send> = match until {
        "ready" => Box::new(|s: &State| matches!(s.phase, Phase::Ready | Phase::Failed)),
        // A revision from before this agent started (it is newer than ours)
        // answers at once: the client should start over from our state.
        "change" if after > current => Box::new(|_: &State| true),
        "change" => Box::new(move |s: &State| s.revision > after),
        other => return Err(error(StatusCode::BAD_REQUEST, format!("until={other}: expected ready or change"))),
    };
    let timed_out = tokio::time::timeout(timeout, rx.wait_for(reached)).await.is_err();
    let state = shown(&rx.borrow(), show);
    Ok(json(StatusCode::OK, &serde_json::json!({ "timed_out": timed_out, "state": state })))
}

fn events(shared: &Shared, q: &HashMap<String, String>) -> Answer {
    let show = flag(q, "show_token")?;
    let rx = shared.state.clone();
    // The current document first, then one per change, for as long as the agent runs.
    let lines = futures_util::stream::unfold((rx, true), move |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let state = shown(&rx.borrow_and_update(), show);
        let mut line = serde_json::to_vec(&state).expect("serializable");
        line.push(b'\n');
        Some((Bytes::from(line), (rx, false)))
    });
    Ok(streaming("application/x-ndjson", lines))
}

async fn logs(shared: &Shared, q: &HashMap<String, String>) -> Answer {
    let show = flag(q, "show_token")?;
    let follow = flag(q, "follow")?;
    let tail = number(q, "tail", 100, 0, 10_000)?;
    let Some(id) = shared.state.borrow().container.as_ref().map(|c| c.id.clone()) else {
        return Err(error(StatusCode::NOT_FOUND, "no container yet: the converge has not reached it"));
    };
    let quick = DockerConfig { ping_timeout: Duration::from_secs(3), ..shared.docker.clone() };
    let docker =
        crate::engine::connect(&quick).await.map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")))?;
    let options = crate::jupyter::logs_options(tail, follow);
    let mut assembler = LineAssembler::new();
    let stream = docker.logs(&id, Some(options)).filter_map(move |item| {
        let out = match item {
            Ok(chunk) => {
                let lines = assembler.push(&chunk.into_bytes());
                let text: String =
                    // The run's redactor: tokens, and the env values and other
                    // secrets the converge registered (crate::secrets).
                    lines
                        .into_iter()
                        .map(|l| format!("{}\n", if show { l } else { crate::secrets::redact(&l) }))
                        .collect();
                (!text.is_empty()).then(|| Bytes::from(text))
            }
            Err(_) => None,
        };
        std::future::ready(out)
    });
    // Keep the engine handle alive as long as the stream.
    let stream = stream.map(move |b| {
        let _ = &docker;
        b
    });
    Ok(streaming("text/plain; charset=utf-8", stream))
}

#[cfg(test)]
mod tests;
