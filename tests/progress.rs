//! Progress where people look, end to end: `status` shows the running step
//! with its elapsed time and what it is doing (here a real build's
//! `Step N/M`), and the bootstrap's line carries the same.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::env::Env;
use crate::common::{bin, test_image};

/// `jupyter-agent run --once` for `env`, not waited for.
fn run_once_in_background(env: &Env) -> std::process::Child {
    Command::new(bin("jupyter-agent"))
        .arg("--config")
        .arg(env.config_path())
        .args(["run", "--once"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn status_shows_a_running_build_step_with_its_elapsed_time() {
    let mut env = Env::new("progress");
    let tag = format!("{}:latest", env.name);
    env.images.push(tag.clone());
    let ctx = env.path("context");
    std::fs::create_dir(&ctx).unwrap();
    // A unique RUN line, so that the build cache cannot skip the slow step.
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {}\nRUN echo {} && sleep 8\nRUN echo done\n", test_image(), env.name),
    )
    .unwrap();
    let config = env.base_config("").replace(
        &format!("[image]\nname = \"{}\"\npull = \"never\"", test_image()),
        &format!("[image]\ntag = \"{tag}\"\n\n[image.build]\ncontext = \"{}\"", ctx.display()),
    );
    env.write_config(&config);
    let mut agent = run_once_in_background(&env);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = None;
    while seen.is_none() {
        assert!(Instant::now() < deadline, "the build step was never shown");
        assert!(agent.try_wait().unwrap().is_none(), "the converge ended before the build step was seen");
        let status = env.agent(&["status"]).stdout;
        seen = status
            .lines()
            .find(|l| l.trim_start().starts_with("image") && l.contains("running") && l.contains("Step 2/3 : RUN echo"))
            .map(str::to_string);
        std::thread::sleep(Duration::from_millis(200));
    }
    let line = seen.unwrap();
    // "  image      running        3s  Step 2/3 : RUN echo ... && sleep 8"
    let elapsed = line.split_whitespace().nth(2).unwrap();
    assert!(elapsed.ends_with('s') && elapsed[..elapsed.len() - 1].parse::<u64>().is_ok(), "{line}");
    assert!(agent.wait().unwrap().success());
    let status = env.agent(&["status"]).expect(0).stdout;
    assert!(
        status.lines().any(|l| l.trim_start().starts_with("image") && l.contains("done") && l.contains("built")),
        "{status}"
    );
    assert!(!status.contains("Step 2/3"), "a finished step shows what it did, not its progress: {status}");
}

#[test]
fn a_pull_reports_its_bytes_and_percent_while_it_runs() {
    let mut env = Env::new("pull-progress");
    let registry = crate::common::registry::Registry::start();
    // An image of one layer of random bytes (nothing of it exists locally).
    let tree = env.path("layer");
    std::fs::create_dir(&tree).unwrap();
    let mut data = vec![0u8; 150 * 1024 * 1024];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut data)).unwrap();
    std::fs::write(tree.join("blob"), &data).unwrap();
    drop(data);
    let reference = format!("127.0.0.1:{}/ja-test/pull:{}", registry.port, env.name);
    let tarball = env.path("layer.tar");
    assert!(Command::new("tar").arg("-C").arg(&tree).arg("-cf").arg(&tarball).arg(".").status().unwrap().success());
    let import = crate::common::docker(&["import", tarball.to_str().unwrap(), &reference]);
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let push = crate::common::docker(&["push", &reference]);
    assert!(push.status.success(), "{}", String::from_utf8_lossy(&push.stderr));
    assert!(crate::common::docker(&["rmi", &reference]).status.success());
    env.images.push(reference.clone());

    let config = env
        .base_config("")
        .replace(
            &format!("name = \"{}\"\npull = \"never\"", test_image()),
            &format!("name = \"{reference}\"\npull = \"always\""),
        )
        .replace("ready_timeout = \"90s\"", "ready_timeout = \"5s\"");
    env.write_config(&config);
    let mut agent = run_once_in_background(&env);
    // Every state the agent publishes, from the moment its socket answers.
    let events = crate::common::agent::follow_events(&env.socket(), 120);
    // The image has no Jupyter: the converge fails after the pull, which is all this test needs.
    agent.wait().unwrap();
    let out = events.wait_with_output().unwrap();
    let mut lines: Vec<String> = Vec::new();
    for event in String::from_utf8_lossy(&out.stdout).lines() {
        let state: serde_json::Value = serde_json::from_str(event).unwrap();
        for step in state["steps"].as_array().unwrap() {
            if step["name"] == "image" && step["status"] == "running" {
                if let Some(p) = step["progress"].as_str() {
                    lines.push(p.to_string());
                }
            }
        }
    }
    let with_bytes: Vec<&String> = lines.iter().filter(|l| l.contains(" MB (") && l.ends_with("%)")).collect();
    assert!(lines.iter().all(|l| l.starts_with("pulling: ") && l.contains(" of 1 layers complete")), "{lines:?}");
    assert!(!with_bytes.is_empty(), "no progress with bytes and percent was published: {lines:?}");
    assert!(with_bytes.iter().any(|l| l.contains("of 157.3 MB")), "the layer's size: {with_bytes:?}");
    assert_eq!(env.step_detail("image"), "pulled");
}
