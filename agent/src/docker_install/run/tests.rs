use super::*;

#[test]
fn transient_failures_are_told_apart() {
    assert!(is_transient(
        "apt-get",
        Some(100),
        "E: Failed to fetch http://mirror/x  Temporary failure resolving 'mirror'"
    ));
    assert!(is_transient("dnf", Some(1), "Errors during downloading metadata for repository 'docker-ce-stable'"));
    assert!(is_transient("curl", Some(28), ""));
    assert!(!is_transient("apt-get", Some(100), "E: Unable to locate package docker.io"));
    assert!(!is_transient("curl", Some(22), "The requested URL returned error: 404"));
}

#[test]
fn locks_held_by_flock_by_record_locks_and_by_pid_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lock-frontend");
    fs::write(&path, "").unwrap();
    assert!(!lock_is_held(&path));
    assert!(!lock_is_held(&dir.path().join("missing")));

    // flock(1) from another process, as the test of a held dpkg lock does.
    let mut holder =
        std::process::Command::new("flock").arg("--no-fork").arg(&path).args(["sleep", "30"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lock_is_held(&path) {
        assert!(Instant::now() < deadline, "flock never seen");
        std::thread::sleep(Duration::from_millis(20));
    }
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(!lock_is_held(&path));

    // A POSIX record lock (what dpkg and apt take), from another process.
    let script = format!("import fcntl, time\nf = open({path:?}, 'r+')\nfcntl.lockf(f, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(30)");
    let mut holder = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line.trim(), "locked");
    assert!(lock_is_held(&path));
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(!lock_is_held(&path));

    let pid_file = dir.path().join("yum.pid");
    fs::write(&pid_file, std::process::id().to_string()).unwrap();
    assert!(lock_is_held(&pid_file));
    fs::write(&pid_file, "999999999").unwrap();
    assert!(!lock_is_held(&pid_file));
}

fn executor(dir: &Path) -> Executor {
    Executor {
        root: PathBuf::from("/"),
        package_manager: PackageManager::Apt,
        log: Some(dir.join("log/install.log")),
        lock_timeout: Duration::from_secs(5),
    }
}

fn sh(script: &str, retry: bool) -> Action {
    Action::Run {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("GREETING".into(), "hello".into())],
        timeout: Duration::from_secs(5),
        retry,
        needs_lock: false,
        may_fail: false,
    }
}

#[tokio::test]
async fn a_failed_command_is_named_with_its_exit_code_and_stderr_tail() {
    let dir = tempfile::tempdir().unwrap();
    let err =
        executor(dir.path()).run(&sh("echo noise; echo first >&2; echo E: no such package >&2; exit 3", true)).await;
    assert_eq!(
        err.unwrap_err().to_string(),
        "`sh -c echo noise; echo first >&2; echo E: no such package >&2; exit 3` exited with 3: first | E: no such package"
    );
    // The output is captured in the install log, mode 0600.
    let log = std::fs::read_to_string(dir.path().join("log/install.log")).unwrap();
    assert!(log.contains("noise") && log.contains("E: no such package"), "{log}");
    let mode = std::fs::metadata(dir.path().join("log/install.log")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn transient_failures_are_retried_and_timeouts_named() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("tried");
    let script = format!(
        "if [ -e {m} ]; then echo $GREETING; else touch {m}; echo 'Temporary failure resolving mirror' >&2; exit 100; fi",
        m = marker.display()
    );
    assert_eq!(executor(dir.path()).run(&sh(&script, true)).await.unwrap(), "done after 2 attempts");
    // Not retried when the action says so.
    std::fs::remove_file(&marker).unwrap();
    assert!(executor(dir.path()).run(&sh(&script, false)).await.is_err());
    let slow = Action::Run {
        argv: vec!["sleep".into(), "10".into()],
        env: vec![],
        timeout: Duration::from_millis(200),
        retry: false,
        needs_lock: false,
        may_fail: false,
    };
    assert_eq!(
        executor(dir.path()).run(&slow).await.unwrap_err().to_string(),
        "`sleep 10` did not finish within 200ms"
    );
}

#[tokio::test]
async fn files_are_written_and_removed_below_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let mut ex = executor(dir.path());
    ex.root = dir.path().to_path_buf();
    let path = PathBuf::from("/etc/apt/sources.list.d/docker.list");
    ex.run(&Action::Write { path: path.clone(), content: "deb x y\n".into(), mode: 0o644 }).await.unwrap();
    let target = dir.path().join("etc/apt/sources.list.d/docker.list");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "deb x y\n");
    assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o644);
    assert_eq!(ex.run(&Action::Remove { path: path.clone() }).await.unwrap(), "removed");
    assert_eq!(ex.run(&Action::Remove { path }).await.unwrap(), "already gone");
}

