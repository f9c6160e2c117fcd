//! A fake jupyter-agent API (docs/api.md) on a Unix socket in a temporary
//! directory: `GET /v1/status` and the long poll `GET /v1/wait`, serving a
//! state document the test moves from phase to phase. A long poll blocks
//! until the document changes (or its timeout), exactly as documented, and
//! the test can wait until one is pending before it makes the change: that
//! proves the client waits on the agent instead of polling it.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};

use super::http_fake::{self, FakeServer};

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

/// The fake; it stops when dropped (pending long polls are then closed
/// unanswered, as when the agent exits).
pub struct FakeAgent {
    shared: Arc<Shared>,
    /// Dropped after `Drop::drop` has woken the long polls.
    _server: FakeServer,
}

const T0: &str = "2026-11-27T04:17:37.406Z";

impl FakeAgent {
    /// Listens on `path`; the document starts `pending` at revision 1.
    pub fn start(path: &Path) -> FakeAgent {
        let doc = pending_document();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner { doc, waiting: Vec::new(), requests: Vec::new(), stopping: false }),
            changed: Condvar::new(),
        });
        let s = shared.clone();
        let server = FakeServer::unix(path, move |request| handle(request, &s));
        FakeAgent { shared, _server: server }
    }
}

/// The document at revision 1: `pending`, nothing done yet.
fn pending_document() -> Value {
    json!({
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
    })
}

/// The document of an agent that is ready, token and all (what a fake of
/// another user's would serve to be believed).
pub fn ready_document() -> Value {
    let mut doc = pending_document();
    doc["revision"] = json!(2);
    doc["phase"] = json!("ready");
    doc["jupyter"] = json!({
        "url": login_url(), "token": TOKEN, "token_source": "log", "token_seen_at": T0, "proven_at": T0
    });
    doc
}

impl FakeAgent {
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

fn handle(request: http_fake::Request, shared: &Shared) -> Option<http_fake::Response> {
    shared.inner.lock().unwrap().requests.push(request.target.clone());
    let show_token = request.query("show_token") == Some("true");
    let (code, body) = if request.method != Method::GET {
        (405, json!({ "error": format!("method {}: only GET", request.method) }))
    } else {
        match request.path() {
            "/v1/status" => (200, shown(&shared.inner.lock().unwrap().doc, show_token)),
            // None when stopping: the connection closes unanswered, as when the agent exits.
            "/v1/wait" => {
                long_poll(shared, request.query("until"), request.query("after"), request.query("timeout"), show_token)?
            }
            path => (404, json!({ "error": format!("{path}: no such endpoint") })),
        }
    };
    Some(http_fake::response(code, Some("application/json"), body.to_string()))
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
