//! Helpers for the end-to-end tests: each test gets its own temporary
//! directory, state directory and container name, and removes what it
//! created from the engine when it ends (also when it fails). Fakes of the
//! services around the agent: the ECS metadata service (here), the ROS wait
//! condition (`ros`), the agent's own API for `jupyter-bootstrap`
//! (`fake_agent`); and the ROS template checker (`template`).
//!
//! # The engine lock
//!
//! All tests run in parallel threads of one binary. Most use the machine's
//! Docker engine; `engine_start` stops it and checks that the agent starts it
//! again, which must never happen while another test uses it. So the process
//! has one `RwLock<()>`, [`ENGINE`]:
//!
//! - a test that uses the engine holds a read guard ([`engine_shared`]) from
//!   its start to its end, cleanup included: [`Env::new`] takes it and the
//!   `Env` holds it until it is dropped, after its containers and images are
//!   removed; the boot tests, which need no `Env`, hold it in their `Boot`;
//! - `engine_start` holds the write guard ([`engine_exclusive`]) for its
//!   whole duration and makes its `Env` with [`Env::with_engine_exclusive`],
//!   which takes no read guard.
//!
//! A thread that already holds a read guard (a test with two `Env`s) shares
//! it instead of taking a second one: std's `RwLock` may block a new reader
//! while a writer waits, which would deadlock a thread that holds a read
//! guard and asks for another. A test that panics while it holds the write
//! guard poisons the lock; the others take it anyway (`into_inner`), since
//! `()` guards no data that could be left half-written.
//!
//! The host's own install paths (`/usr/local/bin`, `/etc/jupyter-agent`, the
//! systemd unit) are another shared resource: [`host_paths`] serialises the
//! tests that write or inspect them. Take it before the engine's read guard,
//! never while holding one (see [`host_paths`]).

pub mod debian_root;
pub mod fake_agent;
pub mod pebble;
pub mod registry;
pub mod ros;
pub mod template;
pub mod wss;

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;

/// The Docker engine of this machine, as the tests share it (module doc).
static ENGINE: RwLock<()> = RwLock::new(());

thread_local! {
    /// This thread's read guard on [`ENGINE`], while some `EngineShared` holds it.
    static ENGINE_SHARED: RefCell<Weak<RwLockReadGuard<'static, ()>>> = const { RefCell::new(Weak::new()) };
}

/// A test's shared use of the engine: the engine runs, and `engine_start`
/// waits, until every `EngineShared` is dropped.
pub struct EngineShared {
    _guard: Rc<RwLockReadGuard<'static, ()>>,
}

/// Takes a read guard on [`ENGINE`], or shares the one this thread holds;
/// blocks while `engine_start` holds the write guard.
pub fn engine_shared() -> EngineShared {
    ENGINE_SHARED.with(|held| {
        if let Some(guard) = held.borrow().upgrade() {
            return EngineShared { _guard: guard };
        }
        let guard = Rc::new(ENGINE.read().unwrap_or_else(|e| e.into_inner()));
        *held.borrow_mut() = Rc::downgrade(&guard);
        EngineShared { _guard: guard }
    })
}

/// The engine for this test alone: no other test uses it until this is dropped.
pub struct EngineExclusive {
    _guard: RwLockWriteGuard<'static, ()>,
}

/// Takes the write guard on [`ENGINE`]: waits until no test uses the engine.
pub fn engine_exclusive() -> EngineExclusive {
    EngineExclusive { _guard: ENGINE.write().unwrap_or_else(|e| e.into_inner()) }
}

/// Serialises the tests that write or inspect the host's own install paths.
/// Take it before the engine's read guard (before `Env::new`), never while
/// holding one: a thread waiting for it with a read guard held, while the
/// holder waits for a read guard behind `engine_start`'s waiting write
/// guard, would never go on.
pub fn host_paths() -> MutexGuard<'static, ()> {
    static HOST_PATHS: Mutex<()> = Mutex::new(());
    HOST_PATHS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The Jupyter image built by `scripts/build-test-image`.
pub fn test_image() -> String {
    std::env::var("JUPYTER_TEST_IMAGE").unwrap_or_else(|_| "jupyter-agent/notebook:local".into())
}

/// The jupyter_server 2 image built by `scripts/build-server2-image`.
pub fn server2_image() -> String {
    std::env::var("JUPYTER_SERVER2_IMAGE").unwrap_or_else(|_| "jupyter-agent/server2:local".into())
}