#[tokio::test]
async fn output_is_streamed_line_by_line_as_it_comes() {
    let dir = tempfile::tempdir().unwrap();
    let ex = executor(dir.path());
    let action = sh(
        "echo 'Unpacking docker.io'; echo 'progress 10%\rprogress 99%' >&2; sleep 2; echo 'Setting up docker.io'",
        false,
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let run = ex.run_with_lines(&action, Some(tx));
    tokio::pin!(run);
    // The first lines arrive while the command still runs.
    let mut early = Vec::new();
    while early.len() < 2 {
        tokio::select! {
            _ = &mut run => panic!("the command ended before its first lines were seen: {early:?}"),
            Some(line) = rx.recv() => early.push(line),
        }
    }
    early.sort();
    assert_eq!(early, ["Unpacking docker.io", "progress 99%"]);
    let log = std::fs::read_to_string(dir.path().join("log/install.log")).unwrap();
    assert!(
        log.lines().any(|l| l == "Unpacking docker.io") && !log.lines().any(|l| l == "Setting up docker.io"),
        "logged as it comes: {log}"
    );
    assert_eq!(run.await.unwrap(), "done");
    assert_eq!(rx.recv().await.as_deref(), Some("Setting up docker.io"));
    let log = std::fs::read_to_string(dir.path().join("log/install.log")).unwrap();
    assert!(log.lines().any(|l| l == "Setting up docker.io"), "{log}");
}

#[test]
fn tails_are_short() {
    assert_eq!(tail_lines("a\n\nb\nc\n", 2), "b | c");
    assert_eq!(tail_lines("", 2), "(no error output)");
}

/// A root for `chroot` with busybox's shell and tools (and the libraries
/// it links), for plans run against stand-ins of a package manager.
fn busybox_root(root: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(busybox.exists(), "these tests need busybox (Debian's busybox package)");
    let copy = |from: &Path| {
        let to = root.join(from.strip_prefix("/").unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, &to).unwrap();
    };
    copy(busybox);
    let ldd = std::process::Command::new("ldd").arg(busybox).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line.split("=>").last().unwrap().split_whitespace().next().unwrap_or_default();
        if path.starts_with('/') {
            copy(Path::new(path));
        }
    }
    for tool in ["sh", "cat", "cp", "rm", "sed", "mkdir", "touch", "echo", "test", "[", "mv", "ls"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
    }
}

/// Writes an executable shell script at `rel` below `root`.
fn script(root: &Path, rel: &str, body: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// yum's roll-forward of an interrupted install, run as the Alibaba Cloud
/// Linux 2 plan runs it, in a chroot whose yum is a stand-in: no yum exists
/// for this Debian test machine, and a real yum root needs CentOS's
/// packages, which it cannot reach, so yum's documented behaviour is
/// scripted here: an install killed midway leaves `docker-ce` in the rpm
/// database, its dependency `containerd.io` missing, the transaction's
/// journal in /var/lib/yum, and yum.pid naming the killed process; `yum
/// install docker-ce` then says "already installed" and installs nothing
/// more, and only `yum-complete-transaction` (from yum-utils) finishes the
/// journal. The plan must roll forward after yum-utils and before the
/// install, and the dead process's pid file must not hold it up.
#[tokio::test]
async fn an_interrupted_yum_install_is_rolled_forward_before_docker_ce_is_installed() {
    use super::super::distro::{detect, parse_os_release};
    use super::super::plan::{plan, Conflicts};
    use crate::config::DockerSource;

    for fixture in ["alinux-2", "centos-7"] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        interrupted_yum_root(&root);
        let os_release = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/os-release").join(fixture),
        )
        .unwrap();
        let distro = detect(&parse_os_release(&os_release)).unwrap();
        let p =
            plan(&distro, DockerSource::Auto, "https://mirror.example/docker-ce", true, &Conflicts::none()).unwrap();
        assert_eq!(p.package_manager, PackageManager::Yum, "{fixture}");
        let ex = Executor {
            root: root.clone(),
            package_manager: PackageManager::Yum,
            log: Some(dir.path().join("log/install.log")),
            lock_timeout: Duration::from_secs(2),
        };
        let started = Instant::now();
        ex.run_steps(&p.actions, |a| format!("{a:?}"), &mut Quiet).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "{fixture}: the dead yum's pid file held it up");

        let calls = std::fs::read_to_string(root.join("calls")).unwrap();
        let calls: Vec<&str> = calls.lines().collect();
        let at = |prefix: &str| {
            calls.iter().position(|c| c.starts_with(prefix)).unwrap_or_else(|| panic!("{fixture}: {prefix}: {calls:?}"))
        };
        assert!(at("yum -y install yum-utils") < at("yum-complete-transaction -y"), "{fixture}: {calls:?}");
        assert!(at("yum-complete-transaction -y") < at("yum -y install docker-ce"), "{fixture}: {calls:?}");
        for package in ["docker-ce", "docker-ce-cli", "containerd.io"] {
            let installed = root.join("var/lib/fake-rpmdb").join(package).exists();
            assert!(installed, "{fixture}: {package} is not installed: {calls:?}");
        }
        assert!(!root.join("var/lib/yum/transaction-all.1").exists(), "{fixture}: the journal is finished");
        let repo = std::fs::read_to_string(root.join("etc/yum.repos.d/docker-ce.repo")).unwrap();
        assert!(repo.contains("https://mirror.example/docker-ce/linux/centos"), "{fixture}: {repo}");
    }
}

