//! The participant's login URL, end to end against the real engine and the
//! real Jupyter server: one token for the instance, chosen by the agent, so
//! that the URL reported first opens Jupyter after every restart, removal
//! and re-creation of the container and after the agent itself restarts;
//! a new one only on purpose (`token --rotate`); and the cases where the
//! image decides (its own token, or none) said plainly.

use std::time::Duration;

use crate::common::agent::ForegroundAgent;
use crate::common::env::Env;
use crate::common::{docker, free_port, get_status, inspect, split_url};

/// A loopback port nobody listens on now: the URL's port must not change
/// between starts, so the tests publish on a fixed one.
fn config_on(env: &Env, port: u16, container_extra: &str, jupyter_extra: &str) -> String {
    env.base_config(container_extra)
        .replace("publish = \"127.0.0.1:0\"", &format!("publish = \"127.0.0.1:{port}\""))
        .replace("[jupyter]\n", &format!("[jupyter]\n{jupyter_extra}"))
}

fn url(env: &Env) -> String {
    env.agent(&["url"]).expect(0).stdout.trim().to_string()
}

/// Whether `url` opens Jupyter: its token opens `/api/status`.
fn opens(url: &str) -> bool {
    let (base, _, token) = split_url(url);
    get_status(&format!("{base}/api/status"), &token) == 200
}