/// A binary of this workspace, next to the test executable's `deps/` folder.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: build the workspace first (cargo build --workspace)", path.display());
    path
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("the docker CLI runs")
}

/// `docker inspect -f FORMAT NAME`, trimmed.
pub fn inspect(name: &str, format: &str) -> String {
    let out = docker(&["inspect", "-f", format, name]);
    assert!(out.status.success(), "docker inspect {name}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One test's world: a directory, a config file in it, a container name,
/// and its use of the engine (held until the container and images are gone).
pub struct Env {
    pub dir: tempfile::TempDir,
    pub name: String,
    /// Images the test created, removed at the end.
    pub images: Vec<String>,
    /// Dropped last, after `Drop::drop` has cleaned the engine up.
    _engine: Option<EngineShared>,
}

/// What one run of the agent did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Env {
    /// A test's world, holding a read guard on [`ENGINE`] (module doc).
    pub fn new(test: &str) -> Env {
        Env::make(test, Some(engine_shared()))
    }

    /// For the test that holds the engine alone (`_held`): no read guard,
    /// which would wait for that write guard forever.
    pub fn with_engine_exclusive(test: &str, _held: &EngineExclusive) -> Env {
        Env::make(test, None)
    }

    fn make(test: &str, engine: Option<EngineShared>) -> Env {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("ja-test-{test}-{}-{n}", std::process::id());
        Env { dir: tempfile::tempdir().expect("temp dir"), name, images: Vec::new(), _engine: engine }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("config.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    /// The agent's local API socket, one per test.
    pub fn socket(&self) -> PathBuf {
        self.path("agent.sock")
    }

    /// A configuration for the local test image on a free loopback port;
    /// `extra` is appended inside `[container]` (and may open later sections).
    pub fn base_config(&self, container_extra: &str) -> String {
        format!(
            "state_dir = \"{state}\"\nsocket = \"{socket}\"\nresult_file = \"{result}\"\n\n[image]\nname = \"{image}\"\npull = \"never\"\n\n\
             [jupyter]\nready_timeout = \"90s\"\nurl_host = \"127.0.0.1\"\n\n\
             [container]\nname = \"{name}\"\npublish = \"127.0.0.1:0\"\n{container_extra}\n",
            state = self.state_dir().display(),
            socket = self.socket().display(),
            result = self.path("result.txt").display(),
            image = test_image(),
            name = self.name,
        )
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// Runs `jupyter-agent --config <this config> ARGS`.
    pub fn agent(&self, args: &[&str]) -> Run {
        let out = Command::new(bin("jupyter-agent"))
            .arg("--config")
            .arg(self.config_path())
            .args(args)
            .env("JUPYTER_AGENT_LOG", "info")
            .output()
            .expect("jupyter-agent runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The detail of the state's last step `name`.
    pub fn step_detail(&self, name: &str) -> String {
        let state = self.state();
        let steps = state["steps"].as_array().expect("steps");
        let step = steps.iter().rev().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no step {name}: {state}"));
        step["detail"].as_str().unwrap_or_default().to_string()
    }

    /// `status --json --show-token` parsed.
    pub fn state(&self) -> serde_json::Value {
        let run = self.agent(&["status", "--json", "--show-token"]);
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("status --json: {e}\n{}", run.stderr))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
        for image in &self.images {
            let _ = docker(&["rmi", "-f", image]);
        }
    }
}

impl Run {
    /// Panics with everything the agent said unless it exited with `code`.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(self.code, code, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }
}

/// `jupyter-agent run` in the foreground for `env`, stopped with SIGTERM when dropped.
pub struct ForegroundAgent(std::process::Child);

impl ForegroundAgent {
    pub fn start(env: &Env) -> ForegroundAgent {
        let child = Command::new(bin("jupyter-agent"))
            .arg("--config")
            .arg(env.config_path())
            .arg("run")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("jupyter-agent starts");
        ForegroundAgent(child)
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Its exit status once it has exited, waiting at most `timeout`.
    pub fn wait_until(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// SIGTERM, then its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        self.0.wait().expect("the agent exits")
    }
}

impl Drop for ForegroundAgent {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.stop();
        }
    }
}

/// A fake server's accept loop: each connection handled on a thread of its
/// own, until `stopping` says so (checked at each connection: whoever stops
/// the server connects once to wake the loop).
pub fn accept_each<S: Send + 'static>(
    mut accept: impl FnMut() -> std::io::Result<S> + Send + 'static,
    stopping: impl Fn() -> bool + Send + 'static,
    handle: impl Fn(S) + Send + Sync + 'static,
) -> thread::JoinHandle<()> {
    let handle = Arc::new(handle);
    thread::spawn(move || loop {
        let accepted = accept();
        if stopping() {
            break;
        }
        let Ok(stream) = accepted else { continue };
        let handle = handle.clone();
        thread::spawn(move || handle(stream));
    })
}

/// Splits a login URL into (base `http://host:port`, path, token).
pub fn split_url(url: &str) -> (String, String, String) {
    let (before, token) = url.split_once("?token=").expect("URL has a token");
    let rest = before.strip_prefix("http://").expect("http URL");
    let slash = rest.find('/').unwrap_or(rest.len());
    (format!("http://{}", &rest[..slash]), rest[slash..].to_string(), token.to_string())
}

/// An HTTP client for the tests (plain http to 127.0.0.1). The workspace
/// builds reqwest with rustls and no default crypto provider (the agent
/// installs ring itself), so the tests install ring too, once.
pub fn http() -> reqwest::blocking::Client {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::blocking::Client::builder().no_proxy().build().expect("an HTTP client")
}

/// `GET base + path` with `Authorization: token T`; the status code.
pub fn get_status(url: &str, token: &str) -> u16 {
    let client = http();
    client.get(url).header("Authorization", format!("token {token}")).send().map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Reads one request's line and headers (lowercased) from a test server's connection.
fn read_request(stream: &std::net::TcpStream) -> Option<(String, Vec<String>)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        headers.push(h.trim().to_ascii_lowercase());
    }
    Some((request_line, headers))
}

/// An HTTP server on 127.0.0.1 playing the ECS metadata service in hardened
/// mode, as documented: `PUT /latest/api/token` with
/// `X-aliyun-ecs-metadata-token-ttl-seconds` returns a session token, and
/// `GET /latest/meta-data/<key>` answers only with that token in
/// `X-aliyun-ecs-metadata-token`. Records each request line.
pub struct FakeMetadata {
    pub url: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl FakeMetadata {
    pub fn start(values: &[(&str, &str)]) -> FakeMetadata {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let values: Vec<(String, String)> = values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let log = requests.clone();
        thread::spawn(move || {
            const SESSION: &str = "session-token-1";
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let Some((request_line, headers)) = read_request(&stream) else { continue };
                log.lock().unwrap().push(request_line.trim().to_string());
                let mut parts = request_line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let has = |name: &str| headers.iter().any(|h| h.starts_with(name));
                let (status, body) = if method == "PUT" && path == "/latest/api/token" {
                    if has("x-aliyun-ecs-metadata-token-ttl-seconds:") {
                        ("200 OK", SESSION.to_string())
                    } else {
                        ("400 Bad Request", String::new())
                    }
                } else if method == "GET" {
                    let authorized = headers.iter().any(|h| h == &format!("x-aliyun-ecs-metadata-token: {SESSION}"));
                    match path.strip_prefix("/latest/meta-data/") {
                        _ if !authorized => ("401 Unauthorized", String::new()),
                        Some(key) => match values.iter().find(|(k, _)| k == key) {
                            Some((_, v)) => ("200 OK", v.clone()),
                            None => ("404 Not Found", String::new()),
                        },
                        None => ("404 Not Found", String::new()),
                    }
                } else {
                    ("405 Method Not Allowed", String::new())
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        FakeMetadata { url, requests }
    }
}

/// An HTTP server on 127.0.0.1 serving fixed files (GET only), for tarballs.
pub struct StaticServer {
    pub url: String,
}

impl StaticServer {
    pub fn start(files: Vec<(String, Vec<u8>)>) -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let Some((request_line, _)) = read_request(&stream) else { continue };
                let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
                match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(body);
                    }
                    None => {
                        let _ =
                            write!(stream, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                }
            }
        });
        StaticServer { url }
    }
}

/// Every state the agent at `socket` publishes from the moment its socket
/// appears (`GET /v1/events`, one JSON document a line), for at most
/// `seconds`; read it with `wait_with_output` once the agent is done.
pub fn follow_events(socket: &Path, seconds: u32) -> std::process::Child {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "the socket {} never appeared", socket.display());
        thread::sleep(std::time::Duration::from_millis(2));
    }
    Command::new("curl")
        .args(["-sS", "-N", "--max-time", &seconds.to_string(), "--unix-socket"])
        .arg(socket)
        .arg("http://localhost/v1/events")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("curl runs")
}

/// Runs a command, panicking with its output when it fails; its stdout.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
