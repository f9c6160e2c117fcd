//! `jupyter-agent install-docker` end to end: plans printed for published
//! os-release files, refusals that change nothing, and a real install with
//! Debian's package manager into a freshly bootstrapped Debian root.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::env::Env;
use crate::common::roots::{config, fake_root, snapshot};

#[test]
fn dry_runs_print_the_exact_plan_and_change_nothing() {
    let env = Env::new("dryrun");
    config(&env, "registry_mirrors = [\"https://registry-mirror.example\"]");
    let root = fake_root(&env, "alinux-3");
    let before = snapshot(&root);
    let run = env.agent(&["install-docker", "--dry-run", "--root", root.to_str().unwrap()]).expect(0);
    let mirror = "https://mirrors.aliyun.com/docker-ce";
    for line in [
        "distribution: Alibaba Cloud Linux 3 (Soaring Falcon) (alinux 3); package manager: dnf; source: docker-ce; packages: docker-ce".to_string(),
        format!("every command runs as: chroot {} COMMAND", root.display()),
        format!("run   dnf config-manager --add-repo {mirror}/linux/centos/docker-ce.repo   (timeout 2m, retried)"),
        "run   dnf -y install dnf-plugin-releasever-adapter --repo alinux3-plus   (timeout 20m, retried)".to_string(),
        "run   dnf -y install docker-ce --nobest   (timeout 20m, retried)".to_string(),
        "write /etc/docker/daemon.json (mode 0644):".to_string(),
        "            \"https://registry-mirror.example\"".to_string(),
    ] {
        assert!(run.stdout.lines().any(|l| l == line), "missing line {line:?} in:\n{}", run.stdout);
    }
    assert_eq!(snapshot(&root), before, "a dry run changes nothing");
    assert!(!env.state_dir().exists(), "a dry run writes no state");

    // Ubuntu with docker-ce from the mirror: the repository line is shown.
    let env = Env::new("dryrun-ubuntu");
    config(&env, "source = \"docker-ce\"");
    let root = fake_root(&env, "ubuntu-24.04");
    let run = env.agent(&["install-docker", "--dry-run", "--root", root.to_str().unwrap()]).expect(0);
    assert!(
        run.stdout.contains(&format!("signed-by=/etc/apt/keyrings/docker.asc] {mirror}/linux/ubuntu noble stable")),
        "{}",
        run.stdout
    );
}

#[test]
fn an_unsupported_distribution_is_refused_before_anything_changes() {
    let env = Env::new("unsupported");
    config(&env, "");
    let root = fake_root(&env, "fedora-40");
    let before = snapshot(&root);
    for args in [vec!["install-docker", "--dry-run"], vec!["install-docker"]] {
        let mut args = args.clone();
        args.extend(["--root", root.to_str().unwrap()]);
        let run = env.agent(&args).expect(6);
        assert!(
            run.stderr.contains("cannot install Docker on ID=fedora VERSION_ID=40: this distribution is not one the installer knows; supported: Alibaba Cloud Linux 2 and 3 (alinux)"),
            "{}",
            run.stderr
        );
        assert_eq!(snapshot(&root), before, "nothing was written into the root");
    }
    // Debian's own package only: not on Alibaba Cloud Linux.
    let env = Env::new("nodistro");
    config(&env, "source = \"distro\"");
    let root = fake_root(&env, "alinux-3");
    let run = env.agent(&["install-docker", "--root", root.to_str().unwrap()]).expect(6);
    assert!(
        run.stderr.contains("has no Docker package of its own; set [docker] source = \"auto\" or \"docker-ce\""),
        "{}",
        run.stderr
    );
    // A root that is not a directory is a usage error.
    env.agent(&["install-docker", "--root", "/nonexistent/root"]).expect(2);
}

