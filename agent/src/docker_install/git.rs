//! Installing `git` when the `[workspace] source` is a git repository and
//! the command is missing (minimal images lack it): the distribution's own
//! package, carried out by the Docker installer's executor (timeouts,
//! retries, lock waits, apt's roll-forward steps), as steps `git: ...` of the
//! converge before the workspace is fetched, and for `install-git`
//! (`cli::commands`, docs/git-install.md).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tracing::info;

use super::plan::{self, Action, PackageManager};
use super::run::{Executor, Progress};
use super::{distro, RecordProgress};
use crate::config::Config;
use crate::state::{Phase, Recorder};
use crate::workspace::fetch::Source;

/// The directories a command is looked for in, below the root: the
/// executor's PATH.
const SEARCH: &[&str] = &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// The step that runs `git --version` once the package is installed.
pub const CHECK_STEP: &str = "git: check";

/// Why git cannot be installed on this distribution; nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error(
    "git is not installed, and the agent cannot install it on ID={id} VERSION_ID={version}: {reason}; \
     install git with the distribution's package manager, or give [workspace] a tarball source (with sha256)"
)]
pub struct Refused {
    pub id: String,
    pub version: String,
    pub reason: String,
}

/// What installing git takes on this root's distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitPlan {
    pub distro: distro::Distro,
    pub package_manager: PackageManager,
    pub packages: &'static [&'static str],
    pub actions: Vec<Action>,
}

/// The distribution's packages: on Debian and Ubuntu `ca-certificates` too,
/// which git only recommends and an https clone needs.
fn packages(family: distro::Family) -> &'static [&'static str] {
    match family {
        distro::Family::Debian | distro::Family::Ubuntu => &["git", "ca-certificates"],
        _ => &["git"],
    }
}

/// The plan for a distribution: on apt the roll-forward steps of Docker's
/// plans (docs/docker-install.md#interrupted-installs), then the install;
/// on dnf and yum the install alone. Never an upgrade.
pub fn plan_for(distro: &distro::Distro, chrooted: bool) -> GitPlan {
    let packages = packages(distro.family);
    let (package_manager, mut actions) = match distro.family {
        distro::Family::Debian | distro::Family::Ubuntu => {
            let mut install = vec!["install", "-y", "--no-install-recommends"];
            install.extend_from_slice(packages);
            (PackageManager::Apt, [plan::apt_prepare(), vec![plan::apt(&install, plan::INSTALL_TIMEOUT)]].concat())
        }
        distro::Family::Alinux3 | distro::Family::Rhel8Plus => {
            let install = [&["dnf", "-y", "install"], packages].concat();
            (PackageManager::Dnf, vec![plan::pm_run(&install, plan::INSTALL_TIMEOUT)])
        }
        distro::Family::Alinux2 | distro::Family::Rhel7 => {
            let install = [&["yum", "-y", "install"], packages].concat();
            (PackageManager::Yum, vec![plan::pm_run(&install, plan::INSTALL_TIMEOUT)])
        }
    };
    if chrooted && package_manager == PackageManager::Apt {
        plan::guard_services(&mut actions);
    }
    GitPlan { distro: distro.clone(), package_manager, packages, actions }
}

/// Reads the root's os-release and makes the plan. Changes nothing.
pub fn make_plan(root: &Path) -> Result<GitPlan> {
    let (path, os) = distro::read_os_release(root)
        .with_context(|| format!("reading {} to tell the distribution", root.join("etc/os-release").display()))?;
    let distro = distro::detect(&os)
        .map_err(|u| Refused { id: none_if_empty(&u.id), version: none_if_empty(&u.version_id), reason: u.reason })
        .with_context(|| format!("{}", path.display()))?;
    Ok(plan_for(&distro, root != Path::new("/")))
}

fn none_if_empty(s: &str) -> String {
    if s.is_empty() {
        "(none)".into()
    } else {
        s.to_string()
    }
}

/// The step name of an action: `git: apt-get install git`.
pub fn step_name(action: &Action) -> String {
    // The Docker installer names its steps `docker: ...`; the command part is the same.
    let name = action.name();
    format!("git: {}", name.strip_prefix("docker: ").unwrap_or(&name))
}

/// The directories `git` is looked for in below `root`: for `/`, this
/// process's PATH, where the workspace fetch will look for it; else (or
/// without a PATH) the executor's.
fn search_dirs(root: &Path) -> Vec<String> {
    let path = if root == Path::new("/") { std::env::var("PATH").unwrap_or_default() } else { String::new() };
    let dirs: Vec<String> = path.split(':').filter(|d| d.starts_with('/')).map(String::from).collect();
    if dirs.is_empty() {
        SEARCH.iter().map(|d| d.to_string()).collect()
    } else {
        dirs
    }
}

