//! Signals an `ALIYUN::ROS::WaitCondition` (docs/ros.md): one
//! JSON POST to the handle's signed URL. SUCCESS carries the login URL as
//! `data` (the stack output); FAILURE fails the stack at once with a
//! `reason` shown in its events, so nobody waits out the wait condition's
//! `Timeout` for a converge that already failed.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

use jupyter_proto::redact::{bound, redact, without_query, Redactor};
use jupyter_proto::retry::{self, Policy, Transient};

/// ROS shows the reason in the stack's events: keep it readable.
pub const MAX_REASON: usize = 1000;
/// How many GPU names a room's data carries, and how long each may be
/// (an instance has at most 8; `nvidia-smi` names are short).
pub const MAX_GPUS: usize = 16;
pub const MAX_GPU_NAME: usize = 64;
/// The longest single attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
pub const FIRST_DELAY: Duration = Duration::from_millis(500);
/// Before jitter, which may double it: no single delay exceeds 30 s.
pub const MAX_DELAY: Duration = Duration::from_secs(15);
/// The most of a refusal's body that is read (its first 200 characters are
/// shown): an endpoint streaming without end can neither grow the
/// bootstrap's memory nor hold the attempt.
pub const MAX_ERROR_BODY: usize = 64 * 1024;
/// How long a refusal's body may take to arrive; what came by then is shown.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// What SUCCESS carries as `data` (`--ros-data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RosData {
    /// The login URL, with its token.
    Url,
    /// No `data` field.
    None,
    /// {"url": URL}: a room's wait condition, whose Data the organiser reads per participant.
    Json,
}

/// Where and how to signal: the handle's URL and the headers its CurlCli sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// An `http://` URL with a host.
    pub url: Uri,
    /// In order; `Content-Type` is always sent as `application/json`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Target {
    /// Checks the URL (http:// only) and the `Name: value` headers.
    pub fn new(url: &str, headers: &[String]) -> Result<Target, String> {
        let shown = without_query(url);
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Err(format!(
                "`{shown}`: https:// is not supported (this build has no TLS); ROS hands instances \
                 http://100.100.100.110/waitcondition?... in the handle's CurlCli"
            ));
        }
        if !lower.starts_with("http://") {
            return Err(format!("`{shown}`: expected an http:// URL (the wait condition handle's URL)"));
        }
        let url: Uri = url.parse().map_err(|e| format!("`{shown}`: not a valid URL: {e}"))?;
        if url.host().is_none_or(str::is_empty) {
            return Err(format!("`{shown}`: not a valid URL: no host"));
        }
        let headers = headers.iter().map(|h| parse_header(h)).collect::<Result<_, _>>()?;
        Ok(Target { url, headers })
    }

    /// The URL without its query (which holds the signature), for messages.
    pub fn shown(&self) -> String {
        without_query(&self.url.to_string())
    }

    /// What no message may show of the target: its query (the signature and
    /// what it signs) whole, and each signature's value as sent and decoded.
    fn secrets(&self) -> Vec<String> {
        let Some(query) = self.url.query() else { return Vec::new() };
        let mut secrets = vec![query.to_string()];
        for (key, value) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            if key.to_ascii_lowercase().contains("signature") {
                secrets.push(value.to_string());
                secrets.push(percent_decoded(value));
            }
        }
        secrets
    }

    fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in &self.headers {
            if k != CONTENT_TYPE {
                map.append(k.clone(), v.clone());
            }
        }
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        map
    }
}

/// A refused header is shown without what follows a `?`: a word of a
/// CurlCli taken for a header may be the signed URL, whose query is the
/// signature.
fn parse_header(h: &str) -> Result<(HeaderName, HeaderValue), String> {
    let shown = || bound(&without_query(h), 200);
    let (name, value) = h.split_once(':').ok_or_else(|| format!("header `{}`: expected `Name: value`", shown()))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("header `{}`: invalid header name", shown()))?;
    let value =
        HeaderValue::from_str(value.trim()).map_err(|_| format!("header `{}`: invalid header value", shown()))?;
    Ok((name, value))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Success,
    Failure,
}

