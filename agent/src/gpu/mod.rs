//! GPU hands-ons (issue 25, docs/gpu.md). Here, the container's GPUs:
//! `[container] gpus` as the Engine API's device request (what `docker run
//! --gpus` sends), the engine's refusal when it has no GPU device driver
//! turned into the fix, and the `gpu` step's proof: `nvidia-smi -L` run
//! inside the container through the API's exec, the GPUs' names read from
//! its output. The NVIDIA Container Toolkit, installed and registered with
//! Docker: [`toolkit`]. The host's NVIDIA driver waited for: [`driver`];
//! the starter of Alibaba's driver auto-install for the user data:
//! [`auto_install`].

pub mod auto_install;
pub mod driver;
pub mod toolkit;

pub use crate::config::Gpus;
pub use auto_install::SCRIPT as AUTO_INSTALL_SCRIPT;

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::DeviceRequest;
use bollard::Docker;
use futures_util::StreamExt;

/// How long `nvidia-smi -L` may take inside the container. It answers in
/// well under a second once the driver is loaded; the first call on a host
/// without persistence mode initialises every GPU, a few seconds each.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// How much of `nvidia-smi -L`'s output is kept (a line per GPU).
const MAX_OUTPUT: usize = 64 * 1024;

/// How many of its last lines a failed `nvidia-smi -L` shows.
const TAIL_LINES: usize = 5;

/// The words of the engine's refusal when no device driver offers the
/// `gpu` capability (moby's `incompatibleDeviceRequest`).
pub const REFUSAL: &str = "could not select device driver";

impl Gpus {
    /// What `docker run --gpus all` (or `--gpus N`) sends as
    /// `HostConfig.DeviceRequests`: no driver named, the `gpu` capability,
    /// `Count` -1 for all.
    pub fn device_request(self) -> DeviceRequest {
        DeviceRequest {
            driver: Some(String::new()),
            count: Some(match self {
                Gpus::All => -1,
                Gpus::Count(n) => i64::from(n),
            }),
            capabilities: Some(vec![vec!["gpu".to_string()]]),
            ..Default::default()
        }
    }
}

/// When the engine's error is its refusal of the device request (no GPU
/// device driver registered: the NVIDIA Container Toolkit is missing, or
/// dockerd was not restarted after its install), that, with the fix.
pub fn refusal(gpus: Gpus, engine: &str) -> Option<String> {
    engine.find(REFUSAL).map(|at| {
        // From the refusal on: bollard's `Docker responded with status code 500: ` says nothing.
        let said = engine[at..].trim();
        format!(
            "[container] gpus = {} needs the NVIDIA Container Toolkit, and this Docker engine has no GPU device driver (it said: {said}); \
             install the toolkit with `jupyter-agent install-nvidia-toolkit`, restart dockerd (systemctl restart docker), \
             then run the agent again (docs/gpu.md)",
            gpus.as_toml()
        )
    })
}

/// When the engine's error is the NVIDIA runtime's hook failing to give
/// the container its GPUs (`nvidia-container-cli: initialization error:
/// nvml error: driver not loaded`, ...): that, with where to look.
pub fn hook_failure(gpus: Gpus, engine: &str) -> Option<String> {
    engine.find("nvidia-container-cli").map(|at| {
        let said = engine[at..].trim();
        format!(
            "[container] gpus = {}: the NVIDIA runtime could not give the container its GPUs (it said: {said}); \
             is the NVIDIA driver loaded (`nvidia-smi` on the host; jupyter-agent doctor)? (docs/gpu.md)",
            gpus.as_toml()
        )
    })
}

/// What `nvidia-smi -L` listed: the GPUs' names, in its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub names: Vec<String>,
}

impl Listed {
    /// The step's detail: `1 GPU: Tesla T4`, `2 GPUs: A10, A10`.
    pub fn detail(&self) -> String {
        let n = self.names.len();
        format!("{n} GPU{}: {}", if n == 1 { "" } else { "s" }, self.names.join(", "))
    }
}

