//! Faults an operator met with the real engine and the real binaries
//! (issue: hardening), each reproduced here: durations that overflowed, a
//! stray token URL or a slow server that failed the converge, a SIGTERM that
//! went unheard, secrets in debug logs.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::agent::ForegroundAgent;
use crate::common::env::Env;
use crate::common::netns::{MetadataRules, NamespaceHost, USER_DATA};
use crate::common::{bin, docker, get_status, split_url};

/// Durations beyond the documented maximum (30 days) are refused when they
/// are parsed, with exit 2 and the value named: before, `Instant + Duration`
/// overflowed and both binaries aborted (exit 134), one of them after the
/// container was created.
#[test]
fn durations_beyond_the_maximum_are_refused_up_front() {
    let env = Env::new("durations");
    let wait = env.agent(&["wait", "--timeout", "18446744073709551615s"]);
    assert_eq!(wait.code, 2, "{}", wait.stderr);
    assert!(wait.stderr.contains("`18446744073709551615s`: expected at most 30 days"), "{}", wait.stderr);

    let bootstrap = Command::new(bin("jupyter-bootstrap"))
        .args(["wait", "--socket"])
        .arg(env.socket())
        .args(["--timeout", "300000000000y"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bootstrap.stderr);
    assert_eq!(bootstrap.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("300000000000y"), "{stderr}");

    for (section, key) in [("jupyter", "ready_timeout"), ("docker", "ping_timeout")] {
        let mut config = env.base_config("");
        let line = format!("{key} = \"9223372036854775807s\"\n");
        config = match section {
            "jupyter" => config.replace("ready_timeout = \"90s\"\n", &line),
            _ => format!("{config}\n[docker]\n{line}"),
        };
        env.write_config(&config);
        let run = env.agent(&["run", "--once"]);
        assert_eq!(run.code, 2, "{key}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("[{section}] {key} = \"9223372036854775807s\": expected at most 30 days")),
            "{}",
            run.stderr
        );
        assert!(!docker(&["inspect", &env.name]).status.success(), "{key}: a container was created");
        assert!(!env.state_dir().exists(), "{key}: the state directory was created");
    }
}

/// At `trace`, bollard's and hyper's own debug output printed the
/// container's create request and inspect reply, environment included. The
/// README promises no log line at any level carries an environment value or
/// the token.
#[test]
fn no_log_line_at_trace_carries_a_secret_or_the_token() {
    let env = Env::new("trace");
    let secret = "s3cr3t-from-config-7f1d";
    let from_file = "s3cr3t-from-env-file-9a2c";
    std::fs::write(env.path("env"), format!("FROM_FILE={from_file}\n")).unwrap();
    env.write_config(
        &env.base_config(&format!("env = {{ SECRET = \"{secret}\" }}\nenv_file = \"{}\"", env.path("env").display())),
    );
    let (code, stderr) = run_at_trace(&env);
    assert_eq!(code, 0, "{stderr}");
    let token = env.agent(&["token"]).expect(0).stdout.trim().to_string();
    assert!(stderr.contains("DEBUG"), "the agent's own debug lines are shown:\n{stderr}");
    for (what, value) in [("[container] env", secret), ("the env file", from_file), ("the token", token.as_str())] {
        assert!(!stderr.contains(value), "{what} leaked into the log at trace:\n{stderr}");
    }
}

/// The phase in `status --json`, or "" while there is no state yet.
fn phase(env: &Env) -> String {
    let run = env.agent(&["status", "--json"]);
    let state: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_default();
    state["phase"].as_str().unwrap_or_default().to_string()
}

