//! The install plan: for a distribution and the `[docker]` settings, the exact
//! commands and files, as data that tests read and `--dry-run` prints
//! (recipes in docs/docker-install.md#plans, from Docker's install docs). Never a
//! whole-system upgrade.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::distro::{Distro, Family};
use crate::config::DockerSource;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageManager {
    Apt,
    Yum,
    Dnf,
}

impl PackageManager {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageManager::Apt => "apt",
            PackageManager::Yum => "yum",
            PackageManager::Dnf => "dnf",
        }
    }

    /// Lock files another package-manager process holds while it works,
    /// relative to the root.
    pub fn lock_files(self) -> &'static [&'static str] {
        match self {
            PackageManager::Apt => &["var/lib/dpkg/lock-frontend", "var/lib/dpkg/lock", "var/lib/apt/lists/lock"],
            PackageManager::Yum => &["var/run/yum.pid", "var/lib/rpm/.rpm.lock"],
            PackageManager::Dnf => &["var/lib/rpm/.rpm.lock", "var/cache/dnf/metadata_lock.pid"],
        }
    }
}

/// One thing the installer does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Runs a command (inside `chroot ROOT` with `--root`).
    Run {
        argv: Vec<String>,
        /// Extra environment.
        env: Vec<(String, String)>,
        timeout: Duration,
        /// It talks to the network and package managers: a transient failure is retried.
        retry: bool,
        /// It uses the package manager: wait for its lock first.
        needs_lock: bool,
        /// Its failure is reported and the plan goes on (a repair whose
        /// leftovers a later step finishes).
        may_fail: bool,
    },
    /// Writes a file (below the root), creating its directory.
    Write { path: PathBuf, content: String, mode: u32 },
    /// Removes a file the plan wrote earlier.
    Remove { path: PathBuf },
}

impl Action {
    /// The step name recorded in the state: `docker: apt-get update`.
    pub fn name(&self) -> String {
        match self {
            Action::Run { argv, .. } if argv.len() == 3 && argv[0] == "sh" && argv[1] == "-c" => {
                // A script names itself in its first line, a `# comment`.
                let first = argv[2].lines().next().unwrap_or_default();
                format!("docker: {}", first.trim_start_matches('#').trim())
            }
            Action::Run { argv, .. } => {
                // The program and its first operands, without options (nor `-o VALUE`).
                // With no operand after the subcommand, the options are the step
                // (`dpkg --configure -a`, `apt-get install -y --fix-broken`).
                let mut all = Vec::new();
                let mut skip_next = false;
                for w in argv {
                    if std::mem::take(&mut skip_next) {
                        continue;
                    }
                    if w == "-o" {
                        skip_next = true;
                    } else {
                        all.push(w.as_str());
                    }
                }
                let words: Vec<&str> = all.iter().copied().filter(|w| !w.starts_with('-')).collect();
                if words.len() <= 2 {
                    return format!("docker: {}", all.join(" "));
                }
                // A removal names every package it removes.
                if words[1] == "remove" {
                    return format!("docker: {}", words.join(" "));
                }
                format!("docker: {}", words[..3].join(" "))
            }
            Action::Write { path, .. } => format!("docker: write {}", path.display()),
            Action::Remove { path } => format!("docker: remove {}", path.display()),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Run { argv, env, timeout, retry, may_fail, .. } => {
                write!(f, "run   ")?;
                for (k, v) in env {
                    write!(f, "{k}={v} ")?;
                }
                write!(f, "{}", argv.join(" "))?;
                write!(
                    f,
                    "   (timeout {}{}{})",
                    humantime::format_duration(*timeout),
                    if *retry { ", retried" } else { "" },
                    if *may_fail { ", may fail" } else { "" }
                )
            }
            Action::Write { path, content, mode } => {
                write!(f, "write {} (mode {mode:04o}):", path.display())?;
                for line in content.lines() {
                    write!(f, "\n        {line}")?;
                }
                Ok(())
            }
            Action::Remove { path } => write!(f, "remove {}", path.display()),
        }
    }
}

