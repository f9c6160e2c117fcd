//! Installing and starting Docker on a bare instance (docs/docker-install.md):
//! detect the distribution ([`distro`]), make a plan of commands and files
//! ([`plan`]), carry it out with timeouts, retries and lock waits ([`run`]),
//! merge registry mirrors into `daemon.json` ([`daemon_json`]), then start
//! the engine with systemd or, without it, as a detached `dockerd`.
//!
//! Idempotent: an engine that answers means nothing is installed; Docker
//! installed but stopped means it is only started.
//!
//! The same executor installs git when a git workspace needs it ([`git`]).

pub mod conflicts;
pub mod daemon_json;
pub mod distro;
pub mod git;
pub mod plan;
pub mod run;

use crate::engine::is_local_default;
use crate::runtimes;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tracing::{info, warn};

use crate::config::Config;
use crate::engine;
use crate::state::{Phase, Recorder};
use daemon_json::Merge;
use plan::{Action, Plan};
use run::Executor;
pub use run::{Progress, LOCK_TIMEOUT};

/// A quick look whether an engine already answers.
const QUICK_PING: Duration = Duration::from_secs(3);

/// Records an install's sub-steps in the state, in `phase`
/// (`installing-docker` for Docker, `fetching-workspace` for git).
pub struct RecordProgress<'r, 'a> {
    pub rec: &'r mut Recorder<'a>,
    pub phase: Phase,
}

impl<'r, 'a> RecordProgress<'r, 'a> {
    /// Docker's steps, in the `installing-docker` phase.
    pub fn docker(rec: &'r mut Recorder<'a>) -> Self {
        RecordProgress { rec, phase: Phase::InstallingDocker }
    }
}

impl Progress for RecordProgress<'_, '_> {
    fn begin(&mut self, step: &str) {
        self.rec.begin(step, self.phase.clone());
    }
    fn done(&mut self, step: &str, detail: String) {
        self.rec.done(step, detail);
    }
    fn output(&mut self, line: &str) {
        self.rec.progress(line.to_string(), false);
    }
}

/// Why nothing could be installed: the distribution or the settings.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Unsupported(#[from] distro::Unsupported),
    #[error(transparent)]
    NoPlan(#[from] plan::NoPlan),
}

/// Reads the root's os-release, asks its rpm database (RPM families) which
/// packages that conflict with docker-ce are installed, and makes the plan.
/// Changes nothing.
pub fn make_plan(cfg: &Config, root: &Path) -> Result<Plan> {
    let (path, os) = distro::read_os_release(root)
        .with_context(|| format!("reading {} to tell the distribution", root.join("etc/os-release").display()))?;
    let distro = distro::detect(&os).map_err(Refused::from).with_context(|| format!("{}", path.display()))?;
    let conflicts = if distro.family.uses_rpm() && cfg.docker.source != crate::config::DockerSource::Distro {
        plan::Conflicts { installed: conflicts::installed(root)?, remove: cfg.docker.remove_conflicts }
    } else {
        plan::Conflicts::none()
    };
    let chrooted = root != Path::new("/");
    let plan =
        plan::plan(&distro, cfg.docker.source, &cfg.docker.mirror, chrooted, &conflicts).map_err(Refused::from)?;
    Ok(plan)
}

/// The `daemon.json` action for the configured registry mirrors, if any
/// change is needed. An invalid existing file is reported and left alone.
pub fn daemon_json_action(cfg: &Config, root: &Path) -> Option<Action> {
    if cfg.docker.registry_mirrors.is_empty() {
        return None;
    }
    let path = PathBuf::from("/etc/docker/daemon.json");
    let on_host = root.join("etc/docker/daemon.json");
    let existing = fs::read_to_string(&on_host).ok();
    match daemon_json::merge(existing.as_deref(), &cfg.docker.registry_mirrors) {
        Merge::Changed(content) => Some(Action::Write { path, content, mode: 0o644 }),
        Merge::Unchanged => None,
        Merge::Invalid(why) => {
            warn!(
                file = %on_host.display(),
                "not valid Docker daemon configuration ({why}); left untouched, so the registry mirrors are NOT applied: fix the file by hand"
            );
            None
        }
    }
}

