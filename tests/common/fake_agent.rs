//! A fake jupyter-agent API (docs/api.md) on a Unix socket in a temporary
//! directory: `GET /v1/status` and the long poll `GET /v1/wait`, serving a
//! state document the test moves from phase to phase. A long poll blocks
//! until the document changes (or its timeout), exactly as documented, and
//! the test can wait until one is pending before it makes the change: that
//! proves the client waits on the agent instead of polling it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The token the fake Jupyter prints; it must show only where it belongs.
pub const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";

pub fn login_url() -> String {
    format!("http://203.0.113.7:8888/tree?token={TOKEN}")
}

struct Inner {
    doc: Value,
    /// The `after` of each long poll now blocked.
    waiting: Vec<u64>,
    /// Every request line target, in order.
    requests: Vec<String>,
    stopping: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    changed: Condvar,
}

pub struct FakeAgent {
    path: PathBuf,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

const T0: &str = "2026-11-27T04:17:37.406Z";

impl FakeAgent {
    /// Listens on `path`; the document starts `pending` at revision 1.
    pub fn start(path: &Path) -> FakeAgent {
        let listener = UnixListener::bind(path).expect("bind the agent socket");
        let doc = json!({
            "version": 1,
            "revision": 1,
            "phase": "pending",
            "agent_version": "0.1.0",
            "started_at": T0,
            "updated_at": T0,
            "steps": [],
            "image": null,
            "container": null,
            "jupyter": null,
            "error": null
        });
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner { doc, waiting: Vec::new(), requests: Vec::new(), stopping: false }),
            changed: Condvar::new(),
        });
        let s = shared.clone();
        let acceptor = super::accept_each(
            move || listener.accept().map(|(stream, _)| stream),
            move || s.inner.lock().unwrap().stopping,
            {
                let s = shared.clone();
                move |stream| handle(stream, &s)
            },
        );
        FakeAgent { path: path.to_path_buf(), shared, acceptor: Some(acceptor) }
    }

    /// Changes the document (one revision) and wakes the long polls.
    pub fn change(&self, f: impl FnOnce(&mut Value)) {
        let mut inner = self.shared.inner.lock().unwrap();
        f(&mut inner.doc);
        let rev = inner.doc["revision"].as_u64().unwrap() + 1;
        inner.doc["revision"] = json!(rev);
        inner.doc["updated_at"] = json!(now());
        self.shared.changed.notify_all();
    }

    /// Ends the running step (done) and starts `step` in `phase`.
    pub fn begin(&self, step: &str, phase: &str) {
        self.change(|doc| {
            end_running(doc, "done");
            doc["phase"] = json!(phase);
            doc["steps"].as_array_mut().unwrap().push(json!({
                "name": step, "phase": phase, "status": "running", "started_at": now()
            }));
        });
    }

    /// Ends the running step and becomes ready with the login URL.
    pub fn ready(&self) {
        self.change(|doc| {
            end_running(doc, "done");
            doc["phase"] = json!("ready");
            doc["jupyter"] = json!({
                "url": login_url(), "token": TOKEN, "token_source": "log",
                "token_seen_at": now(), "proven_at": now()
            });
        });
    }

    /// Fails the running step.
    pub fn fail(&self, step: &str, cause: &str, exit_code: Option<i64>, log_tail: &[&str]) {
        self.change(|doc| {
            end_running(doc, "failed");
            doc["phase"] = json!("failed");
            let mut error = json!({ "step": step, "cause": cause, "log_tail": log_tail });
            if let Some(code) = exit_code {
                error["exit_code"] = json!(code);
            }
            doc["error"] = error;
        });
    }

    /// Waits (bounded) until a long poll with `after = revision` is blocked here.
    pub fn wait_for_long_poll(&self, revision: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut inner = self.shared.inner.lock().unwrap();
        while !inner.waiting.contains(&revision) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no long poll after revision {revision}; requests: {:?}", inner.requests);
            inner = self.shared.changed.wait_timeout(inner, left).unwrap().0;
        }
    }

    /// Every request target so far (`/v1/status`, `/v1/wait?...`).
    pub fn requests(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().requests.clone()
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        self.shared.inner.lock().unwrap().stopping = true;
        self.shared.changed.notify_all();
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn end_running(doc: &mut Value, status: &str) {
    for step in doc["steps"].as_array_mut().unwrap() {
        if step["status"] == "running" {
            step["status"] = json!(status);
            step["ended_at"] = json!(now());
        }
    }
}

/// The document as shown: the token redacted unless asked for.
fn shown(doc: &Value, show_token: bool) -> Value {
    let mut doc = doc.clone();
    if !show_token && doc["jupyter"].is_object() {
        doc["jupyter"]["token"] = json!("<redacted>");
        doc["jupyter"]["url"] = json!(login_url().replace(TOKEN, "<redacted>"));
    }
    doc
}

fn handle(stream: UnixStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // Headers: read up to the blank line; a GET has no body.
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => return,
            Ok(_) if h.trim_end().is_empty() => break,
            Ok(_) => {}
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default().to_string());
    shared.inner.lock().unwrap().requests.push(target.clone());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params: Vec<(&str, &str)> = query.split('&').filter_map(|kv| kv.split_once('=')).collect();
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let show_token = param("show_token") == Some("true");
    let (code, body) = if method != "GET" {
        (405, json!({ "error": format!("method {method}: only GET") }))
    } else {
        match path {
            "/v1/status" => (200, shown(&shared.inner.lock().unwrap().doc, show_token)),
            "/v1/wait" => match long_poll(shared, param("until"), param("after"), param("timeout"), show_token) {
                Some(answer) => answer,
                // Stopping: the connection closes unanswered, as when the agent exits.
                None => return,
            },
            _ => (404, json!({ "error": format!("{path}: no such endpoint") })),
        }
    };
    let body = body.to_string();
    let mut stream = &stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn long_poll(
    shared: &Shared,
    until: Option<&str>,
    after: Option<&str>,
    timeout: Option<&str>,
    show_token: bool,
) -> Option<(u16, Value)> {
    if until != Some("change") {
        return Some((400, json!({ "error": "until: this fake answers only until=change" })));
    }
    let mut inner = shared.inner.lock().unwrap();
    let current = inner.doc["revision"].as_u64().unwrap();
    let after = match after.map(str::parse::<u64>) {
        None => current,
        Some(Ok(a)) => a,
        Some(Err(_)) => return Some((400, json!({ "error": "after: expected a revision number" }))),
    };
    let timeout = match timeout.map(str::parse::<u64>) {
        None => 300,
        Some(Ok(t)) if t <= 3600 => t,
        _ => return Some((400, json!({ "error": "timeout: expected 0 to 3600 seconds" }))),
    };
    let deadline = Instant::now() + Duration::from_secs(timeout);
    inner.waiting.push(after);
    shared.changed.notify_all();
    while inner.doc["revision"].as_u64().unwrap() <= after && !inner.stopping {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        inner = shared.changed.wait_timeout(inner, left).unwrap().0;
    }
    if let Some(i) = inner.waiting.iter().position(|a| *a == after) {
        inner.waiting.remove(i);
    }
    if inner.stopping {
        return None;
    }
    let timed_out = inner.doc["revision"].as_u64().unwrap() <= after;
    Some((200, json!({ "timed_out": timed_out, "state": shown(&inner.doc, show_token) })))
}
