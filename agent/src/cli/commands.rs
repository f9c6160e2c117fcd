//! One function per command: load what it needs, do it, print the answer.
//! Each returns `anyhow::Result`; `cli::main` turns an error into its exit
//! code.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::{exit, Command, Exit, HandCommand, ImageCommand, WorkspaceCommand};
use crate::config::{Config, WorkspaceConfig};
use crate::state::{self, Phase, State, StateStore};

mod workspace;
use workspace::{
    hand, workspace_backups, workspace_check, workspace_download, workspace_reset, workspace_status, workspace_update,
};

/// Runs `command` with the configuration file at `config`.
pub fn dispatch(config: &Path, command: Command) -> Result<()> {
    match command {
        Command::Run { once } => run(config, once),
        Command::Status { json, show_token } => status(config, json, show_token),
        Command::InstallDocker { dry_run, root } => install_docker(config, dry_run, root.as_deref()),
        Command::InstallGit { dry_run, root } => install_git(config, dry_run, root.as_deref()),
        Command::InstallNvidiaToolkit { dry_run, root } => install_nvidia_toolkit(config, dry_run, root.as_deref()),
        Command::Token { rotate: true, .. } => rotate_token(config),
        Command::Token { json, .. } => {
            print_one(config, json, "token", |s| s.jupyter.as_ref().map(|j| j.token.clone()))
        }
        Command::Url { json } => print_one(config, json, "url", |s| s.jupyter.as_ref().map(|j| j.url.clone())),
        Command::Wait { timeout, json } => wait(config, timeout, json),
        Command::Logs { follow, lines, json } => logs(config, follow, lines, json),
        Command::Install { json } => install(config, json),
        Command::Firewall => firewall(config),
        Command::GpuAutoInstall => {
            print!("{}", crate::gpu::AUTO_INSTALL_SCRIPT);
            Ok(())
        }
        Command::Doctor { json } => doctor(config, json),
        Command::Workspace(WorkspaceCommand::Status { json }) => workspace_status(config, json),
        Command::Workspace(WorkspaceCommand::Reset) => workspace_reset(config),
        Command::Workspace(WorkspaceCommand::Update { json }) => workspace_update(config, json),
        Command::Workspace(WorkspaceCommand::Check { json }) => workspace_check(config, json),
        Command::Hand(command) => hand(config, command),
        Command::Workspace(WorkspaceCommand::Download { out, backup }) => {
            workspace_download(config, &out, backup.as_deref())
        }
        Command::Workspace(WorkspaceCommand::Backups { json }) => workspace_backups(config, json),
        Command::Image(ImageCommand::Export { out, json }) => image_export(config, &out, json),
    }
}

/// The converge and its watch: a multi-threaded runtime, for the API's
/// connections beside the converge.
fn daemon_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Every other command: one thread, nothing started that it does not need.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

/// Loads the configuration for a command that does not converge: the
/// defaults when the file does not exist, and no `[image]` needed.
fn lenient_config(config: &Path) -> Result<Config> {
    Ok(Config::load_or_default(config)?)
}

/// For the commands that read the agent's state (`status`, `token`, `url`,
/// `wait`): a file that is refused still says where its agent is (the
/// state and the socket a long-running `run` serves its refusal on, see
/// [`Config::locations`]); the refusal comes with it, for when nothing is
/// there.
fn reading_config(config: &Path) -> (Config, Option<crate::config::ConfigError>) {
    match Config::load_or_default(config) {
        Ok(cfg) => (cfg, None),
        Err(refusal) => {
            let (state_dir, socket) = Config::locations(config);
            (Config { state_dir, socket, ..Config::defaults() }, Some(refusal))
        }
    }
}

/// The state for a reading command: from the agent or its state file; with
/// a refused file, the refusal (exit 2) when neither is there, and a note
/// on stderr when what is there is not that refusal itself.
fn read_state(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
    refusal: Option<crate::config::ConfigError>,
    show_token: bool,
) -> Result<State> {
    let state = rt.block_on(crate::client::state(cfg, show_token));
    match (state, refusal) {
        (Ok(state), None) => Ok(state),
        (Ok(state), Some(refusal)) => {
            note_refusal(&state, &refusal);
            Ok(state)
        }
        (Err(e), None) => Err(e),
        (Err(_), Some(refusal)) => Err(refusal.into()),
    }
}

/// Says on stderr that the file is refused, unless `state` says so already
/// (the served refusal, a failed `config` step).
fn note_refusal(state: &State, refusal: &crate::config::ConfigError) {
    let served = state.error.as_ref().is_some_and(|e| e.step == "config" && e.cause == refusal.to_string());
    if !served {
        eprintln!("jupyter-agent: {refusal} (the state below is the agent's, from before)");
    }
}

