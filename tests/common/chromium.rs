//! A participant's browser: Debian's headless Chromium, driven over the
//! DevTools protocol (`--remote-debugging-port`, JSON messages on a
//! WebSocket to its page target): open a URL, evaluate JavaScript in the
//! page, click an element, wait until the page shows something, save
//! downloads into a directory, take a screenshot. Nothing but loopback: the
//! profile is a fresh directory of the test's, and the page opens only the
//! URLs a test gives.

use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use super::free_port;

/// The browser, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Chromium {
    child: Child,
    page: WebSocket<TcpStream>,
    next_id: u64,
    /// What the page reported as it went: its uncaught errors, its
    /// `console.error`s and the browser's own log (a resource that failed
    /// to load), for a failure message.
    console: Vec<String>,
    /// Where [`Chromium::console`] stood when the page was last opened or
    /// reloaded.
    opened: usize,
}

/// What Chromium fails a request with when it sees an address of the host
/// come or go: it drops every request in flight, loopback's too. Other
/// tests' containers, Docker networks and network namespaces come and go
/// on the test host while a browser test runs (a participant's browser
/// never sees the ECS host's interfaces); a person seeing it reloads.
const NETWORK_CHANGED: &str = "net::ERR_NETWORK_CHANGED";
/// How often a page is opened again after [`NETWORK_CHANGED`].
const MAX_RELOADS: usize = 2;

/// Whether a value is truthy as JavaScript says: not null, false, 0 or "".
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        _ => true,
    }
}

/// Where the browser is, or why the tests cannot have one.
pub fn binary() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

