//! The toolkit's plans for every os-release fixture, checked against what
//! NVIDIA's repository publishes (tests/fixtures/nvidia-packages/).

use std::collections::BTreeSet;

use super::*;
use crate::config::DEFAULT_NVIDIA_TOOLKIT_REPOSITORY as NVIDIA;
use crate::docker_install::distro::{detect, parse_os_release};
use crate::docker_install::tests::{os_release, OS_RELEASES, UNSUPPORTED};

const PACKAGES_FILE: &str = include_str!("../../../../../tests/fixtures/nvidia-packages/stable-deb-amd64-Packages");
const APT_LIST_FILE: &str =
    include_str!("../../../../../tests/fixtures/nvidia-packages/stable-deb-nvidia-container-toolkit.list");
const RPM_REPO_FILE: &str =
    include_str!("../../../../../tests/fixtures/nvidia-packages/stable-rpm-nvidia-container-toolkit.repo");

fn plan_of(fixture: &str, repository: &str, chrooted: bool) -> ToolkitPlan {
    plan(&detect(&parse_os_release(os_release(fixture))).unwrap(), repository, chrooted)
}

fn commands(p: &ToolkitPlan) -> Vec<String> {
    crate::docker_install::plan::command_lines(&p.actions, false)
}

fn written(p: &ToolkitPlan, path: &str) -> String {
    p.actions
        .iter()
        .find_map(|a| match a {
            Action::Write { path: w, content, .. } if w == Path::new(path) => Some(content.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{path} is not written: {:?}", p.actions))
}

use std::path::Path;

#[test]
fn debian_and_ubuntu_add_nvidias_apt_source_then_install_the_four_packages() {
    for fixture in ["debian-10", "debian-11", "debian-12", "debian-13", "ubuntu-18.04", "ubuntu-22.04", "ubuntu-24.04"]
    {
        let p = plan_of(fixture, NVIDIA, false);
        assert_eq!(p.package_manager, PackageManager::Apt, "{fixture}");
        assert_eq!(
            commands(&p),
            [
                "dpkg --configure -a".to_string(),
                "apt-get -o DPkg::Lock::Timeout=600 update".into(),
                "apt-get -o DPkg::Lock::Timeout=600 install -y --fix-broken".into(),
                "apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends ca-certificates curl".into(),
                format!("curl -fsSL --retry 3 --create-dirs -o /etc/apt/keyrings/nvidia-container-toolkit.asc {NVIDIA}/gpgkey"),
                "apt-get -o DPkg::Lock::Timeout=600 update".into(),
                "apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1".into(),
            ],
            "{fixture}"
        );
        // The source is written before the second update, which reads it.
        let at = p.actions.iter().position(|a| matches!(a, Action::Write { .. })).unwrap();
        assert!(matches!(&p.actions[at + 1], Action::Run { argv, .. } if argv.last().unwrap() == "update"));
    }
    let names: Vec<String> = plan_of("debian-12", NVIDIA, false).actions.iter().map(step_name).collect();
    assert_eq!(
        names,
        [
            "toolkit: remove /etc/apt/sources.list.d/nvidia-container-toolkit.list",
            "toolkit: dpkg --configure -a",
            "toolkit: apt-get update",
            "toolkit: reinstall half-installed packages",
            "toolkit: apt-get install -y --fix-broken",
            "toolkit: apt-get install ca-certificates",
            "toolkit: download the repository key https://nvidia.github.io/libnvidia-container/gpgkey",
            "toolkit: write /etc/apt/sources.list.d/nvidia-container-toolkit.list",
            "toolkit: apt-get update",
            "toolkit: apt-get install nvidia-container-toolkit",
        ]
    );
}

#[test]
fn the_apt_source_is_nvidias_list_with_the_key_it_is_signed_with() {
    // NVIDIA's list: one enabled line (stable), the experimental one commented out.
    let enabled: Vec<&str> = APT_LIST_FILE.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    assert_eq!(enabled.len(), 1, "{APT_LIST_FILE}");
    let theirs = enabled[0].strip_prefix("deb ").unwrap();
    let p = plan_of("ubuntu-24.04", NVIDIA, false);
    let ours = written(&p, APT_LIST);
    assert_eq!(ours, format!("deb [signed-by={APT_KEY}] {theirs}\n"));
    // A mirror in NVIDIA's layout: every URL of the plan is below it, none is NVIDIA's.
    let mirror = "https://mirror.example/libnvidia-container";
    let p = plan_of("ubuntu-24.04", &format!("{mirror}/"), false);
    assert_eq!(written(&p, APT_LIST), format!("deb [signed-by={APT_KEY}] {mirror}/stable/deb/$(ARCH) /\n"));
    assert!(commands(&p).iter().any(|c| c.ends_with(&format!(" {mirror}/gpgkey"))));
    assert!(!format!("{:?}", p.actions).contains("nvidia.github.io"));
}

#[test]
fn the_rpm_families_write_nvidias_stable_repo_file_and_install_with_their_package_manager() {
    // NVIDIA's .repo file's enabled section, exactly.
    let stable: String = RPM_REPO_FILE.split("\n\n").next().unwrap().to_string() + "\n";
    for (fixture, pm) in [
        ("alinux-3", "dnf"),
        ("alinux-3-openanolis", "dnf"),
        ("rocky-9", "dnf"),
        ("almalinux-8", "dnf"),
        ("anolis-8", "dnf"),
        ("rhel-9", "dnf"),
        ("ol-8", "dnf"),
        ("centos-8", "dnf"),
        ("alinux-2", "yum"),
        ("centos-7", "yum"),
    ] {
        let p = plan_of(fixture, NVIDIA, false);
        assert_eq!(p.package_manager.as_str(), pm, "{fixture}");
        assert_eq!(written(&p, RPM_REPO), stable, "{fixture}");
        assert_eq!(
            commands(&p),
            [format!("{pm} -y install nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1")],
            "{fixture}"
        );
        // No release adapter: the repository's URLs use $basearch only, no $releasever.
        assert!(!stable.contains("$releasever"));
    }
    let p = plan_of("alinux-3", "https://mirror.example/nv", true);
    assert!(written(&p, RPM_REPO).contains("baseurl=https://mirror.example/nv/stable/rpm/$basearch\n"));
    assert!(written(&p, RPM_REPO).contains("gpgkey=https://mirror.example/nv/gpgkey\n"));
}

/// `Package` -> the names in its `Depends` (alternatives and versions dropped).
fn depends(packages: &str) -> Vec<(String, Vec<String>)> {
    packages
        .split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .map(|stanza| {
            let field = |name: &str| stanza.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
            let package = field("Package:").expect("a Package field").to_string();
            let deps = field("Depends:")
                .map(|d| d.split(',').map(|dep| dep.split_whitespace().next().unwrap().to_string()).collect())
                .unwrap_or_default();
            (package, deps)
        })
        .collect()
}

#[test]
fn the_packages_are_the_toolkit_and_everything_it_needs_from_nvidias_repository() {
    let published = depends(PACKAGES_FILE);
    let in_repo: BTreeSet<&str> = published.iter().map(|(p, _)| p.as_str()).collect();
    // What installing nvidia-container-toolkit pulls from NVIDIA's repository.
    let mut closure = BTreeSet::from(["nvidia-container-toolkit".to_string()]);
    let mut outside = BTreeSet::new();
    loop {
        let before = closure.len();
        for (package, deps) in &published {
            if closure.contains(package) {
                for d in deps {
                    if in_repo.contains(d.as_str()) {
                        closure.insert(d.clone());
                    } else {
                        outside.insert(d.clone());
                    }
                }
            }
        }
        if closure.len() == before {
            break;
        }
    }
    let ours: BTreeSet<String> = PACKAGES.iter().map(|p| p.to_string()).collect();
    assert_eq!(closure, ours, "the plan names exactly what NVIDIA's repository supplies");
    // The rest comes from the distribution itself (Debian and Ubuntu have all three).
    assert_eq!(outside.into_iter().collect::<Vec<_>>(), ["libc6", "libcap2", "libseccomp2"]);
}

#[test]
fn every_supported_release_gets_a_plan_that_never_upgrades_and_into_a_root_starts_nothing() {
    let mut seen = 0;
    for (name, text) in OS_RELEASES {
        let Ok(distro) = detect(&parse_os_release(text)) else {
            assert!(UNSUPPORTED.contains(name), "{name}");
            continue;
        };
        seen += 1;
        for chrooted in [false, true] {
            let p = plan(&distro, NVIDIA, chrooted);
            for cmd in commands(&p) {
                let words: Vec<&str> = cmd.split_whitespace().collect();
                for forbidden in ["upgrade", "dist-upgrade", "full-upgrade", "distro-sync"] {
                    assert!(!words.contains(&forbidden), "{name}: {cmd}");
                }
                assert!(!(words.contains(&"update") && (words[0] == "yum" || words[0] == "dnf")), "{name}: {cmd}");
            }
            let guarded = matches!(&p.actions[0], Action::Write { path, .. } if path.ends_with("policy-rc.d"));
            assert_eq!(guarded, chrooted && p.package_manager == PackageManager::Apt, "{name}");
        }
    }
    assert_eq!(seen, OS_RELEASES.len() - UNSUPPORTED.len());
}
