//! A second Docker engine that offers GPUs, for the one test that needs a
//! container given GPUs (tests/gpu.rs): this machine's `dockerd` binary,
//! started in a network namespace of the test's own (its bridge, its
//! firewall and its published ports stay there, away from the shared
//! engine's), with its own data and exec roots, socket and containerd
//! namespace, and with a TEST DOUBLE of the NVIDIA Container Toolkit's
//! `nvidia-container-runtime-hook` first in its `PATH`.
//!
//! What is real: dockerd finds the hook at its start and so registers its
//! GPU device driver (moby, `daemon/nvidia_linux.go`; docs/gpu.md), takes
//! the device request `--gpus` sends, sets `NVIDIA_VISIBLE_DEVICES` in the
//! container's environment and runs the hook as the container's prestart
//! hook (runc). What the double does in place of NVIDIA's (which needs a
//! GPU and its driver): when the container's environment asks for GPUs, it
//! puts a stand-in `nvidia-smi` into the container's root, as the real
//! hook mounts the driver's tools there; it logs each call.
//!
//! The test image is copied into the engine (`docker save | load`); the
//! engine, its namespace and its directories are removed when dropped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The hook's double: Python, for reading the OCI state and the bundle's
/// `config.json`. `SMI` and `LOG` are replaced with paths.
const HOOK_DOUBLE: &str = r#"#!/usr/bin/python3
# TEST DOUBLE for NVIDIA's nvidia-container-runtime-hook (tests/common/gpu_engine.rs):
# no GPU exists on the test machines. Called by runc as a prestart hook.
import json, os, shutil, sys
state = json.load(sys.stdin)
bundle = state["bundle"]
with open(os.path.join(bundle, "config.json")) as f:
    config = json.load(f)
root = config["root"]["path"]
if not os.path.isabs(root):
    root = os.path.join(bundle, root)
visible = [e for e in config.get("process", {}).get("env", []) if e.startswith("NVIDIA_VISIBLE_DEVICES=")]
with open("LOG", "a") as log:
    log.write(json.dumps({"args": sys.argv[1:], "visible": visible}) + "\n")
if visible:
    dest = os.path.join(root, "usr/local/bin")
    os.makedirs(dest, exist_ok=True)
    shutil.copy("SMI", os.path.join(dest, "nvidia-smi"))
    os.chmod(os.path.join(dest, "nvidia-smi"), 0o755)
"#;

pub struct GpuEngine {
    /// The network namespace the engine (and whatever must reach its
    /// published ports) runs in.
    pub ns: String,
    /// `unix:///...` of its socket.
    pub host: String,
    dir: PathBuf,
    data_root: PathBuf,
    dockerd: Child,
}

impl GpuEngine {
    /// Starts the engine and copies `image` into it. `container_smi`: the
    /// stand-in `nvidia-smi` the hook gives containers.
    pub fn start(image: &str, container_smi: &str) -> GpuEngine {
        let id = std::process::id();
        let ns = format!("ja-gpu-{id}");
        let dir = PathBuf::from(format!("/run/ja-gpu-{id}"));
        // The data root on the same file system as the shared engine's
        // (overlay2 needs one that supports it; /run is a tmpfs).
        let data_root = PathBuf::from(format!("/var/lib/ja-gpu-engine-{id}"));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&data_root).unwrap();
        let smi = dir.join("container-nvidia-smi");
        write_executable(&smi, container_smi);
        let hook =
            HOOK_DOUBLE.replace("SMI", smi.to_str().unwrap()).replace("LOG", dir.join("hook.log").to_str().unwrap());
        write_executable(&bin.join("nvidia-container-runtime-hook"), &hook);

        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        ip(&["netns", "add", &ns]);
        ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        let socket = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        // nsenter, not `ip netns exec`: that one mounts a sysfs of the
        // namespace's over /sys, which hides the cgroup file systems dockerd needs.
        let dockerd = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .arg("dockerd")
            .arg(format!("--host=unix://{}", socket.display()))
            .arg(format!("--data-root={}", data_root.display()))
            .arg(format!("--exec-root={}", dir.join("exec").display()))
            .arg(format!("--pidfile={}", dir.join("dockerd.pid").display()))
            .args(["--containerd-namespace=ja-gpu", "--containerd-plugins-namespace=ja-gpu-plugins"])
            .env("PATH", path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd starts");
        let engine = GpuEngine { ns, host: format!("unix://{}", socket.display()), dir, data_root, dockerd };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine.docker(&["version"]).status.success() {
            assert!(Instant::now() < deadline, "the GPU engine did not answer in 60 s:\n{}", engine.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        engine.load(image);
        engine
    }

    /// The docker CLI against this engine.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker").arg("--host").arg(&self.host).args(args).output().expect("the docker CLI runs")
    }

    fn load(&self, image: &str) {
        let mut save = Command::new("docker").args(["save", image]).stdout(Stdio::piped()).spawn().unwrap();
        let load = Command::new("docker")
            .arg("--host")
            .arg(&self.host)
            .arg("load")
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(save.wait().unwrap().success(), "docker save {image}");
        assert!(load.status.success(), "docker load into the GPU engine: {}", String::from_utf8_lossy(&load.stderr));
    }

    /// The hook double's calls: its arguments and the container's
    /// `NVIDIA_VISIBLE_DEVICES`, one JSON object per call.
    pub fn hook_calls(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("hook.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// dockerd's log, for a failure's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// `nsenter --net=NS PROGRAM`: a command run where the engine's
    /// published ports are.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net=/run/netns/{}", self.ns)).arg(program);
        command
    }
}

fn write_executable(path: &Path, text: &str) {
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

impl Drop for GpuEngine {
    fn drop(&mut self) {
        let listed = self.docker(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        let _ = Command::new("kill").args(["-TERM", &self.dockerd.id().to_string()]).status();
        // nsenter execs dockerd (the same pid); it removes its pid file as it ends.
        let pid_file = self.dir.join("dockerd.pid");
        let deadline = Instant::now() + Duration::from_secs(30);
        while pid_file.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.dockerd.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.data_root);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