impl Chromium {
    /// Starts the browser on a blank page with its profile in `profile`
    /// (an empty directory) and connects to that page.
    pub fn start(profile: &Path) -> Chromium {
        let exe = binary().expect("Debian's chromium is installed (apt-get install chromium)");
        let port = free_port();
        let child = Command::new(exe)
            .args([
                "--headless",
                // As root (the tests' user), Chromium refuses to start sandboxed.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--window-size=1280,800",
                &format!("--remote-debugging-port={port}"),
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let mut browser = Chromium { child, page: connect_page(port), next_id: 0, console: Vec::new(), opened: 0 };
        for domain in ["Page", "Runtime", "Log"] {
            browser.call(&format!("{domain}.enable"), json!({})).unwrap_or_else(|e| panic!("{domain}.enable: {e}"));
        }
        browser
    }

    /// Sends `method` with `params` and waits (at most 30 s) for its answer,
    /// keeping the page's errors among the events that come meanwhile: the
    /// answer's `result`, or its `error` as `Err`.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params});
        self.page.send(Message::text(request.to_string())).unwrap_or_else(|e| panic!("DevTools {method}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "DevTools {method}: no answer within 30 s");
            let message = match self.page.read() {
                Ok(message) => message,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
                {
                    continue
                }
                Err(e) => panic!("DevTools {method}: {e}"),
            };
            let Message::Text(text) = message else { continue };
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("DevTools sent no JSON ({e}): {text}"));
            if v["id"] != id {
                self.keep_error(&v);
                continue;
            }
            return match v.get("error") {
                Some(error) => Err(error.clone()),
                None => Ok(v["result"].clone()),
            };
        }
    }

    /// Keeps `event` in [`Chromium::console`] when it reports an error.
    fn keep_error(&mut self, event: &Value) {
        let params = &event["params"];
        let line = match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                let what = details["exception"]["description"].as_str().or(details["text"].as_str());
                format!("uncaught: {}", what.unwrap_or("?"))
            }
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                let args: Vec<String> = params["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| a["value"].as_str().or(a["description"].as_str()).unwrap_or("?").to_string())
                    .collect();
                format!("console.error: {}", args.join(" "))
            }
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => {
                let entry = &params["entry"];
                format!("{}: {} {}", entry["source"], entry["text"], entry["url"].as_str().unwrap_or_default())
            }
            _ => return,
        };
        self.console.push(line);
    }

    /// Opens `url` in the page (as typed into the address bar), again
    /// when Chromium dropped it for [`NETWORK_CHANGED`].
    pub fn navigate(&mut self, url: &str) {
        for attempt in 0..=MAX_RELOADS {
            self.opened = self.console.len();
            let result = self.call("Page.navigate", json!({"url": url})).unwrap_or_else(|e| panic!("navigate: {e}"));
            match result["errorText"].as_str() {
                None => return,
                Some(NETWORK_CHANGED) if attempt < MAX_RELOADS => {
                    eprintln!("the browser dropped the page for {NETWORK_CHANGED} (the test host's interfaces): again")
                }
                Some(_) => panic!("navigate to the URL: {result}"),
            }
        }
    }

    /// Whether Chromium dropped a request of the page for
    /// [`NETWORK_CHANGED`] since it was opened.
    fn network_changed(&self) -> bool {
        self.console[self.opened..].iter().any(|line| line.contains(NETWORK_CHANGED))
    }

    /// `expression` evaluated in the page, its value (JSON), or `Null` when
    /// it cannot be evaluated now (e.g. while the page loads).
    pub fn eval(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "returnByValue": true});
        match self.call("Runtime.evaluate", params) {
            Ok(result) if result["exceptionDetails"].is_null() => result["result"]["value"].clone(),
            _ => Value::Null,
        }
    }

    /// Clicks the element `selector` (CSS) matches, as a person does (with
    /// a user gesture, so a link's download is not held back): its default
    /// action follows (a link opens, a form is submitted). Panics when no
    /// element matches.
    pub fn click(&mut self, selector: &str) {
        let expression = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return false; e.click(); return true; }})()",
            Value::from(selector)
        );
        let params = json!({"expression": expression, "returnByValue": true, "userGesture": true});
        let clicked = match self.call("Runtime.evaluate", params) {
            Ok(result) if result["exceptionDetails"].is_null() => result["result"]["value"].clone(),
            other => panic!("clicking {selector}: {other:?}"),
        };
        assert_eq!(clicked, Value::Bool(true), "nothing to click: no {selector} on {}", self.describe());
    }

    /// Evaluates `expression` every 200 ms until its value is truthy (not
    /// null, false, 0 or ""), for at most `timeout`: that value. Past the
    /// deadline, panics saying `what` was awaited, the last value and what
    /// the page shows.
    pub fn wait_until(&mut self, what: &str, expression: &str, timeout: Duration) -> Value {
        self.wait(what, expression, timeout, false)
    }

    /// [`Chromium::wait_until`] for a page a GET opened, which a person
    /// would reload: when Chromium dropped one of its requests for
    /// [`NETWORK_CHANGED`] (a script the page needs, so it is never drawn),
    /// the page is reloaded once it has stopped loading, at most
    /// [`MAX_RELOADS`] times, and waited for again. A request the front
    /// failed or dropped fails as before.
    pub fn wait_for_page(&mut self, what: &str, expression: &str, timeout: Duration) -> Value {
        self.wait(what, expression, timeout, true)
    }

    fn wait(&mut self, what: &str, expression: &str, timeout: Duration, reload: bool) -> Value {
        let mut deadline = Instant::now() + timeout;
        let mut reloads = 0;
        loop {
            let value = self.eval(expression);
            if truthy(&value) {
                return value;
            }
            let settled = "document.readyState === 'complete'";
            if reload && reloads < MAX_RELOADS && self.network_changed() && truthy(&self.eval(settled)) {
                eprintln!("{what}: the browser dropped a request for {NETWORK_CHANGED} (the test host's interfaces): reloading");
                self.opened = self.console.len();
                self.call("Page.reload", json!({})).unwrap_or_else(|e| panic!("reload: {e}"));
                reloads += 1;
                deadline = Instant::now() + timeout;
                continue;
            }
            if Instant::now() >= deadline {
                panic!("{what}: not within {timeout:?} (last value {value}); the page: {}", self.describe());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The page's address (not its query: a login link's holds the token),
    /// title and text (its first 2000 characters), what it loaded and the
    /// errors it reported, for a test's failure message.
    pub fn describe(&mut self) -> String {
        let seen = self.eval(
            "location.origin + location.pathname + (location.search ? '?<query>' : '') + \
             ' (' + document.title + '):\\n' + \
             (document.body ? document.body.innerText : '').slice(0, 2000)",
        );
        let seen = seen.as_str().map(str::to_string).unwrap_or_else(|| format!("(cannot be read now: {seen})"));
        let errors = match self.console.is_empty() {
            true => "the page reported no error".to_string(),
            false => format!("what the page reported:\n{}", self.console.join("\n")),
        };
        format!("{seen}\n{}\n{errors}", self.resources())
    }

    /// What the page loaded besides itself, as the browser's resource
    /// timing saw it: one line per request (its status, 0 when it failed or
    /// has not answered yet, and how long it took), so a page its scripts
    /// never drew says which script was missing.
    fn resources(&mut self) -> String {
        let lines = self.eval(
            "performance.getEntriesByType('resource').map(e => `${e.responseStatus ?? '?'} \
             ${Math.round(e.duration)} ms ${e.name}`).join('\\n')",
        );
        match lines.as_str() {
            Some("") => "the page loaded nothing else".to_string(),
            Some(lines) => format!("what the page loaded (status, time, URL):\n{lines}"),
            None => format!("(its resources cannot be read now: {lines})"),
        }
    }

    /// Downloads go into `dir` from now on, under the names the server
    /// gives (`Content-Disposition`), without asking where. The Browser
    /// domain's command, or the Page domain's older one if this Chromium
    /// takes only that on a page's connection.
    pub fn allow_downloads(&mut self, dir: &Path) {
        let params = json!({"behavior": "allow", "downloadPath": dir});
        if let Err(browser) = self.call("Browser.setDownloadBehavior", params.clone()) {
            if let Err(page) = self.call("Page.setDownloadBehavior", params) {
                panic!("downloads cannot be allowed: Browser.setDownloadBehavior: {browser}; Page.setDownloadBehavior: {page}");
            }
        }
    }

    /// A PNG of what the page shows now, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"})).expect("a screenshot");
        let png = decode_base64(shot["data"].as_str().expect("the screenshot's data"));
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is no PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// The file a download wrote into `dir` (where [`Chromium::allow_downloads`]
/// sends them), once it is complete: the only file there whose name is not
/// a partial download's (`.crdownload`) while none such is left, waited
/// for at most `timeout`.
pub fn downloaded(dir: &Path, timeout: Duration) -> PathBuf {
    let deadline = Instant::now() + timeout;
    loop {
        let names: Vec<String> = match std::fs::read_dir(dir) {
            Ok(entries) => {
                entries.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("{}: {e}", dir.display()),
        };
        let partial = names.iter().any(|n| n.ends_with(".crdownload"));
        let done: Vec<&String> = names.iter().filter(|n| !n.ends_with(".crdownload") && !n.starts_with('.')).collect();
        if !partial && !done.is_empty() {
            assert_eq!(done.len(), 1, "one download expected in {}: {names:?}", dir.display());
            return dir.join(done[0]);
        }
        assert!(Instant::now() < deadline, "no complete download in {} within {timeout:?}: {names:?}", dir.display());
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The WebSocket of the browser's first page target, once its DevTools
/// port answers (at most 30 s).
fn connect_page(port: u16) -> WebSocket<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let target = loop {
        let targets: Option<Value> =
            super::http().get(format!("http://127.0.0.1:{port}/json/list")).send().and_then(|r| r.json()).ok();
        let page = targets
            .as_ref()
            .and_then(Value::as_array)
            .and_then(|all| all.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .map(str::to_string);
        if let Some(url) = page {
            break url;
        }
        assert!(Instant::now() < deadline, "Chromium's DevTools port {port} never listed a page: {targets:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to Chromium's DevTools port");
    stream.set_read_timeout(Some(Duration::from_secs(1))).expect("a read timeout");
    let (page, _) = tungstenite::client::client(target.as_str(), stream)
        .unwrap_or_else(|e| panic!("the DevTools WebSocket {target}: {e}"));
    page
}

/// Standard base64 (with padding), as DevTools sends binary data.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c:?}"),
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        let digits: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').map(value).collect();
        let n = digits.iter().enumerate().fold(0u32, |n, (i, &d)| n | (u32::from(d) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..digits.len().max(1)]);
    }
    out
}
