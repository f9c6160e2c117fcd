//! `jupyter-agent` end to end: the real binary against the real Docker engine
//! and the real Jupyter server of `scripts/build-test-image.sh`.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::env::Env;
use crate::common::metadata::FakeMetadata;
use crate::common::{docker, get_status, inspect, split_url};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_first_run_converges_and_the_reported_url_opens_jupyter() {
    let env = Env::new("first");
    env.write_config(&env.base_config(""));
    let run = env.agent(&["run", "--once"]).expect(0);

    let url = env.agent(&["url"]).expect(0).stdout;
    assert_eq!(url.lines().count(), 1, "url prints one line: {url:?}");
    let (base, path, token) = split_url(url.trim());
    assert_eq!(path, "/", "Notebook 6 serves its tree at /");
    assert_eq!(env.agent(&["token"]).expect(0).stdout.trim(), token);
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200, "the reported token opens /api/status");
    assert_eq!(get_status(&format!("{base}/api/status"), "not-the-token"), 403, "a wrong token is refused");
    // It is the port Docker published for this container.
    let port = inspect(&env.name, "{{(index (index .NetworkSettings.Ports \"8888/tcp\") 0).HostPort}}");
    assert_eq!(base, format!("http://127.0.0.1:{port}"));

    // The token is in no log line and not in `status` without --show-token.
    assert!(!run.stderr.contains(&token), "the token leaked into the log:\n{}", run.stderr);
    let status = env.agent(&["status"]).expect(0).stdout;
    assert!(status.contains("phase: ready") && !status.contains(&token), "{status}");
    let json = env.agent(&["status", "--json"]).expect(0).stdout;
    assert!(!json.contains(&token), "{json}");

    // The state: every step done, in order, with times; file mode 0600.
    let state = env.state();
    assert_eq!(state["version"], 1);
    assert_eq!(state["phase"], "ready");
    let steps: Vec<(&str, &str)> = state["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [("engine", "done"), ("image", "done"), ("network", "done"), ("container", "done"), ("token", "done")]
    );
    assert_eq!(state["container"]["name"], env.name.as_str());
    assert_eq!(mode(&env.state_dir().join("state.json")), 0o600);

    // The legacy result file ends with the URL, mode 0600.
    let result = env.path("result.txt");
    assert_eq!(mode(&result), 0o600);
    let text = std::fs::read_to_string(&result).unwrap();
    assert_eq!(text.lines().last().unwrap().trim(), url.trim());
}

#[test]
fn a_second_run_changes_nothing() {
    let env = Env::new("rerun");
    env.write_config(&env.base_config(""));
    env.agent(&["run", "--once"]).expect(0);
    let id = inspect(&env.name, "{{.Id}}");
    let started = inspect(&env.name, "{{.State.StartedAt}}");
    let url = env.agent(&["url"]).expect(0).stdout;

    env.agent(&["run", "--once"]).expect(0);
    assert_eq!(inspect(&env.name, "{{.Id}}"), id, "same container");
    assert_eq!(inspect(&env.name, "{{.State.StartedAt}}"), started, "not restarted");
    assert_eq!(env.agent(&["url"]).expect(0).stdout, url, "same URL and token");
    assert_eq!(env.step_detail("container"), "reused");

    // Stopped from outside: the next run starts the same container again.
    assert!(docker(&["stop", "-t", "1", &env.name]).status.success());
    env.agent(&["run", "--once"]).expect(0);
    assert_eq!(inspect(&env.name, "{{.Id}}"), id, "same container, started again");
    assert_eq!(env.step_detail("container"), "started");
    let (base, _, token) = split_url(env.agent(&["url"]).expect(0).stdout.trim());
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200, "the new run's token is proven");
}

