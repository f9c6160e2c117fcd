//! The service path under a real systemd: a container in which systemd
//! boots as PID 1 (`scripts/build-systemd-image.sh`), with host networking and
//! the host engine's socket, stands in for the instance. `jupyter-agent
//! install` runs inside it, so the agent is a real `Type=notify` unit that
//! manages Jupyter on the host engine. One systemd container for the whole
//! test, removed at the end.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::env::Env;
use crate::common::netns::{MetadataRules, NamespaceHost};
use crate::common::{bin, docker, get_status, split_url, test_image};

/// The systemd container, removed when dropped.
struct SystemdHost {
    name: String,
    /// The agent's state directory: the same path on the host and inside,
    /// because the host engine resolves the agent's bind mounts (the token
    /// file) on the host.
    state: PathBuf,
}

fn systemd_image() -> String {
    std::env::var("JUPYTER_SYSTEMD_IMAGE").unwrap_or_else(|_| "jupyter-agent/systemd:local".into())
}

impl SystemdHost {
    fn boot(env: &Env) -> SystemdHost {
        let state = env.path("agent-state");
        std::fs::create_dir_all(&state).unwrap();
        SystemdHost::start(format!("{}-systemd", env.name), state.clone(), &[state])
    }

    /// Boots the container `name`, with each of `shared` mounted at the same
    /// path inside (the host engine resolves the agent's bind mounts on the
    /// host), and the agent copied in.
    fn start(name: String, state: PathBuf, shared: &[PathBuf]) -> SystemdHost {
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "--cap-add",
            "SYS_ADMIN",
            // The agent's metadata rule goes into the host's firewall (host networking).
            "--cap-add",
            "NET_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:ro",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for dir in shared {
            args.push("-v".into());
            args.push(format!("{}:{}", dir.display(), dir.display()));
        }
        args.push(systemd_image());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = docker(&args);
        assert!(run.status.success(), "docker run: {}", String::from_utf8_lossy(&run.stderr));
        let host = SystemdHost { name, state };
        host.wait_for_boot();
        let copy =
            docker(&["cp", bin("jupyter-agent").to_str().unwrap(), &format!("{}:/root/jupyter-agent", host.name)]);
        assert!(copy.status.success(), "{}", String::from_utf8_lossy(&copy.stderr));
        host
    }

