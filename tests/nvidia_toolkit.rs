//! `jupyter-agent install-nvidia-toolkit` end to end (docs/gpu.md#the-nvidia-container-toolkit):
//! the plans printed for published os-release files, refusals that change
//! nothing, and the plan carried out by the real apt into a fresh Debian
//! root, from a signed local repository in NVIDIA's layout.
//!
//! Neither NVIDIA's repository nor Debian's own archive (bookworm, its
//! updates and backports, main contrib non-free non-free-firmware: no
//! `nvidia-container-toolkit` nor `libnvidia-container*`) can supply the
//! packages here, so that repository holds test doubles: packages built
//! with `dpkg-deb` under the toolkit's four names, with the versions and
//! the `Depends`, `Breaks` and `Replaces` NVIDIA publishes for them
//! (tests/fixtures/nvidia-packages/), whose files are stand-in scripts that
//! say so. What apt does with them is real: the signed repository, the
//! key, the dependency resolution (down to Debian's own libc6, libcap2,
//! libseccomp2), the install.

use std::path::Path;
use std::process::Command;

use crate::common::env::Env;
use crate::common::roots::{config, fake_root, snapshot};

#[test]
fn dry_runs_print_the_exact_plan_and_change_nothing() {
    let env = Env::new("nvdryrun");
    config(&env, "");
    let debian = fake_root(&env, "debian-12");
    std::fs::create_dir_all(debian.join("etc/docker")).unwrap();
    std::fs::write(debian.join("etc/docker/daemon.json"), "{\"log-level\": \"warn\"}\n").unwrap();
    let before = snapshot(&debian);
    let run = env.agent(&["install-nvidia-toolkit", "--dry-run", "--root", debian.to_str().unwrap()]).expect(0);
    let nvidia = "https://nvidia.github.io/libnvidia-container";
    let want = [
        format!("distribution: Debian GNU/Linux 12 (bookworm) (debian 12); package manager: apt; source: {nvidia}; packages: nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1"),
        format!("every command runs as: chroot {} COMMAND", debian.display()),
        "write /usr/sbin/policy-rc.d (mode 0755):".into(),
        "remove /etc/apt/sources.list.d/nvidia-container-toolkit.list".into(),
        "run   DEBIAN_FRONTEND=noninteractive dpkg --configure -a   (timeout 20m, may fail)".into(),
        "run   DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update   (timeout 10m, retried)".into(),
        "run   DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends ca-certificates curl   (timeout 20m, retried)".into(),
        format!("run   curl -fsSL --retry 3 --create-dirs -o /etc/apt/keyrings/nvidia-container-toolkit.asc {nvidia}/gpgkey   (timeout 2m, retried)"),
        "write /etc/apt/sources.list.d/nvidia-container-toolkit.list (mode 0644):".into(),
        format!("        deb [signed-by=/etc/apt/keyrings/nvidia-container-toolkit.asc] {nvidia}/stable/deb/$(ARCH) /"),
        "run   DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1   (timeout 20m, retried)".into(),
        "remove /usr/sbin/policy-rc.d".into(),
        "write /etc/docker/daemon.json (mode 0644):".into(),
        "          \"log-level\": \"warn\",".into(),
        "              \"path\": \"nvidia-container-runtime\"".into(),
    ];
    for line in &want {
        assert!(run.stdout.lines().any(|l| l == line), "missing line {line:?} in:\n{}", run.stdout);
    }
    assert!(!run.stdout.contains("upgrade"), "{}", run.stdout);
    assert!(!run.stdout.contains("restart dockerd"), "nothing is restarted below another root:\n{}", run.stdout);
    assert_eq!(snapshot(&debian), before, "a dry run changes nothing");
    assert!(!env.state_dir().exists(), "a dry run writes no state");

    // Alibaba Cloud Linux 3 from a mirror: NVIDIA's .repo file, pointed at it, and dnf.
    let env = Env::new("nvdryrun-alinux");
    config(&env, "nvidia_toolkit_repository = \"https://mirror.example/libnvidia-container/\"");
    let alinux = fake_root(&env, "alinux-3");
    let run = env.agent(&["install-nvidia-toolkit", "--dry-run", "--root", alinux.to_str().unwrap()]).expect(0);
    for line in [
        "write /etc/yum.repos.d/nvidia-container-toolkit.repo (mode 0644):",
        "        baseurl=https://mirror.example/libnvidia-container/stable/rpm/$basearch",
        "        gpgkey=https://mirror.example/libnvidia-container/gpgkey",
        "run   dnf -y install nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1   (timeout 20m, retried)",
    ] {
        assert!(run.stdout.lines().any(|l| l == line), "missing line {line:?} in:\n{}", run.stdout);
    }
    assert!(!run.stdout.contains("nvidia.github.io"), "{}", run.stdout);
    assert_eq!(std::fs::read_dir(&alinux).unwrap().count(), 1, "nothing was written into the root");
    assert!(!env.state_dir().exists());
}