#[test]
fn a_changed_configuration_recreates_the_container_and_keeps_env_values_out_of_logs() {
    let env = Env::new("changed");
    env.write_config(&env.base_config(""));
    env.agent(&["run", "--once"]).expect(0);
    let id = inspect(&env.name, "{{.Id}}");

    std::fs::write(env.path("env"), "ACCESS_KEY_SECRET=very-secret-value-1\n").unwrap();
    env.write_config(&env.base_config(&format!(
        "env_file = \"{}\"\nenv = {{ BUCKET = \"bucket-secret-2\" }}",
        env.path("env").display()
    )));
    let run = env.agent(&["run", "--once"]).expect(0);
    let new_id = inspect(&env.name, "{{.Id}}");
    assert_ne!(new_id, id, "recreated");
    assert_eq!(env.step_detail("container"), "recreated: configuration changed");
    let vars = inspect(&env.name, "{{json .Config.Env}}");
    assert!(
        vars.contains("ACCESS_KEY_SECRET=very-secret-value-1") && vars.contains("BUCKET=bucket-secret-2"),
        "{vars}"
    );
    for secret in ["very-secret-value-1", "bucket-secret-2"] {
        assert!(!run.stderr.contains(secret), "{secret} leaked into the log:\n{}", run.stderr);
        let state = std::fs::read_to_string(env.state_dir().join("state.json")).unwrap();
        assert!(!state.contains(secret), "{secret} leaked into the state file");
    }
}