    fn wait_for_boot(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.exec(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                return;
            }
            assert!(Instant::now() < deadline, "systemd did not finish booting: {state}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn exec(&self, args: &[&str]) -> Output {
        Command::new("docker").arg("exec").arg(&self.name).args(args).output().unwrap()
    }

    fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.exec(args).stdout).trim().to_string()
    }

    fn write(&self, path: &str, content: &str) {
        let out = Command::new("docker")
            .args([
                "exec",
                "-i",
                &self.name,
                "sh",
                "-c",
                &format!("umask 077; mkdir -p $(dirname {path}); cat > {path}"),
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(content.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(out.status.success());
    }

    fn status_text(&self) -> String {
        self.stdout(&["systemctl", "show", "-p", "StatusText", "--value", "jupyter-agent"])
    }
}

impl Drop for SystemdHost {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}

#[test]
fn the_agent_runs_as_a_notify_unit_under_a_real_systemd() {
    let env = Env::new("systemd");
    let host = SystemdHost::boot(&env);
    let port = crate::common::free_port();
    // The systemd container has no iptables (and no NET_ADMIN): the metadata
    // rule is the host's business in this test.
    let config = format!(
        "state_dir = \"{}\"\n\n[image]\nname = \"{}\"\npull = \"never\"\n\n[container]\nname = \"{}\"\npublish = \"127.0.0.1:{port}\"\nmetadata_access = true\n\n[jupyter]\nurl_host = \"127.0.0.1\"\nready_timeout = \"2m\"\n",
        host.state.display(),
        test_image(),
        env.name
    );

    // A bad configuration: install refuses it before enabling anything.
    host.write("/etc/jupyter-agent/config.toml", &config.replace("pull = \"never\"", "pull = \"sometimes\""));
    let refused = host.exec(&["/root/jupyter-agent", "install"]);
    assert_eq!(refused.status.code(), Some(2), "{}", String::from_utf8_lossy(&refused.stderr));
    assert_ne!(host.stdout(&["systemctl", "is-enabled", "jupyter-agent"]), "enabled");
    assert!(host.stdout(&["ls", "/etc/systemd/system"]).lines().all(|l| l != "jupyter-agent.service"));

    // install: binary, unit, enabled, active; StatusText follows the phases.
    host.write("/etc/jupyter-agent/config.toml", &config);
    let installed = host.exec(&["/root/jupyter-agent", "install"]);
    assert!(installed.status.success(), "{}", String::from_utf8_lossy(&installed.stderr));
    assert_eq!(host.stdout(&["systemctl", "is-enabled", "jupyter-agent"]), "enabled");
    assert_eq!(host.stdout(&["systemctl", "show", "-p", "Type", "--value", "jupyter-agent"]), "notify");
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = host.status_text();
        if seen.last() != Some(&text) {
            seen.push(text.clone());
        }
        if text.starts_with("ready") {
            break;
        }
        assert!(Instant::now() < deadline, "never ready; StatusText went {seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(seen.last().unwrap(), "ready: jupyter-agent url prints the login URL");
    assert!(seen.iter().any(|t| t == "waiting-for-token: token"), "the phases on the way: {seen:?}");
    assert_eq!(host.stdout(&["systemctl", "is-active", "jupyter-agent"]), "active");
    let wait = host.exec(&["jupyter-agent", "wait", "--timeout", "2m"]);
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stdout));
    let url = host.stdout(&["jupyter-agent", "url"]);
    let (base, _, token) = split_url(&url);
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200, "the URL opens Jupyter from the host");

    // systemctl stop returns within the unit's stop timeout, also while a
    // restarted container's token is being proven.
    assert!(docker(&["restart", "-t", "1", &env.name]).status.success());
    let started = Instant::now();
    let stop = host.exec(&["systemctl", "stop", "jupyter-agent"]);
    assert!(stop.status.success());
    assert!(started.elapsed() < Duration::from_secs(15), "stop took {:?}", started.elapsed());
    assert_eq!(host.stdout(&["systemctl", "is-active", "jupyter-agent"]), "inactive");

    // A reboot: the systemd container and the Jupyter container restart; the
    // unit starts at boot and reports the URL it reported before.
    assert!(docker(&["restart", "-t", "5", &host.name]).status.success());
    assert!(docker(&["restart", "-t", "1", &env.name]).status.success());
    host.wait_for_boot();
    let wait = host.exec(&["jupyter-agent", "wait", "--timeout", "2m"]);
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stdout));
    assert_eq!(host.stdout(&["jupyter-agent", "url"]), url, "the URL after a reboot");
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200);

    // A configuration broken afterwards: the unit stays up serving the
    // refusal (no restart loop without a socket), and says why.
    host.write("/etc/jupyter-agent/config.toml", &config.replace("pull = \"never\"", "pull = \"sometimes\""));
    assert!(host.exec(&["systemctl", "restart", "jupyter-agent"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !host.status_text().starts_with("failed") {
        assert!(Instant::now() < deadline, "StatusText: {}", host.status_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(host.status_text().contains("pull = \"sometimes\""), "{}", host.status_text());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(host.stdout(&["systemctl", "is-active", "jupyter-agent"]), "active");
    assert_eq!(host.stdout(&["systemctl", "show", "-p", "NRestarts", "--value", "jupyter-agent"]), "0");
    // The CLI reads the same file, and shows the refusal the agent serves
    // (exit 1, a failed converge), not only its own (exit 2).
    let status = host.exec(&["jupyter-agent", "status"]);
    let shown = format!("{}{}", String::from_utf8_lossy(&status.stdout), String::from_utf8_lossy(&status.stderr));
    assert_eq!(status.status.code(), Some(1), "{shown}");
    assert!(shown.contains("pull = \"sometimes\""), "{shown}");
}

/// The user data's systemd branch (`[ -d /run/systemd/system ]`: `jupyter-agent
/// install`), end to end inside the systemd container as cloud-init would
/// run it there, with the stand-in ROS endpoint and metadata service on
/// loopback: one verdict, a SUCCESS whose URL opens Jupyter, and the agent
/// running as an enabled unit.
#[test]
fn the_user_datas_systemd_branch_ends_in_one_success_whose_url_opens_jupyter() {
    let mut boot = crate::boot::Boot::new();
    // The agent's state and the materials at the same paths inside and on
    // the host, whose engine resolves the bind mounts.
    let state = PathBuf::from("/var/lib/jupyter-agent");
    std::fs::create_dir_all(&state).unwrap();
    let dir = boot.dir.path().to_path_buf();
    let repo = crate::boot::materials(&dir, "");
    let bundle = crate::boot::bundle(&dir);
    let server = crate::common::files::StaticServer::start(vec![("/jupyter-agent.tar.gz".into(), bundle.clone())]);
    let host =
        SystemdHost::start(format!("ja-userdata-systemd-{}", std::process::id()), state.clone(), &[state, dir.clone()]);
    boot.inside = Some(host.name.clone());
    let (out, exposed) = boot.run_with(
        &format!("{}/jupyter-agent.tar.gz", server.url),
        &crate::boot::sha256(&bundle),
        &repo,
        "10m",
        &boot.ros.curl_cli(),
        None,
    );
    assert_eq!(out.status.code(), Some(0), "user data:\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(exposed, Vec::<String>::new(), "the wait condition's signature was in the process list");
    assert_eq!(host.stdout(&["systemctl", "is-enabled", "jupyter-agent"]), "enabled", "the systemd branch ran");
    assert_eq!(host.stdout(&["systemctl", "is-active", "jupyter-agent"]), "active");
    let signals = boot.signals();
    assert_eq!(signals.len(), 1, "exactly one verdict: {signals:?}");
    assert_eq!(signals[0].field("status"), Some("SUCCESS"));
    let url = signals[0].field("data").unwrap().to_string();
    let (base, _, token) = split_url(&url);
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200, "the signalled URL opens Jupyter");
    let ids: Vec<String> = boot.all_signals().iter().map(|r| r.field("id").unwrap_or_default().to_string()).collect();
    assert_eq!(ids, ["docker", "materials", "image", "container", "jupyter"]);
}

/// What the managed container runs first at every start, before Jupyter
/// (bash, which starts in milliseconds): a request for the metadata test
/// host's user data, its outcome appended to `/probe/log` with how long
/// after the container's start it was made (PID 1's age, from /proc, read
/// just before the connection).
const PROBE: &str = r#"start=$(cut -d' ' -f22 /proc/1/stat)
read -r up _ < /proc/uptime
outcome=$( { exec 3<>/dev/tcp/ADDRESS/8080 && printf 'GET /latest/user-data HTTP/1.0\r\n\r\n' >&3 && grep -c test-secret <&3; } 2>&1 )
case $outcome in
    1) outcome=reached ;;
    *"Connection refused"*) outcome=refused ;;
    *) outcome="error $(echo $outcome | head -c 80)" ;;
esac
age=$(awk -v u="$up" -v s="$start" -v t="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", u - s / t }')
echo "$age $outcome" >> /probe/log
"#;

/// The harness's stand-in for `docker.service`: at boot it starts the
/// managed container, as the engine's restart policy does when dockerd
/// starts (the Jupyter container runs on the host's engine, which a reboot
/// of the harness does not restart).
fn docker_stand_in(container: &str) -> String {
    format!(
        "[Unit]\nDescription=stand-in for Docker at boot: starts {container} as its restart policy would\nAfter=network.target\n\n\
         [Service]\nType=oneshot\nRemainAfterExit=yes\n\
         ExecStart=/usr/bin/curl -sSf --unix-socket /var/run/docker.sock -X POST http://localhost/containers/{container}/start\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

fn probe_log(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("log")).unwrap_or_default().lines().map(String::from).collect()
}

/// After a reboot the engine starts the container (its restart policy)
/// before the agent's converge: the metadata rules must already be there.
/// A reboot, as faithfully as this harness allows: the Jupyter container
/// is stopped, the harness shut down, the agent's rules for the test host
/// removed from the host's firewall (a reboot starts with an empty one),
/// then the harness boots, and its `docker.service` (a stand-in that starts
/// the container) runs when systemd orders it. The container's first act
/// at every start is a request to the metadata test host: refused at the
/// first start (the converge put the rules in place) and, within the first
/// second after the reboot, refused again.
#[test]
fn after_a_reboot_the_metadata_rules_are_in_place_before_docker_starts_the_container() {
    let meta = NamespaceHost::start(2);
    let rules = MetadataRules::guard(&meta.address);
    let env = Env::new("systemd-boot");
    let state = env.path("agent-state");
    let probe = env.path("probe");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&probe).unwrap();
    std::fs::write(probe.join("probe.sh"), PROBE.replace("ADDRESS", &meta.address)).unwrap();
    let host = SystemdHost::start(format!("{}-systemd", env.name), state.clone(), &[state.clone(), probe.clone()]);
    host.write("/etc/systemd/system/docker.service", &docker_stand_in(&env.name));
    assert!(host.exec(&["systemctl", "daemon-reload"]).status.success());
    assert!(host.exec(&["systemctl", "enable", "docker.service"]).status.success());

    let port = crate::common::free_port();
    let config = format!(
        "state_dir = \"{state}\"\n\n[image]\nname = \"{image}\"\npull = \"never\"\n\n\
         [container]\nname = \"{name}\"\npublish = \"127.0.0.1:{port}\"\nvolumes = [\"{probe}:/probe\"]\n\
         command = [\"sh\", \"-c\", \"bash /probe/probe.sh; exec jupyter-notebook --ip=0.0.0.0 --port=8888 --allow-root --no-browser\"]\n\n\
         [jupyter]\nurl_host = \"127.0.0.1\"\nready_timeout = \"2m\"\nmetadata_endpoint = \"{endpoint}\"\n",
        state = state.display(),
        image = test_image(),
        name = env.name,
        probe = probe.display(),
        endpoint = meta.endpoint(),
    );
    host.write("/etc/jupyter-agent/config.toml", &config);
    let installed = host.exec(&["/root/jupyter-agent", "install"]);
    assert!(installed.status.success(), "{}", String::from_utf8_lossy(&installed.stderr));
    let wait = host.exec(&["jupyter-agent", "wait", "--timeout", "2m"]);
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stdout));
    let log = probe_log(&probe);
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].ends_with(" refused"), "the first start, after the converge's rules: {log:?}");

    // The reboot.
    assert!(docker(&["stop", "-t", "1", &env.name]).status.success());
    assert!(docker(&["stop", "-t", "5", &host.name]).status.success());
    rules.remove();
    let listed = MetadataRules::listed();
    assert!(!listed.contains(&rules.containers()) && !listed.contains(&rules.local_users()), "{listed}");
    assert!(docker(&["start", &host.name]).status.success());
    host.wait_for_boot();
    let deadline = Instant::now() + Duration::from_secs(60);
    while probe_log(&probe).len() < 2 {
        assert!(Instant::now() < deadline, "the container was not started at boot: {:?}", probe_log(&probe));
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = probe_log(&probe);
    let (age, outcome) = log[1].split_once(' ').unwrap();
    assert_eq!(outcome, "refused", "the first request after the reboot: {log:?}");
    assert!(age.parse::<f64>().unwrap() < 1.0, "made within the first second of the container's life: {log:?}");
    let listed = MetadataRules::listed();
    assert!(listed.contains(&rules.containers()) && listed.contains(&rules.local_users()), "{listed}");
    // What put them there: the firewall unit, done before the stand-in
    // started, and the agent's unit only after it.
    let at = |unit: &str, property: &str| -> u64 {
        host.stdout(&["systemctl", "show", "-p", property, "--value", unit]).parse().unwrap_or(0)
    };
    let firewall_done = at("jupyter-agent-firewall.service", "ExecMainExitTimestampMonotonic");
    let docker_started = at("docker.service", "ExecMainStartTimestampMonotonic");
    let agent_started = at("jupyter-agent.service", "ExecMainStartTimestampMonotonic");
    assert!(
        0 < firewall_done && firewall_done <= docker_started && docker_started <= agent_started,
        "firewall done {firewall_done}, docker.service started {docker_started}, agent started {agent_started}"
    );
    eprintln!("probe after the reboot: {}", log[1]);
    // And the agent converges as before.
    let wait = host.exec(&["jupyter-agent", "wait", "--timeout", "2m"]);
    assert!(wait.status.success(), "{}", String::from_utf8_lossy(&wait.stdout));
    drop(host);
    drop(meta);
}