/// The signal body, fields in the documented order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signal {
    pub status: Status,
    /// A later signal with the same id replaces this one.
    pub id: String,
    /// The wait condition's `Data[id]`: the login URL, or absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    pub reason: String,
}

impl Signal {
    /// What no message may show of the signal: the login URL it carries,
    /// and its token alone (an answer may echo it in any form).
    fn secrets(&self) -> Vec<String> {
        let Some(data) = &self.data else { return Vec::new() };
        let mut secrets = vec![data.clone()];
        let lower = data.to_ascii_lowercase();
        for (at, _) in lower.match_indices("token=") {
            let value = &data[at + "token=".len()..];
            let end = value.find(|c: char| matches!(c, '&' | '#' | '"' | '\'' | '\\') || c.is_whitespace());
            secrets.push(value[..end.unwrap_or(value.len())].to_string());
        }
        secrets
    }

    /// SUCCESS; `data` is the login URL unless the organiser keeps it out of
    /// the stack; the agent's note on the URL (a self-signed certificate's
    /// fingerprint and why ACME failed, docs/tls.md) follows the reason.
    pub fn success(id: &str, data: Option<&str>, note: Option<&str>) -> Signal {
        Signal { status: Status::Success, id: id.into(), data: data.map(Into::into), reason: ready_reason(note) }
    }

    /// A room's participant that is ready: SUCCESS with `{"url": URL}` as
    /// data, `"note"` when the agent has one, and `"gpus"` (their names)
    /// when the container has GPUs (docs/ros.md#a-room).
    pub fn success_json(id: &str, url: &str, note: Option<&str>, gpus: &[String]) -> Signal {
        let mut data = serde_json::json!({ "url": url });
        if let Some(note) = note {
            data["note"] = serde_json::Value::String(bound(&redact(note), MAX_REASON));
        }
        if !gpus.is_empty() {
            let names = gpus.iter().take(MAX_GPUS).map(|g| bound(&redact(g), MAX_GPU_NAME)).collect::<Vec<_>>();
            data["gpus"] = serde_json::json!(names);
        }
        Signal { status: Status::Success, id: id.into(), data: Some(data.to_string()), reason: ready_reason(note) }
    }

    /// A room's participant whose setup failed, in a room that must complete
    /// anyway: SUCCESS (which counts towards the wait condition's `Count`)
    /// with `{"error": reason, "step": step}` as data, the reason redacted
    /// and bounded (docs/ros.md#a-room).
    pub fn failure_as_data(id: &str, step: &str, reason: &str) -> Signal {
        let error = bound(&redact(reason), MAX_REASON);
        let data = serde_json::json!({ "error": error, "step": step }).to_string();
        Signal {
            status: Status::Success,
            id: id.into(),
            data: Some(data),
            reason: bound(&format!("setup failed in {step}"), MAX_REASON),
        }
    }

    /// FAILURE, its reason redacted and bounded.
    pub fn failure(id: &str, reason: &str) -> Signal {
        Signal { status: Status::Failure, id: id.into(), data: None, reason: bound(&redact(reason), MAX_REASON) }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a signal serializes")
    }
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// No answer: connect error, reset, timeout.
    Transport(String),
    /// An answer other than 2xx; `body` is its start.
    Status { status: StatusCode, body: String },
}

impl Transient for AttemptError {
    fn is_transient(&self) -> bool {
        match self {
            AttemptError::Transport(_) => true,
            AttemptError::Status { status, .. } => retry::transient_status(*status),
        }
    }
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Transport(m) => f.write_str(m),
            AttemptError::Status { status, body } if body.is_empty() => write!(f, "HTTP {status}"),
            AttemptError::Status { status, body } => write!(f, "HTTP {status}: {body}"),
        }
    }
}