/// Says what `install-docker` would do, changing nothing.
pub async fn dry_run(cfg: &Config, root: &Path) -> Result<String> {
    let mut out = String::new();
    let chrooted = root != Path::new("/");
    if !chrooted {
        let address = engine::engine_address(&cfg.docker);
        let quick = crate::config::DockerConfig { ping_timeout: QUICK_PING, ..cfg.docker.clone() };
        if engine::connect(&quick).await.is_ok() {
            out.push_str(&format!("the Docker engine at {address} answers: nothing to install or start\n"));
            if let Some(action) = daemon_json_action(cfg, root) {
                out.push_str(&format!("{action}\nreload dockerd to read daemon.json\n"));
            }
            return Ok(out);
        }
        if !cfg.docker.install || !is_local_default(&address) {
            out.push_str(&format!(
                "the Docker engine at {address} does not answer; the agent only installs and starts the local engine (unix:///var/run/docker.sock) with [docker] install = true\n"
            ));
            if let Some(advice) = runtimes::advice_here() {
                out.push_str(&format!("{advice}\n"));
            }
            return Ok(out);
        }
    }
    if !chrooted && dockerd_path().is_some() {
        out.push_str("dockerd is installed but does not answer: it would only be started\n");
    } else {
        let plan = make_plan(cfg, root)?;
        let packages: Vec<&str> = plan.packages.iter().map(String::as_str).collect();
        out.push_str(&format!(
            "{}\n",
            plan::describe(&plan.distro, plan.package_manager, Some(plan.source), &packages)
        ));
        for note in &plan.notes {
            out.push_str(&format!("{note}\n"));
        }
        if chrooted {
            out.push_str(&format!("every command runs as: chroot {} COMMAND\n", root.display()));
        }
        for action in &plan.actions {
            out.push_str(&format!("{action}\n"));
        }
    }
    if let Some(action) = daemon_json_action(cfg, root) {
        out.push_str(&format!("{action}\n"));
    }
    if !chrooted {
        out.push_str(&format!("{}\n", start_description(cfg)));
    }
    Ok(out)
}

/// Installs Docker into `root` (`/`: this host) unless `dockerd` is there.
/// Returns whether `daemon.json` changed.
pub async fn install(cfg: &Config, root: &Path, progress: &mut dyn Progress) -> Result<bool> {
    let chrooted = root != Path::new("/");
    if chrooted || dockerd_path().is_none() {
        progress.begin("docker: plan");
        let plan = make_plan(cfg, root)?;
        let removes = plan.actions.iter().find_map(|a| match a {
            Action::Run { argv, .. } if argv.get(2).is_some_and(|w| w == "remove") => Some(argv[3..].join(" ")),
            _ => None,
        });
        if let (Some(removes), false) = (&removes, chrooted) {
            let found = runtimes::detect(Path::new("/"));
            if !found.is_empty() {
                let what: Vec<String> = found.iter().map(runtimes::Found::describe).collect();
                warn!(
                    "{} on this host: the plan removes {removes} to install docker-ce, as [docker] remove_conflicts = true allows (false refuses instead)",
                    what.join("; ")
                );
            }
        }
        progress.done(
            "docker: plan",
            format!(
                "{}: {} from {} ({}){}",
                plan.distro.name,
                plan.packages.join(" "),
                plan.source,
                plan.package_manager.as_str(),
                removes.map_or(String::new(), |r| format!("; removes {r} first (they conflict with docker-ce)"))
            ),
        );
        let log = cfg.log_dir.join("install-docker.log");
        Executor::new(root, plan.package_manager, Some(log)).run_steps(&plan.actions, Action::name, progress).await?;
    }
    let Some(action) = daemon_json_action(cfg, root) else { return Ok(false) };
    let name = "docker: daemon.json registry mirrors";
    progress.begin(name);
    Executor::new(root, plan::PackageManager::Apt, None).run(&action).await?;
    progress.done(name, format!("merged {}", cfg.docker.registry_mirrors.join(", ")));
    Ok(true)
}

/// Whether this host runs systemd (sd_booted(3)).
pub fn has_systemd() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Where `dockerd` is installed on this host, if it is.
pub fn dockerd_path() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join("dockerd"))
        .find(|p| p.is_file());
    found
}

fn start_description(cfg: &Config) -> String {
    if has_systemd() {
        "start systemctl enable --now docker (systemctl restart docker when daemon.json changed)".into()
    } else {
        format!(
            "start dockerd detached, log {}, pid file {}",
            cfg.log_dir.join("dockerd.log").display(),
            cfg.state_dir.join("dockerd.pid").display()
        )
    }
}