/// TEST DOUBLE for NVIDIA's `nvidia-smi` on a GPU instance (no GPU exists
/// here): it fails as the real one does while no driver is loaded, and
/// answers the driver step's query once the device node is there.
const HOST_NVIDIA_SMI_DOUBLE: &str = r#"#!/bin/sh
# TEST DOUBLE for NVIDIA's nvidia-smi (tests/systemd.rs): no GPU exists on the test machines.
if [ ! -e /dev/nvidiactl ]; then
    echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."
    exit 9
fi
echo "535.161.07, Tesla T4"
"#;

/// TEST DOUBLE for the NVIDIA driver loading at boot: once Alibaba's
/// install has written its verdict, the next boot has the device nodes
/// (plain files: the driver step only checks that they exist).
const DRIVER_AT_BOOT_DOUBLE: &str = "[Unit]\nDescription=TEST DOUBLE: the NVIDIA driver loading at boot once installed (tests/systemd.rs)\nBefore=jupyter-agent.service\n\n\
     [Service]\nType=oneshot\nRemainAfterExit=yes\n\
     ExecStart=/bin/sh -c 'if grep -qx \"ALL INSTALL OK\" /root/auto_install/auto_install.log; then touch /dev/nvidiactl /dev/nvidia0; fi'\n\n\
     [Install]\nWantedBy=multi-user.target\n";

