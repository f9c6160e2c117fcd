//! The agent as a service: its local API on a Unix socket (asked with curl, as
//! docs/api.md shows), the container watched through Docker's events, the
//! CLI asking the socket, and `install` on a host without systemd.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::agent::ForegroundAgent as Agent;
use crate::common::env::Env;
use crate::common::{docker, get_status, split_url};

fn curl(socket: &Path, path: &str) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "60", "--unix-socket"])
        .arg(socket)
        .arg(format!("http://localhost{path}"))
        .output()
        .unwrap()
}

fn curl_json(socket: &Path, path: &str) -> serde_json::Value {
    let out = curl(socket, path);
    assert!(out.status.success(), "curl {path}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Waits (bounded) on the agent's long poll until `until` holds.
fn wait_for(socket: &Path, what: &str, until: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut state = curl_json(socket, "/v1/status?show_token=true");
    while !until(&state) {
        assert!(Instant::now() < deadline, "{what} never happened; last state: {state}");
        let rev = state["revision"].as_u64().unwrap();
        state = curl_json(socket, &format!("/v1/wait?until=change&after={rev}&timeout=30&show_token=true"))["state"]
            .clone();
    }
    state
}

fn wait_for_socket(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the agent never created {}", socket.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_socket_answers_curl_and_only_root() {
    let env = Env::new("socket");
    // Let other users reach the directory, so that only the socket's own mode protects it.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The container prints a configured secret to its log (as a careless
    // notebook or entrypoint would).
    let secret = "s3cr3t-in-the-log-4b7e";
    env.write_config(&env.base_config(&format!(
        "env = {{ LOG_SECRET = \"{secret}\" }}\ncommand = [\"sh\", \"-c\", \"echo the secret is $LOG_SECRET; exec jupyter-notebook --ip=0.0.0.0 --port=8888 --allow-root --no-browser\"]"
    )));
    let _agent = Agent::start(&env);
    let socket = env.socket();
    wait_for_socket(&socket);
    assert_eq!(std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777, 0o600);

    // The long poll answers once the converge is done.
    let answer = curl_json(&socket, "/v1/wait?until=ready&timeout=120");
    assert_eq!(answer["timed_out"], false);
    assert_eq!(answer["state"]["phase"], "ready");

    // status: the same document as `status --json`, token redacted unless asked.
    let status = curl_json(&socket, "/v1/status");
    assert_eq!(status["version"], 1);
    assert_eq!(status["jupyter"]["token"], "<redacted>");
    let cli: serde_json::Value = serde_json::from_str(&env.agent(&["status", "--json"]).expect(0).stdout).unwrap();
    assert_eq!(cli["revision"], status["revision"]);
    assert_eq!(cli["jupyter"]["url"], status["jupyter"]["url"]);
    let shown = curl_json(&socket, "/v1/status?show_token=true");
    let (base, _, token) = split_url(shown["jupyter"]["url"].as_str().unwrap());
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200);
    assert_eq!(env.agent(&["url"]).expect(0).stdout.trim(), shown["jupyter"]["url"].as_str().unwrap());

    // events: newline-delimited JSON, starting with the current state.
    let out = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "2", "--unix-socket"])
        .arg(&socket)
        .arg("http://localhost/v1/events")
        .output()
        .unwrap();
    let first = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string();
    let event: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(event["phase"], "ready");
    assert_eq!(event["revision"], status["revision"]);

    // logs: the container's last lines, tokens and the run's other secrets redacted.
    let logs = curl(&socket, "/v1/logs?tail=50");
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(text.contains("?token=<redacted>") && !text.contains(&token), "{text}");
    assert!(text.contains("the secret is <redacted>") && !text.contains(secret), "{text}");
    // The server was given the agent's token, so it prints the placeholder.
    let cli_logs = env.agent(&["logs", "-n", "50"]).expect(0).stdout;
    assert!(cli_logs.contains("?token=..."), "the CLI, root's, shows the real lines: {cli_logs}");

    // Bad queries are refused with the parameter named.
    let bad = curl(&socket, "/v1/logs?tail=lots");
    assert_eq!(
        String::from_utf8_lossy(&bad.stdout).trim(),
        "{\"error\":\"tail=lots: expected a whole number from 0 to 10000\"}"
    );

    // An unprivileged user cannot connect.
    let nobody = Command::new("runuser")
        .args(["-u", "nobody", "--", "curl", "-sS", "--unix-socket"])
        .arg(&socket)
        .arg("http://localhost/v1/status")
        .output()
        .unwrap();
    assert!(!nobody.status.success(), "nobody must be refused");
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("Permission denied") || nobody.stdout.is_empty());
}

