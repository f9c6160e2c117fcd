//! The host's NVIDIA driver, waited for (docs/gpu.md#the-driver).
//!
//! On a GPU instance the driver is either in the image already or being
//! installed by Alibaba's auto-install script, which the instance's user data
//! runs at first boot: 10 to 20 minutes, its log in
//! `/root/auto_install/auto_install.log`, `ALL INSTALL OK` at the end, then a
//! reboot. [`wait`] waits, within a budget (`[gpu] driver_timeout`), until
//! the driver answers: the device nodes (`/dev/nvidiactl`, `/dev/nvidia<N>`)
//! exist and `nvidia-smi --query-gpu=driver_version,name --format=csv,noheader`
//! names at least one GPU.
//!
//! While the log is there it decides:
//!
//! | the log | what the wait does |
//! |---|---|
//! | absent | waits for the driver (an image with the driver answers at once) |
//! | running (no verdict yet) | reports its phase as the step's progress; does not take the driver, since a reboot is coming |
//! | `INSTALL FAIL` / `INSTALL_ERROR` | fails with the log's last lines (unless the driver answers all the same) |
//! | `ALL INSTALL OK`, written before this boot | the install's reboot has happened: waits for the driver |
//! | `ALL INSTALL OK`, written in this boot | waits for the install's reboot (the agent is stopped by it and converges again at boot); after [`REBOOT_GRACE`] without one, takes the driver if it answers |
//! | running, but written before this boot | the install was cut by a reboot: fails, unless the driver answers |
//!
//! The wait keeps nothing of its own: after the reboot the same call reads
//! the same log, finds it older than the boot, and the driver answering, so
//! the step resumes where the reboot cut it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// How often the log is read and the driver probed.
const POLL: Duration = Duration::from_secs(5);
/// The longest one `nvidia-smi` may take (it can hang while a module loads).
const SMI_TIMEOUT: Duration = Duration::from_secs(30);
/// The script sleeps 60 s after `ALL INSTALL OK`, then reboots. Past this
/// without a reboot, a driver that answers is taken as it is.
pub const REBOOT_GRACE: Duration = Duration::from_secs(5 * 60);
/// A log written less than this before the boot time counts as written in
/// this boot: the boot time (`btime`) follows later corrections of the clock,
/// the log's time does not.
const CLOCK_MARGIN: Duration = Duration::from_secs(30);
/// How many of the log's last lines a failure shows.
const TAIL_LINES: usize = 10;

/// What the wait looks at; parameters so that tests point them at a
/// temporary directory (and a stand-in `nvidia-smi`, a test double).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverPaths {
    /// Alibaba's auto-install log.
    pub install_log: PathBuf,
    /// Where the device nodes are (`/dev`).
    pub dev: PathBuf,
    /// The `nvidia-smi` to run: a path, or a name looked up in `PATH`.
    pub nvidia_smi: PathBuf,
    /// The file with the boot time (`btime` in `/proc/stat`); `1/stat`
    /// beside it, when there, says when PID 1 started (see [`boot_time`]).
    pub proc_stat: PathBuf,
}

/// `[gpu] auto_install_log`, `nvidia_smi` and `devices`.
impl From<&crate::config::GpuConfig> for DriverPaths {
    fn from(gpu: &crate::config::GpuConfig) -> DriverPaths {
        DriverPaths {
            install_log: gpu.auto_install_log.clone(),
            dev: gpu.devices.clone(),
            nvidia_smi: gpu.nvidia_smi.clone(),
            proc_stat: PathBuf::from("/proc/stat"),
        }
    }
}

/// What the auto-install log said when the driver was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallSeen {
    /// No auto-install log: the image has the driver (or it was installed by hand).
    NoLog,
    /// `ALL INSTALL OK`.
    Succeeded,
    /// The log says the install failed, but the driver answers all the same
    /// (a later step than the driver failed, or it was installed by hand).
    FailedButDriverAnswers,
    /// The log stops before this boot without a verdict, but the driver answers.
    UnfinishedButDriverAnswers,
}

/// The driver answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverReady {
    /// The driver's version, as `nvidia-smi` gives it (`535.161.07`).
    pub version: String,
    /// The GPUs' names, one per GPU (`Tesla T4`).
    pub gpus: Vec<String>,
    pub install: InstallSeen,
}

