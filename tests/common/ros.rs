//! A fake ROS wait-condition endpoint: the HTTP side of an
//! `ALIYUN::ROS::WaitConditionHandle` (docs/ros.md#test-endpoint), on
//! 127.0.0.1 only. It checks each request against the documented protocol
//! (a POST to the signed `/waitcondition?...` URL, a JSON body whose
//! `status` is SUCCESS, FAILURE or WARNING, with optional string `reason`,
//! `data` and `id`), records it, and answers as scripted: a sequence of
//! statuses (`500, 500, 200`), a refusal (`403`), a body that never ends,
//! or no answer at all. While each request is handled its sender is still
//! waiting for the answer: the fake then looks through the process list for
//! the signature, which no command line may hold (any local user reads them).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hyper::HeaderMap;

use super::http_fake::{self, FakeServer};

/// How the endpoint answers one valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// This status with a small JSON body.
    Status(u16),
    /// This status and body.
    Body(u16, String),
    /// Accept, read the request, never answer (until the fake is dropped).
    Hang,
    /// This status, and a body that streams forever (until the fake is dropped).
    Endless(u16),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: HeaderMap,
    pub body: String,
    /// The body as JSON, when it is JSON.
    pub json: Option<serde_json::Value>,
    /// Why the request breaks the protocol (it was answered 400), if it does.
    pub problem: Option<String>,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// A query parameter, not decoded.
    pub fn query(&self, name: &str) -> Option<&str> {
        let query = self.target.split_once('?')?.1;
        query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// A string field of the JSON body.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.json.as_ref()?.get(name)?.as_str()
    }
}

struct Inner {
    script: VecDeque<Reply>,
    /// What answers once the script is used up.
    then: Reply,
    requests: Vec<Request>,
    /// Every command line that held the signature while a request was handled.
    exposed: Vec<Exposed>,
    stopping: bool,
}

struct Shared {
    inner: Mutex<Inner>,
    changed: Condvar,
}

/// The endpoint; it stops when dropped (hanging requests are then closed).
pub struct FakeRos {
    shared: Arc<Shared>,
    /// Dropped after `Drop::drop` has woken the hanging requests.
    server: FakeServer,
}

/// The query of a signed handle URL, shaped like ROS's.
pub const QUERY: &str = "stackname=handson&stackid=0f5a1c2e-fake&resource=WaitConditionHandle&expire=1893456000&signature=c2lnbmF0dXJl%2Bfake";

impl FakeRos {
    /// Answers 200 to every valid request.
    pub fn start() -> FakeRos {
        FakeRos::scripted([], Reply::Status(200))
    }

    /// Answers valid requests with `script` in order, then with `then`.
    pub fn scripted(script: impl IntoIterator<Item = Reply>, then: Reply) -> FakeRos {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                script: script.into_iter().collect(),
                then,
                requests: Vec::new(),
                exposed: Vec::new(),
                stopping: false,
            }),
            changed: Condvar::new(),
        });
        let s = shared.clone();
        let server = FakeServer::tcp(move |request| handle(request, &s));
        FakeRos { shared, server }
    }

    /// The handle's signed URL.
    pub fn url(&self) -> String {
        format!("{}/waitcondition?{QUERY}", self.server.url())
    }

    /// The handle's `CurlCli` attribute, as ROS writes it: the URL unquoted,
    /// each `&` escaped as `\&` for the shell (docs/ros.md#curlcli).
    pub fn curl_cli(&self) -> String {
        format!(
            "curl -i -X POST -H 'Content-Type: application/json' -H 'Accept: application/json' \
             -H 'x-acs-region-id: cn-beijing' {}",
            self.url().replace('&', "\\&")
        )
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.inner.lock().unwrap().requests.clone()
    }

    /// The command lines that held the handle's signature while a request
    /// was being handled (its sender was then alive, waiting for the answer).
    pub fn exposed(&self) -> Vec<Exposed> {
        self.shared.inner.lock().unwrap().exposed.clone()
    }

    /// Waits (at most `timeout`) until `n` requests have arrived; returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.shared.inner.lock().unwrap();
        while inner.requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the fake ROS got {} requests, expected {n}", inner.requests.len());
            inner = self.shared.changed.wait_timeout(inner, left).unwrap().0;
        }
        inner.requests.clone()
    }
}