/// Where `git` is in `root`, as a path inside it (see [`search_dirs`]).
pub fn git_path(root: &Path) -> Option<PathBuf> {
    search_dirs(root).into_iter().map(|d| Path::new(&d).join("git")).find(|p| {
        std::fs::metadata(root.join(p.strip_prefix("/").unwrap_or(p)))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Says what `install-git` would do, changing nothing.
pub fn dry_run_text(cfg: &Config, root: &Path) -> Result<String> {
    let mut out = String::new();
    let chrooted = root != Path::new("/");
    match git_path(root) {
        Some(found) => out.push_str(&format!("git is installed at {}: nothing to install\n", found.display())),
        None => {
            let plan = make_plan(root)?;
            let described = plan::describe(&plan.distro, plan.package_manager, None, plan.packages);
            out.push_str(&format!("git is not installed; {described}\n"));
            if chrooted {
                out.push_str(&format!("every command runs as: chroot {} COMMAND\n", root.display()));
            }
            for action in &plan.actions {
                out.push_str(&format!("{action}\n"));
            }
            out.push_str(&format!("{}\n", check_action()));
        }
    }
    let workspace = match cfg.workspace.as_ref().map(|w| (&w.source, w.source_label())) {
        Some((Source::Git { .. }, label)) => {
            format!("run installs git this way, when it is missing, before it fetches [workspace] source {label}")
        }
        Some((Source::Tarball { .. }, _)) => "run does not need git: the [workspace] source is a tarball".into(),
        None => "run does not need git: the configuration has no [workspace]".into(),
    };
    out.push_str(&format!("{workspace}\n"));
    Ok(out)
}

/// `git --version`: the proof that the installed command runs.
fn check_action() -> Action {
    Action::Run {
        argv: vec!["git".into(), "--version".into()],
        env: Vec::new(),
        timeout: Duration::from_secs(60),
        retry: false,
        needs_lock: false,
        may_fail: false,
    }
}

/// Carries out `plan` in `root` (`/`: this host), each action a step, then
/// runs `git --version` (the step `git: check`). Returns what was installed:
/// `git version 2.39.5 at /usr/bin/git`.
pub async fn install(cfg: &Config, root: &Path, plan: &GitPlan, progress: &mut dyn Progress) -> Result<String> {
    let executor = Executor::new(root, plan.package_manager, Some(cfg.log_dir.join("install-git.log")));
    executor.run_steps(&plan.actions, step_name, progress).await?;
    progress.begin(CHECK_STEP);
    let (_, version) = executor.run_step(&check_action(), progress).await?;
    let found = git_path(root).ok_or_else(|| {
        anyhow!(
            "`git --version` ran, but the workspace fetch will not find git: it is in none of {} (below {}); add the directory apt or dnf installed it in to the agent's PATH",
            search_dirs(root).join(":"),
            root.display()
        )
    })?;
    let installed = format!("{} at {}", version.trim(), found.display());
    progress.done(CHECK_STEP, installed.clone());
    Ok(installed)
}

/// The converge's git steps: when the `[workspace] source` is a git
/// repository and this host has no `git`, installs it. Nothing, and no
/// step, when git is there or the source is not git.
pub async fn ensure_for_workspace(cfg: &Config, rec: &mut Recorder<'_>) -> Result<()> {
    let Some(w) = &cfg.workspace else { return Ok(()) };
    if !matches!(w.source, Source::Git { .. }) {
        return Ok(());
    }
    if let Some(found) = git_path(Path::new("/")) {
        info!(git = %found.display(), "git is installed");
        return Ok(());
    }
    info!("the workspace is a git repository and git is not installed: installing it");
    let root = Path::new("/");
    let installed = async {
        let plan = make_plan(root)?;
        install(cfg, root, &plan, &mut RecordProgress { rec, phase: Phase::FetchingWorkspace }).await
    }
    .await
    .context("installing git to fetch the workspace")?;
    info!("installed {installed}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker_install::distro::{detect, parse_os_release, Family};
    use crate::docker_install::tests::{os_release, OS_RELEASES, UNSUPPORTED};

    fn commands(p: &GitPlan) -> Vec<String> {
        plan::command_lines(&p.actions, false)
    }

    fn plan_of(fixture: &str, chrooted: bool) -> GitPlan {
        plan_for(&detect(&parse_os_release(os_release(fixture))).unwrap(), chrooted)
    }

    #[test]
    fn apt_rolls_forward_then_installs_git_without_recommends() {
        let p = plan_of("debian-12", false);
        assert_eq!(p.package_manager, PackageManager::Apt);
        assert_eq!(
            commands(&p),
            [
                "dpkg --configure -a",
                "apt-get -o DPkg::Lock::Timeout=600 update",
                "apt-get -o DPkg::Lock::Timeout=600 install -y --fix-broken",
                "apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends git ca-certificates"
            ]
        );
        let names: Vec<String> = p.actions.iter().map(step_name).collect();
        assert_eq!(
            names,
            [
                "git: dpkg --configure -a",
                "git: apt-get update",
                "git: reinstall half-installed packages",
                "git: apt-get install -y --fix-broken",
                "git: apt-get install git"
            ]
        );
        // Into another root: the policy-rc.d guard around it.
        let p = plan_of("ubuntu-24.04", true);
        assert!(matches!(&p.actions[0], Action::Write { path, .. } if path.ends_with("policy-rc.d")));
        assert!(matches!(p.actions.last().unwrap(), Action::Remove { path } if path.ends_with("policy-rc.d")));
    }

    #[test]
    fn the_rpm_families_install_the_git_package_alone() {
        for (fixture, want) in [
            ("alinux-3", "dnf -y install git"),
            ("rocky-9", "dnf -y install git"),
            ("alinux-2", "yum -y install git"),
            ("centos-7", "yum -y install git"),
        ] {
            assert_eq!(commands(&plan_of(fixture, true)), [want], "{fixture}");
        }
    }

    #[test]
    fn every_supported_release_gets_a_plan_that_never_upgrades() {
        for (name, text) in OS_RELEASES {
            let Ok(distro) = detect(&parse_os_release(text)) else {
                assert!(UNSUPPORTED.contains(name), "{name}");
                continue;
            };
            let p = plan_for(&distro, false);
            assert!(p.packages.contains(&"git"), "{name}");
            for cmd in commands(&p) {
                let words: Vec<&str> = cmd.split_whitespace().collect();
                for forbidden in ["upgrade", "dist-upgrade", "full-upgrade", "distro-sync"] {
                    assert!(!words.contains(&forbidden), "{name}: {cmd}");
                }
                assert!(!(words.contains(&"update") && (words[0] == "yum" || words[0] == "dnf")), "{name}: {cmd}");
            }
            let apt = matches!(distro.family, Family::Debian | Family::Ubuntu);
            assert_eq!(p.package_manager == PackageManager::Apt, apt, "{name}");
        }
    }

    #[test]
    fn a_refusal_names_the_distribution_and_the_ways_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/os-release"), os_release("fedora-40")).unwrap();
        let err = make_plan(dir.path()).unwrap_err();
        assert!(err.is::<Refused>() || err.chain().any(|c| c.is::<Refused>()));
        assert_eq!(
            format!("{err:#}"),
            format!(
                "{}: git is not installed, and the agent cannot install it on ID=fedora VERSION_ID=40: this distribution is not one the installer knows; install git with the distribution's package manager, or give [workspace] a tarball source (with sha256)",
                dir.path().join("etc/os-release").display()
            )
        );
    }

    #[test]
    fn git_is_found_below_a_root_only_as_an_executable_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(git_path(dir.path()), None);
        std::fs::create_dir_all(dir.path().join("usr/bin/git")).unwrap();
        assert_eq!(git_path(dir.path()), None, "a directory is not the command");
        std::fs::remove_dir(dir.path().join("usr/bin/git")).unwrap();
        std::fs::write(dir.path().join("usr/bin/git"), "#!/bin/sh\n").unwrap();
        assert_eq!(git_path(dir.path()), None, "not executable");
        std::fs::set_permissions(dir.path().join("usr/bin/git"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(git_path(dir.path()), Some(PathBuf::from("/usr/bin/git")));
    }

    /// Records the steps as they go.
    #[derive(Default)]
    struct Steps(Vec<(String, Option<String>)>);

    impl Progress for Steps {
        fn begin(&mut self, step: &str) {
            self.0.push((step.to_string(), None));
        }
        fn done(&mut self, step: &str, detail: String) {
            assert_eq!(self.0.last().map(|(s, _)| s.as_str()), Some(step));
            self.0.last_mut().unwrap().1 = Some(detail);
        }
    }

    #[tokio::test]
    async fn a_failed_install_names_its_step_and_command_and_stops_there() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config { log_dir: dir.path().join("log"), ..Config::defaults() };
        let fail = Action::Run {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "# install the package\necho 'E: Unable to locate package git' >&2; exit 100".into(),
            ],
            env: Vec::new(),
            timeout: Duration::from_secs(10),
            retry: true,
            needs_lock: false,
            may_fail: false,
        };
        let mut plan = plan_of("debian-12", false);
        plan.actions = vec![fail];
        let mut steps = Steps::default();
        let err = install(&cfg, Path::new("/"), &plan, &mut steps).await.unwrap_err();
        assert!(err.to_string().ends_with("exited with 100: E: Unable to locate package git"), "{err}");
        assert_eq!(steps.0, [("git: install the package".to_string(), None)], "no check after a failure");
        let log = std::fs::read_to_string(dir.path().join("log/install-git.log")).unwrap();
        assert!(log.contains("E: Unable to locate package git"), "{log}");
    }
}
