//! The agent and `jupyter-bootstrap` together, as user data runs them: the
//! real agent converges a real container while the bootstrap waits on its
//! socket and signals a local endpoint that plays the ROS wait condition.
//! (The bootstrap's retry and refusal paths against the same fake endpoint
//! are in bootstrap_fake_agent.rs, with a scripted agent.)

use std::process::{Command, Output};
use std::time::Duration;

use crate::common;
use crate::common::agent::ForegroundAgent;
use crate::common::env::Env;
use crate::common::ros::FakeRos;
use crate::common::{get_status, split_url};

fn bootstrap(env: &Env, args: &[&str]) -> Output {
    Command::new(common::bin("jupyter-bootstrap"))
        .arg("wait")
        .arg("--socket")
        .arg(env.socket())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_converge_delivers_one_success_whose_url_opens_jupyter() {
    let env = Env::new("boot-ok");
    env.write_config(&env.base_config(""));
    let ros = FakeRos::start();
    // The bootstrap starts first, as user data may: the socket does not exist yet.
    let waiter = std::thread::spawn({
        let socket = env.socket();
        let cli = ros.curl_cli();
        let result = env.path("userdata-result.txt");
        move || {
            Command::new(common::bin("jupyter-bootstrap"))
                .arg("wait")
                .arg("--socket")
                .arg(&socket)
                .args(["--timeout", "3m", "--show-token", "--ros-notify", &cli, "--result-file"])
                .arg(&result)
                .output()
                .unwrap()
        }
    });
    let agent = ForegroundAgent::start(&env);
    // Kept running: its front serves the URL.
    let _agent = agent;
    let out = waiter.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let requests = ros.wait_for(1, Duration::from_secs(5));
    assert_eq!(requests.len(), 1, "exactly one signal");
    let signal = &requests[0];
    assert_eq!(signal.field("status"), Some("SUCCESS"));
    assert_eq!(signal.field("id"), Some("jupyter"));
    assert_eq!(signal.field("data"), Some(url.as_str()));
    let (base, _, token) = split_url(&url);
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200, "the signalled URL really opens Jupyter");
    let result = std::fs::read_to_string(env.path("userdata-result.txt")).unwrap();
    assert_eq!(result.lines().last().unwrap().trim(), url);
}

#[test]
fn a_failing_converge_delivers_one_failure_with_the_reason() {
    let env = Env::new("boot-fail");
    env.write_config(
        &env.base_config("command = [\"sh\", \"-c\", \"echo kernel-panic-in-notebook >&2; exit 7\"]\nrestart = \"no\""),
    );
    let ros = FakeRos::start();
    let agent = ForegroundAgent::start(&env);
    let out = bootstrap(&env, &["--timeout", "3m", "--ros-notify", &ros.curl_cli()]);
    drop(agent);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let requests = ros.wait_for(1, Duration::from_secs(5));
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].field("status"), Some("FAILURE"));
    let reason = requests[0].field("reason").unwrap();
    assert!(reason.starts_with("token: "), "{reason}");
    assert!(reason.contains("the container stopped before Jupyter was ready"), "{reason}");
    assert!(reason.contains("kernel-panic-in-notebook"), "the log tail travels: {reason}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("kernel-panic-in-notebook"), "{stderr}");
}

#[test]
fn no_agent_at_all_still_delivers_a_failure() {
    let env = Env::new("boot-none");
    let ros = FakeRos::start();
    let out = bootstrap(&env, &["--timeout", "2s", "--ros-notify", &ros.curl_cli()]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let requests = ros.wait_for(1, Duration::from_secs(5));
    assert_eq!(requests[0].field("status"), Some("FAILURE"));
    assert!(requests[0].field("reason").unwrap().contains("never appeared"), "{:?}", requests[0].field("reason"));
}