/// How a dry run names what a plan installs: `distribution: Debian GNU/Linux
/// 12 (bookworm) (debian 12); package manager: apt; source: ...; packages: ...`.
pub fn describe(distro: &Distro, package_manager: PackageManager, source: Option<&str>, packages: &[&str]) -> String {
    format!(
        "distribution: {} ({} {}); package manager: {}; {}packages: {}",
        distro.name,
        distro.id,
        distro.version_id,
        package_manager.as_str(),
        source.map_or(String::new(), |s| format!("source: {s}; ")),
        packages.join(" ")
    )
}

/// The plan for one distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub distro: Distro,
    pub package_manager: PackageManager,
    /// `distro` or `docker-ce`, after `auto` is resolved.
    pub source: &'static str,
    pub packages: Vec<String>,
    pub actions: Vec<Action>,
    /// What the plan found and decided beyond its actions, one line each
    /// (the packages that conflict with docker-ce).
    pub notes: Vec<String>,
}

/// The packages a docker-ce install conflicts with, in the order the plan
/// names them: Docker's own list for RHEL (the distribution's Docker
/// packages, `podman` and `runc`), `containerd` (Docker's `containerd.io`
/// package conflicts with and obsoletes both `containerd` and `runc`), and
/// `podman-docker` (its own package conflicts with `docker-ce`, and both
/// own `/usr/bin/docker`). What needs them (`buildah` where it requires
/// `runc`, `cockpit-podman`, `toolbox`) the package manager removes with
/// them and lists in its transaction.
pub const CONFLICTING: &[&str] = &[
    "docker",
    "docker-client",
    "docker-client-latest",
    "docker-common",
    "docker-latest",
    "docker-latest-logrotate",
    "docker-logrotate",
    "docker-engine",
    "podman",
    "podman-docker",
    "runc",
    "containerd",
];

/// The packages installed in the target root that conflict with docker-ce
/// (see [`super::conflicts`]), and whether the plan may remove them
/// (`[docker] remove_conflicts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts {
    pub installed: Vec<String>,
    pub remove: bool,
}

impl Conflicts {
    /// None installed (the apt families, or a root without them).
    pub fn none() -> Conflicts {
        Conflicts { installed: Vec::new(), remove: true }
    }
}

/// Why no plan can be made for these settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoPlan(pub String);

pub(crate) const UPDATE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub(crate) const INSTALL_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const SHORT_TIMEOUT: Duration = Duration::from_secs(2 * 60);

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

pub(crate) fn pm_run(words: &[&str], timeout: Duration) -> Action {
    Action::Run { argv: argv(words), env: Vec::new(), timeout, retry: true, needs_lock: true, may_fail: false }
}

pub(crate) fn apt(words: &[&str], timeout: Duration) -> Action {
    // apt waits for its own lock too, so a lock taken between our check and
    // its start does not fail the install.
    let mut all = vec!["apt-get", "-o", "DPkg::Lock::Timeout=600"];
    all.extend_from_slice(words);
    Action::Run {
        argv: argv(&all),
        env: vec![("DEBIAN_FRONTEND".into(), "noninteractive".into())],
        timeout,
        retry: true,
        needs_lock: true,
        may_fail: false,
    }
}

/// Rolls forward what an interrupted dpkg run left (a kill, a reboot, a
/// timeout in the middle of an install): without it every later apt-get
/// refuses with "dpkg was interrupted". It configures what it can; packages
/// whose dependencies were never unpacked stay for [`apt_fix_broken`], so its
/// failure does not end the plan. A no-op when nothing is pending. See
/// docs/docker-install.md#interrupted-installs.
pub(crate) fn dpkg_roll_forward() -> Action {
    Action::Run {
        argv: argv(&["dpkg", "--configure", "-a"]),
        env: vec![("DEBIAN_FRONTEND".into(), "noninteractive".into())],
        timeout: INSTALL_TIMEOUT,
        retry: false,
        needs_lock: true,
        may_fail: true,
    }
}

