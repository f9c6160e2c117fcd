//! The NVIDIA Container Toolkit (docs/gpu.md#the-nvidia-container-toolkit):
//! installed with the distribution's package manager from NVIDIA's
//! repository (or `[docker] nvidia_toolkit_repository`, a mirror of it),
//! by the Docker installer's executor (timeouts, retries, lock waits, apt's
//! roll-forward steps); then the `nvidia` runtime merged into
//! `/etc/docker/daemon.json`, dockerd restarted (it registers runtimes only
//! at start), and the engine asked whether it now offers the runtime.
//!
//! [`ensure`] is the whole of it, for `install-nvidia-toolkit` and the
//! converge's `toolkit` step; [`install`] alone installs into another root
//! (`--root`), where nothing is started.

pub mod plan;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};
use tracing::info;

use crate::config::Config;
use crate::docker_install::daemon_json::Merge;
use crate::docker_install::plan::{Action, PackageManager};
use crate::docker_install::run::{Executor, Progress};
use crate::docker_install::{distro, has_systemd};
use crate::engine;
pub use plan::{ToolkitPlan, PACKAGES};

/// The runtime's name in `daemon.json` and in the engine's `Runtimes`:
/// what `docker run --runtime=nvidia` and NVIDIA's guide use.
pub const RUNTIME: &str = "nvidia";
/// The executable `daemon.json` names, as `nvidia-ctk runtime configure`
/// writes it (dockerd looks it up in its PATH); the
/// `nvidia-container-toolkit-base` package installs it in /usr/bin.
pub const RUNTIME_EXECUTABLE: &str = "nvidia-container-runtime";
/// Docker's daemon configuration file.
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";
/// Where the commands' output goes, in `log_dir`.
pub const LOG_FILE: &str = "install-nvidia-toolkit.log";

/// The steps after the packages.
pub const CONFIGURE_STEP: &str = "toolkit: daemon.json nvidia runtime";
pub const RESTART_STEP: &str = "toolkit: restart dockerd";
pub const CHECK_STEP: &str = "toolkit: check";

/// How long dockerd may take to stop after SIGTERM (it stops its
/// containers first; Docker's own default shutdown timeout is 15 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the toolkit cannot be installed on this distribution; nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error(
    "the agent cannot install the NVIDIA Container Toolkit on ID={id} VERSION_ID={version}: {reason}; \
     supported: {supported}; install it by NVIDIA's install guide instead, then run install-nvidia-toolkit again \
     (it then only configures Docker)"
)]
pub struct Refused {
    pub id: String,
    pub version: String,
    pub reason: String,
    pub supported: &'static str,
}

/// `daemon.json` cannot take the runtime; nothing was changed.
#[derive(Debug, thiserror::Error)]
#[error(
    "{file} is not valid Docker daemon configuration ({why}); it was left untouched, so Docker does not know \
     the nvidia runtime: fix the file, or add \"runtimes\": {{\"nvidia\": {{\"path\": \"nvidia-container-runtime\", \"args\": []}}}} to it yourself"
)]
pub struct BadDaemonJson {
    pub file: String,
    pub why: String,
}

/// What [`ensure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The packages were installed (they were missing).
    pub installed: bool,
    /// `daemon.json` was changed.
    pub configured: bool,
    /// dockerd was restarted.
    pub restarted: bool,
    /// The runtimes the engine offers, `nvidia` among them.
    pub runtimes: Vec<String>,
}

/// Reads the root's os-release and makes the plan. Changes nothing.
pub fn make_plan(cfg: &Config, root: &Path) -> Result<ToolkitPlan> {
    let (path, os) = distro::read_os_release(root)
        .with_context(|| format!("reading {} to tell the distribution", root.join("etc/os-release").display()))?;
    let distro = distro::detect(&os)
        .map_err(|u| Refused {
            id: or_none(&u.id),
            version: or_none(&u.version_id),
            reason: u.reason,
            supported: distro::SUPPORTED,
        })
        .with_context(|| format!("{}", path.display()))?;
    Ok(plan::plan(&distro, &cfg.docker.nvidia_toolkit_repository, root != Path::new("/")))
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "(none)".into()
    } else {
        s.to_string()
    }
}

/// Where the runtime's executable is below `root`, if the toolkit is installed.
pub fn runtime_path(root: &Path) -> Option<PathBuf> {
    executable(root, RUNTIME_EXECUTABLE)
}

/// Where `name` is below `root`, in the directories of the executor's PATH.
fn executable(root: &Path, name: &str) -> Option<PathBuf> {
    ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| root.join(p.strip_prefix("/").unwrap_or(p)).is_file())
}