/// Waits until an agent whose run started after the state `before` was read
/// has converged: until then the state file still holds the previous run's
/// `ready`.
fn ready_from_a_new_agent(env: &Env, before: &serde_json::Value) {
    let before = before["started_at"].clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let state = env.state();
        if state["started_at"] != before && state["phase"] == "ready" {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the new agent never became ready: {state}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_first_url_opens_jupyter_after_every_restart_removal_and_recreation() {
    let env = Env::new("stable");
    let port = free_port();
    env.write_config(&config_on(&env, port, "", ""));
    env.agent(&["run", "--once"]).expect(0);
    let first = url(&env);
    assert!(opens(&first), "{first}");
    let state = env.state();
    assert_eq!(state["jupyter"]["token_source"], "agent", "{state}");
    assert!(state["jupyter"]["note"].is_null(), "{state}");
    // The token is the agent's, kept 0600, and not in the container's configuration.
    let kept = std::fs::read_to_string(env.state_dir().join("login-token")).unwrap();
    assert_eq!(split_url(&first).2, kept);
    let inspected = String::from_utf8_lossy(&docker(&["inspect", &env.name]).stdout).into_owned();
    assert!(!inspected.contains(&kept), "the token is in docker inspect");
    assert!(inspected.contains("JUPYTER_TOKEN_FILE=/run/jupyter-agent/token"), "{inspected}");

    // docker restart: the server reads the same token again.
    assert!(docker(&["restart", "-t", "1", &env.name]).status.success());
    env.agent(&["run", "--once"]).expect(0);
    assert_eq!(url(&env), first, "after docker restart");
    assert!(opens(&first));

    // docker rm -f and a re-converge: a new container, the same URL.
    let id = inspect(&env.name, "{{.Id}}");
    assert!(docker(&["rm", "-f", &env.name]).status.success());
    env.agent(&["run", "--once"]).expect(0);
    assert_ne!(inspect(&env.name, "{{.Id}}"), id);
    assert_eq!(url(&env), first, "after docker rm -f and a re-converge");
    assert!(opens(&first));

    // A configuration change recreates the container: the same URL.
    let id = inspect(&env.name, "{{.Id}}");
    env.write_config(&config_on(&env, port, "env = { WORKSHOP = \"day-2\" }", ""));
    env.agent(&["run", "--once"]).expect(0);
    assert_ne!(inspect(&env.name, "{{.Id}}"), id, "recreated");
    assert_eq!(url(&env), first, "after a configuration change");
    assert!(opens(&first));

    // The agent killed and started again (a reboot, a crash): the same URL.
    let before = env.state();
    let mut agent = ForegroundAgent::start(&env);
    ready_from_a_new_agent(&env, &before);
    assert!(std::process::Command::new("kill").args(["-KILL", &agent.id().to_string()]).status().unwrap().success());
    agent.wait_until(Duration::from_secs(10)).expect("killed");
    assert!(docker(&["restart", "-t", "1", &env.name]).status.success());
    let before = env.state();
    let _agent = ForegroundAgent::start(&env);
    ready_from_a_new_agent(&env, &before);
    assert_eq!(url(&env), first, "after the agent was killed and started again");
    assert!(opens(&first));
    let result = std::fs::read_to_string(env.path("result.txt")).unwrap();
    assert_eq!(result.lines().last().unwrap().trim(), first, "the result file's last line");
}

/// The same with jupyter_server 2 (the server of Notebook 7 and JupyterLab
/// 4), from PyPI wheels: it reads JUPYTER_TOKEN_FILE too.
#[test]
fn a_jupyter_server_2_url_survives_a_restart_and_a_recreation() {
    let env = Env::new("stable-js2");
    let port = free_port();
    let command = "command = [\"/opt/js2/bin/jupyter-server\", \"--ip=0.0.0.0\", \"--port=8888\", \"--allow-root\", \"--no-browser\"]";
    let config = config_on(&env, port, command, "").replace(
        &format!("name = \"{}\"", crate::common::test_image()),
        &format!("name = \"{}\"", crate::common::server2_image()),
    );
    env.write_config(&config);
    env.agent(&["run", "--once"]).expect(0);
    let first = url(&env);
    assert!(opens(&first), "{first}");
    assert_eq!(env.state()["jupyter"]["token_source"], "agent");
    assert!(docker(&["restart", "-t", "1", &env.name]).status.success());
    env.agent(&["run", "--once"]).expect(0);
    assert_eq!(url(&env), first, "after docker restart");
    assert!(opens(&first));
    assert!(docker(&["rm", "-f", &env.name]).status.success());
    env.agent(&["run", "--once"]).expect(0);
    assert_eq!(url(&env), first, "after docker rm -f and a re-converge");
    assert!(opens(&first));
}

#[test]
fn rotating_the_token_changes_the_url_and_the_old_one_is_refused() {
    let env = Env::new("rotate");
    let port = free_port();
    env.write_config(&config_on(&env, port, "", ""));
    env.agent(&["run", "--once"]).expect(0);
    let old = url(&env);
    let rotated = env.agent(&["token", "--rotate"]).expect(0);
    assert!(rotated.stdout.contains("Every earlier login URL stops working"), "{}", rotated.stdout);
    env.agent(&["run", "--once"]).expect(0);
    let new = url(&env);
    assert_ne!(new, old);
    assert!(opens(&new));
    let (base, _, old_token) = split_url(&old);
    assert_eq!(get_status(&format!("{base}/api/status"), &old_token), 403, "the old token is refused");

    // Only the agent's own token can be rotated.
    env.write_config(&config_on(&env, port, "", "token = \"image\"\n"));
    let refused = env.agent(&["token", "--rotate"]).expect(2);
    assert!(refused.stderr.contains("[jupyter] token is not \"generate\""), "{}", refused.stderr);
}

/// An image whose server sets its own token ignores both variables: the
/// agent reports the token it proved and says that the URL will change.
#[test]
fn an_image_with_its_own_token_is_reported_with_a_note() {
    let env = Env::new("owntoken");
    let own = format!("image-own-token-{}", std::process::id());
    let command = format!(
        "command = [\"jupyter-notebook\", \"--ip=0.0.0.0\", \"--port=8888\", \"--allow-root\", \"--no-browser\", \"--NotebookApp.token={own}\"]"
    );
    env.write_config(&config_on(&env, free_port(), &command, ""));
    let run = env.agent(&["run", "--once"]).expect(0);
    assert!(run.stderr.contains("giving it JUPYTER_TOKEN instead"), "{}", run.stderr);
    let got = url(&env);
    assert_eq!(split_url(&got).2, own);
    assert!(opens(&got));
    let status = env.agent(&["status"]).expect(0).stdout;
    assert!(status.contains("note: this image's Jupyter server sets its own token"), "{status}");
    let result = std::fs::read_to_string(env.path("result.txt")).unwrap();
    assert!(result.contains("## Note: this image's Jupyter server sets its own token"), "{result}");
    assert!(!run.stderr.contains(&own), "the token is in the log");
}

/// A server that checks no token: refused unless the configuration says
/// `token = "none"`, and then reported with a warning.
#[test]
fn a_server_without_a_token_needs_token_none_and_is_warned_about() {
    let env = Env::new("notoken");
    let command = "command = [\"jupyter-notebook\", \"--ip=0.0.0.0\", \"--port=8888\", \"--allow-root\", \"--no-browser\", \"--NotebookApp.token=\"]";
    let port = free_port();
    env.write_config(
        &config_on(&env, port, command, "ready_timeout = \"20s\"\n").replace("ready_timeout = \"90s\"\n", ""),
    );
    env.agent(&["run", "--once"]).expect(1);
    env.write_config(&config_on(&env, port, command, "token = \"none\"\n"));
    env.agent(&["run", "--once"]).expect(0);
    let got = url(&env);
    assert_eq!(got, format!("http://127.0.0.1:{port}/"));
    let status = env.agent(&["status"]).expect(0).stdout;
    assert!(status.contains("note: WARNING: this Jupyter server checks no token"), "{status}");
}