#[test]
fn a_container_killed_from_outside_is_reported_and_its_restart_proven_again() {
    let env = Env::new("watch");
    env.write_config(&env.base_config(""));
    let _agent = Agent::start(&env);
    let socket = env.socket();
    wait_for_socket(&socket);
    let ready = wait_for(&socket, "ready", |s| s["phase"] == "ready");
    let first_url = ready["jupyter"]["url"].as_str().unwrap().to_string();

    assert!(docker(&["kill", &env.name]).status.success());
    let failed = wait_for(&socket, "the death is noticed", |s| s["phase"] == "failed");
    assert_eq!(failed["error"]["step"], "container");
    assert_eq!(failed["error"]["exit_code"], 137);
    assert_eq!(failed["error"]["cause"], "the container exited with code 137");
    assert!(!failed["error"]["log_tail"].as_array().unwrap().is_empty(), "{failed}");
    let result = std::fs::read_to_string(env.path("result.txt")).unwrap();
    assert!(result.contains("## container exit code: 137"), "{result}");

    assert!(docker(&["start", &env.name]).status.success());
    let again = wait_for(&socket, "the restart is proven", |s| s["phase"] == "ready");
    let url = again["jupyter"]["url"].as_str().unwrap();
    // The front keeps its port and the agent's token is the server's again.
    assert_eq!(url, first_url, "the same URL after a restart");
    assert_ne!(again["container"]["started_at"], ready["container"]["started_at"], "{again}");
    let (base, _, token) = split_url(url);
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200);
    let result = std::fs::read_to_string(env.path("result.txt")).unwrap();
    assert_eq!(result.lines().last().unwrap().trim(), url, "the result file follows");
}

#[test]
fn the_cli_waits_on_the_agent_and_reads_the_state_file_without_it() {
    let env = Env::new("cliwait");
    env.write_config(&env.base_config(""));
    // Nothing ran yet: not reachable, no state.
    env.agent(&["wait", "--timeout", "1"]).expect(4);
    let mut agent = Agent::start(&env);
    let waited = env.agent(&["wait", "--timeout", "2m", "--json"]).expect(0);
    let state: serde_json::Value = serde_json::from_str(&waited.stdout).unwrap();
    assert_eq!(state["phase"], "ready");
    assert!(agent.stop().success());
    assert!(!env.socket().exists(), "the socket is removed at exit");
    // Without the agent, the state file answers `url`; `wait` waits for the
    // next run, since a service run that ended is not the current one
    // (agent::wait_after_a_restart_waits_for_the_current_run).
    env.agent(&["wait", "--timeout", "1"]).expect(3);
    let url: serde_json::Value = serde_json::from_str(&env.agent(&["url", "--json"]).expect(0).stdout).unwrap();
    assert!(url["url"].as_str().unwrap().contains("?token="));
}

#[test]
fn wait_times_out_with_its_own_exit_code() {
    let env = Env::new("waittimeout");
    env.write_config(&env.base_config("command = [\"sleep\", \"600\"]"));
    let _agent = Agent::start(&env);
    wait_for_socket(&env.socket());
    let run = env.agent(&["wait", "--timeout", "2"]).expect(3);
    assert!(run.stderr.contains("not ready after 2s"), "{}", run.stderr);
}

#[test]
fn install_without_systemd_explains_and_changes_nothing() {
    assert!(!Path::new("/run/systemd/system").exists(), "this test is for hosts without systemd");
    // The boot tests install into /usr/local/bin: not while this one looks.
    let _host = common::env::host_paths();
    let env = Env::new("install");
    env.write_config(&env.base_config(""));
    let unit = Path::new("/etc/systemd/system/jupyter-agent.service");
    let binary = Path::new("/usr/local/bin/jupyter-agent");
    let before = (unit.exists(), binary.exists());
    let run = env.agent(&["install"]).expect(0);
    assert!(run.stdout.contains("does not run systemd"), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("--config {} run", env.config_path().display())), "{}", run.stdout);
    assert_eq!((unit.exists(), binary.exists()), before, "nothing was installed");
    assert!(!env.state_dir().exists(), "no state either");
}