fn run(config: &Path, once: bool) -> Result<()> {
    match Config::load(config) {
        // Nothing would answer HTTPS once `run --once` has returned.
        Ok(cfg) if once && cfg.tls.is_on() => Err(crate::config::ConfigError {
            file: config.to_path_buf(),
            key: "[tls] mode".into(),
            value: Some(format!("\"{}\"", cfg.tls.mode)),
            expected: "needs the agent to keep running, as it serves HTTPS itself: run without --once (as the systemd unit does), or set mode = \"off\"".into(),
        }
        .into()),
        Ok(cfg) => {
            // Nothing that is not the agent's may be replaced: refused before anything changes.
            cfg.check_host(config)?;
            cfg.check_paths(config)?;
            daemon_runtime()?.block_on(crate::daemon::run(&cfg, once, Box::pin(wait_for_stop())))
        }
        // Refused before anything changed.
        Err(refusal) if once => Err(refusal.into()),
        Err(refusal) => {
            Err(daemon_runtime()?.block_on(crate::daemon::serve_refusal(config, refusal, Box::pin(wait_for_stop()))))
        }
    }
}

/// SIGTERM or Ctrl-C.
async fn wait_for_stop() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else { return };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `--root DIR` of install-docker and install-git (`/` without it): an
/// existing directory named by an absolute path, else exit 2.
fn mounted_root(root: Option<&Path>) -> Result<&Path> {
    let root = root.unwrap_or(Path::new("/"));
    if !root.is_absolute() || !root.is_dir() {
        return Err(Exit::new(
            exit::USAGE,
            format!("--root {}: expected the absolute path of a mounted root file system", root.display()),
        )
        .into());
    }
    Ok(root)
}

fn install_docker(config: &Path, dry_run: bool, root: Option<&Path>) -> Result<()> {
    use crate::docker_install as di;
    let cfg = lenient_config(config)?;
    let root = mounted_root(root)?;
    let chrooted = root != Path::new("/");
    let rt = runtime()?;
    if dry_run {
        print!("{}", rt.block_on(di::dry_run(&cfg, root))?);
        return Ok(());
    }
    recorded(&rt, &cfg, "docker", super::exit_code, async |rec| {
        let mut progress = di::RecordProgress::docker(rec);
        if chrooted {
            di::install(&cfg, root, &mut progress).await.map(|_| ())
        } else {
            di::ensure_engine(&cfg, &mut progress).await.map(|_| ())
        }
    })
}

/// `install-git`: the converge's git steps alone, into this host or the
/// mounted root `--root` (docs/git-install.md).
fn install_git(config: &Path, dry_run: bool, root: Option<&Path>) -> Result<()> {
    use crate::docker_install::{git, RecordProgress};
    let cfg = lenient_config(config)?;
    let root = mounted_root(root)?;
    if dry_run {
        print!("{}", git::dry_run_text(&cfg, root)?);
        return Ok(());
    }
    if let Some(found) = git::git_path(root) {
        println!("git is installed at {}: nothing to install", found.display());
        return Ok(());
    }
    // A refusal comes before the state is touched.
    let plan = git::make_plan(root)?;
    let installed = recorded(
        &runtime()?,
        &cfg,
        "git",
        |_| exit::FAILED,
        async |rec| git::install(&cfg, root, &plan, &mut RecordProgress { rec, phase: Phase::FetchingWorkspace }).await,
    )?;
    println!("installed {installed}");
    Ok(())
}

/// `install-nvidia-toolkit`: the toolkit installed and registered with
/// Docker on this host, or installed into the mounted root `--root`
/// (docs/gpu.md#the-nvidia-container-toolkit).
fn install_nvidia_toolkit(config: &Path, dry_run: bool, root: Option<&Path>) -> Result<()> {
    use crate::docker_install::RecordProgress;
    use crate::gpu::toolkit;
    let cfg = lenient_config(config)?;
    let root = mounted_root(root)?;
    let rt = runtime()?;
    if dry_run {
        print!("{}", rt.block_on(toolkit::dry_run(&cfg, root))?);
        return Ok(());
    }
    if root != Path::new("/") {
        // Refusals (distribution, daemon.json) come before the state is touched.
        toolkit::make_plan(&cfg, root)?;
        toolkit::daemon_json_action(root)?;
        let (_, configured) = recorded(&rt, &cfg, "toolkit", super::exit_code, async |rec| {
            toolkit::install(&cfg, root, &mut RecordProgress::docker(rec)).await
        })?;
        println!(
            "installed {} into {}{}",
            toolkit::PACKAGES.join(" "),
            root.display(),
            if configured { "; added the nvidia runtime to /etc/docker/daemon.json there" } else { "" }
        );
        return Ok(());
    }
    let outcome = recorded(&rt, &cfg, "toolkit", super::exit_code, async |rec| {
        toolkit::ensure(&cfg, &mut RecordProgress::docker(rec)).await
    })?;
    if outcome.restarted {
        println!("the Docker engine offers the nvidia runtime ({})", outcome.runtimes.join(", "));
    } else {
        println!(
            "the Docker engine already offers the nvidia runtime ({}): nothing to do",
            outcome.runtimes.join(", ")
        );
    }
    Ok(())
}

