//! The driver wait against auto-install logs (constructed from the script's
//! own lines: `agent/src/gpu/fixtures/README.md`) and a stand-in
//! `nvidia-smi`, a test double: no GPU and no driver exist here, so what
//! these tests prove is the wait's reading of the log, its decisions around
//! the reboot and the budget, and its parsing of `nvidia-smi`'s answer; not
//! that a real driver answers that way (docs/gpu.md#what-is-tested).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::*;

const IN_PROGRESS_1: &str = include_str!("../fixtures/in_progress_1.log");
const IN_PROGRESS_2: &str = include_str!("../fixtures/in_progress_2.log");
const OK: &str = include_str!("../fixtures/ok.log");
const FAIL: &str = include_str!("../fixtures/fail.log");
const CUDA_FAIL: &str = include_str!("../fixtures/cuda_fail.log");

/// The stand-in's answer for one T4, as `--query-gpu=driver_version,name --format=csv,noheader` prints it.
const ONE_T4: &str = "440.64.00, Tesla T4";
/// What `nvidia-smi` prints, exit 9, when the module is not loaded (yet).
const NO_DRIVER: &str =
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.";

/// A host in a temporary directory: the log, `/dev`, `/proc/stat`, and the
/// test double `nvidia-smi`.
struct Host {
    dir: tempfile::TempDir,
    paths: DriverPaths,
}

impl Host {
    /// Booted `booted_ago` ago; no log, no device nodes, no `nvidia-smi`.
    fn new(booted_ago: Duration) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("dev")).unwrap();
        std::fs::create_dir_all(root.join("root/auto_install")).unwrap();
        let btime = (SystemTime::now() - booted_ago).duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        std::fs::write(root.join("stat"), format!("cpu  1 2 3 4\nintr 0\nctxt 9\nbtime {btime}\nprocesses 7\n"))
            .unwrap();
        let paths = DriverPaths {
            install_log: root.join("root/auto_install/auto_install.log"),
            dev: root.join("dev"),
            nvidia_smi: root.join("bin/nvidia-smi"),
            proc_stat: root.join("stat"),
        };
        Host { dir, paths }
    }

    /// Writes the log, last written `ago` ago.
    fn log(&self, text: &str, ago: Duration) {
        std::fs::write(&self.paths.install_log, text).unwrap();
        let file = std::fs::File::options().write(true).open(&self.paths.install_log).unwrap();
        file.set_modified(SystemTime::now() - ago).unwrap();
    }

    /// The device nodes, as regular files: the wait only checks they exist.
    fn device_nodes(&self, gpus: usize) {
        std::fs::write(self.paths.dev.join("nvidiactl"), "").unwrap();
        for n in 0..gpus {
            std::fs::write(self.paths.dev.join(format!("nvidia{n}")), "").unwrap();
        }
        std::fs::write(self.paths.dev.join("nvidia-uvm"), "").unwrap();
    }

    /// The test double `nvidia-smi`: prints `out` on stdout with `code`.
    /// Written beside and renamed, so that it never runs half written.
    fn nvidia_smi(&self, out: &str, code: i32) {
        let bin = self.dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let next = bin.join("nvidia-smi.next");
        let script = match code {
            0 => format!("#!/bin/sh\n# test double for nvidia-smi\ncat <<'EOF'\n{out}\nEOF\n"),
            _ => format!("#!/bin/sh\n# test double for nvidia-smi\ncat >&2 <<'EOF'\n{out}\nEOF\nexit {code}\n"),
        };
        std::fs::write(&next, script).unwrap();
        std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&next, &self.paths.nvidia_smi).unwrap();
    }
}

/// Collects the progress messages.
fn recorder() -> (Arc<Mutex<Vec<String>>>, impl FnMut(String)) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |m: String| sink.lock().unwrap().push(m))
}

