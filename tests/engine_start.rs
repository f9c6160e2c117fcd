//! The real start path: Docker is installed but its engine is stopped, and
//! `jupyter-agent run` starts it itself (no systemd here: a detached dockerd
//! with its log in the agent's log directory) before converging.
//!
//! This test stops the machine's Docker engine. It holds the engine lock's
//! write guard from its start to its end (`common::env::engine_exclusive`), so it
//! waits until no other test uses the engine, and none starts meanwhile; it
//! leaves the engine running.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::agent::ForegroundAgent;
use crate::common::env::{engine_exclusive, Env};
use crate::common::{bin, get_status, split_url};

fn engine_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn stop_engine() {
    if Path::new("/run/systemd/system").is_dir() {
        assert!(Command::new("systemctl").args(["stop", "docker.socket", "docker"]).status().unwrap().success());
    } else {
        let pid = std::fs::read_to_string("/var/run/docker.pid").expect("dockerd writes /var/run/docker.pid");
        assert!(Command::new("kill").args(["-TERM", pid.trim()]).status().unwrap().success());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine_answers() || Path::new("/var/run/docker.pid").exists() {
        assert!(Instant::now() < deadline, "the engine did not stop");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_agent_starts_an_installed_but_stopped_engine_and_converges() {
    let engine = engine_exclusive();
    assert!(engine_answers(), "precondition: an engine answers (scripts/test.sh starts one)");
    stop_engine();

    let env = Env::with_engine_exclusive("start", &engine);
    // The engine's log must outlive this test's temporary directory.
    let log_dir = "/var/log/jupyter-agent-tests";
    env.write_config(&format!("log_dir = \"{log_dir}\"\n{}\n[docker]\nping_timeout = \"90s\"\n", env.base_config("")));
    let run = env.agent(&["run", "--once"]);
    assert!(engine_answers(), "the engine answers again");
    let run = run.expect(0);

    let state = env.state();
    let steps: Vec<(&str, &str)> = state["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["detail"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(steps[0].0, "docker: start", "only started, nothing installed: {steps:?}");
    assert!(steps[0].1.starts_with("dockerd started, pid "), "{steps:?}");
    assert_eq!(steps[1].0, "engine");
    assert!(Path::new(log_dir).join("dockerd.log").is_file());
    assert!(run.stderr.contains("no Docker engine answers: installing and starting Docker"), "{}", run.stderr);

    let (base, _, token) = split_url(env.agent(&["url"]).expect(0).stdout.trim());
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200);
}

/// Starts the engine again the way scripts/test.sh does: `jupyter-agent
/// install-docker` (a detached dockerd when there is no systemd).
fn start_engine(env: &Env) {
    let config = env.path("host.toml");
    std::fs::write(
        &config,
        format!("state_dir = \"{}\"\nlog_dir = \"/var/log/jupyter-agent-tests\"\n", env.path("host-state").display()),
    )
    .unwrap();
    let out = Command::new(bin("jupyter-agent")).arg("--config").arg(&config).arg("install-docker").output().unwrap();
    assert!(out.status.success(), "install-docker: {}", String::from_utf8_lossy(&out.stderr));
    assert!(engine_answers());
}

/// A long-running agent through a restart of dockerd: the container comes
/// back (restart policy) while the agent's event stream is down. After
/// reconnecting, the agent looks at the container, proves its token again
/// and is ready with the very URL it reported first (the agent's own token),
/// which opens Jupyter. Before, the `start` event fell in the gap and the
/// state said "exited" for good.
#[test]
fn a_long_running_agent_follows_a_dockerd_restart() {
    let engine = engine_exclusive();
    assert!(engine_answers(), "precondition: an engine answers (scripts/test.sh starts one)");
    let env = Env::with_engine_exclusive("dockerd-restart", &engine);
    // A fixed port, as on an instance: with port 0 the engine picks a new one at each start.
    let port = crate::common::free_port();
    env.write_config(
        &env.base_config("").replace("publish = \"127.0.0.1:0\"", &format!("publish = \"127.0.0.1:{port}\"")),
    );
    let _agent = ForegroundAgent::start(&env);
    env.agent(&["wait", "--timeout", "2m"]).expect(0);
    let before = env.state();
    let url = env.agent(&["url"]).expect(0).stdout.trim().to_string();

    stop_engine();
    start_engine(&env);

    let deadline = Instant::now() + Duration::from_secs(90);
    let state = loop {
        let state = env.state();
        let started = &state["container"]["started_at"];
        if state["phase"] == "ready"
            && *started != before["container"]["started_at"]
            && state["jupyter"]["proven_at"] != before["jupyter"]["proven_at"]
        {
            break state;
        }
        assert!(Instant::now() < deadline, "not ready again after the engine restarted: {state}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(state["jupyter"]["url"].as_str().unwrap(), url, "the URL reported first");
    let (base, _, token) = split_url(&url);
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200, "the URL opens Jupyter");
    assert_eq!(env.agent(&["status"]).code, 0);
}