/// Runs an install command's steps as the converge would, recorded in the
/// state: done, the phase is `pending` again (Jupyter is not converged
/// yet); failed, the failure is the state's, in `step`, and the command
/// ends with `code_of` the error.
fn recorded<T>(
    rt: &tokio::runtime::Runtime,
    cfg: &Config,
    step: &str,
    code_of: fn(&anyhow::Error) -> u8,
    steps: impl AsyncFnOnce(&mut state::Recorder<'_>) -> Result<T>,
) -> Result<T> {
    let store = StateStore::lock(&cfg.state_dir)?;
    rt.block_on(async {
        let mut rec = state::Recorder::new(&store, None)
            .with_context(|| format!("writing the state file {}", store.path().display()))?;
        match steps(&mut rec).await {
            Ok(done) => {
                rec.state.phase = Phase::Pending;
                rec.save();
                Ok(done)
            }
            Err(e) => {
                let failure = rec.fail(step, format!("{e:#}"), None, Vec::new());
                Err(Exit::new(code_of(&e), format!("{}: {}", failure.step, failure.cause)).into())
            }
        }
    })
}

fn print_one(config: &Path, json: bool, key: &str, pick: impl Fn(&State) -> Option<String>) -> Result<()> {
    let (cfg, refusal) = reading_config(config);
    let state = read_state(&runtime()?, &cfg, refusal, true)?;
    match (&state.phase, pick(&state)) {
        (Phase::Ready, Some(v)) if json => println!("{}", serde_json::json!({ key: v })),
        (Phase::Ready, Some(v)) => println!("{v}"),
        (phase, _) => {
            return Err(Exit::new(
                exit::FAILED,
                format!("Jupyter is not ready (phase: {phase}); see jupyter-agent status"),
            )
            .into())
        }
    }
    Ok(())
}

fn status(config: &Path, json: bool, show_token: bool) -> Result<()> {
    let (cfg, refusal) = reading_config(config);
    let refused = refusal.is_some();
    let state = read_state(&runtime()?, &cfg, refusal, show_token)?;
    let mut out = std::io::stdout().lock();
    let _ = if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&state).expect("state serializes"))
    } else {
        write!(out, "{}{}", super::render(&state), super::render::host_notes(&cfg))
    };
    if matches!(state.phase, Phase::Failed | Phase::Stopped) {
        return Err(Exit::silent(exit::FAILED).into());
    }
    if refused {
        // A state that looks fine, from a file the next run refuses.
        return Err(Exit::silent(exit::USAGE).into());
    }
    Ok(())
}

fn wait(config: &Path, timeout: Duration, json: bool) -> Result<()> {
    let (cfg, refusal) = reading_config(config);
    let (state, timed_out) = match (runtime()?.block_on(crate::client::wait(&cfg, timeout)), refusal) {
        (Ok(answer), None) => answer,
        (Ok(answer), Some(refusal)) => {
            note_refusal(&answer.0, &refusal);
            answer
        }
        (Err(e), None) => return Err(e),
        (Err(_), Some(refusal)) => return Err(refusal.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&state).expect("state serializes"));
    } else {
        print!("{}", super::render(&state));
    }
    match state.phase {
        Phase::Ready => Ok(()),
        Phase::Failed => Err(Exit::silent(exit::FAILED).into()),
        _ if timed_out => {
            Err(Exit::new(exit::TIMED_OUT, format!("not ready after {}", jupyter_proto::duration::show(timeout)))
                .into())
        }
        _ => Err(Exit::silent(exit::FAILED).into()),
    }
}

fn logs(config: &Path, follow: bool, lines: u64, json: bool) -> Result<()> {
    let cfg = lenient_config(config)?;
    let mut print = |line: &str| {
        let mut out = std::io::stdout().lock();
        let _ = if json { writeln!(out, "{}", serde_json::json!({ "line": line })) } else { writeln!(out, "{line}") };
        let _ = out.flush();
    };
    runtime()?.block_on(crate::client::logs(&cfg, lines, follow, &mut print))
}

fn install(config: &Path, json: bool) -> Result<()> {
    // Nothing is enabled for a configuration the service could not use.
    let cfg = Config::load(config)?;
    cfg.check_host(config)?;
    cfg.check_paths(config)?;
    match crate::service::install(config)? {
        crate::service::Installed::Foreground(how) => {
            if json {
                println!("{}", serde_json::json!({ "installed": false, "systemd": false, "instructions": how }));
            } else {
                println!("{how}");
            }
        }
        crate::service::Installed::Service { binary, unit } => {
            if json {
                println!("{}", serde_json::json!({ "installed": true, "binary": binary, "unit": unit }));
            } else {
                println!(
                    "installed {} and {}; {} is enabled and started",
                    binary.display(),
                    unit.display(),
                    crate::service::UNIT_NAME
                );
            }
        }
    }
    Ok(())
}