/// Starts the engine: with systemd through `docker.service`, else as a
/// detached `dockerd` whose log goes to the agent's log directory.
pub async fn start(cfg: &Config, daemon_json_changed: bool, progress: &mut dyn Progress) -> Result<()> {
    let name = "docker: start";
    progress.begin(name);
    let executor =
        Executor::new(Path::new("/"), plan::PackageManager::Apt, Some(cfg.log_dir.join("install-docker.log")));
    let systemctl = |words: &[&str]| Action::Run {
        argv: words.iter().map(|w| w.to_string()).collect(),
        env: Vec::new(),
        timeout: Duration::from_secs(180),
        retry: false,
        needs_lock: false,
        may_fail: false,
    };
    let detail = if has_systemd() {
        executor.run(&systemctl(&["systemctl", "enable", "--now", "docker"])).await?;
        if daemon_json_changed {
            executor.run(&systemctl(&["systemctl", "restart", "docker"])).await?;
            "systemctl enable --now docker; restarted for daemon.json".to_string()
        } else {
            "systemctl enable --now docker".to_string()
        }
    } else {
        let pid = spawn_dockerd(cfg)?;
        format!("dockerd started, pid {pid}, log {}", cfg.log_dir.join("dockerd.log").display())
    };
    progress.done(name, detail);
    Ok(())
}

/// Starts `dockerd` in its own session, so that it outlives the agent.
pub(crate) fn spawn_dockerd(cfg: &Config) -> Result<u32> {
    let dockerd = dockerd_path().ok_or_else(|| anyhow!("dockerd is not installed"))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&cfg.log_dir)
        .with_context(|| format!("creating the log directory {}", cfg.log_dir.display()))?;
    let log_path = cfg.log_dir.join("dockerd.log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let child = std::process::Command::new(&dockerd)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", dockerd.display()))?;
    let pid = child.id();
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&cfg.state_dir)?;
    crate::state::write_atomic(&cfg.state_dir.join("dockerd.pid"), format!("{pid}\n").as_bytes(), 0o644)?;
    info!(pid, log = %log_path.display(), "started dockerd (no systemd here)");
    Ok(pid)
}

/// Makes the engine answer: when the configured engine is the local one and
/// it does not answer, installs Docker if needed and starts it. Then waits
/// (bounded by `ping_timeout`) for the ping.
pub async fn ensure_engine(cfg: &Config, progress: &mut dyn Progress) -> Result<bollard::Docker> {
    let address = engine::engine_address(&cfg.docker);
    let local = is_local_default(&address);
    if cfg.docker.install && local {
        let quick = crate::config::DockerConfig { ping_timeout: QUICK_PING, ..cfg.docker.clone() };
        if engine::connect(&quick).await.is_err() {
            info!(engine = %address, "no Docker engine answers: installing and starting Docker");
            let changed = install(cfg, Path::new("/"), progress).await.context("installing Docker")?;
            start(cfg, changed, progress).await.context("starting Docker")?;
        } else if daemon_json_action(cfg, Path::new("/")).is_some() {
            let changed = install(cfg, Path::new("/"), progress).await?;
            if changed {
                reload(cfg)?;
            }
        }
    }
    progress.begin("engine");
    let docker = engine::connect(&cfg.docker).await?;
    progress.done("engine", format!("answered at {address}"));
    Ok(docker)
}

