use super::super::conflicts::{parse_rpm_q, CONFLICTING};
use super::super::distro::{detect, parse_os_release};
use super::*;

const MIRROR: &str = "https://mirrors.aliyun.com/docker-ce";

fn plan_for(os_release: &str, source: DockerSource) -> Result<Plan, String> {
    let distro = detect(&parse_os_release(os_release)).map_err(|e| e.to_string())?;
    plan(&distro, source, MIRROR, false, &Conflicts::none()).map_err(|e| e.to_string())
}

fn commands(p: &Plan) -> Vec<String> {
    command_lines(&p.actions, true)
}

#[test]
fn no_plan_ever_upgrades_the_whole_system() {
    for (name, text) in super::super::tests::OS_RELEASES {
        for source in [DockerSource::Auto, DockerSource::Distro, DockerSource::DockerCe] {
            let Ok(p) = plan_for(text, source) else { continue };
            for cmd in commands(&p) {
                let words: Vec<&str> = cmd.split_whitespace().collect();
                for forbidden in ["upgrade", "dist-upgrade", "full-upgrade", "distro-sync"] {
                    assert!(!words.contains(&forbidden), "{name}: {cmd}");
                }
                assert!(!(words.contains(&"update") && (words[0] == "yum" || words[0] == "dnf")), "{name}: {cmd}");
            }
        }
    }
}

#[test]
fn debian_and_ubuntu_use_docker_io_under_auto() {
    let p = plan_for(super::super::tests::os_release("debian-12"), DockerSource::Auto).unwrap();
    assert_eq!(p.package_manager, PackageManager::Apt);
    assert_eq!(p.source, "distro");
    let (scripts, commands): (Vec<String>, Vec<String>) =
        commands(&p).into_iter().partition(|c| c.starts_with("sh -c "));
    assert_eq!(scripts.len(), 1, "the half-installed packages' script");
    assert!(scripts[0].contains("install -y --reinstall $pkgs"), "{scripts:?}");
    assert_eq!(
        commands,
        [
            "dpkg --configure -a",
            "apt-get -o DPkg::Lock::Timeout=600 update",
            "apt-get -o DPkg::Lock::Timeout=600 install -y --fix-broken",
            "apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends docker.io ca-certificates"
        ]
    );
}

#[test]
fn docker_ce_on_apt_adds_the_mirror_repository() {
    let p = plan_for(super::super::tests::os_release("ubuntu-22.04"), DockerSource::DockerCe).unwrap();
    let repo = p
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Write { path, content, .. } if path.ends_with("docker.list") => Some(content.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        repo,
        format!(
            "deb [arch={} signed-by=/etc/apt/keyrings/docker.asc] {MIRROR}/linux/ubuntu jammy stable\n",
            dpkg_arch()
        )
    );
    assert!(commands(&p).contains(&format!(
        "curl -fsSL --retry 3 --create-dirs -o /etc/apt/keyrings/docker.asc {MIRROR}/linux/ubuntu/gpg"
    )));
    assert_eq!(p.packages, ["docker-ce", "docker-ce-cli", "containerd.io"]);
}

#[test]
fn alibaba_cloud_linux_needs_the_releasever_adapter_first() {
    let p = plan_for(super::super::tests::os_release("alinux-3"), DockerSource::Auto).unwrap();
    assert_eq!(p.package_manager, PackageManager::Dnf);
    assert_eq!(
        commands(&p),
        [
            "dnf -y install dnf-plugins-core".to_string(),
            format!("dnf config-manager --add-repo {MIRROR}/linux/centos/docker-ce.repo"),
            format!("sed -i s|https://download.docker.com|{MIRROR}|g /etc/yum.repos.d/docker-ce.repo"),
            "dnf -y install dnf-plugin-releasever-adapter --repo alinux3-plus".to_string(),
            "dnf -y install docker-ce --nobest".to_string(),
        ]
    );
    let p = plan_for(super::super::tests::os_release("alinux-2"), DockerSource::Auto).unwrap();
    assert_eq!(p.package_manager, PackageManager::Yum);
    let cmds = commands(&p);
    let adapter = cmds.iter().position(|c| c.contains("yum-plugin-releasever-adapter")).unwrap();
    let docker = cmds.iter().position(|c| c == "yum -y install docker-ce").unwrap();
    assert!(adapter < docker, "{cmds:?}");
    assert!(cmds[adapter].ends_with("--disablerepo=* --enablerepo=plus"));
    let err = plan_for(super::super::tests::os_release("alinux-3"), DockerSource::Distro).unwrap_err();
    assert!(err.contains("has no Docker package of its own; set [docker] source = \"auto\" or \"docker-ce\""), "{err}");
}