struct Quiet;

impl Progress for Quiet {
    fn begin(&mut self, _: &str) {}
    fn done(&mut self, _: &str, _: String) {}
}

/// A busybox root with yum's stand-ins, as an install killed midway left
/// it (see the test above).
fn interrupted_yum_root(root: &Path) {
    busybox_root(root);
    let db = "/var/lib/fake-rpmdb";
    script(
        root,
        "usr/bin/yum",
        &format!(
            "echo \"yum $*\" >> /calls\nmkdir -p {db}\n\
             [ -e /var/lib/yum/transaction-all.1 ] && echo 'There are unfinished transactions remaining. You might consider running yum-complete-transaction first to finish them.' >&2\n\
             for p in \"$@\"; do case $p in -*|install) continue;; esac\n\
               if [ -e {db}/$p ]; then echo \"Package $p already installed and latest version\"; else touch {db}/$p; echo \"Installed: $p\"; fi\n\
               [ $p = yum-utils ] && cp /opt/yum-utils/* /usr/bin/\n\
             done\nexit 0\n"
        ),
    );
    script(
        root,
        "opt/yum-utils/yum-complete-transaction",
        &format!(
            "echo \"yum-complete-transaction $*\" >> /calls\n\
             if [ -e /var/lib/yum/transaction-all.1 ]; then for p in $(cat /var/lib/yum/transaction-all.1); do touch {db}/$p; done\n\
               rm /var/lib/yum/transaction-all.1; echo 'Finished the unfinished transaction'\n\
             else echo 'No unfinished transactions left.'; fi\n"
        ),
    );
    script(
        root,
        "opt/yum-utils/yum-config-manager",
        "echo \"yum-config-manager $*\" >> /calls\nmkdir -p /etc/yum.repos.d\n\
         echo 'baseurl=https://download.docker.com/linux/centos/$releasever/$basearch/stable' > /etc/yum.repos.d/docker-ce.repo\n",
    );
    // What the killed install left.
    std::fs::create_dir_all(root.join("var/lib/fake-rpmdb")).unwrap();
    std::fs::write(root.join("var/lib/fake-rpmdb/docker-ce"), "").unwrap();
    std::fs::create_dir_all(root.join("var/lib/yum")).unwrap();
    std::fs::write(root.join("var/lib/yum/transaction-all.1"), "docker-ce-cli containerd.io\n").unwrap();
    let mut killed = std::process::Command::new("true").spawn().unwrap();
    killed.wait().unwrap();
    std::fs::create_dir_all(root.join("var/run")).unwrap();
    std::fs::write(root.join("var/run/yum.pid"), killed.id().to_string()).unwrap();
    std::fs::create_dir_all(root.join("var/lib/rpm")).unwrap();
    std::fs::write(root.join("var/lib/rpm/.rpm.lock"), "").unwrap();
}
