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
