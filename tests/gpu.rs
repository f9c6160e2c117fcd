//! `[container] gpus` against the real engine of this machine, which has
//! no GPU and no NVIDIA Container Toolkit (docs/gpu.md).
//!
//! What is tested: the converge's `driver` step against a stand-in host
//! driver (a test double: an `nvidia-smi` script and device nodes as plain
//! files, where `[gpu] nvidia_smi` and `devices` point) and Alibaba's
//! auto-install log (`[gpu] auto_install_log`): its progress in the state
//! while the install runs, the step going on once the log is that of a
//! finished install before this boot, and a failed install failing the
//! step with the log's last lines before anything else is done. The
//! `toolkit` step with `[docker] install = false` (the agent must not
//! install packages on the test machine): it looks, says why it installs
//! nothing, and leaves the answer to the engine. Then the device request
//! reaches the engine, and its refusal (no GPU device driver) fails the
//! converge with the toolkit and the fix named, before anything changed: a
//! running container of the same name keeps running, and a first container
//! is not left behind. The `gpu` step's exec and reading
//! (`jupyter_agent::gpu::list`, the function the step calls) against a
//! test image with a stand-in `nvidia-smi`: a test double for NVIDIA's,
//! which needs a GPU and its driver.
//!
//! And the whole converge with GPUs to ready, on a second engine that
//! offers them through a test double of the NVIDIA hook
//! (tests/common/gpu_engine.rs): the engine's own GPU device driver takes
//! the device request and runs the hook, which gives the container a
//! stand-in `nvidia-smi`; the `gpu` step lists the GPU and the ready
//! report (state, result file) names it.
//!
//! What is not: NVIDIA's real hook, driver and `nvidia-smi` (the doubles
//! print the documented forms), the toolkit's install by the converge on
//! this host (`tests/nvidia_toolkit.rs` installs it into a Debian root by
//! the same function). The room's data and table naming the GPUs are
//! tested in the crates' unit tests, from a state that names them.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use crate::common::agent::ForegroundAgent;
use crate::common::env::Env;
use crate::common::{docker, get_status, inspect, split_url, test_image};

/// The host's NVIDIA driver, stood in for: a TEST DOUBLE of `nvidia-smi`
/// answering the driver step's query as NVIDIA's does on a gn6i instance,
/// and the device nodes as plain files (the step only checks that they
/// exist), in the test's directory; and where Alibaba's auto-install log
/// would be. `config()` points `[gpu]` at them.
struct HostDriver {
    dir: PathBuf,
}

const HOST_NVIDIA_SMI_DOUBLE: &str = r#"#!/bin/sh
# TEST DOUBLE for NVIDIA's nvidia-smi on the host (tests/gpu.rs): no GPU exists on the test machines.
[ "$1" = "--query-gpu=driver_version,name" ] || { echo "test double: only the driver step's query is played" >&2; exit 2; }
echo "535.161.07, Tesla T4"
"#;

impl HostDriver {
    fn new(env: &Env) -> HostDriver {
        let dir = env.path("gpu-host");
        std::fs::create_dir_all(dir.join("dev")).unwrap();
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        for node in ["nvidiactl", "nvidia0"] {
            std::fs::write(dir.join("dev").join(node), "").unwrap();
        }
        let smi = dir.join("bin/nvidia-smi");
        std::fs::write(&smi, HOST_NVIDIA_SMI_DOUBLE).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
        HostDriver { dir }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("auto_install.log")
    }

    /// The agent's configuration: `gpus` in `[container]`, the driver's
    /// stand-ins, and no package installed by the agent.
    fn config(&self, env: &Env, gpus: &str) -> String {
        format!(
            "{}\n[docker]\ninstall = false\n\n[gpu]\ndriver_timeout = \"2m\"\nnvidia_smi = \"{}\"\ndevices = \"{}\"\nauto_install_log = \"{}\"\n",
            env.base_config(&format!("gpus = {gpus}")),
            self.dir.join("bin/nvidia-smi").display(),
            self.dir.join("dev").display(),
            self.log_path().display()
        )
    }