/// The hook whose presence on dockerd's PATH, when dockerd starts, makes
/// it register its `nvidia` device driver, the one `--gpus` (a
/// `DeviceRequest` with the `gpu` capability) needs (moby,
/// `daemon/nvidia_linux.go`); the `nvidia-container-toolkit` package
/// installs it.
pub const GPU_HOOK: &str = "nvidia-container-runtime-hook";

/// Where [`GPU_HOOK`] is on this host, when the toolkit is installed.
pub fn gpu_hook() -> Option<PathBuf> {
    executable(Path::new("/"), GPU_HOOK)
}

/// Merges the `nvidia` runtime into `daemon.json`'s text (`None`: no file
/// yet), as `nvidia-ctk runtime configure --runtime=docker` would add it:
/// `"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}`.
/// Every other key and runtime is kept; an `nvidia` runtime already there
/// (the user's own, or nvidia-ctk's) is left as it is; a file that is not
/// a JSON object, or whose `runtimes` is not one, is never rewritten.
pub fn merge_runtime(existing: Option<&str>) -> Merge {
    let mut root: Map<String, Value> = match existing.map(str::trim) {
        None | Some("") => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Merge::Invalid("expected a JSON object".into()),
            Err(e) => return Merge::Invalid(e.to_string()),
        },
    };
    let mut runtimes = match root.get("runtimes") {
        None => Map::new(),
        Some(Value::Object(r)) => r.clone(),
        Some(_) => return Merge::Invalid("\"runtimes\" is not an object".into()),
    };
    if runtimes.contains_key(RUNTIME) {
        return Merge::Unchanged;
    }
    runtimes.insert(RUNTIME.into(), serde_json::json!({"path": RUNTIME_EXECUTABLE, "args": []}));
    root.insert("runtimes".into(), Value::Object(runtimes));
    let mut text = serde_json::to_string_pretty(&Value::Object(root)).expect("a JSON value serializes");
    text.push('\n');
    Merge::Changed(text)
}

/// The `daemon.json` write that registers the runtime, if one is needed.
pub fn daemon_json_action(root: &Path) -> Result<Option<Action>> {
    let on_host = root.join(DAEMON_JSON.trim_start_matches('/'));
    let existing = match fs::read_to_string(&on_host) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", on_host.display())),
    };
    match merge_runtime(existing.as_deref()) {
        Merge::Changed(content) => Ok(Some(Action::Write { path: PathBuf::from(DAEMON_JSON), content, mode: 0o644 })),
        Merge::Unchanged => Ok(None),
        Merge::Invalid(why) => Err(BadDaemonJson { file: on_host.display().to_string(), why }.into()),
    }
}

/// How dockerd is restarted here, in words.
fn restart_description(cfg: &Config) -> String {
    if has_systemd() {
        "restart dockerd: systemctl restart docker".into()
    } else {
        format!(
            "restart dockerd: SIGTERM to the pid in /var/run/docker.pid (else {}), then start dockerd detached, log {}",
            cfg.state_dir.join("dockerd.pid").display(),
            cfg.log_dir.join("dockerd.log").display()
        )
    }
}

/// Says what `install-nvidia-toolkit` would do, changing nothing.
pub async fn dry_run(cfg: &Config, root: &Path) -> Result<String> {
    let chrooted = root != Path::new("/");
    let mut out = String::new();
    if !chrooted {
        local_engine(cfg)?;
        match offered_runtimes(cfg, Duration::from_secs(3)).await {
            Ok(runtimes) if runtimes.iter().any(|r| r == RUNTIME) => {
                out.push_str(&format!(
                    "the Docker engine offers the {RUNTIME} runtime ({}): nothing to install, configure or restart\n",
                    runtimes.join(", ")
                ));
                return Ok(out);
            }
            Ok(_) => {}
            Err(_) => out.push_str(&format!(
                "no Docker engine answers at {}: install-nvidia-toolkit needs one (run install-docker first); then it would do this:\n",
                engine::engine_address(&cfg.docker)
            )),
        }
    }
    match runtime_path(root).filter(|_| !chrooted) {
        Some(found) => {
            out.push_str(&format!("the toolkit is installed ({}): no package to install\n", found.display()))
        }
        None => {
            let plan = make_plan(cfg, root)?;
            let described = crate::docker_install::plan::describe(
                &plan.distro,
                plan.package_manager,
                Some(&plan.repository),
                PACKAGES,
            );
            out.push_str(&format!("{described}\n"));
            if chrooted {
                out.push_str(&format!("every command runs as: chroot {} COMMAND\n", root.display()));
            }
            for action in &plan.actions {
                out.push_str(&format!("{action}\n"));
            }
        }
    }
    match daemon_json_action(root)? {
        Some(action) => out.push_str(&format!("{action}\n")),
        None => out.push_str(&format!("{DAEMON_JSON} already names the {RUNTIME} runtime: left as it is\n")),
    }
    if !chrooted {
        out.push_str(&format!("{}\n", restart_description(cfg)));
        out.push_str(&format!("check: the engine's Runtimes (docker info) include {RUNTIME}\n"));
    }
    Ok(out)
}

