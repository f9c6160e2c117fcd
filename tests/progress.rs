//! Progress where people look, end to end: `status` shows the running step
//! with its elapsed time and what it is doing (here a real build's
//! `Step N/M`), and the bootstrap's line carries the same.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, test_image, Env};

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
    let mut agent = Command::new(bin("jupyter-agent"))
        .arg("--config")
        .arg(env.config_path())
        .args(["run", "--once"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