    /// Writes Alibaba's log; `before_boot`: last written a day before this
    /// machine booted, as the log of an install whose reboot has happened.
    fn log(&self, text: &str, before_boot: bool) {
        std::fs::write(self.log_path(), text).unwrap();
        if before_boot {
            let stat = std::fs::read_to_string("/proc/stat").unwrap();
            let btime: u64 = stat.lines().find_map(|l| l.strip_prefix("btime ")).unwrap().trim().parse().unwrap();
            let written = SystemTime::UNIX_EPOCH + Duration::from_secs(btime - 24 * 3600);
            std::fs::File::options().write(true).open(self.log_path()).unwrap().set_modified(written).unwrap();
        }
    }
}

/// The logs the driver wait's unit tests read (constructed from what
/// Alibaba's script writes: agent/src/gpu/fixtures/README.md).
const IN_PROGRESS_LOG: &str = include_str!("../agent/src/gpu/fixtures/in_progress_1.log");
const OK_LOG: &str = include_str!("../agent/src/gpu/fixtures/ok.log");
const FAIL_LOG: &str = include_str!("../agent/src/gpu/fixtures/fail.log");

/// The agent's state, once it has one.
fn state_if_any(env: &Env) -> Option<serde_json::Value> {
    serde_json::from_str(&env.agent(&["status", "--json"]).stdout).ok()
}

/// Polls the agent's state until `holds`; panics after `timeout` with
/// the state and the agent's log.
fn state_until(
    env: &Env,
    log: &std::path::Path,
    what: &str,
    timeout: Duration,
    holds: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let state = state_if_any(env).unwrap_or_default();
        if holds(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {timeout:?}: {state:#}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn step<'a>(state: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    state["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no {name} step in {state:#}"))
}

/// What the `driver` and `toolkit` steps say before the engine's refusal.
fn assert_gpu_host_steps(state: &serde_json::Value, how: &str) {
    let driver = step(state, "driver");
    assert_eq!(driver["phase"], "preparing-gpu", "{state:#}");
    assert_eq!(driver["status"], "done", "{state:#}");
    assert_eq!(driver["detail"], format!("NVIDIA driver 535.161.07, 1 GPU: Tesla T4 ({how})"), "{state:#}");
    let toolkit = step(state, "toolkit");
    assert_eq!(toolkit["status"], "done", "{state:#}");
    let detail = toolkit["detail"].as_str().unwrap();
    assert!(
        detail.contains(", not nvidia; not installed by the agent ([docker] install = false): the engine's answer to the container's device request decides"),
        "{detail}"
    );
}

/// The test double's image: the test image with a stand-in `nvidia-smi`.
const DOUBLE_IMAGE: &str = "jupyter-agent/notebook-gpu-double:local";

/// The stand-in `nvidia-smi` (a test double: no GPU exists here). `-L`
/// prints what NVIDIA's prints on a gn6i instance (one Tesla T4), unless
/// `NVIDIA_SMI_DOUBLE` asks for one of the failures the step must report.
const NVIDIA_SMI_DOUBLE: &str = r#"#!/bin/sh
# TEST DOUBLE for NVIDIA's nvidia-smi (tests/gpu.rs): no GPU exists on the test machines.
[ "$1" = "-L" ] || { echo "test double: only -L is played" >&2; exit 2; }
case "${NVIDIA_SMI_DOUBLE:-t4}" in
t4) echo "GPU 0: Tesla T4 (UUID: GPU-5d3a1c1e-8f0b-2c7e-4f1e-0a9b8c7d6e5f)" ;;
none) echo "No devices found." ;;
driver)
    echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."
    exit 9 ;;
esac
"#;