impl DriverReady {
    /// The `driver` step's detail: `NVIDIA driver 535.161.07, 1 GPU: Tesla T4
    /// (Alibaba's auto-install: ALL INSTALL OK)`.
    pub fn detail(&self) -> String {
        let n = self.gpus.len();
        let how = match self.install {
            InstallSeen::NoLog => "no auto-install log: the image's driver",
            InstallSeen::Succeeded => "Alibaba's auto-install: ALL INSTALL OK",
            InstallSeen::FailedButDriverAnswers => "the auto-install log says it failed, but the driver answers",
            InstallSeen::UnfinishedButDriverAnswers => {
                "the auto-install log stops before this boot unfinished, but the driver answers"
            }
        };
        format!(
            "NVIDIA driver {}, {n} GPU{}: {} ({how})",
            self.version,
            if n == 1 { "" } else { "s" },
            self.gpus.join(", ")
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    #[error("Alibaba's GPU driver auto-install failed ({log} says so); its last lines:\n{}\nfix: read the whole log on the instance, then recreate the instance (another driver version, or an image with the driver)", tail.join("\n"), log = log.display())]
    InstallFailed { log: PathBuf, tail: Vec<String> },
    #[error("Alibaba's GPU driver auto-install did not finish: {log} stops before this boot without ALL INSTALL OK (the instance restarted during the install), and the driver does not answer ({why}); its last lines:\n{}\nfix: recreate the instance and do not restart it during the install", tail.join("\n"), log = log.display())]
    Interrupted { log: PathBuf, tail: Vec<String>, why: String },
    #[error("the NVIDIA driver did not answer within {} ([gpu] driver_timeout): {waiting_for}{}", jupyter_proto::duration::show(*budget), tail_note(tail))]
    TimedOut { budget: Duration, waiting_for: String, tail: Vec<String> },
}

fn tail_note(tail: &[String]) -> String {
    match tail.is_empty() {
        true => "; fix: check that the instance type has a GPU and that the image has the driver or the user data installs it (docs/gpu.md)".into(),
        false => format!("; the auto-install log's last lines:\n{}", tail.join("\n")),
    }
}

impl DriverError {
    /// The exit code (`agent/src/exit.rs`) a command ending on this error takes.
    pub fn exit_code(&self) -> u8 {
        match self {
            DriverError::TimedOut { .. } => crate::exit::TIMED_OUT,
            _ => crate::exit::FAILED,
        }
    }
}

/// The auto-install log's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Running,
    Succeeded,
    Failed,
}

/// What the auto-install log says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReading {
    pub verdict: Verdict,
    /// The phase, in words, for the step's progress.
    pub phase: String,
    /// The last non-empty lines, bounded, for a failure's message.
    pub tail: Vec<String>,
}

/// Reads the auto-install log's text (docs/gpu.md#following-the-log for the
/// rules and where the lines come from).
pub fn read_log(text: &str) -> LogReading {
    let mut phase = String::from("started");
    let mut failed = false;
    let mut succeeded = false;
    let mut saving: Option<String> = None;
    for raw in text.lines() {
        // wget and the progress bar write carriage returns; the last segment is what shows.
        let line = raw.rsplit('\r').find(|s| !s.trim().is_empty()).unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let lower = line.to_ascii_lowercase();
        if line.contains("INSTALL FAIL") || line.starts_with("INSTALL_ERROR") || line.starts_with("ERROR:") {
            failed = true;
        } else if line == "ALL INSTALL OK" {
            succeeded = true;
            phase = "finished (ALL INSTALL OK); the install reboots the instance".into();
        } else if let Some(rest) = lower.strip_prefix("begin to install") {
            let versions = line[line.len() - rest.len()..].trim_start_matches([',', ' ']).trim();
            phase = match versions.is_empty() {
                true => "started".into(),
                false => format!("started ({versions})"),
            };
        } else if let Some(file) = saving_to(line) {
            phase = format!("downloading {file}");
            saving = Some(file);
        } else if let Some(percent) = wget_percent(line) {
            phase = match &saving {
                Some(file) => format!("downloading {file}: {percent}%"),
                None => format!("downloading: {percent}%"),
            };
        } else if lower.starts_with("nvidia download ok") || lower.starts_with("download ok") {
            phase = "downloaded; installing the driver".into();
        } else if lower.starts_with("nvidia install driver ok")
            || (lower.starts_with("driver ") && lower.contains(" install ok"))
        {
            phase = "driver installed; installing CUDA".into();
        } else if lower.starts_with("nvidia install cuda ok")
            || (lower.starts_with("cuda ") && lower.contains(" install ok"))
        {
            phase = "CUDA installed; installing cuDNN".into();
        } else if lower.starts_with("nvidia install cudnn ok")
            || (lower.starts_with("cudnn ") && lower.contains(" install ok"))
        {
            phase = "cuDNN installed; finishing".into();
        }
    }
    let verdict = match (failed, succeeded) {
        (true, _) => Verdict::Failed,
        (false, true) => Verdict::Succeeded,
        (false, false) => Verdict::Running,
    };
    if failed {
        phase = "failed".into();
    }
    LogReading { verdict, phase, tail: tail(text) }
}

