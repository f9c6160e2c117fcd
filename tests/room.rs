//! A room played on this machine: three participants, each with an agent of
//! their own (configuration, state directory, published port, container)
//! against the real engine and real Jupyter, and each with their own
//! `jupyter-bootstrap` signalling one stand-in ROS wait condition the way the
//! room template's user data runs it (`--ros-id <name> --ros-data json
//! --ros-failure data`); one participant's image does not exist. The wait
//! condition, counting one signal per participant, completes; its `Data`,
//! given to the organiser's `jupyter-room`, gives two URLs that open Jupyter
//! and one failure named with its step.

use std::process::{Command, Output};

use crate::common::agent::ForegroundAgent;
use crate::common::env::Env;
use crate::common::ros::{FakeRos, WaitStatus};
use crate::common::{bin, get_status, split_url, test_image};

const PARTICIPANTS: [&str; 3] = ["alice", "bob", "carol"];
/// carol's image is missing: her setup fails in the `image` step.
const FAILING: &str = "carol";

fn bootstrap(socket: &std::path::Path, name: &str, ros: &FakeRos) -> Output {
    Command::new(bin("jupyter-bootstrap"))
        .arg("wait")
        .arg("--socket")
        .arg(socket)
        .args(["--timeout", "3m", "--ros-id", name, "--ros-data", "json", "--ros-failure", "data"])
        .env("JUPYTER_BOOTSTRAP_ROS_NOTIFY", ros.curl_cli())
        .output()
        .unwrap()
}

#[test]
fn a_room_of_three_completes_with_two_working_urls_and_one_named_failure() {
    let ros = FakeRos::start();
    let envs: Vec<Env> = PARTICIPANTS.iter().map(|name| Env::new(&format!("room-{name}"))).collect();
    for (env, name) in envs.iter().zip(PARTICIPANTS) {
        let mut config = env.base_config("");
        if name == FAILING {
            config = config.replace(&test_image(), "jupyter-agent/absent:never");
        }
        env.write_config(&config);
    }
    let mut agents: Vec<ForegroundAgent> = envs.iter().map(ForegroundAgent::start).collect();
    let sockets: Vec<std::path::PathBuf> = envs.iter().map(Env::socket).collect();
    let outs: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> =
            sockets.iter().zip(PARTICIPANTS).map(|(socket, name)| s.spawn(|| bootstrap(socket, name, &ros))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (out, name) in outs.iter().zip(PARTICIPANTS) {
        let want = if name == FAILING { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(want), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // The wait condition: Count = 3, one signal each, none a FAILURE.
    let condition = ros.wait_condition(PARTICIPANTS.len());
    assert_eq!(condition.status, WaitStatus::Complete, "{condition:?}");
    assert!(condition.error_data.is_empty(), "a tolerant room sends no FAILURE: {condition:?}");
    assert_eq!(condition.data.keys().map(String::as_str).collect::<Vec<_>>(), PARTICIPANTS);

    // The organiser: the stack's outputs as `aliyun ros GetStack` prints them.
    let dir = tempfile::tempdir().unwrap();
    let outputs = dir.path().join("stack.json");
    let stack = serde_json::json!({
        "Status": "CREATE_COMPLETE",
        "Outputs": [
            {"OutputKey": "Room", "OutputValue": condition.data_json()},
            {"OutputKey": "Participants", "OutputValue": PARTICIPANTS},
        ]
    });
    std::fs::write(&outputs, stack.to_string()).unwrap();
    let show = Command::new(bin("jupyter-room")).args(["show", "--show-token"]).arg(&outputs).output().unwrap();
    let table = String::from_utf8_lossy(&show.stdout).into_owned();
    assert_eq!(show.status.code(), Some(1), "not everyone is ready: {table}{}", String::from_utf8_lossy(&show.stderr));
    let mut ready = 0;
    for name in PARTICIPANTS {
        let row = table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{table}"));
        if name == FAILING {
            assert!(row.contains("failed") && row.contains("image"), "{name}'s failure and its step: {row}");
            assert!(row.contains("jupyter-agent/absent:never"), "the reason names the image: {row}");
        } else {
            let url = row.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("{row}"));
            let (base, _, token) = split_url(url);
            assert_eq!(get_status(&format!("{base}/api/status"), &token), 200, "{name}'s URL opens Jupyter");
            ready += 1;
        }
    }
    assert_eq!(ready, PARTICIPANTS.len() - 1);

    // Re-creating the failed participant's environment alone: fix the cause
    // on the instance, restart the agent, report again with the same id.
    let carol = PARTICIPANTS.iter().position(|n| *n == FAILING).unwrap();
    agents[carol].stop();
    envs[carol].write_config(&envs[carol].base_config(""));
    agents[carol] = ForegroundAgent::start(&envs[carol]);
    let again = bootstrap(&envs[carol].socket(), FAILING, &ros);
    assert_eq!(again.status.code(), Some(0), "{}", String::from_utf8_lossy(&again.stderr));
    let condition = ros.wait_condition(PARTICIPANTS.len());
    assert!(condition.data[FAILING].contains("\"url\""), "the new signal replaced the failure: {condition:?}");
    std::fs::write(
        &outputs,
        serde_json::json!({"Outputs": [{"OutputKey": "Room", "OutputValue": condition.data_json()}]}).to_string(),
    )
    .unwrap();
    let show = Command::new(bin("jupyter-room")).args(["show"]).arg(&outputs).output().unwrap();
    assert_eq!(show.status.code(), Some(0), "everyone is ready: {}", String::from_utf8_lossy(&show.stdout));

    // Without --show-token the table holds no token.
    let plain = Command::new(bin("jupyter-room")).arg("show").arg(&outputs).output().unwrap();
    let plain = String::from_utf8_lossy(&plain.stdout).into_owned();
    for url in table.split_whitespace().filter(|w| w.starts_with("http://")) {
        let (_, _, token) = split_url(url);
        assert!(!plain.contains(&token), "a token in the table without --show-token:\n{plain}");
    }
}