/// Reinstalls the packages an interrupted dpkg left half-installed or
/// marked "reinstall required" (second letter `H`, or third `R`, of
/// `dpkg-query`'s `db:Status-Abbrev`): dpkg refuses to configure them ("a
/// very bad inconsistent state"), and --fix-broken does not repair them.
/// When the same kill also left a package unpacked before its dependencies
/// were (dpkg unpacks in batches), apt refuses the reinstall ("Unmet
/// dependencies") until --fix-broken has installed them, so that runs
/// first here, allowed to fail (it may trip over the half-installed ones;
/// [`apt_fix_broken`] runs again after). Nothing on a healthy system.
pub(crate) fn apt_reinstall_half_installed() -> Action {
    let script = "# reinstall half-installed packages\n\
        half() { dpkg-query -W -f='${db:Status-Abbrev} ${binary:Package}\\n' | awk 'substr($1,2,1)==\"H\" || substr($1,3,1)==\"R\" {print $2}'; }\n\
        [ -n \"$(half)\" ] || exit 0\n\
        apt-get -o DPkg::Lock::Timeout=600 install -y --fix-broken || true\n\
        pkgs=$(half)\n\
        [ -z \"$pkgs\" ] || apt-get -o DPkg::Lock::Timeout=600 install -y --reinstall $pkgs\n";
    Action::Run {
        argv: argv(&["sh", "-c", script]),
        env: vec![("DEBIAN_FRONTEND".into(), "noninteractive".into())],
        timeout: INSTALL_TIMEOUT,
        retry: true,
        needs_lock: true,
        may_fail: false,
    }
}

/// Installs what unpacked packages still depend on (after an interrupted
/// install); nothing on a healthy system. Never an upgrade.
pub(crate) fn apt_fix_broken() -> Action {
    apt(&["install", "-y", "--fix-broken"], INSTALL_TIMEOUT)
}

/// apt before any install (Docker's, git's, the NVIDIA toolkit's): what an
/// interrupted run left rolled forward, fresh package lists, the repairs
/// (docs/docker-install.md#interrupted-installs).
pub(crate) fn apt_prepare() -> Vec<Action> {
    vec![dpkg_roll_forward(), apt(&["update"], UPDATE_TIMEOUT), apt_reinstall_half_installed(), apt_fix_broken()]
}

/// A signed apt repository added: curl and the CA certificates installed,
/// the repository's key downloaded to `key` (`/etc/apt/keyrings/...`, which
/// `line` names in its `signed-by`), the source `line` written to `list`.
/// The package lists must be updated after it.
pub(crate) fn apt_signed_source(key: &str, key_url: &str, list: &str, line: String) -> Vec<Action> {
    vec![
        apt(&["install", "-y", "--no-install-recommends", "ca-certificates", "curl"], INSTALL_TIMEOUT),
        Action::Run {
            argv: argv(&["curl", "-fsSL", "--retry", "3", "--create-dirs", "-o", key, key_url]),
            env: Vec::new(),
            timeout: SHORT_TIMEOUT,
            retry: true,
            needs_lock: false,
            may_fail: false,
        },
        Action::Write { path: PathBuf::from(list), content: line, mode: 0o644 },
    ]
}

/// Into another root file system, no package script may start a daemon:
/// the Debian policy layer (invoke-rc.d) asks `policy-rc.d`, whose 101
/// refuses. Written before the plan's actions, removed after them.
pub(crate) fn guard_services(actions: &mut Vec<Action>) {
    let policy = PathBuf::from("/usr/sbin/policy-rc.d");
    actions.insert(0, Action::Write { path: policy.clone(), content: "#!/bin/sh\nexit 101\n".into(), mode: 0o755 });
    actions.push(Action::Remove { path: policy });
}

/// The commands `actions` run, one line each, for the plans' tests; the
/// repair scripts (`sh -c ...`) left out unless `scripts`.
#[cfg(test)]
pub(crate) fn command_lines(actions: &[Action], scripts: bool) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Run { argv, .. } if scripts || argv[0] != "sh" => Some(argv.join(" ")),
            _ => None,
        })
        .collect()
}

/// yum's journal of an unfinished transaction, finished (yum-utils, which
/// the plan installs first, provides the command). dnf keeps no such
/// journal: its next install redoes the transaction.
fn yum_roll_forward() -> Action {
    pm_run(&["yum-complete-transaction", "-y"], INSTALL_TIMEOUT)
}

