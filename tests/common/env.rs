//! Each test's world: its own temporary directory, state directory and
//! container name ([`Env`]), removed from the engine when the test ends
//! (also when it fails), and the locks through which the tests share the
//! machine's Docker engine and its install paths.
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

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::Command;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{bin, docker, test_image};

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
