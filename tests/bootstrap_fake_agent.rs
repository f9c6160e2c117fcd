//! The real `jupyter-bootstrap` binary against a fake agent (its documented
//! API on a Unix socket in a temporary directory, `common::fake_agent`) and a
//! fake ROS wait-condition endpoint on 127.0.0.1 (`common::ros`). Nothing
//! else is contacted: no Docker engine, so no engine lock.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::fake_agent::{login_url, ready_document, FakeAgent, TOKEN};
use crate::common::ros::{self, FakeRos, Reply};

/// A test's directory and the agent socket path in it.
fn world() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    (dir, socket)
}

struct Running {
    done: mpsc::Receiver<std::io::Result<std::process::Output>>,
    pid: u32,
    started: Instant,
}

#[derive(Debug)]
struct Done {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Starts `jupyter-bootstrap wait --socket SOCKET ARGS...`, stdout and stderr piped (not a terminal).
fn spawn(socket: &Path, args: &[&str]) -> Running {
    let child = Command::new(crate::common::bin("jupyter-bootstrap"))
        .arg("wait")
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jupyter-bootstrap starts");
    let pid = child.id();
    let (tx, done) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    Running { done, pid, started: Instant::now() }
}

impl Running {
    /// Waits for the exit (at most a minute: a hung binary fails the test, it does not hang it).
    fn finish(self) -> Done {
        match self.done.recv_timeout(Duration::from_secs(60)) {
            Ok(out) => {
                let out = out.expect("jupyter-bootstrap ran");
                Done {
                    code: out.status.code().expect("exited, not killed"),
                    stdout: String::from_utf8(out.stdout).unwrap(),
                    stderr: String::from_utf8(out.stderr).unwrap(),
                    took: self.started.elapsed(),
                }
            }
            Err(_) => {
                let _ = Command::new("kill").arg("-9").arg(self.pid.to_string()).status();
                panic!("jupyter-bootstrap did not exit within a minute");
            }
        }
    }
}

fn run(socket: &Path, args: &[&str]) -> Done {
    spawn(socket, args).finish()
}

/// The agent requests without the `timeout` (which depends on the clock).
/// The login URL as stdout shows it without --show-token.
fn redacted_url() -> String {
    login_url().replace(TOKEN, "<redacted>")
}

fn asked(agent: &FakeAgent) -> Vec<String> {
    agent.requests().iter().map(|r| r.split("&timeout=").next().unwrap().to_string()).collect()
}

#[test]
fn ready_prints_the_url_and_delivers_exactly_one_success() {
    let (_dir, socket) = world();
    let agent = FakeAgent::start(&socket);
    let ros = FakeRos::start();
    let running = spawn(&socket, &["--timeout", "60", "--ros-notify", &ros.curl_cli()]);

    // Each change is made only once the client blocks in a long poll for it.
    agent.wait_for_long_poll(1);
    agent.begin("image", "preparing-image");
    agent.wait_for_long_poll(2);
    agent.begin("token", "waiting-for-token");
    agent.wait_for_long_poll(3);
    agent.ready();
    let done = running.finish();

    assert_eq!(done.code, 0, "{done:?}");
    // The token stays off stdout (cloud-init logs it) unless --show-token is asked.
    assert_eq!(done.stdout, format!("{}\n", redacted_url()));
    assert!(!done.stdout.contains(TOKEN));
    assert!(!done.stderr.contains(TOKEN), "{}", done.stderr);
    for want in [
        "[pending]\n",
        "[preparing-image] image: running\n",
        "[waiting-for-token] image: done in ",
        "[ready] token: done in ",
    ] {
        assert!(done.stderr.contains(want), "{want:?} in {}", done.stderr);
    }
    // Long polls only, one per change: no polling at a fixed interval.
    assert_eq!(
        asked(&agent),
        [
            "/v1/status",
            "/v1/wait?until=change&after=1",
            "/v1/wait?until=change&after=2",
            "/v1/wait?until=change&after=3",
            "/v1/status?show_token=true",
        ]
    );

    let signals = ros.requests();
    assert_eq!(signals.len(), 1, "{signals:?}");
    let s = &signals[0];
    assert_eq!(s.problem, None);
    assert_eq!(s.target, format!("/waitcondition?{}", ros::QUERY));
    assert_eq!(s.header("x-acs-region-id"), Some("cn-beijing"));
    assert_eq!(s.header("accept"), Some("application/json"));
    assert_eq!(
        s.json.as_ref().unwrap(),
        &serde_json::json!({"status": "SUCCESS", "id": "jupyter", "data": login_url(), "reason": "Jupyter is ready"})
    );
}

#[test]
fn a_failed_converge_delivers_one_failure_with_step_and_cause() {
    let (dir, socket) = world();
    let agent = FakeAgent::start(&socket);
    agent.begin("token", "waiting-for-token");
    let ros = FakeRos::start();
    let result = dir.path().join("userdata-result.txt");
    let running = spawn(
        &socket,
        &["--ros-notify", &ros.curl_cli(), "--result-file", result.to_str().unwrap(), "--timeout", "1m"],
    );
    agent.wait_for_long_poll(2);
    let leaked = format!("    http://0.0.0.0:8888/?token={TOKEN}");
    agent.fail(
        "token",
        "the container stopped before its token appeared",
        Some(137),
        &["Serving notebooks", &leaked, "Killed"],
    );
    let done = running.finish();

    assert_eq!(done.code, 1, "{done:?}");
    assert_eq!(done.stdout, "");
    for want in [
        "the step `token` failed: the container stopped before its token appeared",
        "container exit code: 137",
        "    Killed\n",
        "token=<redacted>",
    ] {
        assert!(done.stderr.contains(want), "{want:?} in {}", done.stderr);
    }
    assert!(!done.stderr.contains(TOKEN));

    let signals = ros.requests();
    assert_eq!(signals.len(), 1, "{signals:?}");
    assert_eq!(signals[0].problem, None);
    assert_eq!(signals[0].field("status"), Some("FAILURE"));
    assert_eq!(signals[0].field("id"), Some("jupyter"));
    assert_eq!(signals[0].field("data"), None);
    let reason = signals[0].field("reason").unwrap();
    assert!(
        reason.starts_with("token: the container stopped before its token appeared; container exit code 137; log: ")
    );
    assert!(!reason.contains(TOKEN), "{reason}");

    let text = std::fs::read_to_string(&result).unwrap();
    assert!(text.contains("## failed step: token\n"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
}

#[test]
fn server_errors_are_retried_until_the_signal_is_delivered() {
    let (_dir, socket) = world();
    let agent = FakeAgent::start(&socket);
    agent.ready();
    let ros = FakeRos::scripted([Reply::Status(500), Reply::Status(503)], Reply::Status(200));
    let done = run(&socket, &["--ros-notify", &ros.curl_cli()]);

    assert_eq!(done.code, 0, "{done:?}");
    let signals = ros.requests();
    assert_eq!(signals.len(), 3, "{signals:?}");
    assert!(signals.iter().all(|s| s.problem.is_none() && s.body == signals[0].body));
    assert!(signals[1].at - signals[0].at >= Duration::from_millis(500), "a backoff between attempts");
    assert!(done.stderr.contains("HTTP 500 Internal Server Error"), "{}", done.stderr);
    assert!(done.stderr.contains("signalled SUCCESS to the ROS wait condition (after 3 attempts)"), "{}", done.stderr);
}

#[test]
fn a_refused_signal_fails_fast_with_exit_5_and_says_the_url_expired() {
    let (_dir, socket) = world();
    let agent = FakeAgent::start(&socket);
    agent.ready();
    // The refusal echoes the signal, token and all.
    let refusal = format!(r#"{{"Code":"SignatureDoesNotMatch","Message":"expired","Data":"{}"}}"#, login_url());
    let ros = FakeRos::scripted([Reply::Body(403, refusal)], Reply::Status(200));
    let done = run(&socket, &["--ros-notify", &ros.curl_cli(), "--ros-budget", "2m"]);

    assert_eq!(done.code, 5, "{done:?}");
    assert!(done.took < Duration::from_secs(20), "fails at once, not after the budget: {:?}", done.took);
    assert_eq!(ros.requests().len(), 1);
    for want in ["HTTP 403 Forbidden", "SignatureDoesNotMatch", "the signed wait-condition URL has probably expired"] {
        assert!(done.stderr.contains(want), "{want:?} in {}", done.stderr);
    }
    // The URL was still printed: Jupyter is ready, only the signal failed.
    assert_eq!(done.stdout, format!("{}\n", redacted_url()));
    assert!(!done.stderr.contains("signature=c2ln"), "the signed query stays out of messages");
    assert!(!done.stderr.contains(TOKEN), "{}", done.stderr);
}

/// A refusal that echoes the signed URL, its signature alone (as sent and
/// decoded, under both spellings) and the login token: none of them reaches
/// stderr or the result file (docs/threat-model.md).
#[test]
fn a_refusal_echoing_the_signed_url_and_the_token_shows_neither() {
    let (dir, socket) = world();
    let agent = FakeAgent::start(&socket);
    agent.ready();
    let signature = ros::QUERY.rsplit("signature=").next().unwrap();
    let decoded = signature.replace("%2B", "+");
    let refusal = format!(
        r#"{{"Code":"SignatureDoesNotMatch","Message":"Signature={decoded} does not match {signature}","Token":"{TOKEN}","Url":"/waitcondition?{}"}}"#,
        ros::QUERY
    );
    let ros = FakeRos::scripted([Reply::Body(403, refusal)], Reply::Status(200));
    let result = dir.path().join("userdata-result.txt");
    let done = run(&socket, &["--ros-notify", &ros.curl_cli(), "--result-file", result.to_str().unwrap()]);

    assert_eq!(done.code, 5, "{done:?}");
    assert!(done.stderr.contains("HTTP 403 Forbidden: {\"Code\":\"SignatureDoesNotMatch\""), "{}", done.stderr);
    let text = std::fs::read_to_string(&result).unwrap_or_default();
    for secret in [signature, decoded.as_str(), "expire=1893456000", TOKEN] {
        assert!(!done.stderr.contains(secret), "{secret} in {}", done.stderr);
        assert!(!text.lines().filter(|l| l.starts_with('#')).any(|l| l.contains(secret)), "{secret} in {text}");
    }
}

/// A refusal whose body never ends: the bootstrap reads only its start
/// (64 KiB), shows it, and fails at once, instead of reading until the
/// attempt's timeout, retrying, and growing all the while.
#[test]
fn a_refusal_whose_body_never_ends_fails_at_once() {
    let (_dir, socket) = world();
    let agent = FakeAgent::start(&socket);
    agent.ready();
    let ros = FakeRos::scripted([], Reply::Endless(403));
    let done = run(&socket, &["--ros-notify", &ros.curl_cli(), "--ros-budget", "30s"]);

    assert_eq!(done.code, 5, "{done:?}");
    assert!(done.took < Duration::from_secs(10), "fails at once, not after the budget: {:?}", done.took);
    assert_eq!(ros.requests().len(), 1, "a refusal is not retried");
    assert!(done.stderr.contains(r#"HTTP 403 Forbidden: {"Code":"Throttling","Message":"xxx"#), "{}", done.stderr);
}

#[test]
fn a_hanging_endpoint_ends_within_the_budget_with_exit_5() {
    let (_dir, socket) = world();
    let agent = FakeAgent::start(&socket);
    agent.ready();
    let ros = FakeRos::scripted([], Reply::Hang);
    let done = run(&socket, &["--ros-notify", &ros.curl_cli(), "--ros-budget", "3s"]);

    assert_eq!(done.code, 5, "{done:?}");
    assert!(done.took >= Duration::from_secs(3) && done.took < Duration::from_secs(8), "{:?}", done.took);
    assert!(done.stderr.contains("within the 3s budget"), "{}", done.stderr);
    assert!(!ros.requests().is_empty());
}

#[test]
fn no_agent_at_all_still_delivers_a_failure_and_exits_3() {
    let (_dir, socket) = world();
    let ros = FakeRos::start();
    let done = run(&socket, &["--timeout", "2s", "--ros-notify", &ros.curl_cli()]);

    assert_eq!(done.code, 3, "{done:?}");
    assert!(done.took >= Duration::from_secs(2), "{:?}", done.took);
    let want = format!("jupyter-agent never appeared at {} within 2s", socket.display());
    assert!(done.stderr.contains(&want), "{}", done.stderr);
    let signals = ros.requests();
    assert_eq!(signals.len(), 1, "{signals:?}");
    assert_eq!(signals[0].field("status"), Some("FAILURE"));
    let reason = signals[0].field("reason").unwrap();
    assert!(reason.starts_with(&format!("agent: {want} (no socket at ")), "{reason}");
}

#[test]
fn a_converge_that_outlasts_the_timeout_exits_3_naming_the_phase() {
    let (_dir, socket) = world();
    let agent = FakeAgent::start(&socket);
    agent.begin("token", "waiting-for-token");
    let ros = FakeRos::start();
    let done = run(&socket, &["--timeout", "2", "--ros-notify", &ros.curl_cli()]);

    assert_eq!(done.code, 3, "{done:?}");
    let reason = ros.requests()[0].field("reason").unwrap().to_string();
    assert_eq!(reason, "timeout: Jupyter was not ready after 2s (phase waiting-for-token; token: running)");
    let polls = asked(&agent).iter().filter(|r| r.starts_with("/v1/wait")).count();
    assert!((1..=2).contains(&polls), "{:?}", agent.requests());
}

#[test]
fn the_result_file_is_0600_and_its_last_line_is_the_url() {
    let (dir, socket) = world();
    let agent = FakeAgent::start(&socket);
    agent.ready();
    let result = dir.path().join("userdata-result.txt");
    let done = run(&socket, &["--result-file", result.to_str().unwrap()]);

    assert_eq!(done.code, 0, "{done:?}");
    let mode = std::fs::metadata(&result).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&result).unwrap();
    assert_eq!(text.lines().last().map(str::trim), Some(login_url().as_str()), "{text}");
}

#[test]
fn a_socket_that_appears_late_is_waited_for() {
    let (_dir, socket) = world();
    let running = spawn(&socket, &["--timeout", "30s", "--show-token"]);
    // The scenario itself: the agent starts a second after the bootstrap.
    std::thread::sleep(Duration::from_secs(1));
    let agent = FakeAgent::start(&socket);
    agent.wait_for_long_poll(1);
    agent.ready();
    let done = running.finish();

    assert_eq!(done.code, 0, "{done:?}");
    assert_eq!(done.stdout, format!("{}\n", login_url()));
    assert!(done.stderr.contains(&format!("waiting for jupyter-agent at {}", socket.display())), "{}", done.stderr);
}

#[test]
fn ros_url_with_headers_and_no_data_keeps_the_token_out_of_the_stack() {
    let (_dir, socket) = world();
    let agent = FakeAgent::start(&socket);
    agent.ready();
    let ros = FakeRos::start();
    let done = run(
        &socket,
        &[
            "--ros-url",
            &ros.url(),
            "--ros-header",
            "x-acs-region-id: cn-beijing",
            "--ros-id",
            "nb",
            "--ros-data",
            "none",
        ],
    );

    assert_eq!(done.code, 0, "{done:?}");
    let signals = ros.requests();
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0].problem, None);
    assert_eq!(signals[0].header("x-acs-region-id"), Some("cn-beijing"));
    assert_eq!(signals[0].body, r#"{"status":"SUCCESS","id":"nb","reason":"Jupyter is ready"}"#);
}

#[test]
fn usage_errors_exit_2_at_once_and_help_lists_the_exit_codes() {
    let (_dir, socket) = world();
    let done = run(&socket, &["--ros-notify", "curl -i -X POST -H 'Accept: application/json'"]);
    assert_eq!(done.code, 2, "{done:?}");
    assert!(done.stderr.contains("--ros-notify: no URL in the curl command line"), "{}", done.stderr);
    assert!(done.took < Duration::from_secs(5));

    let done = run(&socket, &["--help"]);
    assert_eq!(done.code, 0);
    for want in ["Exit codes:", "  3  timed out", "  5  the ROS signal could not be delivered", "--ros-budget"] {
        assert!(done.stdout.contains(want), "{want:?} in {}", done.stdout);
    }
}

#[test]
fn an_agent_that_restarts_is_followed_from_its_new_revisions() {
    let (_dir, socket) = world();
    let first = FakeAgent::start(&socket);
    let running = spawn(&socket, &["--timeout", "30s", "--show-token"]);
    first.wait_for_long_poll(1);
    first.begin("engine", "installing-docker");
    first.wait_for_long_poll(2);
    first.begin("image", "preparing-image");
    first.wait_for_long_poll(3);
    drop(first);
    std::fs::remove_file(&socket).unwrap();

    // The new agent counts from 1 again: a client still waiting for a
    // revision after 3 would never see it become ready.
    let second = FakeAgent::start(&socket);
    second.wait_for_long_poll(1);
    second.ready();
    let done = running.finish();

    assert_eq!(done.code, 0, "{done:?}");
    assert_eq!(done.stdout, format!("{}\n", login_url()));
    assert!(done.stderr.contains("lost jupyter-agent at "), "{}", done.stderr);
}

fn running_as_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A ready agent whose socket another local user could have put there: the
/// bootstrap refuses it, naming the path and why, and signals FAILURE,
/// never the fake's ready URL as SUCCESS (docs/api.md#the-socket). Two ways:
/// a socket of uid 65534 (nobody) in a sticky world-writable directory, as
/// /tmp is; root's socket in a directory anyone may write.
#[test]
fn a_socket_another_user_could_have_planted_is_refused_and_never_signalled_as_success() {
    if !running_as_root() {
        eprintln!("skipped: the test chowns a socket to another user, which needs root");
        return;
    }
    for (mode, owner, why) in [
        (0o1777, Some(65534), "agent.sock is owned by uid 65534, not by root".to_string()),
        (0o777, None, "/open is writable by other users (mode 0777)".to_string()),
    ] {
        let (dir, _) = world();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        chmod(&open, mode);
        let socket = open.join("agent.sock");
        let agent = FakeAgent::start(&socket);
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&socket, Some(uid), Some(uid)).unwrap();
        }
        agent.ready();
        let ros = FakeRos::start();
        let done = run(&socket, &["--timeout", "20s", "--ros-notify", &ros.curl_cli()]);

        assert_eq!(done.code, 1, "{done:?}");
        assert_eq!(done.stdout, "", "no URL");
        let refused = format!("refusing the agent's socket {}: ", socket.display());
        assert!(done.stderr.contains(&refused) && done.stderr.contains(&why), "{why}: {}", done.stderr);
        let signals = ros.requests();
        assert_eq!(signals.len(), 1, "{signals:?}");
        assert_eq!(signals[0].field("status"), Some("FAILURE"), "{signals:?}");
        assert!(signals[0].field("reason").unwrap().contains(&refused), "{signals:?}");
        assert!(asked(&agent).is_empty(), "nothing was asked of the fake: {:?}", agent.requests());
    }
}

/// Root's socket in root's directory, but served by a process of another
/// user (bound as root, then listening as nobody): the peer's credentials
/// give it away, and the bootstrap refuses it before it asks anything.
#[test]
fn a_socket_served_by_another_user_is_refused() {
    if !running_as_root() {
        eprintln!("skipped: the fake agent drops to another user, which needs root");
        return;
    }
    let (dir, socket) = world();
    let doc = dir.path().join("ready.json");
    std::fs::write(&doc, ready_document().to_string()).unwrap();
    // A minimal HTTP server: every request gets the ready document.
    let server = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
body = open(sys.argv[2], "rb").read()
os.setgid(65534)
os.setuid(65534)
s.listen(8)
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    c.close()
"#;
    let mut fake = Command::new("python3").arg("-c").arg(server).arg(&socket).arg(&doc).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "the fake agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ros = FakeRos::start();
    let done = run(&socket, &["--timeout", "20s", "--ros-notify", &ros.curl_cli()]);
    let _ = fake.kill();
    let _ = fake.wait();

    assert_eq!(done.code, 1, "{done:?}");
    assert_eq!(done.stdout, "", "no URL");
    let want = format!("refusing the agent's socket {}: it is served by a process of uid 65534", socket.display());
    assert!(done.stderr.contains(&want), "{}", done.stderr);
    let signals = ros.requests();
    assert_eq!(signals.len(), 1, "{signals:?}");
    assert_eq!(signals[0].field("status"), Some("FAILURE"), "{signals:?}");
}

/// An agent whose container has GPUs (`jupyter.gpus`, docs/gpu.md): the
/// bootstrap names them on stderr, in the result file before the URL, and
/// in a room's signal data next to the URL.
#[test]
fn the_gpus_of_a_ready_agent_reach_the_result_file_and_a_rooms_data() {
    let (dir, socket) = world();
    let agent = FakeAgent::start(&socket);
    agent.ready();
    agent.change(|doc| doc["jupyter"]["gpus"] = serde_json::json!(["Tesla T4"]));
    let ros = FakeRos::start();
    let result = dir.path().join("userdata-result.txt");
    let done = run(
        &socket,
        &[
            "--result-file",
            result.to_str().unwrap(),
            "--ros-url",
            &ros.url(),
            "--ros-id",
            "alice",
            "--ros-data",
            "json",
        ],
    );

    assert_eq!(done.code, 0, "{done:?}");
    assert!(done.stderr.contains("jupyter-bootstrap: GPUs: Tesla T4\n"), "{}", done.stderr);
    let text = std::fs::read_to_string(&result).unwrap();
    assert!(text.contains("## GPUs: Tesla T4\n"), "{text}");
    assert_eq!(text.lines().last().map(str::trim), Some(login_url().as_str()), "{text}");
    let signals = ros.requests();
    assert_eq!(signals.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&signals[0].body).unwrap();
    let data: serde_json::Value = serde_json::from_str(body["data"].as_str().unwrap()).unwrap();
    assert_eq!(data, serde_json::json!({"url": login_url(), "gpus": ["Tesla T4"]}));
}