/// The last non-empty lines, each bounded, control characters left out.
fn tail(text: &str) -> Vec<String> {
    let lines: Vec<String> = text
        .lines()
        .filter_map(|l| l.rsplit('\r').find(|s| !s.trim().is_empty()))
        .map(|l| jupyter_proto::redact::bound(&l.chars().filter(|c| !c.is_control()).collect::<String>(), 200))
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].to_vec()
}

/// `Saving to: 'NVIDIA-Linux-x86_64-470.82.01.run'` (wget, any quotes).
fn saving_to(line: &str) -> Option<String> {
    let rest = line.strip_prefix("Saving to:")?;
    let name = rest.trim().trim_matches(|c: char| c == '\'' || c == '"' || c == '‘' || c == '’' || c == '`');
    let name = name.rsplit('/').next()?;
    (!name.is_empty()).then(|| jupyter_proto::redact::bound(name, 80))
}

/// wget's dot progress, `  51200K .......... ..........  6% 95.3M 8s`: the percentage.
fn wget_percent(line: &str) -> Option<u8> {
    let mut words = line.split_whitespace();
    let first = words.next()?;
    let size = first.strip_suffix('K')?;
    if size.is_empty() || !size.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    words.find_map(|w| w.strip_suffix('%')?.parse::<u8>().ok().filter(|p| *p <= 100))
}

/// When this system booted: the kernel's boot time (`btime` in
/// `/proc/stat`) plus how long after it PID 1 started (`1/stat` beside it,
/// field 22, in clock ticks). On an instance the two are a second or so
/// apart; in a container booting its own init (the systemd container of
/// the tests, docs/systemd.md) the kernel's boot is the host's, and PID 1's
/// start is the container's "boot", which a restart of it moves.
pub(crate) fn boot_time(proc_stat: &Path) -> Option<SystemTime> {
    let text = std::fs::read_to_string(proc_stat).ok()?;
    let secs: u64 = text.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
    let kernel = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let init = proc_stat.parent().map(|p| p.join("1/stat")).and_then(|f| std::fs::read_to_string(f).ok());
    Some(kernel + init.as_deref().and_then(init_started).unwrap_or_default())
}

/// PID 1's start after the kernel's boot, from its `stat` line.
fn init_started(stat: &str) -> Option<Duration> {
    // The name (field 2) is in parentheses and may hold spaces: count after its end.
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(19)?.parse().ok()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().filter(|t| *t > 0)?;
    Some(Duration::from_millis(ticks.saturating_mul(1000) / per_second as u64))
}

/// The log's text and when it was last written; `None` when there is no log.
fn read_install_log(path: &Path) -> Option<(String, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta.modified().ok()?;
    let bytes = std::fs::read(path).ok()?;
    Some((String::from_utf8_lossy(&bytes).into_owned(), modified))
}

/// Whether the device nodes are there: `nvidiactl` and at least one `nvidia<N>`.
fn device_nodes(dev: &Path) -> Result<(), String> {
    if !dev.join("nvidiactl").exists() {
        return Err(format!("{} is missing", dev.join("nvidiactl").display()));
    }
    let any_gpu = std::fs::read_dir(dev).ok().into_iter().flatten().flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.strip_prefix("nvidia").is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    });
    match any_gpu {
        true => Ok(()),
        false => Err(format!("no {}/nvidia<N> device node", dev.display())),
    }
}

