//! The agent as the tests run it in the background: `jupyter-agent run` in
//! the foreground of a child process ([`ForegroundAgent`]), its login URL
//! once ready ([`ready_url`]), and the states it publishes on its API
//! ([`follow_events`]).

use std::path::Path;
use std::process::Command;
use std::thread;

use super::bin;
use super::env::Env;

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

    /// [`ForegroundAgent::start`], its log (at info) appended to `log`, for
    /// a test to show when it fails.
    pub fn start_logging(env: &Env, log: &Path) -> ForegroundAgent {
        ForegroundAgent::spawn_logging(Command::new(bin("jupyter-agent")), env, log)
    }

    /// [`ForegroundAgent::start_logging`] with at most `nofile` open files
    /// (soft and hard limit, so the agent cannot raise it), set by
    /// util-linux's `prlimit`, which then becomes the agent (same pid).
    pub fn start_with_nofile(env: &Env, log: &Path, nofile: usize) -> ForegroundAgent {
        let mut prlimit = Command::new("prlimit");
        prlimit.arg(format!("--nofile={nofile}:{nofile}")).arg(bin("jupyter-agent"));
        ForegroundAgent::spawn_logging(prlimit, env, log)
    }

    fn spawn_logging(mut command: Command, env: &Env, log: &Path) -> ForegroundAgent {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("the agent's log file");
        let child = command
            .arg("--config")
            .arg(env.config_path())
            .arg("run")
            .env("JUPYTER_AGENT_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(file)
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

/// Waits (`jupyter-agent wait`, at most 180 s) until the agent is ready;
/// its login URL (with the token). Panics with the agent's log, `log`, when
/// it is not ready in time.
pub fn ready_url(env: &Env, log: &Path) -> String {
    let run = env.agent(&["wait", "--timeout", "180"]);
    assert_eq!(
        run.code,
        0,
        "not ready\n{}{}\n--- the agent's log:\n{}",
        run.stdout,
        run.stderr,
        std::fs::read_to_string(log).unwrap_or_default()
    );
    env.state()["jupyter"]["url"].as_str().expect("a URL").to_string()
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