const MS: Duration = Duration::from_millis(1);
const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn the_logs_read_as_the_script_wrote_them() {
    let r = read_log(IN_PROGRESS_1);
    assert_eq!(r.verdict, Verdict::Running);
    assert_eq!(r.phase, "downloading NVIDIA-Linux-x86_64-440.64.00.run: 12%");
    let r = read_log(IN_PROGRESS_2);
    assert_eq!(r.verdict, Verdict::Running);
    assert_eq!(r.phase, "driver installed; installing CUDA");
    let r = read_log(OK);
    assert_eq!(r.verdict, Verdict::Succeeded);
    assert!(r.phase.contains("ALL INSTALL OK"), "{}", r.phase);
    assert_eq!(r.tail.last().map(String::as_str), Some("reboot......"));
    let r = read_log(FAIL);
    assert_eq!(r.verdict, Verdict::Failed);
    assert_eq!(r.tail.last().map(String::as_str), Some("INSTALL_ERROR: Download driver fail!!! return: 8"));
    assert!(r.tail.iter().any(|l| l.contains("ERROR 404")), "{:?}", r.tail);
    assert_eq!(read_log(CUDA_FAIL).verdict, Verdict::Failed);
}

#[test]
fn the_first_lines_give_the_versions_and_unknown_lines_keep_the_phase() {
    let r = read_log("begin to install, driver: 535.161.07, cuda: 12.2.2, cudnn: 8.9.4.25 \nos:ubuntu\n");
    assert_eq!(r.phase, "started (driver: 535.161.07, cuda: 12.2.2, cudnn: 8.9.4.25)");
    // A later version of the script may write other lines: they change nothing.
    let r = read_log("begin to install\nsomething new 50%\nyet another line\n");
    assert_eq!((r.verdict, r.phase.as_str()), (Verdict::Running, "started"));
    // wget's own progress without a `Saving to:` line, with a carriage return.
    let r = read_log("  1024K .......... .......... 40% 1M 2s\r  2048K .......... .......... 80% 1M 1s\n");
    assert_eq!(r.phase, "downloading: 80%");
    // An empty log (the script has just created it).
    assert_eq!(read_log("").verdict, Verdict::Running);
    // ALL INSTALL OK inside another line is not the verdict.
    assert_eq!(read_log("echo ALL INSTALL OK later\n").verdict, Verdict::Running);
}

#[test]
fn a_failure_wins_over_a_later_ok_and_the_tail_is_bounded() {
    let text = format!("{}ALL INSTALL OK\n", CUDA_FAIL);
    assert_eq!(read_log(&text).verdict, Verdict::Failed);
    let long: String = (0..50).map(|i| format!("line {i} {}\n", "x".repeat(500))).collect();
    let r = read_log(&long);
    assert_eq!(r.tail.len(), 10);
    assert!(r.tail[0].starts_with("line 40 "));
    assert!(r.tail.iter().all(|l| l.chars().count() <= 200));
}

/// The log grows over time (paused clock): the progress follows its phases,
/// and with no verdict the wait ends at the budget, naming it and the log's
/// last lines. No `nvidia-smi` runs while the install runs.
#[tokio::test(start_paused = true)]
async fn a_running_install_is_followed_and_bounded_by_the_budget() {
    let host = Host::new(10 * MINUTE);
    host.log("", Duration::ZERO);
    let log = host.paths.install_log.clone();
    let writer = tokio::spawn(async move {
        let mut written = 0;
        for (after, text) in [(1, IN_PROGRESS_1), (3, IN_PROGRESS_2)] {
            tokio::time::sleep(after * MINUTE).await;
            // Appended, as the script does.
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            std::io::Write::write_all(&mut f, &text.as_bytes()[written..]).unwrap();
            written = text.len();
        }
    });
    let (seen, progress) = recorder();
    let started = tokio::time::Instant::now();
    let err = wait(40 * MINUTE, &host.paths, progress).await.unwrap_err();
    writer.await.unwrap();
    assert_eq!(started.elapsed(), 40 * MINUTE, "the budget, no more, no less");
    let seen = seen.lock().unwrap().clone();
    let phases: Vec<&str> = seen.iter().map(|m| m.rsplit(": ").next().unwrap_or(m)).collect();
    assert!(seen[0].contains("auto_install.log"), "{seen:?}");
    assert!(seen.iter().any(|m| m.ends_with("downloading NVIDIA-Linux-x86_64-440.64.00.run: 12%")), "{seen:?}");
    assert_eq!(phases.last(), Some(&"driver installed; installing CUDA"), "{seen:?}");
    assert_eq!(seen.len(), 3, "one message per phase seen, not one per poll: {seen:?}");
    let DriverError::TimedOut { budget, ref tail, .. } = err else { panic!("{err}") };
    assert_eq!(budget, 40 * MINUTE);
    assert_eq!(tail.last().map(String::as_str), Some("cuda file: cuda_10.2.89_440.33.01_linux.run"));
    let message = err.to_string();
    assert!(message.contains("40m") && message.contains("[gpu] driver_timeout"), "{message}");
    assert!(message.contains("installing CUDA"), "{message}");
    assert_eq!(err.exit_code(), crate::exit::TIMED_OUT);
}