/// What an `ALIYUN::ROS::WaitCondition` with `Count` makes of the signals
/// received so far (docs/ros.md#wait-condition, #a-room): signals are keyed
/// by id, a later one replacing an earlier one; one FAILURE fails the
/// condition at once; it completes once `Count` distinct ids have sent
/// SUCCESS. `Data` holds each SUCCESS id's `data`, `ErrorData` each
/// FAILURE id's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitCondition {
    pub status: WaitStatus,
    pub data: std::collections::BTreeMap<String, String>,
    pub error_data: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitStatus {
    Waiting { received: usize },
    Complete,
    Failed { reason: String },
}

impl WaitCondition {
    /// The `Data` attribute as ROS gives it: a JSON object of strings.
    pub fn data_json(&self) -> String {
        serde_json::to_string(&self.data).unwrap()
    }
}

impl FakeRos {
    /// The wait condition's state from the valid signals received, for `count`.
    pub fn wait_condition(&self, count: usize) -> WaitCondition {
        let mut latest: Vec<(String, Request)> = Vec::new();
        let mut unnamed = 0;
        for r in self.requests().into_iter().filter(|r| r.problem.is_none()) {
            // Without an id ROS numbers the signals 1, 2, ...
            let id = match r.field("id") {
                Some(id) => id.to_string(),
                None => {
                    unnamed += 1;
                    unnamed.to_string()
                }
            };
            latest.retain(|(k, _)| *k != id);
            latest.push((id, r));
        }
        let mut data = std::collections::BTreeMap::new();
        let mut error_data = std::collections::BTreeMap::new();
        let mut failed = None;
        for (id, r) in &latest {
            match r.field("status") {
                Some("SUCCESS") => {
                    data.insert(id.clone(), r.field("data").unwrap_or_default().to_string());
                }
                Some("FAILURE") => {
                    let reason = r.field("reason").unwrap_or_default().to_string();
                    failed.get_or_insert_with(|| reason.clone());
                    error_data.insert(id.clone(), reason);
                }
                _ => {}
            }
        }
        let status = match failed {
            Some(reason) => WaitStatus::Failed { reason },
            None if data.len() >= count => WaitStatus::Complete,
            None => WaitStatus::Waiting { received: data.len() },
        };
        WaitCondition { status, data, error_data }
    }
}

impl Drop for FakeRos {
    fn drop(&mut self) {
        self.shared.inner.lock().unwrap().stopping = true;
        self.shared.changed.notify_all();
    }
}

/// A process whose command line held the signature of [`QUERY`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposed {
    /// Its arguments, NUL-separated in `/proc`, joined with spaces.
    pub cmdline: String,
    /// Its pid, its parent's, and so on up to pid 1, when it was seen: a
    /// test keeps those of the processes it started (tests running beside it
    /// may put the signature in a command line on purpose).
    pub lineage: Vec<u32>,
}

/// The processes of this host whose command line holds the signature of [`QUERY`].
pub fn command_lines_with_signature() -> Vec<Exposed> {
    let signature = QUERY.rsplit("signature=").next().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(signature) {
                found.push(Exposed { cmdline, lineage: lineage(pid) });
            }
        }
    }
    found
}

/// `pid` and its ancestors, from the parent pid in `/proc/<pid>/stat`.
fn lineage(pid: u32) -> Vec<u32> {
    let mut chain = vec![pid];
    while let Some(parent) = std::fs::read_to_string(format!("/proc/{}/stat", chain[chain.len() - 1]))
        .ok()
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        .and_then(|stat| stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<u32>().ok())
        .filter(|p| *p > 0 && !chain.contains(p) && chain.len() < 64)
    {
        chain.push(parent);
    }
    chain
}