#[test]
fn refusals_name_the_input_and_change_nothing() {
    let env = Env::new("nvrefuse");
    config(&env, "");
    // A distribution the installer does not know: exit 6.
    let fedora = fake_root(&env, "fedora-40");
    for args in [vec!["install-nvidia-toolkit", "--dry-run"], vec!["install-nvidia-toolkit"]] {
        let mut args = args.clone();
        args.extend(["--root", fedora.to_str().unwrap()]);
        let run = env.agent(&args).expect(6);
        assert!(
            run.stderr.contains("the agent cannot install the NVIDIA Container Toolkit on ID=fedora VERSION_ID=40: this distribution is not one the installer knows; supported: Alibaba Cloud Linux 2 and 3"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(std::fs::read_dir(&fedora).unwrap().count(), 1, "nothing was written into the root");
    assert!(!env.state_dir().exists(), "a refusal writes no state");

    // A daemon.json the runtime cannot be merged into: named, left as it is, nothing installed.
    let debian = fake_root(&env, "debian-12");
    std::fs::create_dir_all(debian.join("etc/docker")).unwrap();
    std::fs::write(debian.join("etc/docker/daemon.json"), "{\"runtimes\": [\"nvidia\"]}").unwrap();
    let before = snapshot(&debian);
    for args in [vec!["install-nvidia-toolkit", "--dry-run"], vec!["install-nvidia-toolkit"]] {
        let mut args = args.clone();
        args.extend(["--root", debian.to_str().unwrap()]);
        let run = env.agent(&args).expect(1);
        assert!(
            run.stderr.contains("daemon.json is not valid Docker daemon configuration (\"runtimes\" is not an object); it was left untouched, so Docker does not know the nvidia runtime: fix the file"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(snapshot(&debian), before);
    assert!(!env.state_dir().exists());

    // A repository that is not a URL: exit 2, naming the key.
    config(&env, "nvidia_toolkit_repository = \"mirror.example/nvidia\"");
    let run = env.agent(&["install-nvidia-toolkit", "--dry-run", "--root", debian.to_str().unwrap()]).expect(2);
    assert!(run.stderr.contains("[docker] nvidia_toolkit_repository = \"mirror.example/nvidia\": expected an https:// (or http://) URL, or file:///DIR"), "{}", run.stderr);
    env.agent(&["install-nvidia-toolkit", "--root", "relative/root"]).expect(2);
}

/// Runs `script` with bash, failing the test with its output if it fails.
fn bash(script: &str, envs: &[(&str, &Path)]) -> String {
    let out = Command::new("bash").args(["-euc", script]).envs(envs.iter().map(|(k, v)| (k, v))).output().unwrap();
    assert!(
        out.status.success(),
        "{script}\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The test doubles' control fields: NVIDIA's published stanza of each
/// package (Package, Version, Depends, Breaks, Replaces), for this
/// machine's architecture, with a description that says what they are.
fn double_control(stanza: &str, arch: &str) -> String {
    let mut out = String::new();
    for line in stanza.lines() {
        let keep = ["Package:", "Version:", "Depends:", "Breaks:", "Replaces:", "Section:", "Priority:", "Maintainer:"];
        if keep.iter().any(|k| line.starts_with(k)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    let name = stanza.lines().find_map(|l| l.strip_prefix("Package: ")).unwrap();
    out.push_str(&format!(
        "Architecture: {arch}\nDescription: test double of NVIDIA's {name} (jupyter-agent's tests)\n \
         Built by tests/nvidia_toolkit.rs with NVIDIA's published dependencies; no NVIDIA code.\n"
    ));
    out
}

/// The files of each double: stand-in commands that say they are one.
fn double_files(name: &str) -> &'static [&'static str] {
    match name {
        "nvidia-container-toolkit-base" => &["usr/bin/nvidia-container-runtime", "usr/bin/nvidia-ctk"],
        "nvidia-container-toolkit" => &["usr/bin/nvidia-container-runtime-hook"],
        "libnvidia-container-tools" => &["usr/bin/nvidia-container-cli"],
        _ => &[],
    }
}

/// Builds the doubles and a signed flat repository of them at
/// `repo/stable/deb/<arch>/` (NVIDIA's layout), with its public key at
/// `repo/gpgkey`, as NVIDIA serves it. `gnupg`: a short directory for gpg.
fn signed_repository(repo: &Path, gnupg: &Path) {
    let arch = bash("dpkg --print-architecture", &[]).trim().to_string();
    let published = include_str!("fixtures/nvidia-packages/stable-deb-amd64-Packages");
    let dir = repo.join("stable/deb").join(&arch);
    std::fs::create_dir_all(&dir).unwrap();
    let build = repo.parent().unwrap().join("build");
    for stanza in published.split("\n\n").filter(|s| !s.trim().is_empty()) {
        let name = stanza.lines().find_map(|l| l.strip_prefix("Package: ")).unwrap();
        let version = stanza.lines().find_map(|l| l.strip_prefix("Version: ")).unwrap();
        let tree = build.join(name);
        std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
        std::fs::write(tree.join("DEBIAN/control"), double_control(stanza, &arch)).unwrap();
        let doc = tree.join("usr/share/doc").join(name);
        std::fs::create_dir_all(&doc).unwrap();
        std::fs::write(doc.join("TEST-DOUBLE"), "a stand-in for NVIDIA's package, built by jupyter-agent's tests\n")
            .unwrap();
        for file in double_files(name) {
            let path = tree.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "#!/bin/sh\necho \"test double of NVIDIA's $0: no GPU here\" >&2\nexit 1\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let deb = dir.join(format!("{name}_{version}_{arch}.deb"));
        bash("dpkg-deb --root-owner-group --build \"$TREE\" \"$DEB\" >/dev/null", &[("TREE", &tree), ("DEB", &deb)]);
    }
    // The index and its signed Release, as a flat repository has them.
    bash(
        "cd \"$DIR\"\n\
         dpkg-scanpackages --multiversion . /dev/null > Packages 2>/dev/null\n\
         { echo \"Date: $(LC_ALL=C date -Ru)\"; echo 'SHA256:';\n\
           printf ' %s %s Packages\\n' \"$(sha256sum Packages | cut -d' ' -f1)\" \"$(stat -c %s Packages)\"; } > Release\n\
         export GNUPGHOME=\"$GNUPG\"\n\
         gpg --batch --quiet --passphrase '' --quick-gen-key 'jupyter-agent test repository <test@localhost>' ed25519 sign never 2>/dev/null\n\
         gpg --batch --quiet --yes --clearsign -o InRelease Release\n\
         gpg --batch --quiet --armor --export > \"$REPO/gpgkey\"\n\
         gpgconf --kill gpg-agent || true",
        &[("DIR", &dir), ("GNUPG", gnupg), ("REPO", repo)],
    );
}

fn dpkg_status(root: &Path, package: &str) -> String {
    let out = Command::new("chroot")
        .arg(root)
        .args(["dpkg-query", "-W", "-f=${Status} ${Version}", package])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The plan carried out by the real apt into a fresh Debian root, from a
/// signed local repository of test doubles (module doc): with the wrong
/// key apt refuses the repository and nothing is installed; with the
/// repository's own key the four packages install and daemon.json gains
/// the runtime.
#[test]
fn a_real_install_into_a_debian_root_from_a_signed_repository_of_test_doubles() {
    let env = Env::new("nvinstall");
    config(&env, "nvidia_toolkit_repository = \"file:///srv/nvidia/libnvidia-container\"");
    let root = env.path("debian");
    crate::common::debian_root::debian_root(&root);
    assert_eq!(dpkg_status(&root, "nvidia-container-toolkit"), "", "the fresh root has no toolkit");
    std::fs::create_dir_all(root.join("etc/docker")).unwrap();
    std::fs::write(root.join("etc/docker/daemon.json"), "{\"log-level\": \"warn\"}\n").unwrap();

    // The repository inside the root (apt and curl run in `chroot`), signed;
    // first with another key published beside it.
    let repo = root.join("srv/nvidia/libnvidia-container");
    let gnupg = tempfile::Builder::new().prefix("ja-gpg").tempdir_in("/tmp").unwrap();
    signed_repository(&repo, gnupg.path());
    let right_key = std::fs::read(repo.join("gpgkey")).unwrap();
    let other = tempfile::Builder::new().prefix("ja-gpg").tempdir_in("/tmp").unwrap();
    bash(
        "export GNUPGHOME=\"$GNUPG\"\n\
         gpg --batch --quiet --passphrase '' --quick-gen-key 'someone else <else@localhost>' ed25519 sign never 2>/dev/null\n\
         gpg --batch --quiet --armor --export > \"$REPO/gpgkey\"\ngpgconf --kill gpg-agent || true",
        &[("GNUPG", other.path()), ("REPO", &repo)],
    );
    let root_arg = root.to_str().unwrap();
    let run = env.agent(&["install-nvidia-toolkit", "--root", root_arg]).expect(1);
    assert!(run.stderr.contains("toolkit: apt-get update"), "{}", run.stderr);
    assert!(run.stderr.contains("is not signed") || run.stderr.contains("NO_PUBKEY"), "{}", run.stderr);
    let state = env.state();
    assert_eq!(state["phase"], "failed", "{state}");
    assert_eq!(state["error"]["step"], "toolkit: apt-get update", "{state}");
    assert_eq!(dpkg_status(&root, "nvidia-container-toolkit"), "", "nothing installed from a repository apt refuses");
    assert_eq!(std::fs::read_to_string(root.join("etc/docker/daemon.json")).unwrap(), "{\"log-level\": \"warn\"}\n");

    // With the repository's own key: installed, and the runtime registered.
    // The first run left its source and the wrong key in the root: the plan
    // takes the source away before its first `apt-get update`, and renews the key.
    std::fs::write(repo.join("gpgkey"), &right_key).unwrap();
    let run = env.agent(&["install-nvidia-toolkit", "--root", root_arg]).expect(0);
    assert_eq!(
        run.stdout,
        format!(
            "installed nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1 into {root_arg}; added the nvidia runtime to /etc/docker/daemon.json there\n"
        )
    );
    for package in [
        "nvidia-container-toolkit",
        "nvidia-container-toolkit-base",
        "libnvidia-container-tools",
        "libnvidia-container1",
    ] {
        assert_eq!(dpkg_status(&root, package), "install ok installed 1.17.2-1", "{package}");
    }
    // Debian's own dependency of NVIDIA's libnvidia-container1 came from Debian.
    assert!(dpkg_status(&root, "libseccomp2").starts_with("install ok installed"));
    assert!(root.join("usr/bin/nvidia-container-runtime").is_file());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/apt/sources.list.d/nvidia-container-toolkit.list")).unwrap(),
        "deb [signed-by=/etc/apt/keyrings/nvidia-container-toolkit.asc] file:///srv/nvidia/libnvidia-container/stable/deb/$(ARCH) /\n"
    );
    assert_eq!(std::fs::read(root.join("etc/apt/keyrings/nvidia-container-toolkit.asc")).unwrap(), right_key);
    let daemon: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("etc/docker/daemon.json")).unwrap()).unwrap();
    assert_eq!(
        daemon,
        serde_json::json!({"log-level": "warn", "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}})
    );
    assert!(!root.join("usr/sbin/policy-rc.d").exists(), "the temporary policy-rc.d is removed");

    // The steps in the state, each done, in the installing-docker phase.
    let state = env.state();
    assert_eq!(state["phase"], "pending", "{state}");
    let steps = state["steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "toolkit: plan",
            "toolkit: write /usr/sbin/policy-rc.d",
            "toolkit: remove /etc/apt/sources.list.d/nvidia-container-toolkit.list",
            "toolkit: dpkg --configure -a",
            "toolkit: apt-get update",
            "toolkit: reinstall half-installed packages",
            "toolkit: apt-get install -y --fix-broken",
            "toolkit: apt-get install ca-certificates",
            "toolkit: download the repository key file:///srv/nvidia/libnvidia-container/gpgkey",
            "toolkit: write /etc/apt/sources.list.d/nvidia-container-toolkit.list",
            "toolkit: apt-get update",
            "toolkit: apt-get install nvidia-container-toolkit",
            "toolkit: remove /usr/sbin/policy-rc.d",
            "toolkit: daemon.json nvidia runtime",
        ]
    );
    for s in steps {
        assert_eq!(s["status"], "done", "{s}");
        assert_eq!(s["phase"], "installing-docker", "{s}");
    }
    let log = std::fs::read_to_string(env.path("log/install-nvidia-toolkit.log")).unwrap();
    assert!(log.contains("Setting up nvidia-container-toolkit (1.17.2-1)"), "{log}");
}

/// On this host, against its real engine (which offers no `nvidia`
/// runtime): the dry run asks the engine, then prints the host's plan,
/// the restart and the check, and changes nothing.
#[test]
fn a_dry_run_on_this_host_asks_the_engine_and_changes_nothing() {
    let env = Env::new("nvdryhost");
    config(&env, "");
    let daemon_json = std::fs::read("/etc/docker/daemon.json").ok();
    let run = env.agent(&["install-nvidia-toolkit", "--dry-run"]).expect(0);
    let info = crate::common::docker(&["info", "--format", "{{json .Runtimes}}"]);
    let runtimes: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(runtimes.get("runc").is_some() && runtimes.get("nvidia").is_none(), "{runtimes}");
    let os = std::fs::read_to_string("/etc/os-release").unwrap();
    let pretty = os.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).unwrap().trim_matches('"');
    assert!(run.stdout.starts_with(&format!("distribution: {pretty} (")), "{}", run.stdout);
    assert!(!run.stdout.contains("chroot"), "{}", run.stdout);
    let restart = if Path::new("/run/systemd/system").is_dir() {
        "restart dockerd: systemctl restart docker".to_string()
    } else {
        format!(
            "restart dockerd: SIGTERM to the pid in /var/run/docker.pid (else {}), then start dockerd detached, log {}",
            env.state_dir().join("dockerd.pid").display(),
            env.path("log/dockerd.log").display()
        )
    };
    assert!(run.stdout.lines().any(|l| l == restart), "missing {restart:?} in:\n{}", run.stdout);
    assert!(run.stdout.ends_with("check: the engine's Runtimes (docker info) include nvidia\n"), "{}", run.stdout);
    assert_eq!(std::fs::read("/etc/docker/daemon.json").ok(), daemon_json, "daemon.json is untouched");
    assert!(!env.state_dir().exists(), "a dry run writes no state");
}
