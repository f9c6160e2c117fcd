//! A participant's browser: Debian's headless Chromium, driven over the
//! DevTools protocol (`--remote-debugging-port`, JSON messages on a
//! WebSocket to its page target): open a URL, evaluate JavaScript in the
//! page, take a screenshot. Nothing but loopback: the profile is a fresh
//! directory of the test's, and the page opens only the URLs a test gives.

use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use super::pebble::free_port;

/// The browser, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Chromium {
    child: Child,
    page: WebSocket<TcpStream>,
    next_id: u64,
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
        let mut browser = Chromium { child, page: connect_page(port), next_id: 0 };
        browser.call("Page.enable", json!({})).expect("Page.enable");
        browser
    }

    /// Sends `method` with `params` and waits (at most 30 s) for its answer,
    /// skipping the events that come meanwhile: the answer's `result`, or
    /// its `error` as `Err`.
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
                continue;
            }
            return match v.get("error") {
                Some(error) => Err(error.clone()),
                None => Ok(v["result"].clone()),
            };
        }
    }

    /// Opens `url` in the page (as typed into the address bar).
    pub fn navigate(&mut self, url: &str) {
        let result = self.call("Page.navigate", json!({"url": url})).unwrap_or_else(|e| panic!("navigate: {e}"));
        assert!(result["errorText"].is_null(), "navigate to the URL: {result}");
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