/// The metadata rules alone (docs/metadata.md#at-boot): the defaults when
/// the file does not exist (only root reaches 100.100.100.200), exit 2 when
/// it cannot be used, so that the unit fails and Docker does not start.
fn firewall(config: &Path) -> Result<()> {
    let cfg = lenient_config(config)?;
    let done =
        runtime()?.block_on(crate::network::apply(cfg.container.metadata_access, cfg.jupyter.metadata_address()))?;
    println!("metadata service: {done}");
    Ok(())
}

/// Prepares the configured image as `run` does (the materials fetched first
/// when it is built from them), then writes it out; the host's container is
/// not touched.
fn image_export(config: &Path, out: &Path, json: bool) -> Result<()> {
    use crate::config::ImageSource;
    let cfg = Config::load(config)?;
    cfg.check_host(config)?;
    cfg.check_paths(config)?;
    let _store = StateStore::lock(&cfg.state_dir)?;
    let exported = runtime()?.block_on(async {
        let docker = crate::engine::connect(&cfg.docker).await?;
        let mut image = cfg.image.clone();
        if let (Some(w), ImageSource::Build(build)) = (&cfg.workspace, &mut image.source) {
            if build.context == w.path {
                let ensured = crate::workspace::ensure(w, &cfg.state_dir).await.context("fetching the workspace")?;
                if let Some(pristine) = ensured.pristine {
                    build.context = pristine;
                }
            }
        }
        // Each new line once; a download or a pull, which report every chunk, at most every 2 s.
        let mut last: (String, Option<std::time::Instant>) = (String::new(), None);
        let mut on_progress = |p: crate::image::Progress| {
            let (line, force) = match p {
                crate::image::Progress::Build(step) => (step.to_string(), true),
                crate::image::Progress::Text(line, force) => (line.to_string(), force),
                crate::image::Progress::Layer(layer, l) => (format!("{layer}: {}", l.status), false),
            };
            let due = last.1.is_none_or(|at| at.elapsed() >= Duration::from_secs(2));
            if line != last.0 && (force || due) {
                eprintln!("{line}");
                last = (line, Some(std::time::Instant::now()));
            }
        };
        let prepared = crate::image::ensure(&docker, &image, &cfg.state_dir, &mut on_progress)
            .await
            .context("preparing the image")?;
        eprintln!("image {} ({}): writing {}", image.reference, prepared.detail, out.display());
        crate::image::export::export(&docker, &image.reference, out).await
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&exported).expect("serializable"));
    } else {
        println!(
            "wrote {} ({} bytes{}) and {}
sha256 {}

Upload the archive (e.g. to OSS, as a signed URL) and set on every instance:

[image]
archive = \"https://<where it is>/{}\"
sha256 = \"{}\"
tag = \"{}\"",
            exported.archive.display(),
            exported.bytes,
            if exported.gzip { ", gzip" } else { "" },
            exported.checksum_file.display(),
            exported.sha256,
            exported.archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            exported.sha256,
            exported.reference
        );
    }
    Ok(())
}

fn rotate_token(config: &Path) -> Result<()> {
    let cfg = lenient_config(config)?;
    if cfg.jupyter.token != crate::config::TokenChoice::Generate {
        return Err(Exit::new(
            exit::USAGE,
            format!(
            "{}: [jupyter] token is not \"generate\": the agent does not choose the token, so it cannot make a new one",
            config.display()
        ),
        )
        .into());
    }
    crate::login::rotate(&cfg.state_dir)?;
    println!(
        "A new login token was made. Every earlier login URL stops working once Jupyter restarts with it:\nrestart the agent (systemctl restart jupyter-agent, or jupyter-agent run) to recreate the container, then jupyter-agent url prints the new URL."
    );
    Ok(())
}

fn doctor(config: &Path, json: bool) -> Result<()> {
    let cfg = lenient_config(config)?;
    let rt = runtime()?;
    let state = rt.block_on(crate::client::state(&cfg, true)).ok();
    let checks = rt.block_on(crate::doctor::run(&cfg, state.as_ref()));
    if json {
        println!("{}", serde_json::to_string_pretty(&checks).expect("checks serialize"));
    } else {
        print!("{}", crate::doctor::render(&checks));
    }
    if checks.iter().any(|c| c.verdict == crate::doctor::Verdict::Fail) {
        return Err(Exit::silent(exit::FAILED).into());
    }
    Ok(())
}