/// Builds the double's image once per test run (a layer of one file on
/// the test image, from the builder's cache after the first run).
fn double_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a build context");
        std::fs::write(
            dir.path().join("Dockerfile"),
            format!("FROM {}\nCOPY nvidia-smi /usr/local/bin/nvidia-smi\n", test_image()),
        )
        .unwrap();
        let script = dir.path().join("nvidia-smi");
        std::fs::write(&script, NVIDIA_SMI_DOUBLE).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = docker(&[
            "build",
            "-q",
            "--label",
            "io.jupyter-agent.test-double=nvidia-smi",
            "-t",
            DOUBLE_IMAGE,
            dir.path().to_str().unwrap(),
        ]);
        assert!(out.status.success(), "docker build of the double: {}", String::from_utf8_lossy(&out.stderr));
    });
    DOUBLE_IMAGE
}

/// What the converge says when the engine has no GPU device driver.
fn assert_names_the_toolkit(stderr: &str, gpus: &str) {
    for want in [
        format!("[container] gpus = {gpus} needs the NVIDIA Container Toolkit, and this Docker engine has no GPU device driver (it said: could not select device driver \"\" with capabilities: [[gpu]])"),
        "install the toolkit with `jupyter-agent install-nvidia-toolkit`, restart dockerd (systemctl restart docker), then run the agent again".to_string(),
    ] {
        assert!(stderr.contains(&want), "wanted {want:?} in:\n{stderr}");
    }
}

/// A working container, then `gpus = "all"` on an engine without the
/// NVIDIA runtime: the converge fails at the container step with the
/// toolkit and the fix named, and the working container still runs,
/// still answering with the same token.
#[test]
fn gpus_on_an_engine_without_the_toolkit_leave_the_running_container_alone() {
    let env = Env::new("gpus-refused");
    env.write_config(&env.base_config(""));
    env.agent(&["run", "--once"]).expect(0);
    let id = inspect(&env.name, "{{.Id}}");
    let (base, _, token) = split_url(env.agent(&["url"]).expect(0).stdout.trim());

    env.write_config(&HostDriver::new(&env).config(&env, "\"all\""));
    let run = env.agent(&["run", "--once"]);
    assert_eq!(run.code, 1, "a failed converge:\n{}", run.stderr);
    assert_names_the_toolkit(&run.stderr, "\"all\"");
    assert_gpu_host_steps(&env.state(), "no auto-install log: the image's driver");
    assert!(run.stderr.contains(&format!("; the running container {} was left as it is", env.name)), "{}", run.stderr);
    let state = env.state();
    assert_eq!((state["phase"].as_str(), state["error"]["step"].as_str()), (Some("failed"), Some("container")));
    assert!(state["error"]["cause"].as_str().unwrap().contains("jupyter-agent install-nvidia-toolkit"), "{state}");
    assert_eq!(inspect(&env.name, "{{.Id}} {{.State.Running}}"), format!("{id} true"), "the same container, running");
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200, "Jupyter still answers");
    let probe = format!("{}-user-probe", env.name);
    assert!(!docker(&["inspect", &probe]).status.success(), "the probe was left behind");
    let result = std::fs::read_to_string(env.path("result.txt")).unwrap();
    assert!(result.contains("## failed step: container") && result.contains("NVIDIA Container Toolkit"), "{result}");
}

/// No container yet, `gpus = 2`: the same message, and no container of
/// that name is left (the one that could not start is removed).
#[test]
fn gpus_on_an_engine_without_the_toolkit_leave_no_container_behind() {
    let env = Env::new("gpus-first");
    env.write_config(&HostDriver::new(&env).config(&env, "2"));
    let run = env.agent(&["run", "--once"]);
    assert_eq!(run.code, 1, "a failed converge:\n{}", run.stderr);
    assert_names_the_toolkit(&run.stderr, "2");
    assert_eq!(env.state()["error"]["step"], "container");
    assert!(!docker(&["inspect", &env.name]).status.success(), "no container {} is left", env.name);
}

/// A container of the double's image, running `sleep` (its
/// `NVIDIA_SMI_DOUBLE` set to `mode`), removed with the `Env`.
fn double_container(env: &Env, mode: &str, image: &str) -> String {
    let run = docker(&[
        "run",
        "-d",
        "--name",
        &env.name,
        "-e",
        &format!("NVIDIA_SMI_DOUBLE={mode}"),
        "--entrypoint",
        "sleep",
        image,
        "300",
    ]);
    assert!(run.status.success(), "docker run: {}", String::from_utf8_lossy(&run.stderr));
    String::from_utf8_lossy(&run.stdout).trim().to_string()
}