#[test]
fn a_container_that_exits_at_once_fails_with_its_exit_code_and_log_tail() {
    let env = Env::new("exits");
    env.write_config(&env.base_config(
        "command = [\"sh\", \"-c\", \"echo notebook-is-doomed >&2; echo second-line; exit 3\"]\nrestart = \"no\"",
    ));
    let run = env.agent(&["run", "--once"]).expect(1);
    let state = env.state();
    assert_eq!(state["phase"], "failed");
    assert_eq!(state["error"]["step"], "token");
    assert_eq!(state["error"]["exit_code"], 3);
    let cause = state["error"]["cause"].as_str().unwrap();
    assert!(cause.contains("the container stopped before Jupyter was ready"), "{cause}");
    let tail: Vec<&str> = state["error"]["log_tail"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert!(tail.contains(&"notebook-is-doomed") && tail.contains(&"second-line"), "{tail:?}");
    assert!(run.stderr.contains("notebook-is-doomed"), "the log tail is shown:\n{}", run.stderr);
    // The human status and the result file say the same.
    let status = env.agent(&["status"]).expect(1).stdout;
    assert!(status.contains("container exit code: 3") && status.contains("notebook-is-doomed"), "{status}");
    let result = std::fs::read_to_string(env.path("result.txt")).unwrap();
    assert!(result.contains("## failed step: token") && result.contains("## container exit code: 3"), "{result}");
    // Nothing to print for scripts.
    env.agent(&["url"]).expect(1);
}

#[test]
fn an_image_that_never_prints_a_token_fails_at_the_timeout() {
    let env = Env::new("silent");
    let cfg =
        env.base_config("command = [\"sleep\", \"600\"]").replace("ready_timeout = \"90s\"", "ready_timeout = \"3s\"");
    env.write_config(&cfg);
    env.agent(&["run", "--once"]).expect(1);
    let state = env.state();
    assert_eq!(state["error"]["step"], "token");
    let cause = state["error"]["cause"].as_str().unwrap();
    assert!(cause.contains("no login URL with a token appeared in the container's log within 3s"), "{cause}");
    assert!(state["error"].get("exit_code").is_none(), "the container still runs: no exit code");
}

#[test]
fn an_unreachable_engine_fails_fast_with_a_clear_message() {
    let env = Env::new("noengine");
    let cfg = env.base_config("").replacen(
        "[image]",
        "[docker]\nhost = \"unix:///nonexistent/docker.sock\"\nping_timeout = \"2s\"\n\n[image]",
        1,
    );
    env.write_config(&cfg);
    let start = Instant::now();
    let run = env.agent(&["run", "--once"]).expect(1);
    assert!(start.elapsed() < Duration::from_secs(30), "bounded by ping_timeout");
    assert!(
        run.stderr.contains("the Docker engine at unix:///nonexistent/docker.sock did not answer within 2s"),
        "{}",
        run.stderr
    );
    let state = env.state();
    assert_eq!(state["phase"], "failed");
    assert_eq!(state["error"]["step"], "engine");
}

#[test]
fn a_bad_configuration_changes_nothing() {
    let env = Env::new("badconfig");
    env.write_config(&env.base_config("port = 70000"));
    let run = env.agent(&["run", "--once"]).expect(2);
    let want =
        format!("{}: [container] port = 70000: expected an integer from 1 to 65535", env.config_path().display());
    assert!(run.stderr.contains(&want), "{}", run.stderr);
    assert!(!env.state_dir().exists(), "no state directory was created");
    assert!(!docker(&["inspect", &env.name]).status.success(), "no container was created");

    env.write_config(&env.base_config("volumes = [\"relative:/x\"]\nbogus = true"));
    let run = env.agent(&["run", "--once"]).expect(2);
    assert!(run.stderr.contains("[container] volumes = \"relative:/x\""), "{}", run.stderr);

    // status without any state: its own exit code.
    env.write_config(&env.base_config(""));
    let run = env.agent(&["status"]).expect(4);
    assert!(run.stderr.contains("no state at"), "{}", run.stderr);
}

#[test]
fn a_second_agent_is_refused_while_the_first_converges() {
    let env = Env::new("lock");
    env.write_config(&env.base_config(""));
    // Without --once the agent stays in the foreground, holding the lock.
    let mut first = common::agent::ForegroundAgent::start(&env);
    env.agent(&["wait", "--timeout", "90s"]).expect(0);
    let second = env.agent(&["run", "--once"]).expect(5);
    assert!(second.stderr.contains(&format!("another jupyter-agent (pid {})", first.id())), "{}", second.stderr);
    let status = first.stop();
    assert!(status.success(), "SIGTERM stops the foreground agent cleanly: {status:?}");
    env.agent(&["run", "--once"]).expect(0);
}

#[test]
fn a_configured_token_is_read_from_the_server_and_proven() {
    let env = Env::new("envtoken");
    let token = format!("configured-{}", std::process::id());
    // The server takes the token from the environment the organiser gives it.
    let config = env.base_config(&format!("env = {{ JUPYTER_TOKEN = \"{token}\" }}"));
    env.write_config(&config.replace("[jupyter]\n", "[jupyter]\ntoken = \"image\"\n"));
    let run = env.agent(&["run", "--once"]).expect(0);
    let url = env.agent(&["url"]).expect(0).stdout;
    let (base, _, got) = split_url(url.trim());
    assert_eq!(got, token);
    assert_eq!(get_status(&format!("{base}/api/status"), &got), 200);
    assert_eq!(env.state()["jupyter"]["token_source"], "server-list");
    assert!(!run.stderr.contains(&token), "{}", run.stderr);
}

#[test]
fn an_image_is_built_from_a_context_and_rebuilt_only_when_it_changes() {
    let mut env = Env::new("build");
    let tag = format!("{}:latest", env.name);
    env.images.push(tag.clone());
    let ctx = env.path("context");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {}\nCOPY hello.txt /hello.txt\n", common::test_image()))
        .unwrap();
    std::fs::write(ctx.join("hello.txt"), "first\n").unwrap();
    let cfg = |env: &Env| {
        env.base_config("").replace(
            &format!("[image]\nname = \"{}\"\npull = \"never\"", common::test_image()),
            &format!("[image]\ntag = \"{tag}\"\n\n[image.build]\ncontext = \"{}\"", ctx.display()),
        )
    };
    env.write_config(&cfg(&env));
    env.agent(&["run", "--once"]).expect(0);
    let state = env.state();
    assert_eq!(state["image"]["source"], "build");
    assert_eq!(env.step_detail("image"), "built");
    let image_id = inspect(&tag, "{{.Id}}");
    let id = inspect(&env.name, "{{.Id}}");
    let out = docker(&["exec", &env.name, "cat", "/hello.txt"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\n");

    // Unchanged context: the build cache gives the same image, the container stays.
    env.agent(&["run", "--once"]).expect(0);
    assert_eq!(inspect(&tag, "{{.Id}}"), image_id);
    assert_eq!(inspect(&env.name, "{{.Id}}"), id);

    // A changed file: a new image, a new container.
    std::fs::write(ctx.join("hello.txt"), "second\n").unwrap();
    env.agent(&["run", "--once"]).expect(0);
    assert_ne!(inspect(&tag, "{{.Id}}"), image_id);
    assert_ne!(inspect(&env.name, "{{.Id}}"), id);
    let out = docker(&["exec", &env.name, "cat", "/hello.txt"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "second\n");

    // A broken Dockerfile fails the image step with the build's own words.
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY missing-file /x\n").unwrap();
    env.agent(&["run", "--once"]).expect(1);
    let state = env.state();
    assert_eq!(state["error"]["step"], "image");
    assert!(state["error"]["cause"].as_str().unwrap().contains("missing-file"), "{}", state["error"]["cause"]);
}

#[test]
fn url_host_auto_asks_the_metadata_service_in_hardened_mode() {
    let env = Env::new("metadata");
    let meta = FakeMetadata::start(&[("eipv4", "203.0.113.7"), ("private-ipv4", "192.0.2.10")]);
    let cfg = env
        .base_config("")
        .replace("url_host = \"127.0.0.1\"", &format!("url_host = \"auto\"\nmetadata_endpoint = \"{}\"", meta.url));
    env.write_config(&cfg);
    env.agent(&["run", "--once"]).expect(0);
    let url = env.agent(&["url"]).expect(0).stdout;
    assert!(url.starts_with("http://203.0.113.7:"), "{url}");
    let requests = meta.requests.lock().unwrap().clone();
    assert_eq!(requests[0], "PUT /latest/api/token HTTP/1.1");
    assert_eq!(requests[1], "GET /latest/meta-data/eipv4 HTTP/1.1");
}

#[test]
fn an_image_archive_is_loaded_and_tagged() {
    let mut env = Env::new("archive");
    let tag = format!("{}:loaded", env.name);
    env.images.push(tag.clone());
    let tar = env.path("image.tar");
    let out = docker(&["save", "-o", tar.to_str().unwrap(), &common::test_image()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg = env.base_config("").replace(
        &format!("[image]\nname = \"{}\"\npull = \"never\"", common::test_image()),
        &format!("[image]\ntag = \"{tag}\"\narchive = \"{}\"", tar.display()),
    );
    env.write_config(&cfg);
    env.agent(&["run", "--once"]).expect(0);
    assert_eq!(inspect(&tag, "{{.Id}}"), inspect(&common::test_image(), "{{.Id}}"));
    assert_eq!(env.step_detail("image"), "loaded");
}

#[test]
fn a_pull_from_an_unreachable_registry_fails_at_the_image_step() {
    let env = Env::new("pull");
    // A registry address on loopback where nothing listens.
    let cfg = env.base_config("").replace(
        &format!("[image]\nname = \"{}\"\npull = \"never\"", common::test_image()),
        "[image]\nname = \"127.0.0.1:9/nobody/notebook\"\npull = \"always\"",
    );
    env.write_config(&cfg);
    let run = env.agent(&["run", "--once"]).expect(1);
    let state = env.state();
    assert_eq!(state["error"]["step"], "image");
    assert_eq!(state["image"]["reference"], "127.0.0.1:9/nobody/notebook:latest", "the tag is always named");
    let cause = state["error"]["cause"].as_str().unwrap();
    assert!(cause.starts_with("preparing the image: pulling 127.0.0.1:9/nobody/notebook:latest"), "{cause}");
    assert!(run.stderr.contains("converge failed"), "{}", run.stderr);
    assert!(!docker(&["inspect", &env.name]).status.success(), "no container was created");
}

/// `wait` after the agent (a service, not `--once`) stopped, or while it
/// restarts: the state file is the ended run's, and its `ready` is not the
/// next run's answer. Before, `wait` answered 0 at once from it; now it
/// waits for the run that is current (each state names its run: process
/// and kind), and says so when none runs. A `run --once` that ended is
/// still the last word.
#[test]
fn wait_after_a_restart_waits_for_the_current_run() {
    let env = Env::new("restart");
    env.write_config(&env.base_config(""));
    let mut first = common::agent::ForegroundAgent::start(&env);
    env.agent(&["wait", "--timeout", "90s"]).expect(0);
    let before = env.state()["started_at"].as_str().unwrap().to_string();
    first.stop();

    let asked = Instant::now();
    let wait = env.agent(&["wait", "--timeout", "3s"]);
    assert_eq!(wait.code, 3, "the ended run's ready is no answer\n{}\n{}", wait.stdout, wait.stderr);
    assert!(asked.elapsed() >= Duration::from_secs(2), "it waited: {:?}", asked.elapsed());
    assert!(wait.stderr.contains("is not running"), "{}", wait.stderr);

    // The next run: wait, started with it, answers with its state.
    let mut second = common::agent::ForegroundAgent::start(&env);
    let wait = env.agent(&["wait", "--timeout", "90s", "--json"]).expect(0);
    let state: serde_json::Value = serde_json::from_str(&wait.stdout).unwrap();
    assert_ne!(state["started_at"].as_str().unwrap(), before, "the ended run's state: {state}");
    assert_eq!(state["run"]["pid"], second.id(), "{state}");
    second.stop();

    env.agent(&["run", "--once"]).expect(0);
    env.agent(&["wait", "--timeout", "3s"]).expect(0);
}