#[test]
fn every_supported_release_gets_a_plan_and_every_other_none() {
    use super::super::tests::OS_RELEASES;
    let mut seen = 0;
    for (name, text) in OS_RELEASES {
        let result = plan_for(text, DockerSource::Auto);
        let want_supported = !super::super::tests::UNSUPPORTED.contains(name);
        match (&result, want_supported) {
            (Ok(p), true) => {
                let expected_pm = match name.split('-').next().unwrap() {
                    "debian" | "ubuntu" => PackageManager::Apt,
                    "alinux" if name.ends_with("-2") => PackageManager::Yum,
                    _ if name.ends_with("-7") => PackageManager::Yum,
                    _ => PackageManager::Dnf,
                };
                assert_eq!(p.package_manager, expected_pm, "{name}");
                assert!(!p.actions.is_empty(), "{name}");
                seen += 1;
            }
            (Err(e), false) => assert!(e.starts_with("cannot install Docker on ID="), "{name}: {e}"),
            (r, _) => panic!("{name}: unexpected {r:?}"),
        }
    }
    assert!(seen >= 15, "{seen} supported fixtures");
}

#[test]
fn step_names_are_the_command_without_options() {
    let p = plan_for(super::super::tests::os_release("debian-12"), DockerSource::Auto).unwrap();
    let names: Vec<String> = p.actions.iter().map(Action::name).collect();
    assert_eq!(
        names,
        [
            "docker: dpkg --configure -a",
            "docker: apt-get update",
            "docker: reinstall half-installed packages",
            "docker: apt-get install -y --fix-broken",
            "docker: apt-get install docker.io"
        ]
    );
}

#[test]
fn a_chrooted_install_forbids_starting_services_and_cleans_up() {
    let distro = detect(&parse_os_release(super::super::tests::os_release("debian-12"))).unwrap();
    let p = plan(&distro, DockerSource::Auto, MIRROR, true, &Conflicts::none()).unwrap();
    assert!(matches!(&p.actions[0], Action::Write { path, mode: 0o755, .. } if path.ends_with("policy-rc.d")));
    assert!(matches!(p.actions.last().unwrap(), Action::Remove { path } if path.ends_with("policy-rc.d")));
}

/// Installed-package lists of real hosts (tests/fixtures/rpm-packages/README.md
/// says where each is from), by file name.
const PACKAGE_LISTS: &[(&str, &str)] = &[
    ("rocky-8-container-image", include_str!("../../../../tests/fixtures/rpm-packages/rocky-8-container-image")),
    ("rhel-8-container-tools", include_str!("../../../../tests/fixtures/rpm-packages/rhel-8-container-tools")),
    ("centos-7-docker", include_str!("../../../../tests/fixtures/rpm-packages/centos-7-docker")),
];

/// The package names of a list: `NAME-[EPOCH:]VERSION-RELEASE.ARCH` lines
/// (rpm -qa, repoquery) or `NAME.ARCH VERSION [REPO]` lines (yum list);
/// other lines (yum's metadata line) are skipped.
fn names(list: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let name = match words.as_slice() {
            [nevra] => {
                let (nevr, _arch) = nevra.rsplit_once('.').expect("an architecture");
                let mut parts = nevr.rsplitn(3, '-');
                let (_release, _version) = (parts.next(), parts.next());
                parts.next().expect("a name").to_string()
            }
            [name_arch, version, ..] if version.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
                name_arch.rsplit_once('.').expect("an architecture").0.to_string()
            }
            _ => continue,
        };
        out.push(name);
    }
    out
}

/// What `rpm -q --qf '%{NAME}\\n' CONFLICTING...` answers on a host with
/// `list` installed, read back as the installer reads it.
fn conflicts_on(list_name: &str, remove: bool) -> Conflicts {
    let list = PACKAGE_LISTS.iter().find(|(n, _)| *n == list_name).expect("a package list by that name").1;
    let installed = names(list);
    let answer: String = CONFLICTING
        .iter()
        .map(|p| {
            if installed.iter().any(|i| i == p) {
                format!("{p}\n")
            } else {
                format!("package {p} is not installed\n")
            }
        })
        .collect();
    Conflicts { installed: parse_rpm_q(&answer, CONFLICTING).unwrap(), remove }
}

fn plan_with(os: &str, list: &str, remove: bool) -> Result<Plan, String> {
    let distro = detect(&parse_os_release(super::super::tests::os_release(os))).unwrap();
    plan(&distro, DockerSource::Auto, MIRROR, false, &conflicts_on(list, remove)).map_err(|e| e.to_string())
}