/// The `gpu` step's own function, against containers of the double's
/// image: the GPUs' names read from `nvidia-smi -L` through the API's
/// exec, and each failure the step must report with the output's lines.
#[test]
fn the_gpu_step_reads_nvidia_smi_in_the_container_and_reports_its_failures() {
    let image = double_image();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let docker_api = bollard::Docker::connect_with_local_defaults().expect("the engine's socket");
    let list = |id: &str| {
        runtime
            .block_on(jupyter_agent::gpu::list(&docker_api, id, Duration::from_secs(30)))
            .map_err(|e| format!("{e:#}"))
    };

    let env = Env::new("gpu-double");
    let listed = list(&double_container(&env, "t4", image)).expect("one GPU listed");
    assert_eq!(listed.names, ["Tesla T4"]);
    assert_eq!(listed.detail(), "1 GPU: Tesla T4");

    let env = Env::new("gpu-double-driver");
    let err = list(&double_container(&env, "driver", image)).unwrap_err();
    assert_eq!(
        err,
        "`nvidia-smi -L` in the container exited with code 9; it printed: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."
    );

    let env = Env::new("gpu-double-none");
    let err = list(&double_container(&env, "none", image)).unwrap_err();
    assert_eq!(err, "`nvidia-smi -L` in the container listed no GPU; it printed: No devices found.");

    // The test image itself has no nvidia-smi: what a container without
    // the NVIDIA runtime's mounts looks like.
    let env = Env::new("gpu-missing");
    let err = list(&double_container(&env, "t4", &test_image())).unwrap_err();
    assert!(err.starts_with("`nvidia-smi -L` could not run in the container (exit code 12"), "{err}");
    assert!(err.contains("nvidia-smi"), "{err}");
}

/// Alibaba's auto-install, followed by a long-running agent: while the
/// log says the install runs, the `driver` step waits in the
/// `preparing-gpu` phase with the install's phase as its progress, and no
/// container is made; once the log is a finished install's, from before
/// this boot (its reboot has happened), the step takes the driver and the
/// converge goes on, to the engine's refusal here.
#[test]
fn the_driver_step_follows_alibabas_auto_install_then_goes_on() {
    let env = Env::new("gpu-driver-wait");
    let driver = HostDriver::new(&env);
    driver.log(IN_PROGRESS_LOG, false);
    env.write_config(&driver.config(&env, "\"all\""));
    let log = env.path("agent.log");
    let _agent = ForegroundAgent::start_logging(&env, &log);
    let waiting = state_until(&env, &log, "install progress", Duration::from_secs(60), |state| {
        let progress = state["steps"].as_array().and_then(|s| s.last()).map(|s| s["progress"].clone());
        progress.as_ref().and_then(|p| p.as_str()).is_some_and(|p| p.contains("downloading"))
    });
    assert_eq!(waiting["phase"], "preparing-gpu", "{waiting:#}");
    let running = step(&waiting, "driver");
    assert_eq!(running["status"], "running");
    assert_eq!(
        running["progress"],
        format!(
            "Alibaba's GPU driver auto-install ({}): downloading NVIDIA-Linux-x86_64-440.64.00.run: 12%",
            driver.log_path().display()
        )
    );
    assert!(!docker(&["inspect", &env.name]).status.success(), "no container while the driver installs");

    // The install finished and rebooted the instance.
    driver.log(OK_LOG, true);
    let failed =
        state_until(&env, &log, "the converge going on", Duration::from_secs(90), |state| state["phase"] == "failed");
    assert_gpu_host_steps(&failed, "Alibaba's auto-install: ALL INSTALL OK");
    assert_eq!(failed["error"]["step"], "container", "{failed:#}");
    assert!(failed["error"]["cause"].as_str().unwrap().contains("jupyter-agent install-nvidia-toolkit"), "{failed:#}");
}

