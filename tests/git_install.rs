//! git installed by the agent when a git `[workspace] source` needs it
//! (docs/git-install.md): the plan `install-git --dry-run` prints, a
//! refusal that changes nothing, and the real thing: the agent converging
//! inside a fresh Debian root without git (`chroot`, the host's engine
//! socket mounted in), with its materials in a local bare repository
//! (`file://`). A first converge with no package source fails naming the
//! command and apt's reason; the next installs git with the real apt,
//! fetches the materials with it, and Jupyter is ready.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common;
use crate::common::env::Env;

/// A directory that looks like a root file system of the named os-release fixture.
fn fake_root(env: &Env, fixture: &str) -> PathBuf {
    let root = env.path(fixture);
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/os-release").join(fixture);
    std::fs::copy(&src, root.join("etc/os-release")).unwrap();
    root
}

#[test]
fn install_git_dry_runs_print_the_plan_and_refusals_change_nothing() {
    let env = Env::new("gitdryrun");
    env.write_config(&format!(
        "state_dir = \"{}\"\nlog_dir = \"{}\"\n\n[workspace]\nsource = \"https://git.example/materials.git\"\nref = \"main\"\npath = \"/srv/work\"\n",
        env.state_dir().display(),
        env.path("log").display()
    ));
    let debian = fake_root(&env, "debian-12");
    let run = env.agent(&["install-git", "--dry-run", "--root", debian.to_str().unwrap()]).expect(0);
    let want = [
        "git is not installed; distribution: Debian GNU/Linux 12 (bookworm) (debian 12); package manager: apt; packages: git ca-certificates".to_string(),
        format!("every command runs as: chroot {} COMMAND", debian.display()),
        "run   DEBIAN_FRONTEND=noninteractive dpkg --configure -a   (timeout 20m, may fail)".into(),
        "run   DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update   (timeout 10m, retried)".into(),
        "run   DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends git ca-certificates   (timeout 20m, retried)".into(),
        "run   git --version   (timeout 1m)".into(),
        "run installs git this way, when it is missing, before it fetches [workspace] source https://git.example/materials.git (ref main)".into(),
    ];
    for line in &want {
        assert!(run.stdout.lines().any(|l| l == line), "missing line {line:?} in:\n{}", run.stdout);
    }
    assert!(!run.stdout.contains("upgrade"), "{}", run.stdout);
    let alinux = fake_root(&env, "alinux-3");
    let run = env.agent(&["install-git", "--dry-run", "--root", alinux.to_str().unwrap()]).expect(0);
    assert!(run.stdout.lines().any(|l| l == "run   dnf -y install git   (timeout 20m, retried)"), "{}", run.stdout);
    assert!(!env.state_dir().exists(), "a dry run writes no state");
    assert_eq!(std::fs::read_dir(&debian).unwrap().count(), 1, "nothing was written into the root");

    // This machine has git: nothing to install, whatever the flag.
    let run = env.agent(&["install-git", "--dry-run"]).expect(0);
    assert!(run.stdout.starts_with("git is installed at /"), "{}", run.stdout);
    assert!(run.stdout.ends_with("git: nothing to install\nrun installs git this way, when it is missing, before it fetches [workspace] source https://git.example/materials.git (ref main)\n"), "{}", run.stdout);
    let run = env.agent(&["install-git"]).expect(0);
    assert!(run.stdout.ends_with("git: nothing to install\n"), "{}", run.stdout);
    assert!(!env.state_dir().exists(), "nothing to install: the state is not touched");

    // A distribution the installer does not know: exit 6, naming it and the ways out.
    let fedora = fake_root(&env, "fedora-40");
    for args in [vec!["install-git", "--dry-run"], vec!["install-git"]] {
        let mut args = args.clone();
        args.extend(["--root", fedora.to_str().unwrap()]);
        let run = env.agent(&args).expect(6);
        assert!(
            run.stderr.contains("git is not installed, and the agent cannot install it on ID=fedora VERSION_ID=40: this distribution is not one the installer knows; install git with the distribution's package manager, or give [workspace] a tarball source (with sha256)"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(std::fs::read_dir(&fedora).unwrap().count(), 1, "nothing was written into the root");
    assert!(!env.state_dir().exists(), "a refusal writes no state");
    env.agent(&["install-git", "--root", "relative/root"]).expect(2);
}

/// The host's engine socket, bind-mounted into the root; unmounted when dropped.
struct EngineSocket(PathBuf);

impl EngineSocket {
    fn mount(root: &Path) -> EngineSocket {
        let target = root.join("run/docker.sock");
        std::fs::write(&target, "").unwrap();
        let out = Command::new("mount").arg("--bind").arg("/var/run/docker.sock").arg(&target).output().unwrap();
        assert!(out.status.success(), "mount --bind: {}", String::from_utf8_lossy(&out.stderr));
        EngineSocket(target)
    }
}

impl Drop for EngineSocket {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.0).status().is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Runs `args` inside `root` with a clean environment.
fn chroot(root: &Path, args: &[&str]) -> Output {
    Command::new("chroot")
        .arg(root)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("JUPYTER_AGENT_LOG", "info")
        .output()
        .unwrap()
}

/// git on the host, on a repository of the test (its config ignored).
fn host_git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Organiser", "-c", "user.email=organiser@localhost", "-c", "init.defaultBranch=main"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The agent's state inside the root.
fn state(root: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(root.join("var/lib/jupyter-agent/state.json")).unwrap()).unwrap()
}

fn step_names(state: &serde_json::Value) -> Vec<String> {
    state["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_converge_in_a_debian_root_without_git_installs_it_with_apt_then_fetches_the_git_workspace() {
    let env = Env::new("gitinstall");
    let root = env.path("debian");
    common::debian_root::debian_root(&root);
    // The fresh root has no git: neither the command nor the package.
    assert!(!chroot(&root, &["sh", "-c", "command -v git"]).status.success(), "git is in the fresh root");
    let dpkg = chroot(&root, &["dpkg-query", "-W", "-f=${Status}", "git"]);
    assert!(!String::from_utf8_lossy(&dpkg.stdout).contains("ok installed"), "the git package is in the fresh root");

    // The materials: a bare repository inside the root, served by file://.
    let work = env.path("materials");
    std::fs::create_dir_all(&work).unwrap();
    host_git(&work, &["init", "--quiet"]);
    std::fs::write(work.join("README.md"), "# Image search hands-on\n").unwrap();
    host_git(&work, &["add", "README.md"]);
    host_git(&work, &["commit", "--quiet", "-m", "materials"]);
    let commit = host_git(&work, &["rev-parse", "HEAD"]);
    std::fs::create_dir_all(root.join("srv")).unwrap();
    host_git(&work, &["clone", "--quiet", "--bare", ".", root.join("srv/materials.git").to_str().unwrap()]);

    // The agent inside the root, on the host's engine; defaults for its state, socket and logs.
    std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    std::fs::copy(common::bin("jupyter-agent"), root.join("usr/local/bin/jupyter-agent")).unwrap();
    std::fs::create_dir_all(root.join("etc/jupyter-agent")).unwrap();
    std::fs::write(
        root.join("etc/jupyter-agent/config.toml"),
        format!(
            "[image]\nname = \"{image}\"\npull = \"never\"\n\n\
             [workspace]\nsource = \"file:///srv/materials.git\"\nref = \"main\"\npath = \"/srv/work\"\n\n\
             [jupyter]\ntoken = \"image\"\nready_timeout = \"90s\"\nurl_host = \"127.0.0.1\"\n\n\
             [container]\nname = \"{name}\"\npublish = \"127.0.0.1:0\"\nmetadata_access = true\n",
            image = common::test_image(),
            name = env.name
        ),
    )
    .unwrap();
    let _socket = EngineSocket::mount(&root);
    let agent = ["/usr/local/bin/jupyter-agent", "run", "--once"];

    // No package source: apt cannot find git. The step and the command are named with apt's reason.
    let sources = root.join("etc/apt/sources.list");
    std::fs::rename(&sources, root.join("etc/apt/sources.list.off")).unwrap();
    let failed = chroot(&root, &agent);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    let s = state(&root);
    assert_eq!(s["phase"], "failed", "{s}");
    assert_eq!(s["error"]["step"], "git: apt-get install git", "{s}");
    let cause = s["error"]["cause"].as_str().unwrap();
    assert!(
        cause.starts_with("installing git to fetch the workspace: `apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends git ca-certificates` exited with 100: "),
        "{cause}"
    );
    assert!(cause.contains("Unable to locate package git"), "{cause}");
    assert!(stderr.contains("Unable to locate package git"), "{stderr}");
    assert!(!root.join("srv/work").exists(), "no workspace without git");
    assert!(!root.join("usr/bin/git").exists());

    // With its package source back, the next converge installs git, fetches, and Jupyter is ready.
    std::fs::rename(root.join("etc/apt/sources.list.off"), &sources).unwrap();
    let run = chroot(&root, &agent);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let s = state(&root);
    assert_eq!(s["phase"], "ready", "{s}");
    assert_eq!(
        step_names(&s),
        [
            "engine",
            "git: dpkg --configure -a",
            "git: apt-get update",
            "git: reinstall half-installed packages",
            "git: apt-get install -y --fix-broken",
            "git: apt-get install git",
            "git: check",
            "workspace",
            "image",
            "network",
            "container",
            "token"
        ]
    );
    for step in s["steps"].as_array().unwrap().iter().filter(|s| s["name"].as_str().unwrap().starts_with("git: ")) {
        assert_eq!(step["status"], "done", "{step}");
        assert_eq!(step["phase"], "fetching-workspace", "{step}");
        assert!(step["ended_at"].is_string(), "{step}");
    }
    let check = s["steps"].as_array().unwrap().iter().find(|s| s["name"] == "git: check").unwrap();
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.starts_with("git version ") && detail.ends_with(" at /usr/bin/git"), "{detail}");

    // git is installed in the root and works: the materials are the repository's commit.
    let version = chroot(&root, &["git", "--version"]);
    assert!(version.status.success() && String::from_utf8_lossy(&version.stdout).starts_with("git version "));
    assert_eq!(std::fs::read_to_string(root.join("srv/work/README.md")).unwrap(), "# Image search hands-on\n");
    let head = chroot(&root, &["git", "-C", "/srv/work", "rev-parse", "HEAD"]);
    assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), commit);
    // Jupyter answers with the proven token.
    let (base, path, token) = common::split_url(s["jupyter"]["url"].as_str().unwrap());
    assert_eq!(common::get_status(&format!("{base}{path}api/status"), &token), 200);
    // apt's output is in the install log.
    let log = std::fs::read_to_string(root.join("var/log/jupyter-agent/install-git.log")).unwrap();
    assert!(log.contains("$ apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends git ca-certificates"));
    assert!(log.contains("Setting up git "), "{log}");

    // git is there now: the next converge installs nothing, and has no git step.
    let again = chroot(&root, &agent);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let s = state(&root);
    assert!(!step_names(&s).iter().any(|n| n.starts_with("git: ")), "{s}");
    assert_eq!(std::fs::read_to_string(root.join("var/log/jupyter-agent/install-git.log")).unwrap(), log);
    let run = env.agent(&["install-git", "--root", root.to_str().unwrap()]).expect(0);
    assert_eq!(run.stdout, "git is installed at /usr/bin/git: nothing to install\n");
}
