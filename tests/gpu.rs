//! `[container] gpus` against the real engine of this machine, which has
//! no GPU and no NVIDIA Container Toolkit (docs/gpu.md).
//!
//! What is tested: the device request reaches the engine, and its refusal
//! (no GPU device driver) fails the converge with the toolkit and the fix
//! named, before anything changed: a running container of the same name
//! keeps running, and a first container is not left behind. The `gpu`
//! step's exec and reading (`jupyter_agent::gpu::list`, the function the
//! step calls) against a test image with a stand-in `nvidia-smi`: a test
//! double for NVIDIA's, which needs a GPU and its driver.
//!
//! What is not: a container given GPUs by the NVIDIA runtime (the engine
//! here refuses the device request, so the converge never reaches the
//! `gpu` step), the real `nvidia-smi`'s output (the double prints the
//! documented form). The ready report's naming of the GPUs (status, the
//! result file, the room's data and table) is tested in the crates' unit
//! tests, from a state that names them.

use std::sync::OnceLock;
use std::time::Duration;

use crate::common::env::Env;
use crate::common::{docker, get_status, inspect, split_url, test_image};

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

    env.write_config(&env.base_config("gpus = \"all\""));
    let run = env.agent(&["run", "--once"]);
    assert_eq!(run.code, 1, "a failed converge:\n{}", run.stderr);
    assert_names_the_toolkit(&run.stderr, "\"all\"");
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
    env.write_config(&env.base_config("gpus = 2"));
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