/// Sends `signal` to `target`, retrying transport errors, 408, 429 and 5xx
/// within `budget`. `Err` is a message for the operator: the signal was not
/// delivered.
pub async fn send(target: &Target, signal: &Signal, budget: Duration) -> Result<u32, String> {
    let body = Bytes::from(signal.to_json());
    let headers = target.header_map();
    let redactor = Redactor::new(target.secrets().into_iter().chain(signal.secrets()));
    let policy = Policy::new(FIRST_DELAY, MAX_DELAY, budget);
    let mut attempts = 0u32;
    let result = retry::retry(
        &policy,
        |left| {
            attempts += 1;
            let (headers, body, redactor) = (headers.clone(), body.clone(), &redactor);
            async move {
                tokio::time::timeout(left.min(ATTEMPT_TIMEOUT), attempt(&target.url, headers, body, redactor))
                    .await
                    .unwrap_or_else(|_| Err(AttemptError::Transport("no answer in time".into())))
            }
        },
        |e, delay| {
            eprintln!("jupyter-bootstrap: ROS signal: {e}; retrying in {}", jupyter_proto::duration::show(delay));
        },
    )
    .await;
    let status = match signal.status {
        Status::Success => "SUCCESS",
        Status::Failure => "FAILURE",
    };
    match result {
        Ok(()) => Ok(attempts),
        Err(retry::Error::Permanent(e)) => Err(format!(
            "ROS refused the {status} signal to {}: {e}; the signed wait-condition URL has probably expired \
             (or the CurlCli was changed on its way here)",
            target.shown()
        )),
        Err(gave_up) => Err(format!(
            "could not deliver the {status} signal to {} within the {} budget ({} attempt{}; last: {})",
            target.shown(),
            jupyter_proto::duration::show(budget),
            gave_up.attempts(),
            if gave_up.attempts() == 1 { "" } else { "s" },
            gave_up.last_message().unwrap_or_else(|| "no answer".into()),
        )),
    }
}

/// One POST on a connection of its own (no proxy, no redirect followed);
/// a refusal's body is read in part ([`MAX_ERROR_BODY`]) and shown through
/// `redactor`.
async fn attempt(url: &Uri, headers: HeaderMap, body: Bytes, redactor: &Redactor) -> Result<(), AttemptError> {
    let transport = |e: &dyn std::fmt::Display| AttemptError::Transport(e.to_string());
    let host = url.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let port = url.port_u16().unwrap_or(80);
    // An IP address (ROS hands out 100.100.100.110) needs no resolver.
    let stream = TcpStream::connect((host, port)).await.map_err(|e| transport(&e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| transport(&e))?;
    tokio::spawn(connection);
    let authority = url.authority().map_or_else(|| host.to_string(), |a| a.to_string());
    let mut request = Request::post(url.path_and_query().map_or("/", |p| p.as_str()))
        .header(HOST, authority)
        .body(Full::new(body))
        .map_err(|e| transport(&e))?;
    request.headers_mut().extend(headers);
    let response = sender.send_request(request).await.map_err(|e| transport(&e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let bytes = body_start(response.into_body(), MAX_ERROR_BODY, ERROR_BODY_TIMEOUT).await;
    // A body may echo the request: the signed URL, the login URL and its token.
    let text = String::from_utf8_lossy(&bytes);
    let body = bound(&redactor.redact(&text.split_whitespace().collect::<Vec<_>>().join(" ")), 200);
    Err(AttemptError::Status { status, body })
}

/// At most `max` bytes of `body`, as many as arrive within `timeout`; the
/// rest is never read (the connection closes with the body).
async fn body_start(mut body: hyper::body::Incoming, max: usize, timeout: Duration) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut start = Vec::new();
    while start.len() < max {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    start.extend_from_slice(&data[..data.len().min(max - start.len())]);
                }
            }
            _ => break,
        }
    }
    start
}