/// A failed auto-install fails the `driver` step with the log's last
/// lines and the fix, before anything else: no image step, no container.
#[test]
fn a_failed_auto_install_fails_the_driver_step_with_its_last_lines() {
    let env = Env::new("gpu-driver-fail");
    let driver = HostDriver::new(&env);
    // The install failed, and no driver answers.
    std::fs::remove_file(driver.dir.join("dev/nvidiactl")).unwrap();
    driver.log(FAIL_LOG, false);
    env.write_config(&driver.config(&env, "1"));
    let run = env.agent(&["run", "--once"]);
    assert_eq!(run.code, 1, "a failed converge:\n{}", run.stderr);
    let state = env.state();
    assert_eq!(
        (state["phase"].as_str(), state["error"]["step"].as_str()),
        (Some("failed"), Some("driver")),
        "{state:#}"
    );
    let cause = state["error"]["cause"].as_str().unwrap();
    for want in [
        format!("Alibaba's GPU driver auto-install failed ({} says so); its last lines:", driver.log_path().display()),
        "INSTALL_ERROR: Download driver fail!!! return: 8".to_string(),
        "fix: read the whole log on the instance, then recreate the instance".to_string(),
    ] {
        assert!(cause.contains(&want), "wanted {want:?} in: {cause}");
    }
    assert!(run.stderr.contains("INSTALL_ERROR: Download driver fail!!! return: 8"), "{}", run.stderr);
    let names: Vec<&str> = state["steps"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert!(!names.contains(&"toolkit") && !names.contains(&"image"), "nothing after the driver: {names:?}");
    assert!(!docker(&["inspect", &env.name]).status.success(), "no container {}", env.name);
    let result = std::fs::read_to_string(env.path("result.txt")).unwrap();
    assert!(result.contains("## failed step: driver") && result.contains("INSTALL_ERROR"), "{result}");
}

/// `doctor`'s `gpu` line: the stand-in driver's version and GPU, and the
/// toolkit missing from this engine, with the fix.
#[test]
fn doctor_names_the_driver_and_the_missing_toolkit() {
    let env = Env::new("gpu-doctor");
    let driver = HostDriver::new(&env);
    // doctor asks the metadata service: the local fake.
    let meta = crate::common::metadata::FakeMetadata::start(&[]);
    let config = driver.config(&env, "\"all\"").replace(
        "url_host = \"127.0.0.1\"",
        &format!("url_host = \"127.0.0.1\"\nmetadata_endpoint = \"{}\"", meta.url),
    );
    env.write_config(&config);
    let run = env.agent(&["doctor", "--json"]);
    let checks: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    let gpu = checks.as_array().unwrap().iter().find(|c| c["name"] == "gpu").unwrap_or_else(|| panic!("{checks:#}"));
    assert_eq!(gpu["verdict"], "fail", "{gpu:#}");
    let detail = gpu["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("NVIDIA driver 535.161.07, GPUs: Tesla T4; the NVIDIA Container Toolkit is missing: "),
        "{detail}"
    );
    assert!(gpu["fix"].as_str().unwrap().starts_with("jupyter-agent install-nvidia-toolkit"), "{gpu:#}");

    // Without the driver, the line says so first.
    std::fs::remove_file(driver.dir.join("bin/nvidia-smi")).unwrap();
    let run = env.agent(&["doctor", "--json"]);
    let checks: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let gpu = checks.as_array().unwrap().iter().find(|c| c["name"] == "gpu").unwrap();
    assert_eq!(gpu["verdict"], "fail");
    assert!(gpu["detail"].as_str().unwrap().starts_with("the NVIDIA driver does not answer: "), "{gpu:#}");
    assert!(gpu["detail"].as_str().unwrap().contains("is not installed yet"), "{gpu:#}");
}

/// The whole converge with GPUs, on an engine that can give them: a second
/// engine with a test double of the NVIDIA Container Toolkit's hook
/// (tests/common/gpu_engine.rs), which puts a stand-in `nvidia-smi` into
/// containers that ask for GPUs, and the stand-in host driver. A container
/// without GPUs runs first; then with `gpus = "all"` the `driver` and
/// `toolkit` steps pass, the probe that guards the running container passes
/// the device request (the engine runs the hook, then finds no entrypoint,
/// as it would with NVIDIA's hook), the container is replaced, the engine
/// takes the device request (the hook is called with the container's
/// `NVIDIA_VISIBLE_DEVICES`), the `gpu` step lists the GPU inside the
/// container, and the ready report names it: the state, the result file,
/// and the login URL opens Jupyter.
#[test]
fn a_container_given_gpus_is_proven_and_the_ready_report_names_them() {
    let env = Env::new("gpu-ready");
    let engine = crate::common::gpu_engine::GpuEngine::start(&test_image(), NVIDIA_SMI_DOUBLE);
    let run_once = || {
        let run = engine
            .command(&crate::common::bin("jupyter-agent"))
            .arg("--config")
            .arg(env.config_path())
            .args(["run", "--once"])
            .env("JUPYTER_AGENT_LOG", "info")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "run --once: {stderr}\nthe engine's log:\n{}", engine.log());
    };
    let id =
        || String::from_utf8_lossy(&engine.docker(&["inspect", "-f", "{{.Id}}", &env.name]).stdout).trim().to_string();
    // First a container without GPUs.
    env.write_config(&format!("{}\n[docker]\nhost = \"{}\"\n", env.base_config(""), engine.host));
    run_once();
    let without = id();
    assert!(!without.is_empty());
    assert!(engine.hook_calls().iter().all(|c| c["visible"] == serde_json::json!([])), "{:?}", engine.hook_calls());

    let driver = HostDriver::new(&env);
    let config = driver
        .config(&env, "\"all\"")
        .replace("[docker]\ninstall = false\n", &format!("[docker]\ninstall = false\nhost = \"{}\"\n", engine.host));
    env.write_config(&config);
    run_once();
    assert_ne!(id(), without, "the container was replaced for one with GPUs");
    let probe = format!("{}-user-probe", env.name);
    assert!(!engine.docker(&["inspect", &probe]).status.success(), "the probe was left behind");

    let state = env.state();
    assert_eq!(state["phase"], "ready", "{state:#}");
    assert_eq!(state["jupyter"]["gpus"], serde_json::json!(["Tesla T4"]), "{state:#}");
    assert_eq!(step(&state, "gpu")["detail"], "1 GPU: Tesla T4");
    assert_eq!(
        step(&state, "driver")["detail"],
        "NVIDIA driver 535.161.07, 1 GPU: Tesla T4 (no auto-install log: the image's driver)"
    );
    let toolkit = step(&state, "toolkit")["detail"].as_str().unwrap().to_string();
    assert!(toolkit.contains("not installed by the agent ([docker] install = false)"), "{toolkit}");
    let calls = engine.hook_calls();
    let with_gpus = calls
        .iter()
        .filter(|c| {
            c["args"] == serde_json::json!(["prestart"])
                && c["visible"] == serde_json::json!(["NVIDIA_VISIBLE_DEVICES=all"])
        })
        .count();
    assert_eq!(with_gpus, 2, "the engine ran the hook for the probe and for the container: {calls:?}");
    let result = std::fs::read_to_string(env.path("result.txt")).unwrap();
    assert!(result.contains("## GPUs: Tesla T4\n"), "{result}");

    // The URL opens Jupyter where the engine publishes it.
    let (base, _, token) = split_url(state["jupyter"]["url"].as_str().unwrap());
    let header = env.path("auth-header");
    std::fs::write(&header, format!("Authorization: token {token}\n")).unwrap();
    let curl = engine
        .command(std::path::Path::new("curl"))
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", "-H"])
        .arg(format!("@{}", header.display()))
        .arg(format!("{base}/api/status"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "200", "{}", String::from_utf8_lossy(&curl.stderr));
}