#[tokio::test]
async fn a_failed_install_fails_at_once_with_the_logs_last_lines() {
    let host = Host::new(10 * MINUTE);
    host.log(FAIL, MINUTE);
    host.nvidia_smi(NO_DRIVER, 9);
    let started = std::time::Instant::now();
    let err = wait(40 * MINUTE, &host.paths, |_| {}).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(20));
    let message = err.to_string();
    assert!(matches!(err, DriverError::InstallFailed { .. }), "{message}");
    assert!(message.contains("auto_install.log"), "{message}");
    assert!(message.contains("INSTALL_ERROR: Download driver fail!!! return: 8"), "{message}");
    assert!(message.contains("fix: "), "{message}");
    assert_eq!(err.exit_code(), crate::exit::FAILED);
}

#[tokio::test]
async fn a_failed_install_with_a_driver_that_answers_is_taken() {
    let host = Host::new(10 * MINUTE);
    host.log(CUDA_FAIL, MINUTE);
    host.nvidia_smi(ONE_T4, 0);
    host.device_nodes(1);
    let ready = wait(MINUTE, &host.paths, |_| {}).await.unwrap();
    assert_eq!(ready.install, InstallSeen::FailedButDriverAnswers);
    assert_eq!(ready.gpus, ["Tesla T4"]);
}

/// The log complete before this boot (the install's reboot has happened),
/// the driver not answering at first, then answering: taken then.
#[tokio::test]
async fn after_the_installs_reboot_the_driver_is_waited_for() {
    let host = Host::new(2 * MINUTE);
    host.log(OK, 3 * MINUTE);
    host.nvidia_smi(NO_DRIVER, 9);
    let (seen, progress) = recorder();
    let paths = host.paths.clone();
    let (ready, ()) = tokio::join!(wait_polling(Duration::from_secs(20), 20 * MS, &paths, progress), async {
        tokio::time::sleep(300 * MS).await;
        host.device_nodes(1);
        host.nvidia_smi(ONE_T4, 0);
    });
    let ready = ready.unwrap();
    assert_eq!(
        ready,
        DriverReady { version: "440.64.00".into(), gpus: vec!["Tesla T4".into()], install: InstallSeen::Succeeded }
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains("ALL INSTALL OK") && seen[0].contains("exited with 9: NVIDIA-SMI has failed"), "{seen:?}");
}

