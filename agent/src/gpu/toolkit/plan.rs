//! The toolkit's install plan: for a distribution and the repository
//! (`[docker] nvidia_toolkit_repository`), the exact commands and files, as
//! data that tests read and `--dry-run` prints. The recipe is NVIDIA's
//! install guide's (docs/gpu.md#the-nvidia-container-toolkit), carried out
//! with the Docker installer's steps ([`crate::docker_install::plan`]):
//! apt's roll-forward steps first, never a whole-system upgrade.

use std::path::PathBuf;

use crate::docker_install::distro::{Distro, Family};
use crate::docker_install::plan::{self as dplan, Action, PackageManager};

/// What is installed: the toolkit and, named so that the plan says what
/// lands on the host, the packages it depends on in NVIDIA's repository
/// (`nvidia-container-toolkit` depends on `nvidia-container-toolkit-base`
/// of the same version and on `libnvidia-container-tools`, which depends
/// on `libnvidia-container1`: tests/fixtures/nvidia-packages/).
pub const PACKAGES: &[&str] =
    &["nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools", "libnvidia-container1"];

/// The repository's signing key, ASCII-armoured, where apt's `signed-by` reads it.
pub const APT_KEY: &str = "/etc/apt/keyrings/nvidia-container-toolkit.asc";
/// The apt source the plan writes.
pub const APT_LIST: &str = "/etc/apt/sources.list.d/nvidia-container-toolkit.list";
/// The yum/dnf repository file the plan writes.
pub const RPM_REPO: &str = "/etc/yum.repos.d/nvidia-container-toolkit.repo";

/// The plan for one distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolkitPlan {
    pub distro: Distro,
    pub package_manager: PackageManager,
    pub repository: String,
    pub actions: Vec<Action>,
}

/// The apt source line: NVIDIA's `stable/deb/nvidia-container-toolkit.list`
/// (a flat repository, `<repo>/stable/deb/$(ARCH) /`, apt putting in the
/// architecture), with the `signed-by` its guide adds.
pub fn apt_source(repository: &str) -> String {
    format!("deb [signed-by={APT_KEY}] {repository}/stable/deb/$(ARCH) /\n")
}

/// The yum/dnf repository: NVIDIA's `stable/rpm/nvidia-container-toolkit.repo`
/// (its stable section; the experimental one, disabled there, is left
/// out), pointed at `repository`.
pub fn rpm_repo(repository: &str) -> String {
    format!(
        "[nvidia-container-toolkit]\nname=nvidia-container-toolkit\nbaseurl={repository}/stable/rpm/$basearch\n\
         repo_gpgcheck=1\ngpgcheck=0\nenabled=1\ngpgkey={repository}/gpgkey\n"
    )
}

/// Makes the plan. `chrooted`: the install goes into another root file
/// system, where no service may start (the Docker plan's policy-rc.d guard).
pub fn plan(distro: &Distro, repository: &str, chrooted: bool) -> ToolkitPlan {
    let repository = repository.trim_end_matches('/').to_string();
    let (package_manager, mut actions) = match distro.family {
        Family::Debian | Family::Ubuntu => {
            let mut install = vec!["install", "-y", "--no-install-recommends"];
            install.extend_from_slice(PACKAGES);
            let actions = [
                // An earlier run's source goes first: with a key that no
                // longer matches (a rotated key, another mirror) the first
                // `apt-get update` would fail on it before the key is renewed.
                vec![Action::Remove { path: PathBuf::from(APT_LIST) }],
                dplan::apt_prepare(),
                dplan::apt_signed_source(APT_KEY, &format!("{repository}/gpgkey"), APT_LIST, apt_source(&repository)),
                vec![dplan::apt(&["update"], dplan::UPDATE_TIMEOUT), dplan::apt(&install, dplan::INSTALL_TIMEOUT)],
            ]
            .concat();
            (PackageManager::Apt, actions)
        }
        Family::Alinux3 | Family::Rhel8Plus | Family::Alinux2 | Family::Rhel7 => {
            let pm = if matches!(distro.family, Family::Alinux3 | Family::Rhel8Plus) {
                PackageManager::Dnf
            } else {
                PackageManager::Yum
            };
            let install = [&[pm.as_str(), "-y", "install"], PACKAGES].concat();
            let actions = vec![
                Action::Write { path: PathBuf::from(RPM_REPO), content: rpm_repo(&repository), mode: 0o644 },
                dplan::pm_run(&install, dplan::INSTALL_TIMEOUT),
            ];
            (pm, actions)
        }
    };
    if chrooted && package_manager == PackageManager::Apt {
        dplan::guard_services(&mut actions);
    }
    ToolkitPlan { distro: distro.clone(), package_manager, repository, actions }
}

/// The step name of an action: `toolkit: apt-get install nvidia-container-toolkit`.
pub fn step_name(action: &Action) -> String {
    if let Action::Run { argv, .. } = action {
        if argv[0] == "curl" {
            return format!("toolkit: download the repository key {}", argv.last().expect("a URL"));
        }
    }
    let name = action.name();
    format!("toolkit: {}", name.strip_prefix("docker: ").unwrap_or(&name))
}

#[cfg(test)]
mod tests;
