//! What a participant asks of the running agent (issue 23), through the
//! commands the organiser types over SSH: a raised hand, shown by `status`
//! and in the front's `/_agent/progress` JSON, kept across a restart of the
//! agent; and a reset of the workspace through the running agent, after
//! which the container is new, the work is in the backup, and the same URL
//! logs in.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::common::agent::{ready_url, ForegroundAgent};
use crate::common::env::Env;
use crate::common::{self, get_status, http, split_url, MOUNT, NOTEBOOK};

/// The front's `/_agent/progress` JSON, on the port of the login URL.
fn progress(url: &str) -> serde_json::Value {
    let (base, _, _) = split_url(url);
    let body = http().get(format!("{base}/_agent/progress")).send().expect("the front answers").text().unwrap();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/_agent/progress: {e}: {body}"))
}

#[test]
fn a_raised_hand_is_shown_kept_across_a_restart_and_lowered() {
    let env = Env::new("hand");
    env.write_config(&env.base_config(""));
    let log = env.path("agent.log");
    let mut agent = ForegroundAgent::start_logging(&env, &log);
    let url = ready_url(&env, &log);
    assert!(progress(&url)["hand"].is_null(), "no hand yet");

    // A message past the bounds is refused before anything is asked.
    let run = env.agent(&["hand", "raise", "--message", "two\nlines"]).expect(2);
    assert!(run.stderr.contains("--message: the message holds a control character"), "{}", run.stderr);
    let run = env.agent(&["hand", "raise", "--message", &"x".repeat(281)]).expect(2);
    assert!(run.stderr.contains("the message has 281 characters: at most 280"), "{}", run.stderr);
    assert!(env.state()["hand"].is_null());

    let raised = env.agent(&["hand", "raise", "--message", "stuck on step 3"]).expect(0).stdout;
    assert!(raised.starts_with("hand: raised ") && raised.ends_with(": stuck on step 3\n"), "{raised}");
    let status = env.agent(&["status"]).expect(0).stdout;
    assert!(status.contains("\nhand: raised ") && status.contains("): stuck on step 3\n"), "{status}");
    let hand = env.state()["hand"].clone();
    assert_eq!(hand["message"], "stuck on step 3", "{hand}");
    let seen = progress(&url)["hand"].clone();
    assert_eq!(seen, serde_json::json!({"raised_at": hand["raised_at"], "message": "stuck on step 3"}));
    let file = env.state_dir().join("hand.json");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    // The agent restarts (a reboot, an update): the hand is still raised.
    agent.stop();
    let mut agent = ForegroundAgent::start_logging(&env, &log);
    let url = ready_url(&env, &log);
    assert_eq!(env.state()["hand"], hand, "the same hand, from before the restart");
    assert_eq!(progress(&url)["hand"]["message"], "stuck on step 3");

    // The organiser answered.
    let lowered = env.agent(&["hand", "lower", "--json"]).expect(0).stdout;
    assert_eq!(lowered, "{\"hand\":null}\n");
    assert!(env.state()["hand"].is_null());
    assert!(!env.agent(&["status"]).expect(0).stdout.contains("hand:"));
    assert!(progress(&url)["hand"].is_null());
    assert!(!file.exists());

    // Without a running agent: said, exit 4, nothing written.
    agent.stop();
    let run = env.agent(&["hand", "raise"]).expect(4);
    assert!(run.stderr.contains("the agent is not running (no answer on "), "{}", run.stderr);
    assert!(!file.exists());
}

#[test]
fn a_reset_through_the_running_agent_keeps_the_work_aside_and_the_same_url() {
    let env = Env::new("reset");
    let (repo, handson) = common::materials(&env, &[("hello.ipynb", NOTEBOOK)], "");
    let log = env.path("agent.log");
    let _agent = ForegroundAgent::start_logging(&env, &log);
    let url = ready_url(&env, &log);
    let id = common::inspect(&env.name, "{{.Id}}");

    // The participant's work, in the mounted workspace.
    let edit = format!("printf '%s' mine > {MOUNT}/hello.ipynb && printf '%s' notes > {MOUNT}/notes.txt");
    assert!(common::docker(&["exec", &env.name, "sh", "-c", &edit]).status.success());
    assert_eq!(std::fs::read_to_string(handson.join("hello.ipynb")).unwrap(), "mine");

    // The materials cannot be fetched: nothing moves, Jupyter stays as it was.
    let away = env.path("repo-away");
    std::fs::rename(&repo, &away).unwrap();
    let run = env.agent(&["workspace", "reset"]).expect(1);
    assert!(run.stderr.contains("resetting the workspace: "), "{}", run.stderr);
    assert!(run.stderr.contains("your copy and Jupyter are left as they were"), "{}", run.stderr);
    std::fs::rename(&away, &repo).unwrap();
    assert_eq!(std::fs::read_to_string(handson.join("hello.ipynb")).unwrap(), "mine");
    assert_eq!(common::inspect(&env.name, "{{.Id}}"), id);
    let state = env.state();
    assert_eq!((state["phase"].as_str(), state["jupyter"]["url"].as_str()), (Some("ready"), Some(url.as_str())));
    assert_eq!(state["steps"][0]["name"], "workspace: reset", "{state}");
    assert_eq!(state["steps"][0]["status"], "failed", "{state}");

    let run = env.agent(&["workspace", "reset"]);
    let said =
        format!("{}{}\n--- the agent's log:\n{}", run.stdout, run.stderr, std::fs::read_to_string(&log).unwrap());
    assert_eq!(run.code, 0, "{said}");
    assert!(run.stdout.starts_with("your copy was moved to "), "{said}");
    assert!(run.stdout.contains("\nJupyter is back on the same URL: "), "{said}");
    assert!(!run.stdout.contains(&split_url(&url).2), "no token printed: {said}");

    // The work is in the backup, byte for byte; the copy is fresh.
    let aside: Vec<PathBuf> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("handson.bak-"))
        .collect();
    assert_eq!(aside.len(), 1, "{said}");
    assert!(run.stdout.contains(&aside[0].display().to_string()), "the backup is named: {said}");
    assert_eq!(std::fs::read_to_string(aside[0].join("hello.ipynb")).unwrap(), "mine");
    assert_eq!(std::fs::read_to_string(aside[0].join("notes.txt")).unwrap(), "notes");
    assert_eq!(std::fs::read_to_string(handson.join("hello.ipynb")).unwrap(), NOTEBOOK);
    assert!(!handson.join("notes.txt").exists());

    // A new container, on the fresh copy, behind the same URL.
    assert_ne!(common::inspect(&env.name, "{{.Id}}"), id, "the container is re-created");
    let seen = common::docker(&["exec", &env.name, "cat", &format!("{MOUNT}/hello.ipynb")]);
    assert_eq!(String::from_utf8_lossy(&seen.stdout), NOTEBOOK);
    let state = env.state();
    assert_eq!(state["phase"], "ready", "{state}");
    assert_eq!(state["jupyter"]["url"], url.as_str());
    let result = std::fs::read_to_string(env.path("result.txt")).unwrap();
    assert!(result.contains(&url), "the result file names the same URL: {result}");
    let steps: Vec<&str> = state["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(steps.first(), Some(&"workspace: reset"), "{steps:?}");
    assert!(steps.contains(&"container") && steps.contains(&"token"), "{steps:?}");
    let (base, _, token) = split_url(&url);
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200, "the same URL logs in");
    assert_eq!(get_status(&format!("{base}/api/status"), "not-the-token"), 403);
}