/// Makes a running engine read a changed `daemon.json` (registry mirrors are
/// reloadable): `systemctl reload docker`, or SIGHUP to its pid.
fn reload(cfg: &Config) -> Result<()> {
    if has_systemd() {
        let status = std::process::Command::new("systemctl").args(["reload", "docker"]).status()?;
        if !status.success() {
            bail!("systemctl reload docker failed ({status})");
        }
        return Ok(());
    }
    for pid_file in ["/var/run/docker.pid".into(), cfg.state_dir.join("dockerd.pid")] {
        if let Some(pid) = fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP)
                .with_context(|| format!("asking dockerd (pid {pid}) to reload its configuration"))?;
            info!(pid, "dockerd reloads daemon.json");
            return Ok(());
        }
    }
    warn!(
        "daemon.json changed but no dockerd pid was found to reload it; restart Docker to apply the registry mirrors"
    );
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    /// Every os-release fixture, by file name (tests/fixtures/os-release/README.md says where each is from).
    pub const OS_RELEASES: &[(&str, &str)] = &[
        ("alinux-2", include_str!("../../../tests/fixtures/os-release/alinux-2")),
        ("alinux-3", include_str!("../../../tests/fixtures/os-release/alinux-3")),
        ("alinux-3-openanolis", include_str!("../../../tests/fixtures/os-release/alinux-3-openanolis")),
        ("almalinux-8", include_str!("../../../tests/fixtures/os-release/almalinux-8")),
        ("almalinux-9", include_str!("../../../tests/fixtures/os-release/almalinux-9")),
        ("alpine-3.19", include_str!("../../../tests/fixtures/os-release/alpine-3.19")),
        ("amzn-2", include_str!("../../../tests/fixtures/os-release/amzn-2")),
        ("anolis-8", include_str!("../../../tests/fixtures/os-release/anolis-8")),
        ("arch", include_str!("../../../tests/fixtures/os-release/arch")),
        ("centos-7", include_str!("../../../tests/fixtures/os-release/centos-7")),
        ("centos-8", include_str!("../../../tests/fixtures/os-release/centos-8")),
        ("debian-10", include_str!("../../../tests/fixtures/os-release/debian-10")),
        ("debian-11", include_str!("../../../tests/fixtures/os-release/debian-11")),
        ("debian-12", include_str!("../../../tests/fixtures/os-release/debian-12")),
        ("debian-13", include_str!("../../../tests/fixtures/os-release/debian-13")),
        ("fedora-40", include_str!("../../../tests/fixtures/os-release/fedora-40")),
        ("ol-8", include_str!("../../../tests/fixtures/os-release/ol-8")),
        ("opensuse-leap-15.5", include_str!("../../../tests/fixtures/os-release/opensuse-leap-15.5")),
        ("rhel-9", include_str!("../../../tests/fixtures/os-release/rhel-9")),
        ("rocky-8", include_str!("../../../tests/fixtures/os-release/rocky-8")),
        ("rocky-9", include_str!("../../../tests/fixtures/os-release/rocky-9")),
        ("ubuntu-18.04", include_str!("../../../tests/fixtures/os-release/ubuntu-18.04")),
        ("ubuntu-20.04", include_str!("../../../tests/fixtures/os-release/ubuntu-20.04")),
        ("ubuntu-22.04", include_str!("../../../tests/fixtures/os-release/ubuntu-22.04")),
        ("ubuntu-24.04", include_str!("../../../tests/fixtures/os-release/ubuntu-24.04")),
    ];

    /// The fixtures the installer must refuse.
    pub const UNSUPPORTED: &[&str] = &["alpine-3.19", "amzn-2", "arch", "fedora-40", "opensuse-leap-15.5"];

    pub fn os_release(name: &str) -> &'static str {
        OS_RELEASES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).expect("a fixture by that name")
    }

    use super::distro::{detect, parse_os_release, Family};

    #[test]
    fn every_fixture_is_detected_as_its_family() {
        let want = [
            ("alinux-2", Some(Family::Alinux2)),
            ("alinux-3", Some(Family::Alinux3)),
            ("alinux-3-openanolis", Some(Family::Alinux3)),
            ("almalinux-8", Some(Family::Rhel8Plus)),
            ("almalinux-9", Some(Family::Rhel8Plus)),
            ("anolis-8", Some(Family::Rhel8Plus)),
            ("centos-7", Some(Family::Rhel7)),
            ("centos-8", Some(Family::Rhel8Plus)),
            ("ol-8", Some(Family::Rhel8Plus)),
            ("rhel-9", Some(Family::Rhel8Plus)),
            ("rocky-8", Some(Family::Rhel8Plus)),
            ("rocky-9", Some(Family::Rhel8Plus)),
            ("ubuntu-18.04", Some(Family::Ubuntu)),
            ("ubuntu-20.04", Some(Family::Ubuntu)),
            ("ubuntu-22.04", Some(Family::Ubuntu)),
            ("ubuntu-24.04", Some(Family::Ubuntu)),
            ("debian-10", Some(Family::Debian)),
            ("debian-11", Some(Family::Debian)),
            ("debian-12", Some(Family::Debian)),
            ("debian-13", Some(Family::Debian)),
        ];
        assert_eq!(want.len() + UNSUPPORTED.len(), OS_RELEASES.len(), "every fixture has an expectation");
        for (name, family) in want {
            let got = detect(&parse_os_release(os_release(name))).map(|d| d.family).ok();
            assert_eq!(got, family, "{name}");
        }
        for name in UNSUPPORTED {
            let err = detect(&parse_os_release(os_release(name))).unwrap_err();
            assert!(err.to_string().contains(super::distro::SUPPORTED), "{name}: {err}");
        }
        let trixie = detect(&parse_os_release(os_release("debian-13"))).unwrap();
        assert_eq!(trixie.codename.as_deref(), Some("trixie"));
    }
}