/// The CPU architecture as dpkg names it.
pub fn dpkg_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armhf",
        other => other,
    }
}

/// Makes the plan. `chrooted`: the install goes into another root file system,
/// where no service may be started. `conflicts`: what the RPM families must
/// remove before docker-ce installs.
pub fn plan(
    distro: &Distro,
    source: DockerSource,
    mirror: &str,
    chrooted: bool,
    conflicts: &Conflicts,
) -> Result<Plan, NoPlan> {
    let mirror = mirror.trim_end_matches('/');
    let rpm_repo = format!("{mirror}/linux/centos/docker-ce.repo");
    // docker-ce.repo points at Docker's own site; point it at the mirror.
    let rewrite_repo = || Action::Run {
        argv: argv(&[
            "sed",
            "-i",
            &format!("s|https://download.docker.com|{mirror}|g"),
            "/etc/yum.repos.d/docker-ce.repo",
        ]),
        env: Vec::new(),
        timeout: SHORT_TIMEOUT,
        retry: false,
        needs_lock: false,
        may_fail: false,
    };
    let ce_packages = vec!["docker-ce".to_string(), "docker-ce-cli".to_string(), "containerd.io".to_string()];
    let rpm_only = |what: &str| {
        NoPlan(format!(
            "{} has no Docker package of its own; set [docker] source = \"auto\" or \"docker-ce\" (installing {what})",
            distro.name
        ))
    };

    let (package_manager, source_used, packages, mut actions) = match distro.family {
        Family::Debian | Family::Ubuntu => {
            let codename = distro.codename.clone().unwrap_or_default();
            match source {
                DockerSource::Auto | DockerSource::Distro => {
                    let packages = vec!["docker.io".to_string(), "ca-certificates".to_string()];
                    let mut install = vec!["install", "-y", "--no-install-recommends"];
                    install.extend(packages.iter().map(String::as_str));
                    (
                        PackageManager::Apt,
                        "distro",
                        packages.clone(),
                        [apt_prepare(), vec![apt(&install, INSTALL_TIMEOUT)]].concat(),
                    )
                }
                DockerSource::DockerCe => {
                    let key = "/etc/apt/keyrings/docker.asc";
                    let repo = format!(
                        "deb [arch={} signed-by={key}] {mirror}/linux/{} {codename} stable\n",
                        dpkg_arch(),
                        distro.id
                    );
                    let mut install = vec!["install", "-y", "--no-install-recommends"];
                    install.extend(ce_packages.iter().map(String::as_str));
                    (
                        PackageManager::Apt,
                        "docker-ce",
                        ce_packages.clone(),
                        [
                            apt_prepare(),
                            apt_signed_source(
                                key,
                                &format!("{mirror}/linux/{}/gpg", distro.id),
                                "/etc/apt/sources.list.d/docker.list",
                                repo,
                            ),
                            vec![apt(&["update"], UPDATE_TIMEOUT), apt(&install, INSTALL_TIMEOUT)],
                        ]
                        .concat(),
                    )
                }
            }
        }
        Family::Alinux3 => {
            if source == DockerSource::Distro {
                return Err(rpm_only("from Alibaba Cloud Linux 3's own repositories"));
            }
            (
                PackageManager::Dnf,
                "docker-ce",
                vec!["docker-ce".to_string()],
                vec![
                    pm_run(&["dnf", "-y", "install", "dnf-plugins-core"], INSTALL_TIMEOUT),
                    pm_run(&["dnf", "config-manager", "--add-repo", &rpm_repo], SHORT_TIMEOUT),
                    rewrite_repo(),
                    // docker-ce.repo asks for $releasever 3, which Docker does not
                    // publish; the adapter maps it to the matching CentOS release.
                    pm_run(
                        &["dnf", "-y", "install", "dnf-plugin-releasever-adapter", "--repo", "alinux3-plus"],
                        INSTALL_TIMEOUT,
                    ),
                    pm_run(&["dnf", "-y", "install", "docker-ce", "--nobest"], INSTALL_TIMEOUT),
                ],
            )
        }
        Family::Alinux2 => {
            if source == DockerSource::Distro {
                return Err(rpm_only("from Alibaba Cloud Linux 2's own repositories"));
            }
            (
                PackageManager::Yum,
                "docker-ce",
                vec!["docker-ce".to_string()],
                vec![
                    pm_run(&["yum", "-y", "install", "yum-utils"], INSTALL_TIMEOUT),
                    yum_roll_forward(),
                    pm_run(&["yum-config-manager", "--add-repo", &rpm_repo], SHORT_TIMEOUT),
                    rewrite_repo(),
                    pm_run(
                        &[
                            "yum",
                            "-y",
                            "install",
                            "yum-plugin-releasever-adapter",
                            "--disablerepo=*",
                            "--enablerepo=plus",
                        ],
                        INSTALL_TIMEOUT,
                    ),
                    pm_run(&["yum", "-y", "install", "docker-ce"], INSTALL_TIMEOUT),
                ],
            )
        }
        Family::Rhel7 => {
            if source == DockerSource::Distro {
                return Err(rpm_only("from the distribution's own repositories"));
            }
            let mut install = vec!["yum", "-y", "install"];
            install.extend(ce_packages.iter().map(String::as_str));
            (
                PackageManager::Yum,
                "docker-ce",
                ce_packages.clone(),
                vec![
                    pm_run(&["yum", "-y", "install", "yum-utils"], INSTALL_TIMEOUT),
                    yum_roll_forward(),
                    pm_run(&["yum-config-manager", "--add-repo", &rpm_repo], SHORT_TIMEOUT),
                    rewrite_repo(),
                    pm_run(&install, INSTALL_TIMEOUT),
                ],
            )
        }
        Family::Rhel8Plus => {
            if source == DockerSource::Distro {
                return Err(rpm_only("from the distribution's own repositories"));
            }
            let mut install = vec!["dnf", "-y", "install"];
            install.extend(ce_packages.iter().map(String::as_str));
            install.push("--nobest");
            (
                PackageManager::Dnf,
                "docker-ce",
                ce_packages.clone(),
                vec![
                    pm_run(&["dnf", "-y", "install", "dnf-plugins-core"], INSTALL_TIMEOUT),
                    pm_run(&["dnf", "config-manager", "--add-repo", &rpm_repo], SHORT_TIMEOUT),
                    rewrite_repo(),
                    pm_run(&install, INSTALL_TIMEOUT),
                ],
            )
        }
    };

    let mut notes = Vec::new();
    if distro.family.uses_rpm() {
        let pm = package_manager.as_str();
        let checked = CONFLICTING.join(" ");
        let installed = conflicts.installed.join(" ");
        if conflicts.installed.is_empty() {
            notes.push(format!("packages that conflict with docker-ce: none installed (checked: {checked})"));
        } else if !conflicts.remove {
            return Err(NoPlan(format!(
                "{}: docker-ce conflicts with the installed {installed} (Docker's install guide removes them first); \
                 [docker] remove_conflicts = false forbids removing them, so nothing was changed: set \
                 remove_conflicts = true to let the agent remove them (with what needs them), or remove them \
                 yourself ({pm} remove {installed})",
                distro.name
            )));
        } else {
            // Before the Docker repository is added: Docker's guide removes them first.
            let at = actions
                .iter()
                .position(|a| matches!(a, Action::Run { argv, .. } if argv.iter().any(|w| w == "--add-repo")))
                .unwrap_or(0);
            let mut remove = vec![pm, "-y", "remove"];
            remove.extend(conflicts.installed.iter().map(String::as_str));
            actions.insert(at, pm_run(&remove, INSTALL_TIMEOUT));
            notes.push(format!(
                "packages that conflict with docker-ce: {installed} installed; removed first, with what needs them \
                 ([docker] remove_conflicts = true)"
            ));
        }
    }

    if chrooted {
        guard_services(&mut actions);
    }
    Ok(Plan { distro: distro.clone(), package_manager, source: source_used, packages, actions, notes })
}

#[cfg(test)]
mod tests;