/// `ALL INSTALL OK` written in this boot: the reboot is coming, so a driver
/// that answers already is not taken (the converge would be cut by it).
#[tokio::test]
async fn before_the_installs_reboot_the_driver_is_not_taken() {
    let host = Host::new(20 * MINUTE);
    host.log(OK, Duration::from_secs(5));
    host.nvidia_smi(ONE_T4, 0);
    host.device_nodes(1);
    let (seen, progress) = recorder();
    let err = wait_polling(Duration::from_millis(300), 20 * MS, &host.paths, progress).await.unwrap_err();
    assert!(matches!(err, DriverError::TimedOut { .. }), "{err}");
    assert!(err.to_string().contains("waiting for its reboot"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    // The same log, long enough ago with no reboot (it never came): taken.
    host.log(OK, REBOOT_GRACE + MINUTE);
    let ready = wait_polling(Duration::from_millis(300), 20 * MS, &host.paths, |_| {}).await.unwrap();
    assert_eq!(ready.install, InstallSeen::Succeeded);
}

#[tokio::test]
async fn an_install_cut_by_a_reboot_fails_unless_the_driver_answers() {
    let host = Host::new(MINUTE);
    host.log(IN_PROGRESS_2, 5 * MINUTE);
    host.nvidia_smi(NO_DRIVER, 9);
    let err = wait(40 * MINUTE, &host.paths, |_| {}).await.unwrap_err();
    assert!(matches!(err, DriverError::Interrupted { .. }), "{err}");
    assert!(err.to_string().contains("restarted during the install"), "{err}");
    host.nvidia_smi(ONE_T4, 0);
    host.device_nodes(1);
    let ready = wait(40 * MINUTE, &host.paths, |_| {}).await.unwrap();
    assert_eq!(ready.install, InstallSeen::UnfinishedButDriverAnswers);
}

/// An image with the driver: no log, the driver answers at once; every GPU named.
#[tokio::test]
async fn without_a_log_a_driver_that_answers_is_taken_at_once() {
    let host = Host::new(MINUTE);
    host.nvidia_smi("535.161.07, NVIDIA A10\n535.161.07, NVIDIA A10", 0);
    host.device_nodes(2);
    let ready = wait(40 * MINUTE, &host.paths, |_| panic!("no progress expected")).await.unwrap();
    assert_eq!(ready.version, "535.161.07");
    assert_eq!(ready.gpus, ["NVIDIA A10", "NVIDIA A10"]);
    assert_eq!(ready.install, InstallSeen::NoLog);
}

#[tokio::test]
async fn without_a_driver_the_wait_says_what_is_missing_and_the_fix() {
    let host = Host::new(MINUTE);
    let (seen, progress) = recorder();
    let err = wait_polling(Duration::from_millis(200), 20 * MS, &host.paths, progress).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("nvidia-smi is not installed yet"), "{message}");
    assert!(message.contains("fix: check that the instance type has a GPU"), "{message}");
    assert_eq!(seen.lock().unwrap().len(), 1);

    // nvidia-smi answers but the device nodes are missing: not ready.
    host.nvidia_smi(ONE_T4, 0);
    let err = wait_polling(Duration::from_millis(100), 20 * MS, &host.paths, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("nvidiactl is missing"), "{err}");
    std::fs::write(host.paths.dev.join("nvidiactl"), "").unwrap();
    let err = wait_polling(Duration::from_millis(100), 20 * MS, &host.paths, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("/nvidia<N> device node"), "{err}");

    // An answer that is not the query's format.
    host.device_nodes(1);
    host.nvidia_smi("No devices were found", 0);
    let err = wait_polling(Duration::from_millis(100), 20 * MS, &host.paths, |_| {}).await.unwrap_err();
    assert!(err.to_string().contains("unexpected line: No devices were found"), "{err}");
}

#[test]
fn the_boot_time_is_read_from_proc_stat() {
    let host = Host::new(Duration::from_secs(3600));
    let boot = boot_time(&host.paths.proc_stat).unwrap();
    let ago = SystemTime::now().duration_since(boot).unwrap();
    assert!(ago >= Duration::from_secs(3599) && ago <= Duration::from_secs(3602), "{ago:?}");
    assert_eq!(boot_time(Path::new("/nonexistent/stat")), None);
    // The real one, where there is one.
    if Path::new("/proc/stat").exists() {
        assert!(boot_time(Path::new("/proc/stat")).is_some());
    }
}

#[test]
fn a_container_booting_its_own_init_boots_when_its_pid_1_started() {
    let host = Host::new(Duration::from_secs(3600));
    let kernel = boot_time(&host.paths.proc_stat).unwrap();
    // PID 1 started 20 minutes after the kernel (a container's init): its start is the boot.
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).unwrap().unwrap() as u64;
    let dir = host.paths.proc_stat.parent().unwrap().join("1");
    std::fs::create_dir_all(&dir).unwrap();
    // Fields 3 (the state) to 52 after the name; field 22 is the start.
    let mut fields = vec!["0"; 50];
    let start = (20 * 60 * ticks).to_string();
    fields[0] = "S";
    fields[22 - 3] = &start;
    std::fs::write(dir.join("stat"), format!("1 (systemd (odd) name) {}\n", fields.join(" "))).unwrap();
    assert_eq!(boot_time(&host.paths.proc_stat).unwrap(), kernel + Duration::from_secs(20 * 60));
    assert_eq!(init_started("garbage"), None);
    // The real one, where there is one: not before the kernel's boot, not in the future.
    if Path::new("/proc/1/stat").exists() {
        let booted = boot_time(Path::new("/proc/stat")).unwrap();
        assert!(booted <= SystemTime::now());
    }
}