#[test]
fn an_invalid_daemon_json_is_left_untouched_and_reported() {
    let env = Env::new("daemonjson");
    config(&env, "registry_mirrors = [\"https://registry-mirror.example\"]");
    let root = fake_root(&env, "debian-12");
    std::fs::create_dir_all(root.join("etc/docker")).unwrap();
    std::fs::write(root.join("etc/docker/daemon.json"), "{ \"log-level\": \"warn\", oops }").unwrap();
    let run = env.agent(&["install-docker", "--dry-run", "--root", root.to_str().unwrap()]).expect(0);
    assert!(run.stderr.contains("left untouched, so the registry mirrors are NOT applied"), "{}", run.stderr);
    assert!(!run.stdout.contains("write /etc/docker/daemon.json"), "{}", run.stdout);
    assert_eq!(
        std::fs::read_to_string(root.join("etc/docker/daemon.json")).unwrap(),
        "{ \"log-level\": \"warn\", oops }"
    );
}

/// Whether dpkg below `root` has recorded a package unpacked but not yet
/// configured (its status file, or the journal it merges into it later).
fn dpkg_has_unconfigured(root: &Path) -> bool {
    let dpkg = root.join("var/lib/dpkg");
    let mut files = vec![dpkg.join("status")];
    if let Ok(entries) = std::fs::read_dir(dpkg.join("updates")) {
        files.extend(entries.flatten().map(|e| e.path()));
    }
    files.iter().any(|f| {
        std::fs::read_to_string(f)
            .is_ok_and(|t| t.contains("Status: install ok unpacked") || t.contains("Status: install ok half-"))
    })
}