/// The GPUs' names in `nvidia-smi -L`'s output: one line per GPU,
/// `GPU 0: Tesla T4 (UUID: GPU-...)`; its MIG lines (indented `MIG ...`)
/// and anything else are not GPUs.
pub fn parse_list(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("GPU ")?;
            let (index, rest) = rest.split_once(": ")?;
            if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let name = match rest.rfind(" (UUID: ") {
                Some(at) => &rest[..at],
                None => rest,
            };
            let name = name.trim();
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// Runs `nvidia-smi -L` in the running container `container` (the API's
/// exec, as its own user), for at most `timeout`, and reads the GPUs it
/// lists. `Err` when it cannot run, exits non-zero or lists no GPU, with
/// its output's last lines.
pub async fn list(docker: &Docker, container: &str, timeout: Duration) -> Result<Listed> {
    let ran = tokio::time::timeout(timeout, run(docker, container))
        .await
        .map_err(|_| {
            anyhow!("`nvidia-smi -L` in the container did not end within {}", humantime::format_duration(timeout))
        })?
        .context("running `nvidia-smi -L` in the container")?;
    let (code, output) = ran;
    let tail = tail(&output);
    let names = parse_list(&output);
    match code {
        Some(0) if !names.is_empty() => Ok(Listed { names }),
        Some(0) => bail!("`nvidia-smi -L` in the container listed no GPU{}", said(&tail)),
        Some(code @ (126 | 127)) => bail!(
            "`nvidia-smi -L` could not run in the container (exit code {code}): the NVIDIA runtime mounts nvidia-smi from the host's driver, so is the driver installed and the device request honoured?{}",
            said(&tail)
        ),
        Some(code) => bail!("`nvidia-smi -L` in the container exited with code {code}{}", said(&tail)),
        None => bail!("`nvidia-smi -L` in the container ended without an exit code{}", said(&tail)),
    }
}

/// The exec: its exit code and its output (stdout and stderr, bounded).
async fn run(docker: &Docker, container: &str) -> Result<(Option<i64>, String)> {
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(vec!["nvidia-smi", "-L"]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await?;
    let mut out = Vec::new();
    if let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await? {
        while let Some(chunk) = output.next().await {
            let message = match chunk? {
                LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message } => {
                    message
                }
                LogOutput::StdIn { .. } => continue,
            };
            let room = MAX_OUTPUT.saturating_sub(out.len());
            out.extend_from_slice(&message[..message.len().min(room)]);
        }
    }
    let inspected = docker.inspect_exec(&exec.id).await.context("asking the exec's exit code")?;
    Ok((inspected.exit_code, String::from_utf8_lossy(&out).into_owned()))
}

/// The output's last non-empty lines.
fn tail(output: &str) -> Vec<String> {
    let lines: Vec<&str> = output.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].iter().map(|l| l.to_string()).collect()
}

fn said(tail: &[String]) -> String {
    match tail.is_empty() {
        true => "; it printed nothing".into(),
        false => format!("; it printed: {}", tail.join(" | ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_request_is_what_docker_run_gpus_sends() {
        let all = serde_json::to_value(Gpus::All.device_request()).unwrap();
        assert_eq!(all, serde_json::json!({"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}));
        let two = serde_json::to_value(Gpus::Count(2).device_request()).unwrap();
        assert_eq!(two, serde_json::json!({"Driver": "", "Count": 2, "Capabilities": [["gpu"]]}));
    }

    #[test]
    fn nvidia_smi_lists_gpus_by_name() {
        let out = "GPU 0: Tesla T4 (UUID: GPU-5d3a1c1e-8f0b-2c7e-4f1e-0a9b8c7d6e5f)\n\
                   GPU 1: NVIDIA A10 (UUID: GPU-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d)\n";
        assert_eq!(parse_list(out), ["Tesla T4", "NVIDIA A10"]);
        // MIG devices are listed under their GPU, indented: not GPUs of their own.
        let mig = "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-1)\n  MIG 1g.5gb      Device  0: (UUID: MIG-2)\n";
        assert_eq!(parse_list(mig), ["NVIDIA A100-SXM4-40GB"]);
        assert!(parse_list("No devices found.\n").is_empty());
        assert!(parse_list("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.").is_empty());
        assert!(parse_list("GPU x: name\nGPU 0: \n").is_empty());
    }

    #[test]
    fn the_hash_takes_all_or_the_number() {
        assert_eq!(serde_json::to_string(&Gpus::All).unwrap(), "\"all\"");
        assert_eq!(serde_json::to_string(&Gpus::Count(1)).unwrap(), "1");
    }

    #[test]
    fn the_engines_refusal_names_the_toolkit_and_the_fix() {
        let engine =
            "Docker responded with status code 500: could not select device driver \"\" with capabilities: [[gpu]]";
        let message = refusal(Gpus::All, engine).unwrap();
        assert!(message.starts_with("[container] gpus = \"all\" needs the NVIDIA Container Toolkit"), "{message}");
        assert!(
            message.contains(
                "no GPU device driver (it said: could not select device driver \"\" with capabilities: [[gpu]]);"
            ),
            "{message}"
        );
        let hook = "Docker responded with status code 500: OCI runtime create failed: container_linux.go:380: starting container process caused: Running hook #0:: error running hook: exit status 1, stdout: , stderr: nvidia-container-cli: initialization error: nvml error: driver not loaded: unknown";
        assert_eq!(refusal(Gpus::All, hook), None);
        let failed = hook_failure(Gpus::Count(1), hook).unwrap();
        assert!(
            failed.starts_with("[container] gpus = 1: the NVIDIA runtime could not give the container its GPUs (it said: nvidia-container-cli: initialization error: nvml error: driver not loaded: unknown);"),
            "{failed}"
        );
        assert!(message.contains("`jupyter-agent install-nvidia-toolkit`, restart dockerd"), "{message}");
        assert_eq!(refusal(Gpus::Count(1), "port is already allocated"), None);
        assert_eq!(Listed { names: vec!["A10".into(), "A10".into()] }.detail(), "2 GPUs: A10, A10");
    }
}