/// Asks the driver: `nvidia-smi`, then the device nodes (which `nvidia-smi`
/// itself may create). The driver's version and the GPUs' names, or why not.
pub async fn probe(paths: &DriverPaths) -> Result<(String, Vec<String>), String> {
    let smi = paths.nvidia_smi.display().to_string();
    let mut command = tokio::process::Command::new(&paths.nvidia_smi);
    command
        .args(["--query-gpu=driver_version,name", "--format=csv,noheader"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(SMI_TIMEOUT, command.output()).await {
        Err(_) => return Err(format!("{smi} did not answer within {}s", SMI_TIMEOUT.as_secs())),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{smi} is not installed yet"));
        }
        Ok(Err(e)) => return Err(format!("cannot run {smi}: {e}")),
        Ok(Ok(output)) => output,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        let first = said.lines().chain(stdout.lines()).map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        let code = output.status.code().map_or("a signal".to_string(), |c| c.to_string());
        return Err(format!("{smi} exited with {code}: {}", jupyter_proto::redact::bound(first, 200)));
    }
    let mut version = String::new();
    let mut gpus = Vec::new();
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((v, name)) = line.split_once(',') else {
            return Err(format!("{smi} answered an unexpected line: {}", jupyter_proto::redact::bound(line, 200)));
        };
        if version.is_empty() {
            version = v.trim().to_string();
        }
        gpus.push(jupyter_proto::redact::bound(name.trim(), 100));
    }
    if gpus.is_empty() {
        return Err(format!("{smi} answers but lists no GPU"));
    }
    device_nodes(&paths.dev).map_err(|e| format!("{smi} answers but {e}"))?;
    Ok((version, gpus))
}

/// Waits for the host's NVIDIA driver within `budget`, following Alibaba's
/// auto-install log when there is one; `progress` gets each new phase.
pub async fn wait(
    budget: Duration,
    paths: &DriverPaths,
    progress: impl FnMut(String),
) -> Result<DriverReady, DriverError> {
    wait_polling(budget, POLL, paths, progress).await
}

pub(crate) async fn wait_polling(
    budget: Duration,
    poll: Duration,
    paths: &DriverPaths,
    mut progress: impl FnMut(String),
) -> Result<DriverReady, DriverError> {
    let deadline = Instant::now() + budget;
    let mut said = String::new();
    let mut say = |said: &mut String, message: String| {
        if *said != message {
            said.clone_from(&message);
            progress(message);
        }
    };
    let log_name = paths.install_log.display().to_string();
    loop {
        let log = read_install_log(&paths.install_log).map(|(text, written)| (read_log(&text), written));
        let boot = boot_time(&paths.proc_stat);
        // Whether the log was last written before this boot (None: cannot tell).
        let before_boot = |written: SystemTime| boot.map(|b| written + CLOCK_MARGIN <= b);
        let mut tail = Vec::new();
        let ready = |(version, gpus): (String, Vec<String>), install| DriverReady { version, gpus, install };
        match log {
            None => match probe(paths).await {
                Ok(found) => return Ok(ready(found, InstallSeen::NoLog)),
                Err(why) => say(&mut said, format!("waiting for the NVIDIA driver: {why}")),
            },
            Some((reading, _)) if reading.verdict == Verdict::Failed => match probe(paths).await {
                Ok(found) => return Ok(ready(found, InstallSeen::FailedButDriverAnswers)),
                Err(_) => {
                    return Err(DriverError::InstallFailed { log: paths.install_log.clone(), tail: reading.tail })
                }
            },
            Some((reading, written)) if reading.verdict == Verdict::Succeeded => {
                tail = reading.tail;
                let rebooted = before_boot(written) == Some(true);
                let waited = SystemTime::now().duration_since(written).unwrap_or_default() >= REBOOT_GRACE;
                if rebooted || waited {
                    match probe(paths).await {
                        Ok(found) => return Ok(ready(found, InstallSeen::Succeeded)),
                        Err(why) => say(
                            &mut said,
                            format!("the auto-install finished (ALL INSTALL OK); waiting for the NVIDIA driver: {why}"),
                        ),
                    }
                } else {
                    say(&mut said, "the auto-install finished (ALL INSTALL OK); waiting for its reboot (the agent converges again after it)".into());
                }
            }
            Some((reading, written)) => {
                if before_boot(written) == Some(true) {
                    return match probe(paths).await {
                        Ok(found) => Ok(ready(found, InstallSeen::UnfinishedButDriverAnswers)),
                        Err(why) => {
                            Err(DriverError::Interrupted { log: paths.install_log.clone(), tail: reading.tail, why })
                        }
                    };
                }
                say(&mut said, format!("Alibaba's GPU driver auto-install ({log_name}): {}", reading.phase));
                tail = reading.tail;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(DriverError::TimedOut { budget, waiting_for: said, tail });
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
    }
}

#[cfg(test)]
mod tests;