#[test]
fn the_package_lists_read_as_names() {
    let rocky = names(PACKAGE_LISTS[0].1);
    assert_eq!(rocky.len(), 148);
    assert!(rocky.iter().any(|n| n == "libstdc++") && rocky.iter().any(|n| n == "glibc-minimal-langpack"));
    let tools = names(PACKAGE_LISTS[1].1);
    assert_eq!(tools.len(), 20, "yum's metadata line is not a package");
    for n in ["podman", "runc", "buildah", "crun", "podman-catatonit", "containers-common"] {
        assert!(tools.iter().any(|t| t == n), "{n} in {tools:?}");
    }
    assert_eq!(names(PACKAGE_LISTS[2].1)[..3], ["docker", "docker-client", "docker-common"]);
}

#[test]
fn a_minimal_rocky_8_has_nothing_to_remove_and_the_plan_says_so() {
    let p = plan_with("rocky-8", "rocky-8-container-image", true).unwrap();
    assert!(commands(&p).iter().all(|c| !c.contains(" remove ")), "{:?}", commands(&p));
    assert_eq!(
        p.notes,
        [format!("packages that conflict with docker-ce: none installed (checked: {})", CONFLICTING.join(" "))]
    );
    // Nothing to remove: the key does not matter.
    assert_eq!(plan_with("rocky-8", "rocky-8-container-image", false).unwrap(), p);
}

#[test]
fn container_tools_are_removed_before_the_docker_repository_is_added() {
    for os in ["rocky-8", "almalinux-8", "anolis-8", "alinux-3", "alinux-3-openanolis", "rocky-9"] {
        let p = plan_with(os, "rhel-8-container-tools", true).unwrap();
        let cmds = commands(&p);
        let remove =
            cmds.iter().position(|c| c == "dnf -y remove podman runc").unwrap_or_else(|| panic!("{os}: {cmds:?}"));
        let repo = cmds.iter().position(|c| c.starts_with("dnf config-manager --add-repo")).unwrap();
        assert_eq!(remove + 1, repo, "{os}: {cmds:?}");
        assert!(cmds.last().unwrap().starts_with("dnf -y install docker-ce"), "{os}: {cmds:?}");
        let action = p.actions.iter().find(|a| a.name() == "docker: dnf remove podman runc").unwrap();
        assert!(
            matches!(action, Action::Run { retry: true, needs_lock: true, may_fail: false, .. }),
            "{os}: {action:?}"
        );
        assert_eq!(
            p.notes,
            ["packages that conflict with docker-ce: podman runc installed; removed first, with what needs them ([docker] remove_conflicts = true)"]
        );
    }
}

#[test]
fn with_remove_conflicts_off_installed_conflicts_refuse_the_plan() {
    let err = plan_with("rocky-8", "rhel-8-container-tools", false).unwrap_err();
    assert_eq!(
        err,
        "Rocky Linux 8.7 (Green Obsidian): docker-ce conflicts with the installed podman runc (Docker's install guide removes them first); \
         [docker] remove_conflicts = false forbids removing them, so nothing was changed: set remove_conflicts = true to let \
         the agent remove them (with what needs them), or remove them yourself (dnf remove podman runc)"
    );
    let err = plan_with("centos-7", "centos-7-docker", false).unwrap_err();
    assert!(err.ends_with("(yum remove docker docker-client docker-common)"), "{err}");
}

#[test]
fn the_yum_families_remove_the_distributions_docker_after_finishing_yums_transaction() {
    for os in ["centos-7", "alinux-2"] {
        let p = plan_with(os, "centos-7-docker", true).unwrap();
        let cmds = commands(&p);
        let remove = cmds.iter().position(|c| c == "yum -y remove docker docker-client docker-common").unwrap();
        assert_eq!(cmds[remove - 1], "yum-complete-transaction -y", "{os}: {cmds:?}");
        assert!(cmds[remove + 1].starts_with("yum-config-manager --add-repo"), "{os}: {cmds:?}");
        let names: Vec<String> = p.actions.iter().map(Action::name).collect();
        assert!(names.contains(&"docker: yum remove docker docker-client docker-common".to_string()), "{names:?}");
    }
}

#[test]
fn the_apt_families_ignore_rpm_conflicts() {
    let distro = detect(&parse_os_release(super::super::tests::os_release("debian-12"))).unwrap();
    let conflicts = Conflicts { installed: vec!["runc".into()], remove: false };
    let p = plan(&distro, DockerSource::Auto, MIRROR, false, &conflicts).unwrap();
    assert!(p.notes.is_empty());
    assert!(commands(&p).iter().all(|c| !c.contains("remove")));
}