fn handle(request: http_fake::Request, shared: &Shared) -> Option<http_fake::Response> {
    let exposed = command_lines_with_signature();
    let body = String::from_utf8_lossy(&request.body).into_owned();
    let request = Request {
        method: request.method.to_string(),
        target: request.target,
        headers: request.headers,
        json: serde_json::from_str(&body).ok(),
        body,
        problem: None,
        at: Instant::now(),
    };
    let problem = check(&request);
    let reply = {
        let mut inner = shared.inner.lock().unwrap();
        if inner.stopping {
            return None;
        }
        let reply = match &problem {
            Some(p) => Reply::Body(400, serde_json::json!({ "Code": "InvalidParameter", "Message": p }).to_string()),
            None => inner.script.pop_front().unwrap_or_else(|| inner.then.clone()),
        };
        inner.requests.push(Request { problem, ..request });
        for e in exposed {
            if !inner.exposed.contains(&e) {
                inner.exposed.push(e);
            }
        }
        shared.changed.notify_all();
        reply
    };
    let (code, body) = match reply {
        Reply::Status(code) => (code, serde_json::json!({ "status": code }).to_string()),
        Reply::Body(code, body) => (code, body),
        Reply::Hang => {
            // Hold the connection open, unanswered, until the fake stops;
            // then close it unanswered.
            let mut inner = shared.inner.lock().unwrap();
            while !inner.stopping {
                inner = shared.changed.wait(inner).unwrap();
            }
            return None;
        }
        Reply::Endless(code) => return Some(endless(code)),
    };
    Some(http_fake::response(code, Some("application/json"), body))
}

/// `code` with a body that never ends: a JSON error's start, then 64 KiB
/// of filler every 10 ms (slow enough that a client reading it all grows
/// by megabytes a second, not gigabytes), until the client or the fake
/// closes the connection.
fn endless(code: u16) -> http_fake::Response {
    use futures_util::StreamExt as _;
    use http_body_util::BodyExt;
    let head =
        futures_util::stream::once(async { Ok(bytes::Bytes::from_static(br#"{"Code":"Throttling","Message":""#)) });
    let filler = futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Some((Ok(bytes::Bytes::from(vec![b'x'; 64 * 1024])), ()))
    });
    let body = http_body_util::StreamBody::new(head.chain(filler).map(|chunk| chunk.map(hyper::body::Frame::data)));
    let mut response = hyper::Response::new(BodyExt::boxed(body));
    *response.status_mut() = hyper::StatusCode::from_u16(code).expect("a valid status code");
    response
}

/// What the documented protocol requires of a signal.
fn check(r: &Request) -> Option<String> {
    if r.method != "POST" {
        return Some(format!("method {}: expected POST", r.method));
    }
    if r.path() != "/waitcondition" || r.query("signature").is_none() || r.query("stackname").is_none() {
        return Some(format!("{}: expected the signed /waitcondition URL", r.path()));
    }
    // ROS checks the signature over the whole query: one changed byte (a
    // backslash left from the CurlCli's `\&`) and the signal is refused.
    if let Some((key, _)) = QUERY.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, v)| r.query(k) != Some(v)) {
        return Some(format!("{key}: the signed query was altered (SignatureDoesNotMatch)"));
    }
    if !r.header("content-type").is_some_and(|t| t.starts_with("application/json")) {
        return Some(format!("content-type {:?}: expected application/json", r.header("content-type")));
    }
    let Some(serde_json::Value::Object(body)) = &r.json else {
        return Some("the body is not a JSON object".into());
    };
    match body.get("status").and_then(|s| s.as_str()) {
        Some("SUCCESS" | "FAILURE" | "WARNING") => {}
        other => return Some(format!("status {other:?}: expected SUCCESS, FAILURE or WARNING")),
    }
    for (key, value) in body {
        match key.as_str() {
            "status" => {}
            "reason" | "data" | "id" if value.is_string() => {}
            "reason" | "data" | "id" => return Some(format!("{key}: expected a string")),
            _ => return Some(format!("{key}: unknown field")),
        }
    }
    None
}