/// Alibaba's GPU driver install reboots the instance in the middle of the
/// agent's `driver` step (docs/gpu.md#the-reboot). In the systemd
/// container, with the install's log at its real path, written as the
/// install goes (the constructed logs of the driver wait's unit tests):
/// while it runs, the step shows its phase; once it says ALL INSTALL OK,
/// the step waits for the reboot; the reboot (the container restarted, the
/// log last written 60 s before it, as the script sleeps 60 s before
/// rebooting) stops the agent; at boot the unit converges again, the step
/// finds the log complete and older than the boot and the driver loaded,
/// and the converge goes on, to this engine's refusal of the device
/// request (no NVIDIA Container Toolkit here; `[docker] install = false`
/// so that nothing is installed on the test machine).
#[test]
fn the_driver_step_survives_the_auto_installs_reboot() {
    let env = Env::new("systemd-gpu");
    let host = SystemdHost::boot(&env);
    host.write("/usr/local/bin/nvidia-smi", HOST_NVIDIA_SMI_DOUBLE);
    assert!(host.exec(&["chmod", "755", "/usr/local/bin/nvidia-smi"]).status.success());
    host.write("/etc/systemd/system/nvidia-driver-double.service", DRIVER_AT_BOOT_DOUBLE);
    assert!(host.exec(&["systemctl", "daemon-reload"]).status.success());
    assert!(host.exec(&["systemctl", "enable", "nvidia-driver-double.service"]).status.success());
    let log = "/root/auto_install/auto_install.log";
    host.write(log, include_str!("../agent/src/gpu/fixtures/in_progress_1.log"));

    let port = crate::common::free_port();
    let config = format!(
        "state_dir = \"{}\"\n\n[image]\nname = \"{}\"\npull = \"never\"\n\n[container]\nname = \"{}\"\npublish = \"127.0.0.1:{port}\"\nmetadata_access = true\ngpus = \"all\"\n\n[jupyter]\nurl_host = \"127.0.0.1\"\nready_timeout = \"2m\"\n\n[docker]\ninstall = false\n\n[gpu]\ndriver_timeout = \"5m\"\n",
        host.state.display(),
        test_image(),
        env.name
    );
    host.write("/etc/jupyter-agent/config.toml", &config);
    let installed = host.exec(&["/root/jupyter-agent", "install"]);
    assert!(installed.status.success(), "{}", String::from_utf8_lossy(&installed.stderr));

    let state = || -> serde_json::Value {
        serde_json::from_str(&host.stdout(&["jupyter-agent", "status", "--json"])).unwrap_or_default()
    };
    let driver_step = |s: &serde_json::Value| -> serde_json::Value {
        s["steps"].as_array().and_then(|a| a.iter().rev().find(|s| s["name"] == "driver").cloned()).unwrap_or_default()
    };
    let until = |what: &str, holds: &dyn Fn(&serde_json::Value) -> bool| -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let s = state();
            if holds(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what}: not within 90 s: {s:#}");
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    let progress = |s: &serde_json::Value| driver_step(s)["progress"].as_str().unwrap_or("").to_string();

    let installing = until("the install's phase", &|s| progress(s).contains("downloading"));
    assert_eq!(installing["phase"], "preparing-gpu");
    assert_eq!(host.status_text(), "preparing-gpu: driver");
    assert_eq!(
        progress(&installing),
        format!("Alibaba's GPU driver auto-install ({log}): downloading NVIDIA-Linux-x86_64-440.64.00.run: 12%")
    );

    // The install ends; the script sleeps 60 s, then reboots.
    host.write(log, include_str!("../agent/src/gpu/fixtures/ok.log"));
    until("waiting for the reboot", &|s| progress(s).contains("waiting for its reboot"));
    let before =
        host.stdout(&["systemctl", "show", "-p", "ExecMainStartTimestampMonotonic", "--value", "jupyter-agent"]);
    let written = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 60;
    assert!(host.exec(&["touch", "-d", &format!("@{written}"), log]).status.success());
    assert!(docker(&["restart", "-t", "5", &host.name]).status.success());
    host.wait_for_boot();
    assert_eq!(host.stdout(&["systemctl", "is-enabled", "jupyter-agent"]), "enabled");
    assert_ne!(
        host.stdout(&["systemctl", "show", "-p", "ExecMainStartTimestampMonotonic", "--value", "jupyter-agent"]),
        before
    );

    let after = until("the converge after the reboot", &|s| s["phase"] == "failed");
    let driver = driver_step(&after);
    assert_eq!(driver["status"], "done", "{after:#}");
    assert_eq!(
        driver["detail"], "NVIDIA driver 535.161.07, 1 GPU: Tesla T4 (Alibaba's auto-install: ALL INSTALL OK)",
        "{after:#}"
    );
    assert_eq!(after["error"]["step"], "container", "{after:#}");
    let cause = after["error"]["cause"].as_str().unwrap();
    assert!(
        cause.contains("needs the NVIDIA Container Toolkit") && cause.contains("install-nvidia-toolkit"),
        "{cause}"
    );
}