/// SIGTERM while the token step runs (here it never ends: the server never
/// starts) stops the agent within 10 s, and the state says it was stopped,
/// not a running step: before, SIGTERM went unheard until `ready_timeout`
/// and the state stayed `waiting-for-token`.
#[test]
fn sigterm_during_the_token_step_stops_within_10s_and_says_so() {
    let env = Env::new("sigterm");
    let config =
        env.base_config("command = [\"sleep\", \"600\"]").replace("ready_timeout = \"90s\"", "ready_timeout = \"10m\"");
    env.write_config(&config);
    let mut agent = ForegroundAgent::start(&env);
    let deadline = Instant::now() + Duration::from_secs(60);
    while phase(&env) != "waiting-for-token" {
        assert!(Instant::now() < deadline, "never reached the token step");
        std::thread::sleep(Duration::from_millis(200));
    }
    let asked = Instant::now();
    let _ = Command::new("kill").args(["-TERM", &agent.id().to_string()]).status();
    let status = agent.wait_until(Duration::from_secs(10));
    assert!(status.is_some(), "still running 10 s after SIGTERM");
    assert!(asked.elapsed() < Duration::from_secs(10));
    let state = env.state();
    assert_eq!(state["phase"], "stopped", "{state}");
    assert_eq!(state["error"]["step"], "token", "{state}");
    assert!(state["error"]["cause"].as_str().unwrap().contains("stopped"), "{state}");
    assert!(state["steps"].as_array().unwrap().iter().all(|s| s["status"] != "running"), "{state}");
    let status = env.agent(&["status"]);
    assert_ne!(status.code, 0, "status must not call a stopped converge fine:\n{}", status.stdout);
}