#[test]
fn doctor_checks_what_a_person_would() {
    let env = Env::new("doctor");
    let meta = common::metadata::FakeMetadata::start(&[("instance-id", "i-test123")]);
    env.write_config(&env.base_config("").replace(
        "url_host = \"127.0.0.1\"",
        &format!("url_host = \"127.0.0.1\"\nmetadata_endpoint = \"{}\"", meta.url),
    ));
    env.agent(&["run", "--once"]).expect(0);
    let run = env.agent(&["doctor"]);
    let lines: Vec<&str> = run.stdout.lines().collect();
    let verdict = |name: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no {name} line in:\n{}", run.stdout))
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    for name in ["engine", "container", "port", "image", "token", "disk", "metadata"] {
        assert_eq!(verdict(name), "ok", "{name}:\n{}", run.stdout);
    }
    // Published on 127.0.0.1 only: the instance's own address reaches it there.
    assert_eq!(verdict("reachable"), "ok", "{}", run.stdout);
    let image = lines.iter().find(|l| l.split_whitespace().nth(1) == Some("image")).unwrap();
    assert!(image.contains(&format!("{} is here (", crate::common::test_image())), "{image}");
    // A local image (pull = "never") is not said to come from a registry.
    assert!(image.ends_with("never pulled ([image] pull = \"never\": it must be on this host already)"), "{image}");
    assert_eq!(run.code, 0, "{}", run.stdout);
    // With the URL's host named, nothing asks the metadata service, doctor
    // neither (off the cloud its address must see no packet).
    let metadata = lines.iter().find(|l| l.split_whitespace().nth(1) == Some("metadata")).unwrap();
    assert!(metadata.contains("not asked: [jupyter] url_host = \"127.0.0.1\""), "{metadata}");
    assert!(meta.requests.lock().unwrap().is_empty(), "{:?}", meta.requests.lock().unwrap());
    // url_host = "auto" reads it: doctor asks, with the session token.
    let auto =
        std::fs::read_to_string(env.config_path()).unwrap().replace("url_host = \"127.0.0.1\"", "url_host = \"auto\"");
    env.write_config(&auto);
    let checks: serde_json::Value = serde_json::from_str(&env.agent(&["doctor", "--json"]).stdout).unwrap();
    let metadata = checks.as_array().unwrap().iter().find(|c| c["name"] == "metadata").unwrap();
    assert_eq!(metadata["verdict"], "ok", "{metadata}");
    assert_eq!(metadata["detail"], "the ECS metadata service answers (instance i-test123)");
    assert!(meta.requests.lock().unwrap().iter().any(|r| r.starts_with("PUT /latest/api/token")));

    // Stop the container: the container and token checks fail, with their fixes.
    assert!(docker(&["stop", "-t", "1", &env.name]).status.success());
    let run = env.agent(&["doctor", "--json"]);
    assert_eq!(run.code, 1);
    let checks: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let container = checks.as_array().unwrap().iter().find(|c| c["name"] == "container").unwrap();
    assert_eq!(container["verdict"], "fail");
    assert!(container["fix"].as_str().unwrap().contains("jupyter-agent run"), "{container}");
}

/// Under a `Type=notify` unit, systemd hands the agent `NOTIFY_SOCKET`: the
/// agent says READY=1 as soon as its socket answers (the converge may take
/// many minutes, longer than a start timeout), then one STATUS= line per
/// phase and step, which `systemctl status` shows. A datagram socket of the
/// test's own stands in for systemd's, with the protocol of sd_notify(3).
#[test]
fn status_datagrams_follow_the_phases_under_notify_socket() {
    let env = Env::new("notify");
    env.write_config(&env.base_config(""));
    let path = env.path("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    listener.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut agent = Command::new(common::bin("jupyter-agent"))
        .arg("--config")
        .arg(env.config_path())
        .arg("run")
        .env("NOTIFY_SOCKET", &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut got: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.iter().any(|m| m.starts_with("STATUS=ready")) {
        let n = listener.recv(&mut buf).unwrap_or_else(|e| panic!("no datagram ({e}); so far: {got:?}"));
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(got[0], "READY=1", "{got:?}");
    assert!(env.socket().exists(), "READY=1 came once the socket answers");
    let expected = [
        "STATUS=installing-docker: engine",
        "STATUS=preparing-image: image",
        "STATUS=starting-container: network",
        "STATUS=starting-container: container",
        "STATUS=waiting-for-token: token",
        "STATUS=ready: jupyter-agent url prints the login URL",
    ];
    let statuses: Vec<&str> = got.iter().skip(1).map(String::as_str).filter(|m| expected.contains(m)).collect();
    assert_eq!(statuses, expected, "in order, each once: {got:?}");
    assert!(got.iter().all(|m| !m.contains('\n')), "one assignment per datagram: {got:?}");
    let _ = Command::new("kill").args(["-TERM", &agent.id().to_string()]).status();
    agent.wait().unwrap();
    let mut last = String::new();
    while let Ok(n) = listener.recv(&mut buf) {
        last = String::from_utf8_lossy(&buf[..n]).into_owned();
        if last == "STOPPING=1" {
            break;
        }
    }
    assert_eq!(last, "STOPPING=1");
}