/// Installs the packages into `root` (`/`: this host) unless the runtime
/// is there (always, below another root), then registers the runtime in
/// its `daemon.json`. Returns (installed, daemon.json changed). Starts nothing.
pub async fn install(cfg: &Config, root: &Path, progress: &mut dyn Progress) -> Result<(bool, bool)> {
    let chrooted = root != Path::new("/");
    // The daemon.json refusal comes before anything is installed.
    let configure = daemon_json_action(root)?;
    let mut installed = false;
    if chrooted || runtime_path(root).is_none() {
        progress.begin("toolkit: plan");
        let plan = make_plan(cfg, root)?;
        progress.done(
            "toolkit: plan",
            format!(
                "{}: {} from {} ({})",
                plan.distro.name,
                PACKAGES.join(" "),
                plan.repository,
                plan.package_manager.as_str()
            ),
        );
        let executor = Executor::new(root, plan.package_manager, Some(cfg.log_dir.join(LOG_FILE)));
        executor.run_steps(&plan.actions, plan::step_name, progress).await?;
        installed = true;
    }
    let Some(action) = configure else { return Ok((installed, false)) };
    progress.begin(CONFIGURE_STEP);
    Executor::new(root, PackageManager::Apt, None).run(&action).await?;
    progress.done(CONFIGURE_STEP, format!("added runtimes.{RUNTIME} ({RUNTIME_EXECUTABLE}) to {DAEMON_JSON}"));
    Ok((installed, true))
}

/// The runtimes the engine offers (`GET /info`, `Runtimes`), its ping
/// bounded by `ping_timeout`.
pub async fn offered_runtimes(cfg: &Config, ping_timeout: Duration) -> Result<Vec<String>> {
    let docker = engine::connect(&crate::config::DockerConfig { ping_timeout, ..cfg.docker.clone() }).await?;
    let info = docker.info().await.context("asking the engine for its runtimes (GET /info)")?;
    Ok(runtime_names(info.runtimes))
}

/// The runtimes' names, sorted.
pub fn runtime_names(runtimes: Option<std::collections::HashMap<String, bollard::models::Runtime>>) -> Vec<String> {
    let mut names: Vec<String> = runtimes.unwrap_or_default().into_keys().collect();
    names.sort();
    names
}

/// Restarts dockerd so that it reads `daemon.json`'s runtimes, which it
/// registers only at start: with systemd `systemctl restart docker`; without
/// it, SIGTERM to the running dockerd (its pid file), a wait for it to end,
/// and a new detached dockerd as `install-docker` starts one.
pub async fn restart_dockerd(cfg: &Config, progress: &mut dyn Progress) -> Result<()> {
    progress.begin(RESTART_STEP);
    let detail = if has_systemd() {
        let executor = Executor::new(Path::new("/"), PackageManager::Apt, Some(cfg.log_dir.join(LOG_FILE)));
        executor
            .run(&Action::Run {
                argv: ["systemctl", "restart", "docker"].map(String::from).to_vec(),
                env: Vec::new(),
                timeout: Duration::from_secs(180),
                retry: false,
                needs_lock: false,
                may_fail: false,
            })
            .await?;
        "systemctl restart docker".to_string()
    } else {
        let (pid_file, pid) = ["/var/run/docker.pid".into(), cfg.state_dir.join("dockerd.pid")]
            .into_iter()
            .find_map(|f: PathBuf| {
                let pid = fs::read_to_string(&f).ok()?.trim().parse::<i32>().ok()?;
                alive(pid).then_some((f, pid))
            })
            .ok_or_else(|| {
                anyhow!(
                    "no running dockerd found to restart (no live pid in /var/run/docker.pid or {}); restart Docker yourself so that it reads the nvidia runtime from {DAEMON_JSON}",
                    cfg.state_dir.join("dockerd.pid").display()
                )
            })?;
        stop(pid).await.with_context(|| format!("stopping dockerd (pid {pid}, from {})", pid_file.display()))?;
        let started = crate::docker_install::spawn_dockerd(cfg)?;
        format!("dockerd pid {pid} stopped; started again, pid {started}")
    };
    progress.done(RESTART_STEP, detail);
    Ok(())
}