/// A line with a stray `?token=` URL before the server starts, and a server
/// that starts only after 32 s: the stray candidate is skipped (its proof is
/// refused or answers 404), connection errors are retried until
/// `ready_timeout`, and the real token is proven. Before, the 404 failed the
/// converge at once, and the proof gave up after 30 s.
#[test]
fn a_stray_token_url_and_a_slow_server_still_converge() {
    let env = Env::new("stray");
    let command = "echo 'see http://127.0.0.1:8888/nope/?token=abc'; sleep 32; \
                   exec jupyter-notebook --ip=0.0.0.0 --port=8888 --allow-root --no-browser";
    env.write_config(&env.base_config(&format!("command = [\"sh\", \"-c\", \"{command}\"]")));
    let run = env.agent(&["run", "--once"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let url = env.agent(&["url"]).expect(0).stdout;
    let (base, _, token) = split_url(url.trim());
    assert_ne!(token, "abc");
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200);
}

/// A configuration broken under a service: `install` refuses it with exit
/// 2 before anything is installed or enabled (before, it only checked that
/// the file existed).
#[test]
fn install_refuses_a_bad_configuration_before_anything_changes() {
    let _host = crate::common::env::host_paths();
    let env = Env::new("install-bad");
    env.write_config(&env.base_config("port = 70000"));
    let existed = std::path::Path::new("/usr/local/bin/jupyter-agent").exists();
    let run = env.agent(&["install"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("[container] port = 70000: expected an integer from 1 to 65535"), "{}", run.stderr);
    assert_eq!(std::path::Path::new("/usr/local/bin/jupyter-agent").exists(), existed);
    assert!(!std::path::Path::new("/etc/systemd/system/jupyter-agent.service").exists());
}

/// `run` (as a service runs it) with a configuration it cannot use: it
/// publishes the refusal as a failed `config` step on its socket, so that
/// jupyter-bootstrap reports it within seconds (before: no socket, and the
/// bootstrap waited out its whole timeout), and exits 2 when stopped.
#[test]
fn a_run_with_a_bad_configuration_serves_the_refusal_and_the_bootstrap_reports_it() {
    let env = Env::new("run-bad");
    env.write_config(&env.base_config("port = 70000"));
    let mut agent = ForegroundAgent::start(&env);
    let asked = Instant::now();
    let out = Command::new(bin("jupyter-bootstrap"))
        .args(["wait", "--timeout", "2m", "--socket"])
        .arg(env.socket())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(asked.elapsed() < Duration::from_secs(20), "took {:?}", asked.elapsed());
    assert!(stderr.contains("the step `config` failed"), "{stderr}");
    assert!(stderr.contains("[container] port = 70000: expected an integer from 1 to 65535"), "{stderr}");
    // status, wait and url with the same file show the refusal the agent
    // serves (before: exit 2 from their own reading of the file, and the
    // agent's answer unread).
    let refusal = "[container] port = 70000: expected an integer from 1 to 65535";
    let status = env.agent(&["status"]);
    assert_eq!(status.code, 1, "{}\n{}", status.stdout, status.stderr);
    assert!(status.stdout.contains(refusal), "{}", status.stdout);
    let wait = env.agent(&["wait", "--timeout", "10s"]);
    assert_eq!(wait.code, 1, "{}\n{}", wait.stdout, wait.stderr);
    assert!(wait.stdout.contains(refusal), "{}", wait.stdout);
    assert_eq!(env.agent(&["url"]).code, 1);
    let _ = Command::new("kill").args(["-TERM", &agent.id().to_string()]).status();
    let exited = agent.wait_until(Duration::from_secs(10)).expect("it stops on SIGTERM");
    assert_eq!(exited.code(), Some(2));
    assert!(!env.socket().exists());
    // Stopped, the refusal is still what the state file says.
    let status = env.agent(&["status"]);
    assert_eq!(status.code, 1, "{}\n{}", status.stdout, status.stderr);
    assert!(status.stdout.contains(refusal), "{}", status.stdout);
    // Where the broken file's agent never ran: the refusal itself, exit 2.
    let never = Env::new("run-bad-never");
    never.write_config(&never.base_config("port = 70000"));
    let status = never.agent(&["status"]);
    assert_eq!(status.code, 2, "{}\n{}", status.stdout, status.stderr);
    assert!(status.stderr.contains(refusal), "{}", status.stderr);
}

/// A container that exits a few seconds after every start, with `restart =
/// "always"`: the state names the restart loop (restarts, last exit code)
/// and stays `failed`, and `wait` answers 1 every time. Before, `status`
/// flipped between `waiting-for-token` and `failed` and `wait` returned 1 or
/// 3 by chance.
#[test]
fn a_restart_loop_is_reported_as_such_and_the_answer_is_stable() {
    let env = Env::new("loop");
    env.write_config(&env.base_config("command = [\"sh\", \"-c\", \"sleep 3; exit 3\"]\nrestart = \"always\""));
    let _agent = ForegroundAgent::start(&env);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let run = env.agent(&["status", "--json"]);
        let state: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_default();
        let cause = state["error"]["cause"].as_str().unwrap_or_default();
        if cause.contains("restart loop") {
            assert!(cause.contains("exited with code 3"), "{cause}");
            assert!(cause.contains("restarted "), "{cause}");
            break;
        }
        assert!(Instant::now() < deadline, "no restart loop reported: {state}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // From now on the answer does not change with every restart.
    let watch_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < watch_until {
        assert_eq!(phase(&env), "failed");
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..3 {
        assert_eq!(env.agent(&["wait", "--timeout", "5s"]).code, 1);
    }
}

/// Paths that are not the agent's are refused with exit 2 and left as they
/// were: a `socket` at an existing regular file (before, the socket was
/// renamed over it), and a `[workspace] env_file` at a file the agent did not
/// write (before, replaced: `/etc/passwd` would have been).
#[test]
fn paths_that_are_not_the_agents_are_refused_and_left_alone() {
    let env = Env::new("host-paths");
    let precious = env.path("precious");
    std::fs::write(&precious, "keep me\n").unwrap();
    let config = env
        .base_config("")
        .replace(&format!("socket = \"{}\"", env.socket().display()), &format!("socket = \"{}\"", precious.display()));
    env.write_config(&config);
    let run = env.agent(&["run", "--once"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("exists and is not a socket"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me\n");
    assert!(!docker(&["inspect", &env.name]).status.success(), "no container was created");

    let foreign = env.path("foreign-env");
    std::fs::write(&foreign, "ROOT=x\n").unwrap();
    let repo = env.path("repo");
    std::fs::create_dir(&repo).unwrap();
    let workspace = format!(
        "\n[workspace]\nsource = \"{}\"\nref = \"main\"\npath = \"{}\"\nenv_file = \"{}\"\n[workspace.env]\nA = \"1\"\n",
        repo.display(),
        env.path("w").display(),
        foreign.display()
    );
    env.write_config(&format!("{}{workspace}", env.base_config("")));
    let run = env.agent(&["run", "--once"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("exists and was not written by jupyter-agent"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&foreign).unwrap(), "ROOT=x\n");
    assert!(!env.path("w").exists());
}

/// A kill while the engine removed an outdated container left that removal
/// running in dockerd; the next run's own removal got 409 "removal of
/// container ... is already in progress" and failed. It now waits for the
/// removal and creates the container.
#[test]
fn a_removal_already_in_progress_is_waited_for() {
    let env = Env::new("removing");
    env.write_config(&env.base_config(""));
    // An outdated container of the agent's, with enough files in its layer
    // that the engine takes seconds to remove it.
    let run = docker(&[
        "run",
        "-d",
        "--name",
        &env.name,
        "--label",
        "io.jupyter-agent.managed=true",
        "--label",
        "io.jupyter-agent.config-hash=outdated",
        &crate::common::test_image(),
        "sh",
        "-c",
        "mkdir /d && cd /d && seq 1 50000 | xargs touch && touch /ready && exec sleep 1000",
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !docker(&["exec", &env.name, "test", "-e", "/ready"]).status.success() {
        assert!(Instant::now() < deadline, "the files were never written");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Someone (the killed agent's request, which dockerd carries on) removes it.
    let name = env.name.clone();
    let remover = std::thread::spawn(move || docker(&["rm", "-f", &name]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::common::inspect(&env.name, "{{.State.Status}}") != "removing" {
        assert!(Instant::now() < deadline, "the removal was never seen in progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    let run = env.agent(&["run", "--once"]);
    remover.join().unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("waiting for the engine to finish removing it"), "{}", run.stderr);
    assert_eq!(env.state()["phase"], "ready");
    let url = env.agent(&["url"]).expect(0).stdout;
    let (base, _, token) = split_url(url.trim());
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200);
}

/// What a participant's notebook would try: an HTTP request from inside the
/// container to `url`; its exit code and error.
fn fetch_from_container(name: &str, url: &str) -> (bool, String) {
    let script = format!("import urllib.request; urllib.request.urlopen('{url}', timeout=5).read()");
    let out = docker(&["exec", name, "python3", "-c", &script]);
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The container could read the instance's user data (access keys, the
/// signed ROS URL) from the metadata service. By default the agent now
/// rejects what its containers send to the metadata service's address;
/// `[container] metadata_access = true` allows it, and removes the rule.
/// The metadata service here is a test host in a network namespace (no
/// packet goes to the real one's address).
#[test]
fn the_container_cannot_reach_the_metadata_service_unless_allowed() {
    let host = NamespaceHost::start(0);
    let rules = MetadataRules::guard(&host.address);
    let env = Env::new("metadata-block");
    let endpoint = host.endpoint();
    let config = |access: &str| {
        let mut c = env.base_config(access);
        c = c.replace("[jupyter]\n", &format!("[jupyter]\nmetadata_endpoint = \"{endpoint}\"\n"));
        env.write_config(&c);
    };

    // Allowed: the test host is reachable from the container, so a refusal
    // later is the rule's doing.
    config("metadata_access = true");
    env.agent(&["run", "--once"]).expect(0);
    let (ok, err) = fetch_from_container(&env.name, &endpoint);
    assert!(ok, "reachable while allowed: {err}");
    assert!(!MetadataRules::listed().contains(&rules.containers()));

    // The default: rejected.
    config("");
    let run = env.agent(&["run", "--once"]).expect(0);
    // Blocked first thing in the converge: the network step finds the rules.
    assert_eq!(env.step_detail("network"), "jupyter-agent; metadata service: already blocked", "{}", run.stderr);
    let (ok, err) = fetch_from_container(&env.name, &endpoint);
    assert!(!ok && err.contains("Connection refused"), "blocked: {err}");
    assert!(MetadataRules::listed().contains(&rules.containers()), "{}", MetadataRules::listed());

    // Allowed again: the rule is gone.
    config("metadata_access = true");
    env.agent(&["run", "--once"]).expect(0);
    let (ok, err) = fetch_from_container(&env.name, &endpoint);
    assert!(ok, "reachable once allowed again: {err}");
    assert!(!MetadataRules::listed().contains(&rules.containers()));
    drop(host);
}

/// `curl` of `url` as `uid` (0 or `nobody`'s 65534, with no supplementary
/// groups): whether it answered, and its body or error.
fn curl_as(uid: u32, url: &str) -> (bool, String) {
    let id = uid.to_string();
    let out = Command::new("setpriv")
        .args(["--reuid", &id, "--regid", &id, "--clear-groups", "curl", "-sS", "--max-time", "5", url])
        .output()
        .unwrap();
    let text = if out.status.success() { &out.stdout } else { &out.stderr };
    (out.status.success(), String::from_utf8_lossy(text).into_owned())
}

/// Any local user could read the instance's user data (access keys, the
/// registry password, the signed ROS URL) from the metadata service: the
/// only rule was for the containers' bridge. By default the agent now
/// rejects what any local user but root sends to the service's address (an
/// `OUTPUT` rule matching the socket's owner, the whole address: a match on
/// the path could be split across TCP segments); root (the agent, the user
/// data, the bootstrap) still gets its answers. `metadata_access = true`
/// removes that rule too. The service is a test host in a network namespace.
#[test]
fn a_local_user_other_than_root_cannot_read_the_user_data() {
    let host = NamespaceHost::start(1);
    let rules = MetadataRules::guard(&host.address);
    let env = Env::new("metadata-local");
    let user_data = format!("{}/latest/user-data", host.endpoint());
    let config = |access: &str| {
        let c = env
            .base_config(access)
            .replace("[jupyter]\n", &format!("[jupyter]\nmetadata_endpoint = \"{}\"\n", host.endpoint()));
        env.write_config(&c);
    };
    // Before any rule, `nobody` reads it: a refusal later is the rule's doing.
    assert_eq!(curl_as(65534, &user_data), (true, USER_DATA.to_string()));

    // The rules come first in a converge, before the engine, the image and
    // the minutes they can take: a converge that fails at the image has
    // already put them in place.
    config("");
    env.write_config(&std::fs::read_to_string(env.config_path()).unwrap().replace(
        &format!("name = \"{}\"\npull", crate::common::test_image()),
        "name = \"jupyter-agent/no-such-image:never\"\npull",
    ));
    assert_eq!(env.agent(&["run", "--once"]).code, 1);
    let (ok, err) = curl_as(65534, &user_data);
    assert!(!ok && err.starts_with("curl: (7) Failed to connect"), "nobody was answered before the image: {err}");
    assert!(MetadataRules::listed().contains(&rules.containers()), "{}", MetadataRules::listed());

    config("");
    let run = env.agent(&["run", "--once"]).expect(0);
    // Blocked first thing in the converge: the network step finds the rules.
    assert_eq!(env.step_detail("network"), "jupyter-agent; metadata service: already blocked", "{}", run.stderr);
    let (ok, err) = curl_as(65534, &user_data);
    // curl's exit 7: it could not connect (refused at once, not a timeout).
    assert!(!ok && err.starts_with("curl: (7) Failed to connect"), "nobody was answered: {err}");
    assert_eq!(curl_as(0, &user_data), (true, USER_DATA.to_string()), "root still reads it");
    assert!(MetadataRules::listed().contains(&rules.local_users()), "{}", MetadataRules::listed());

    // Allowed: both rules are gone, and nobody reads it again.
    config("metadata_access = true");
    env.agent(&["run", "--once"]).expect(0);
    assert_eq!(curl_as(65534, &user_data), (true, USER_DATA.to_string()));
    let listed = MetadataRules::listed();
    assert!(!listed.contains(&rules.local_users()) && !listed.contains(&rules.containers()), "{listed}");
    drop(host);
}

/// A `user` the image does not have: the engine creates the container and
/// refuses to start it. Before, that container stayed behind (created, never
/// started) and the message was the engine's; now it is removed and the
/// message names the user and the image.
#[test]
fn a_user_the_image_lacks_is_named_and_leaves_no_container() {
    let env = Env::new("nouser");
    env.write_config(&env.base_config("user = \"nosuchuser\""));
    let run = env.agent(&["run", "--once"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "the image {} has no user nosuchuser ([container] user = \"nosuchuser\"); name a user the image has (or a numeric uid), or leave user unset; the container was removed",
            crate::common::test_image()
        )),
        "{}",
        run.stderr
    );
    assert!(!docker(&["inspect", &env.name]).status.success(), "the container was left behind");
}

/// Runs `jupyter-agent run --once` at `trace`; its exit code and stderr.
fn run_at_trace(env: &Env) -> (i32, String) {
    let out = Command::new(bin("jupyter-agent"))
        .arg("--config")
        .arg(env.config_path())
        .args(["run", "--once"])
        .env("JUPYTER_AGENT_LOG", "trace")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Every regular file under `dir`, with its text (lossy).
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.is_dir() {
            out.extend(files_under(&path));
        } else if meta.is_file() {
            out.push((path.clone(), String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned()));
        }
    }
    out
}

/// A signed image archive URL and a signed materials tarball URL (an OSS
/// object's `?Expires=..&OSSAccessKeyId=..&Signature=..`). Before, the
/// materials URL was logged at info with its query, kept in
/// `workspace.json` and in the failure's cause (what the bootstrap sends
/// ROS as the reason), and from the container step on the converge swapped
/// the redactor that held the archive's query for one without it, so a
/// container printing it put it in the state and the log. Now one redactor,
/// fed every secret the configuration names, cleans the log, the state, the
/// record and every failure of the run.
#[test]
fn signed_archive_and_materials_urls_reach_no_log_state_record_or_failure() {
    let mut env = Env::new("signed");
    let (archive, archive_sha) = crate::images::exported_test_image().clone();
    let materials = env.path("materials/handson-0123");
    std::fs::create_dir_all(&materials).unwrap();
    std::fs::write(materials.join("README.md"), "the hands-on\n").unwrap();
    let tgz = Command::new("tar")
        .arg("-C")
        .arg(env.path("materials"))
        .args(["-czf", "-", "handson-0123"])
        .output()
        .unwrap()
        .stdout;
    let tgz_sha = {
        let path = env.path("materials.tgz");
        std::fs::write(&path, &tgz).unwrap();
        let out = Command::new("sha256sum").arg(&path).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
    };
    // Both files by path, whatever the query.
    let server = crate::common::http_fake::FakeServer::tcp(move |request| {
        use crate::common::http_fake::{file_body, response};
        Some(match request.path() {
            "/nb.tar.gz" => {
                let file = std::fs::File::open(&archive).unwrap();
                let len = file.metadata().unwrap().len();
                let mut answer = hyper::Response::new(file_body(file, 0, None));
                answer.headers_mut().insert(hyper::header::CONTENT_LENGTH, len.into());
                answer
            }
            "/materials.tar.gz" => response(200, Some("application/gzip"), tgz.clone()),
            _ => response(404, None, ""),
        })
    });
    let pid = std::process::id();
    let archive_sig = format!("ArchiveSig{pid}Zq");
    let materials_sig = format!("MaterialsSig{pid}Zq");
    let query = |sig: &str| format!("Expires=1700000000&OSSAccessKeyId=LTAI5tTestKeyId&Signature={sig}");
    let archive_url = format!("{}/nb.tar.gz?{}", server.url(), query(&archive_sig));
    let materials_url = format!("{}/materials.tar.gz?{}", server.url(), query(&materials_sig));
    let tag = format!("{}-signed:1", env.name);
    env.images.push(tag.clone());
    // The container prints both URLs and exits: its log tail is in the failure.
    let command = format!(
        "command = [\"sh\", \"-c\", \"echo archive $0 materials $1; exit 3\", \"{archive_url}\", \"{materials_url}\"]"
    );
    let config = |materials_sha: &str| {
        let base = env.base_config(&command).replace(
            &format!("[image]\nname = \"{}\"\npull = \"never\"\n", crate::common::test_image()),
            &format!("[image]\narchive = \"{archive_url}\"\nsha256 = \"{archive_sha}\"\ntag = \"{tag}\"\n"),
        );
        format!(
            "{base}\n[workspace]\nsource = \"{materials_url}\"\nsha256 = \"{materials_sha}\"\npath = \"{}\"\n",
            env.path("handson").display()
        )
    };
    let mut logs = Vec::new();
    let mut causes = Vec::new();

    // A wrong sha256: the workspace step fails, naming the tarball.
    env.write_config(&config(&"0".repeat(64)));
    let (code, log) = run_at_trace(&env);
    assert_eq!(code, 1, "{log}");
    let state = env.state();
    assert_eq!(state["error"]["step"], "workspace", "{state}");
    causes.push(state["error"]["cause"].as_str().unwrap().to_string());
    assert!(causes[0].contains("/materials.tar.gz"), "the cause names the tarball: {}", causes[0]);
    logs.push(log);

    // The right one: fetched, the archive loaded, and the container prints both URLs.
    env.write_config(&config(&tgz_sha));
    let (code, log) = run_at_trace(&env);
    assert_eq!(code, 1, "{log}");
    let state = env.state();
    assert_eq!(state["error"]["step"], "token", "{state}");
    let tail = state["error"]["log_tail"].to_string();
    assert!(tail.contains("/nb.tar.gz?") && tail.contains("/materials.tar.gz?"), "the container's lines: {tail}");
    causes.push(state["error"].to_string());
    assert!(log.contains("DEBUG"), "the agent's own debug lines are shown:\n{log}");
    logs.push(log);

    let mut texts: Vec<(String, String)> = Vec::new();
    texts.extend(logs.into_iter().enumerate().map(|(i, l)| (format!("the log of run {i} at trace"), l)));
    texts.extend(causes.into_iter().enumerate().map(|(i, c)| (format!("the failure of run {i}"), c)));
    texts.push(("status --json".into(), env.agent(&["status", "--json"]).stdout));
    for (path, text) in files_under(&env.state_dir()) {
        texts.push((path.display().to_string(), text));
    }
    texts.push(("the result file".into(), std::fs::read_to_string(env.path("result.txt")).unwrap_or_default()));
    assert!(texts.iter().any(|(what, _)| what.ends_with("workspace.json")), "a workspace record");
    let leaks: Vec<String> = texts
        .iter()
        .flat_map(|(what, text)| {
            [&archive_sig, &materials_sig]
                .into_iter()
                .filter(|sig| text.contains(sig.as_str()))
                .map(move |sig| format!("{what} holds the signature {sig}"))
        })
        .collect();
    assert!(leaks.is_empty(), "{leaks:#?}");
}

/// A working container, then a `user` the image lacks (a typo in a
/// changed configuration): before, the converge removed the working
/// container first and found out only when the new one would not start,
/// so the typo took Jupyter down. Now the user (and group) is tried
/// against the image first, in a container that runs nothing, and the
/// working one is left running; the message names the user or the group.
#[test]
fn a_user_the_image_lacks_leaves_the_running_container_alone() {
    let env = Env::new("nouser-running");
    env.write_config(&env.base_config(""));
    env.agent(&["run", "--once"]).expect(0);
    let id = crate::common::inspect(&env.name, "{{.Id}}");
    let (base, _, token) = split_url(env.agent(&["url"]).expect(0).stdout.trim());
    for (user, missing) in [("nosuchuser", "no user nosuchuser"), ("1000:nosuchgroup", "no group nosuchgroup")] {
        env.write_config(&env.base_config(&format!("user = \"{user}\"")));
        let run = env.agent(&["run", "--once"]);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "the image {} has {missing} ([container] user = \"{user}\"); name a user the image has (or a numeric uid), or leave user unset; the running container {} was left as it is",
                crate::common::test_image(),
                env.name
            )),
            "{}",
            run.stderr
        );
        assert_eq!(crate::common::inspect(&env.name, "{{.Id}} {{.State.Running}}"), format!("{id} true"));
        assert_eq!(get_status(&format!("{base}/api/status"), &token), 200, "Jupyter still answers");
        let probe = format!("{}-user-probe", env.name);
        assert!(!docker(&["inspect", &probe]).status.success(), "the probe was left behind");
    }
    // A user the image has: tried, then the container is recreated with it.
    env.write_config(&env.base_config("user = \"root\""));
    env.agent(&["run", "--once"]).expect(0);
    assert_ne!(crate::common::inspect(&env.name, "{{.Id}}"), id, "recreated");
    assert_eq!(crate::common::inspect(&env.name, "{{.Config.User}}"), "root");
}