/// `%XX` escapes decoded (a signature as the server may echo it); anything
/// else, a malformed escape included, kept as it is.
fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) if bytes[i] == b'%' => {
                out.push(b);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// "Jupyter is ready", and the note when there is one, bounded.
fn ready_reason(note: Option<&str>) -> String {
    match note {
        Some(note) => bound(&redact(&format!("Jupyter is ready; note: {note}")), MAX_REASON),
        None => "Jupyter is ready".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ROS endpoint on 127.0.0.1 that answers each request with `head`
    /// (status line and headers), then `body`, then, with `endless`, 64 KiB
    /// of filler every 10 ms until the client hangs up.
    async fn endpoint(head: &'static str, body: String, endless: bool) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let _ = conn.read(&mut buf).await;
                    conn.write_all(head.as_bytes()).await.unwrap();
                    conn.write_all(body.as_bytes()).await.unwrap();
                    if endless {
                        loop {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            if conn.write_all(&[b'x'; 64 * 1024]).await.is_err() {
                                break;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    const SIGNED: &str = "stackname=handson&stackid=0f5a&expire=1893456000&signature=c2VjcmV0c2ln%2Bbase64";

    #[tokio::test]
    async fn a_refusal_that_echoes_the_signed_url_and_the_token_keeps_both_out_of_the_message() {
        let token = "0123456789abcdef0123";
        // ROS's error shapes: the signature alone, decoded or not, the whole
        // query, and the signal's data with its login URL.
        let body = format!(
            r#"{{"Code":"SignatureDoesNotMatch","Echo":"{token}","Message":"Signature=c2VjcmV0c2ln+base64 /waitcondition?{SIGNED}","Sig":"c2VjcmV0c2ln%2Bbase64","Data":"{{\"url\":\"http://h:8888/?token={token}\"}}"}}"#
        );
        let head = "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
        let addr = endpoint(head, body, false).await;
        let target = Target::new(&format!("http://{addr}/waitcondition?{SIGNED}"), &[]).unwrap();
        let signal = Signal::success("jupyter", Some(&format!("http://h:8888/?token={token}")), None);
        let err = send(&target, &signal, Duration::from_secs(10)).await.unwrap_err();
        assert!(err.contains("HTTP 403 Forbidden") && err.contains("SignatureDoesNotMatch"), "{err}");
        for secret in ["c2VjcmV0c2ln", token, "expire=1893456000"] {
            assert!(!err.contains(secret), "{secret} in {err}");
        }
    }

    #[tokio::test]
    async fn an_error_body_that_never_ends_is_read_only_in_part() {
        let head = "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
        let addr = endpoint(head, r#"{"Code":"Throttling","Message":""#.into(), true).await;
        let target = Target::new(&format!("http://{addr}/waitcondition?{SIGNED}"), &[]).unwrap();
        let started = std::time::Instant::now();
        let err = send(&target, &Signal::failure("jupyter", "boom"), Duration::from_secs(10)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}: {err}", started.elapsed());
        assert!(err.starts_with("ROS refused the FAILURE signal") && err.contains("HTTP 403 Forbidden"), "{err}");
        assert!(err.contains(r#"{"Code":"Throttling","Message":"xxx"#), "{err}");
    }

    #[test]
    fn a_signed_url_taken_for_a_header_is_refused_without_its_signature() {
        // Found by the curl fuzz target: `curl -H<signed URL> <signed URL>`.
        let err = parse_header("100.100.100.110/waitcondition?stackid=1&signature=c2VjcmV0").unwrap_err();
        assert_eq!(err, "header `100.100.100.110/waitcondition`: expected `Name: value`");
    }

    #[test]
    fn a_rooms_signals_carry_json_data_and_a_failure_can_complete_the_room() {
        assert_eq!(
            Signal::success_json("alice", "http://203.0.113.7:8888/?token=abc", None, &[]).to_json(),
            r#"{"status":"SUCCESS","id":"alice","data":"{\"url\":\"http://203.0.113.7:8888/?token=abc\"}","reason":"Jupyter is ready"}"#
        );
        let s = Signal::failure_as_data(
            "bob",
            "image",
            "image: pull failed: manifest unknown; url http://h/?token=0123456789abcdef0123",
        );
        assert_eq!(s.status, Status::Success, "counted by the room's wait condition");
        let data: serde_json::Value = serde_json::from_str(s.data.as_deref().unwrap()).unwrap();
        assert_eq!(data["step"], "image");
        assert!(data["error"].as_str().unwrap().starts_with("image: pull failed: manifest unknown"));
        assert!(!s.to_json().contains("0123456789abcdef0123"), "tokens redacted: {}", s.to_json());
        assert_eq!(s.reason, "setup failed in image");
    }

    #[test]
    fn a_note_on_the_url_reaches_the_reason_and_a_rooms_data() {
        let note =
            "self-signed certificate: browsers warn once; accept it only if the SHA-256 fingerprint they show is AB:CD";
        let s = Signal::success("jupyter", Some("https://h:8888/?token=abc"), Some(note));
        assert_eq!(s.reason, format!("Jupyter is ready; note: {note}"));
        let s = Signal::success_json("alice", "https://h:8888/?token=abc", Some(note), &[]);
        let data: serde_json::Value = serde_json::from_str(s.data.as_deref().unwrap()).unwrap();
        assert_eq!(data["note"], note);
        assert_eq!(data["url"], "https://h:8888/?token=abc");
        assert_eq!(data.get("gpus"), None, "no GPUs, no key");
    }

    #[test]
    fn a_rooms_data_names_the_gpus() {
        let gpus = vec!["Tesla T4".to_string(); 2];
        let s = Signal::success_json("alice", "http://h:8888/?token=abc", None, &gpus);
        assert_eq!(
            s.to_json(),
            r#"{"status":"SUCCESS","id":"alice","data":"{\"gpus\":[\"Tesla T4\",\"Tesla T4\"],\"url\":\"http://h:8888/?token=abc\"}","reason":"Jupyter is ready"}"#
        );
        let many: Vec<String> = (0..40).map(|i| format!("GPU {i} {}", "x".repeat(200))).collect();
        let s = Signal::success_json("alice", "http://h:8888/?token=abc", None, &many);
        let data: serde_json::Value = serde_json::from_str(s.data.as_deref().unwrap()).unwrap();
        let names = data["gpus"].as_array().unwrap();
        assert_eq!(names.len(), MAX_GPUS);
        assert!(names.iter().all(|n| n.as_str().unwrap().chars().count() <= MAX_GPU_NAME));
    }

    #[test]
    fn signal_bodies_have_the_exact_documented_shape() {
        let url = "http://203.0.113.7:8888/tree?token=abc";
        assert_eq!(
            Signal::success("jupyter", Some(url), None).to_json(),
            r#"{"status":"SUCCESS","id":"jupyter","data":"http://203.0.113.7:8888/tree?token=abc","reason":"Jupyter is ready"}"#
        );
        assert_eq!(
            Signal::success("nb", None, None).to_json(),
            r#"{"status":"SUCCESS","id":"nb","reason":"Jupyter is ready"}"#
        );
        assert_eq!(
            Signal::failure("jupyter", "image: pull failed: manifest unknown").to_json(),
            r#"{"status":"FAILURE","id":"jupyter","reason":"image: pull failed: manifest unknown"}"#
        );
    }

    #[test]
    fn failure_reasons_are_redacted_and_bounded() {
        let s = Signal::failure("jupyter", "token: proof failed for http://h:8888/?token=s3cret");
        assert_eq!(s.reason, "token: proof failed for http://h:8888/?token=<redacted>");
        let long = format!("token: {}", "ü".repeat(5000));
        let s = Signal::failure("jupyter", &long);
        assert_eq!(s.reason.chars().count(), MAX_REASON);
        assert!(s.reason.ends_with('…') && s.reason.starts_with("token: üü"));
    }

    #[test]
    fn only_transport_errors_408_429_and_5xx_are_retried() {
        let status = |code| AttemptError::Status { status: StatusCode::from_u16(code).unwrap(), body: String::new() };
        assert!(AttemptError::Transport("reset".into()).is_transient());
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(status(code).is_transient(), "{code}");
        }
        for code in [301, 400, 401, 403, 404, 410] {
            assert!(!status(code).is_transient(), "{code}");
        }
    }

    #[test]
    fn content_type_is_always_json_and_other_headers_are_kept() {
        let t = Target::new(
            "http://100.100.100.110/waitcondition?signature=x",
            &["Content-Type: text/plain".into(), "x-acs-region-id: cn-beijing".into()],
        )
        .unwrap();
        let map = t.header_map();
        assert_eq!(map.get(CONTENT_TYPE).unwrap(), "application/json");
        assert_eq!(map.get("x-acs-region-id").unwrap(), "cn-beijing");
        assert_eq!(map.len(), 2);
        assert_eq!(t.shown(), "http://100.100.100.110/waitcondition");
    }
}