fn alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// SIGTERM, then a bounded wait for the process to end.
async fn stop(pid: i32) -> Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM)?;
    let started = Instant::now();
    while alive(pid) && !zombie(pid) {
        if started.elapsed() > STOP_TIMEOUT {
            bail!("it did not end within {} of SIGTERM", humantime::format_duration(STOP_TIMEOUT));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A process that ended but was not reaped yet (a dockerd this agent
/// started, in this same process).
fn zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false)
}

/// The toolkit goes on the engine's host: only the local engine on its
/// default socket is configured and restarted, as `install-docker` only
/// installs and starts that one.
fn local_engine(cfg: &Config) -> Result<()> {
    let address = engine::engine_address(&cfg.docker);
    if !engine::is_local_default(&address) {
        bail!(
            "the Docker engine is {address}, not this host's (unix:///var/run/docker.sock): install the NVIDIA Container Toolkit on the engine's host (jupyter-agent install-nvidia-toolkit there)"
        );
    }
    Ok(())
}

/// The converge's `toolkit` step: whether the agent installs the toolkit
/// ([`ensure`] next), with the step's detail. Only the local engine on its
/// default socket, with `[docker] install` on, is given the toolkit (as
/// only that one is given Docker); another engine is asked its runtimes
/// and left to answer the container's device request, whose refusal names
/// the fix (docs/gpu.md#the-toolkit-step).
pub async fn look(cfg: &Config) -> Result<(bool, String)> {
    let address = engine::engine_address(&cfg.docker);
    let runtimes =
        offered_runtimes(cfg, cfg.docker.ping_timeout).await.context("asking the engine for its runtimes")?;
    let offered = format!("the engine offers the runtimes {}", runtimes.join(", "));
    if runtimes.iter().any(|r| r == RUNTIME) {
        return Ok((false, format!("{offered}: nothing to install")));
    }
    let why_not = match (cfg.docker.install, engine::is_local_default(&address)) {
        (true, true) => {
            return Ok((true, format!("{offered}, not {RUNTIME}: installing the NVIDIA Container Toolkit")))
        }
        (false, _) => "[docker] install = false".to_string(),
        (true, false) => format!("the engine is {address}, not this host's default socket"),
    };
    info!(%address, "not installing the NVIDIA Container Toolkit: {why_not}");
    Ok((
        false,
        format!("{offered}, not {RUNTIME}; not installed by the agent ({why_not}): the engine's answer to the container's device request decides"),
    ))
}

/// The converge's `toolkit` step, and `install-nvidia-toolkit` on this
/// host: nothing when the engine already offers the `nvidia` runtime;
/// else installs the toolkit when it is missing, registers the runtime in
/// `daemon.json`, restarts dockerd, and checks that the engine now offers
/// it. The engine must answer first (`install-docker`, or the converge's
/// engine step).
pub async fn ensure(cfg: &Config, progress: &mut dyn Progress) -> Result<Outcome> {
    local_engine(cfg)?;
    let before = offered_runtimes(cfg, cfg.docker.ping_timeout)
        .await
        .context("the NVIDIA Container Toolkit is registered with a running Docker engine; none answers")?;
    if before.iter().any(|r| r == RUNTIME) {
        info!(runtimes = %before.join(", "), "the engine offers the nvidia runtime: nothing to do");
        return Ok(Outcome { installed: false, configured: false, restarted: false, runtimes: before });
    }
    let (installed, configured) = install(cfg, Path::new("/"), progress).await?;
    restart_dockerd(cfg, progress).await?;
    progress.begin(CHECK_STEP);
    let runtimes = offered_runtimes(cfg, cfg.docker.ping_timeout).await.context("after the restart")?;
    if !runtimes.iter().any(|r| r == RUNTIME) {
        bail!(
            "the engine was restarted but does not offer the {RUNTIME} runtime (it offers: {}); see {} and the engine's log",
            runtimes.join(", "),
            DAEMON_JSON
        );
    }
    let hook = gpu_hook().ok_or_else(|| {
        anyhow!(
            "the engine offers the {RUNTIME} runtime, but {GPU_HOOK} is in none of /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin, /bin: \
             dockerd registers the GPU device driver (docker run --gpus) only when it finds that hook at its start; reinstall nvidia-container-toolkit"
        )
    })?;
    progress.done(
        CHECK_STEP,
        format!("the engine offers: {}; GPU device driver hook {}", runtimes.join(", "), hook.display()),
    );
    Ok(Outcome { installed, configured, restarted: true, runtimes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_is_merged_as_nvidia_ctk_adds_it_keeping_everything_else() {
        let Merge::Changed(text) = merge_runtime(None) else { panic!() };
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            serde_json::json!({"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}})
        );
        let existing =
            r#"{"registry-mirrors": ["https://m.example"], "runtimes": {"crun": {"path": "/usr/bin/crun"}}}"#;
        let Merge::Changed(text) = merge_runtime(Some(existing)) else { panic!() };
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            serde_json::json!({
                "registry-mirrors": ["https://m.example"],
                "runtimes": {"crun": {"path": "/usr/bin/crun"}, "nvidia": {"path": "nvidia-container-runtime", "args": []}}
            })
        );
        assert_eq!(merge_runtime(Some(&text)), Merge::Unchanged, "once is enough");
        // Someone's own nvidia runtime stays theirs.
        assert_eq!(merge_runtime(Some(r#"{"runtimes": {"nvidia": {"path": "/opt/nv/runtime"}}}"#)), Merge::Unchanged);
    }

    #[test]
    fn a_daemon_json_that_cannot_take_the_runtime_is_refused_and_left_alone() {
        assert!(matches!(merge_runtime(Some("{oops")), Merge::Invalid(_)));
        assert_eq!(merge_runtime(Some("[]")), Merge::Invalid("expected a JSON object".into()));
        assert_eq!(
            merge_runtime(Some(r#"{"runtimes": ["nvidia"]}"#)),
            Merge::Invalid("\"runtimes\" is not an object".into())
        );
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("etc/docker")).unwrap();
        fs::write(root.path().join("etc/docker/daemon.json"), "{oops").unwrap();
        let err = daemon_json_action(root.path()).unwrap_err();
        assert!(err.is::<BadDaemonJson>());
        assert!(err.to_string().contains("it was left untouched, so Docker does not know the nvidia runtime"), "{err}");
        assert_eq!(fs::read_to_string(root.path().join("etc/docker/daemon.json")).unwrap(), "{oops");
    }

    #[test]
    fn the_engines_runtimes_are_read_by_name() {
        let info: bollard::models::SystemInfo = serde_json::from_value(serde_json::json!({
            "Runtimes": {"runc": {"path": "runc"}, "nvidia": {"path": "nvidia-container-runtime"}, "io.containerd.runc.v2": {"path": "runc"}}
        }))
        .unwrap();
        assert_eq!(runtime_names(info.runtimes), ["io.containerd.runc.v2", "nvidia", "runc"]);
        assert!(runtime_names(None).is_empty());
    }

    #[test]
    fn the_toolkit_is_found_by_its_runtime_executable() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(runtime_path(root.path()), None);
        fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        fs::write(root.path().join("usr/bin/nvidia-container-runtime"), "").unwrap();
        assert_eq!(runtime_path(root.path()), Some(PathBuf::from("/usr/bin/nvidia-container-runtime")));
    }

    #[tokio::test]
    async fn stopping_sends_sigterm_and_waits_for_the_end() {
        // A dockerd stand-in that takes a moment to end after SIGTERM.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "trap 'sleep 0.3; exit 0' TERM; while :; do sleep 0.05; done"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        std::thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        stop(pid).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(250), "it waited for the end");
        assert!(!alive(pid) || zombie(pid));
        assert!(child.wait().unwrap().success(), "it ended by its TERM trap");
    }

    #[tokio::test]
    async fn only_the_local_engine_is_given_the_toolkit() {
        let mut cfg = Config::defaults();
        cfg.docker.host = Some("tcp://10.0.0.5:2375".into());
        let err = ensure(&cfg, &mut Silent).await.unwrap_err();
        assert!(err.to_string().starts_with("the Docker engine is tcp://10.0.0.5:2375, not this host's"), "{err}");
        assert!(dry_run(&cfg, Path::new("/")).await.is_err());
    }

    struct Silent;

    impl Progress for Silent {
        fn begin(&mut self, step: &str) {
            panic!("no step may begin: {step}");
        }
        fn done(&mut self, _: &str, _: String) {}
    }

    #[test]
    fn a_process_that_ended_unreaped_counts_as_stopped() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !zombie(pid) {
            assert!(Instant::now() < deadline, "never a zombie");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(alive(pid), "a zombie still has its pid");
        child.wait().unwrap();
        assert!(!alive(pid));
    }
}