/// The real thing: debootstrap a Debian root without Docker, hold its dpkg
/// lock for a while, install Docker into it with the agent, and cut that
/// install in the middle of dpkg's work (the agent and every process it
/// started, as a reboot does); the next run rolls dpkg forward and finishes.
#[test]
fn a_real_install_into_a_fresh_debian_root_waits_for_the_lock_survives_a_kill_and_installs_docker() {
    use std::os::unix::process::CommandExt;
    let env = Env::new("realinstall");
    config(&env, "registry_mirrors = [\"https://registry-mirror.example\"]");
    let root = env.path("debian");
    crate::common::debian_root::debian_root(&root);
    assert!(!root.join("usr/sbin/dockerd").exists(), "the fresh root has no Docker");
    // Another key that the merge must keep.
    std::fs::create_dir_all(root.join("etc/docker")).unwrap();
    std::fs::write(root.join("etc/docker/daemon.json"), "{\"log-level\": \"warn\"}\n").unwrap();

    // Another process holds the dpkg lock, as unattended upgrades do at first boot.
    let lock = root.join("var/lib/dpkg/lock-frontend");
    let mut holder =
        Command::new("flock").arg("--no-fork").arg(&lock).args(["sleep", "3"]).stdout(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("flock").args(["--nonblock", "--no-fork"]).arg(&lock).arg("true").status().unwrap().success() {
        assert!(Instant::now() < deadline, "the lock was never taken");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The first run, in a process group of its own so that the kill reaches
    // apt-get and dpkg too.
    let first_log = env.path("first-run.log");
    let mut first = Command::new(crate::common::bin("jupyter-agent"))
        .arg("--config")
        .arg(env.config_path())
        .args(["install-docker", "--root", root.to_str().unwrap()])
        .env("JUPYTER_AGENT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&first_log).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while !dpkg_has_unconfigured(&root) {
        assert!(first.try_wait().unwrap().is_none(), "the install finished before dpkg was seen unpacking");
        assert!(Instant::now() < deadline, "dpkg never unpacked anything");
        std::thread::sleep(Duration::from_millis(5));
    }
    let group = format!("-{}", first.id());
    assert!(Command::new("kill").args(["-KILL", "--", &group]).status().unwrap().success());
    first.wait().unwrap();
    holder.wait().unwrap();
    let stderr = std::fs::read_to_string(&first_log).unwrap();
    assert!(
        stderr.contains("waiting for the package manager lock, held by another process"),
        "the installer says that it waits:\n{stderr}"
    );
    assert!(stderr.contains("the package manager lock was released; going on"), "{stderr}");
    // dpkg was cut in the middle: what apt-get would refuse to work on.
    let audit = Command::new("chroot").arg(&root).args(["dpkg", "--audit"]).output().unwrap();
    assert!(!audit.stdout.is_empty(), "dpkg --audit finds the interrupted packages");
    // Whatever moment the kill hit, the root is also left in the worst state
    // a kill can leave (a CI run met it by chance): a package unpacked
    // before its dependency was (dpkg unpacks in batches), beside a
    // half-installed one. apt then refused every reinstall ("Unmet
    // dependencies") and the next run failed.
    let setup = "set -e; cd /tmp; apt-get download -qq dmsetup libaio1\n\
        dpkg --purge --force-depends,remove-reinstreq libdevmapper1.02.1 >/dev/null 2>&1 || true\n\
        dpkg --unpack dmsetup_*.deb libaio1_*.deb >/dev/null\n";
    let out = Command::new("chroot").arg(&root).args(["sh", "-c", setup]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = root.join("var/lib/dpkg/status");
    let text = std::fs::read_to_string(&status).unwrap();
    let text = text
        .split("\n\n")
        .map(|b| {
            if b.starts_with("Package: libaio1\n") {
                b.replace("Status: install ok unpacked", "Status: install reinstreq half-installed")
            } else {
                b.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    std::fs::write(&status, text).unwrap();
    let query = Command::new("chroot")
        .arg(&root)
        .args([
            "dpkg-query",
            "-W",
            "-f=${db:Status-Abbrev}${binary:Package} ",
            "dmsetup",
            "libaio1",
            "libdevmapper1.02.1",
        ])
        .output()
        .unwrap();
    let query = String::from_utf8_lossy(&query.stdout).into_owned();
    assert!(query.contains("iU dmsetup") && query.contains("iHRlibaio1"), "{query}");
    assert!(!query.contains("ii libdevmapper"), "{query}");

    let run = env.agent(&["install-docker", "--root", root.to_str().unwrap()]).expect(0);
    let audit = Command::new("chroot").arg(&root).args(["dpkg", "--audit"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&audit.stdout), "", "nothing is left half-installed\n{}", run.stderr);

    // Docker is installed inside the root, and nothing was started from it.
    assert!(root.join("usr/sbin/dockerd").is_file(), "dockerd is installed in the root");
    assert!(root.join("usr/bin/containerd").is_file(), "containerd is installed in the root");
    assert!(!root.join("usr/sbin/policy-rc.d").exists(), "the temporary policy-rc.d is removed");
    let daemon: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("etc/docker/daemon.json")).unwrap()).unwrap();
    assert_eq!(
        daemon,
        serde_json::json!({"log-level": "warn", "registry-mirrors": ["https://registry-mirror.example"]})
    );

    // The plan's steps are in the state, each done with its times.
    let state = env.state();
    assert_eq!(state["phase"], "pending", "Docker is there; Jupyter is not converged yet");
    let steps = state["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "docker: plan",
            "docker: write /usr/sbin/policy-rc.d",
            "docker: dpkg --configure -a",
            "docker: apt-get update",
            "docker: reinstall half-installed packages",
            "docker: apt-get install -y --fix-broken",
            "docker: apt-get install docker.io",
            "docker: remove /usr/sbin/policy-rc.d",
            "docker: daemon.json registry mirrors"
        ]
    );
    for s in steps {
        assert_eq!(s["status"], "done", "{s}");
        assert_eq!(s["phase"], "installing-docker", "{s}");
        assert!(s["ended_at"].is_string(), "{s}");
    }
    // The commands' output was captured in the install log.
    let log = std::fs::read_to_string(env.path("log/install-docker.log")).unwrap();
    assert!(log.contains("$ apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends docker.io"), "{log}");
    assert!(log.contains("Setting up docker.io"), "apt's own output is in the log");
}
