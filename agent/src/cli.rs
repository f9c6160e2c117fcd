//! The command line: parse, dispatch, and map every outcome to a documented
//! exit code.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::state::{self, Phase, State, StateStore};

/// Exit codes, shared by every command.
pub mod exit {
    /// Ready (or, for `status`, not failed).
    pub const OK: u8 = 0;
    /// The converge failed, or Jupyter is not ready.
    pub const FAILED: u8 = 1;
    /// Bad command line or configuration: nothing was changed.
    pub const USAGE: u8 = 2;
    /// `wait` timed out.
    pub const TIMED_OUT: u8 = 3;
    /// The agent is not reachable and there is no state: it has not run here.
    pub const NO_STATE: u8 = 4;
    /// Another agent holds the lock on the state directory.
    pub const LOCKED: u8 = 5;
    /// Docker cannot be installed on this distribution (or with this source); nothing was changed.
    pub const UNSUPPORTED: u8 = 6;
}

const EXIT_CODES: &str = "\
Exit codes:
  0  ready (status: not failed; doctor: no check failed; install: done)
  1  the converge failed, or Jupyter is not ready (token, url, wait), or a
     doctor check failed
  2  bad command line or configuration; nothing on the host was changed
  3  wait timed out
  4  the agent is not reachable and there is no state: it has not run here
  5  another jupyter-agent is converging this host
  6  Docker cannot be installed on this distribution (or from this source);
     nothing on the host was changed (run, install-docker)";

#[derive(Debug, Parser)]
#[command(
    name = "jupyter-agent",
    version,
    about = "Turns this host into a working Jupyter container and reports its proven login URL",
    long_about = "Turns this host into a working Jupyter container and reports its proven login URL.\n\n\
        `run` converges: it waits for the Docker engine, prepares the image (pull, load or build), \
        starts the container with a hash of its configuration, follows its log until the login \
        token appears, and proves the token against Jupyter's /api/status. The state is kept in \
        <state_dir>/state.json (mode 0600). While it runs, the agent answers on a Unix socket \
        (docs/api.md); `status`, `token`, `url`, `wait` and `logs` ask it there, and read the \
        state file when no agent runs.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// The configuration file (TOML); it also says where the state lives.
    #[arg(long, global = true, value_name = "FILE", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Converge (Docker, image, container, token, proof), then keep watching the container.
    ///
    /// While it runs it serves the local API on [socket]. Without --once it stays in the
    /// foreground: when the container dies the state says so; when it starts again (restart
    /// policy, reboot) its new token is proven and the URL updated. Stop it with SIGTERM.
    #[command(after_help = EXIT_CODES)]
    Run {
        /// Exit when ready (0) or failed (1) instead of staying in the foreground.
        #[arg(long)]
        once: bool,
    },
    /// Wait until Jupyter is ready (exit 0) or the converge failed (exit 1); waits for a starting agent too.
    #[command(after_help = EXIT_CODES)]
    Wait {
        /// How long to wait: seconds, or a duration such as 10m.
        #[arg(long, value_name = "D", default_value = "10m", value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// Print the final state document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the container's log (tokens shown: the socket and this command are root's).
    #[command(after_help = EXIT_CODES)]
    Logs {
        /// Keep printing new lines as they come.
        #[arg(short, long)]
        follow: bool,
        /// How many of the last lines.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 100)]
        lines: u64,
        /// One JSON object per line: {"line": "..."}.
        #[arg(long)]
        json: bool,
    },
    /// Install the agent as a systemd service (binary to /usr/local/bin, unit, enabled, started).
    ///
    /// The service runs `jupyter-agent --config <this config> run` after the network is online,
    /// restarts it when it fails, and so converges again at every boot. Without systemd it
    /// explains how to run the agent in the foreground and changes nothing.
    #[command(after_help = EXIT_CODES)]
    Install {
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The workshop materials ([workspace]): what was fetched, what changed, and reset.
    #[command(subcommand, after_help = EXIT_CODES)]
    Workspace(WorkspaceCommand),
    /// Check what a participant or organiser would check by hand; one line per check with its fix.
    #[command(after_help = EXIT_CODES)]
    Doctor {
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the converge's phase, steps, URL (token redacted) and any error.
    #[command(after_help = EXIT_CODES)]
    Status {
        /// Print the state document as JSON.
        #[arg(long)]
        json: bool,
        /// Show the token instead of <redacted>.
        #[arg(long)]
        show_token: bool,
    },
    /// Install and start Docker when no engine answers: the installing-docker phase of `run`, alone.
    ///
    /// Detects the distribution from /etc/os-release, installs Docker with its package
    /// manager (never a whole-system upgrade), merges [docker] registry_mirrors into
    /// /etc/docker/daemon.json, and starts the engine (systemd, else a detached dockerd).
    /// Does nothing when an engine already answers.
    #[command(after_help = EXIT_CODES)]
    InstallDocker {
        /// Print the exact plan (every command and file) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Install into this mounted root file system instead (commands run in `chroot DIR`,
        /// nothing is started): how images are pre-baked.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Print the proven login token, on one line.
    #[command(after_help = EXIT_CODES)]
    Token {
        /// Print {"token": "..."}.
        #[arg(long)]
        json: bool,
    },
    /// Print the login URL with its token, on one line.
    #[command(after_help = EXIT_CODES)]
    Url {
        /// Print {"url": "..."}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// What was fetched, from where, and the difference when the source has changed since.
    Status {
        /// Print the record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace the participant's copy with the configured source's version.
    ///
    /// The copy is first moved aside to <path>.bak-<UTC timestamp>, never deleted. Then
    /// restart the agent (systemctl restart jupyter-agent, or jupyter-agent run) so that
    /// Jupyter is rebuilt and restarted on the new copy.
    Reset,
}

/// Seconds (`600`) or a duration (`10m`, `1h30m`).
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|_| format!("{s:?}: expected seconds (600) or a duration such as 10m"))
}

/// Runs the parsed command line.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    crate::logging::init();
    ExitCode::from(match cli.command {
        Command::Run { once } => run(&cli.config, once),
        Command::Status { json, show_token } => status(&cli.config, json, show_token),
        Command::InstallDocker { dry_run, root } => install_docker(&cli.config, dry_run, root.as_deref()),
        Command::Token { json } => {
            print_one(&cli.config, json, "token", |s| s.jupyter.as_ref().map(|j| j.token.clone()))
        }
        Command::Url { json } => print_one(&cli.config, json, "url", |s| s.jupyter.as_ref().map(|j| j.url.clone())),
        Command::Wait { timeout, json } => wait(&cli.config, timeout, json),
        Command::Logs { follow, lines, json } => logs(&cli.config, follow, lines, json),
        Command::Install { json } => install(&cli.config, json),
        Command::Doctor { json } => doctor(&cli.config, json),
        Command::Workspace(WorkspaceCommand::Status { json }) => workspace_status(&cli.config, json),
        Command::Workspace(WorkspaceCommand::Reset) => workspace_reset(&cli.config),
    })
}

/// The value of a `Result<T, u8>`, or return its exit code (the error is already reported).
macro_rules! or_exit {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(code) => return code,
        }
    };
}

fn fail(code: u8, msg: impl std::fmt::Display) -> u8 {
    eprintln!("jupyter-agent: {msg}");
    code
}

fn run(config_path: &std::path::Path, once: bool) -> u8 {
    let cfg = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => return fail(exit::USAGE, e),
    };
    let store = match StateStore::lock(&cfg.state_dir) {
        Ok(s) => s,
        Err(e @ state::LockError::Busy { .. }) => return fail(exit::LOCKED, e),
        Err(e) => return fail(exit::FAILED, e),
    };
    let rt = or_exit!(runtime());
    rt.block_on(async {
        // Revisions go on from the last run's, so that they only ever grow.
        let mut seed = State::new();
        seed.revision = state::load(&cfg.state_file()).ok().flatten().map_or(0, |s| s.revision);
        let (publish, watched) = tokio::sync::watch::channel(seed);
        let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = match crate::api::bind(&cfg.socket) {
            Ok(listener) => {
                let shared = std::sync::Arc::new(crate::api::Shared { state: watched, docker: cfg.docker.clone() });
                Some(tokio::spawn(crate::api::serve(listener, shared, async move {
                    let _ = server_stopped.await;
                })))
            }
            Err(e) => {
                tracing::warn!(socket = %cfg.socket.display(), error = %e, "cannot serve the local API; status and wait read the state file instead");
                None
            }
        };
        let mut converger = crate::converge::Converger::new(&cfg, &store, Some(publish));
        let result = converger.converge().await;
        let code = match (&result, once) {
            (Err(e), true) => install_failure_code(e),
            (Ok(()), true) => exit::OK,
            (_, false) => {
                tracing::info!("staying in the foreground, watching the container (stop with SIGTERM or Ctrl-C)");
                converger.watch(Box::pin(wait_for_stop())).await;
                exit::OK
            }
        };
        if let Some(server) = server {
            let _ = stop_server.send(());
            let _ = server.await;
            let _ = std::fs::remove_file(&cfg.socket);
        }
        code
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, u8> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| fail(exit::FAILED, format!("cannot start the async runtime: {e}")))
}

/// The exit code for a failed install: refused (nothing changed) or failed.
fn install_failure_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| e.is::<crate::docker_install::Refused>()) {
        exit::UNSUPPORTED
    } else {
        exit::FAILED
    }
}

fn install_docker(config_path: &std::path::Path, dry_run: bool, root: Option<&std::path::Path>) -> u8 {
    use crate::docker_install as di;
    let cfg = match Config::load_or_default(config_path) {
        Ok(c) => c,
        Err(e) => return fail(exit::USAGE, e),
    };
    let root = root.unwrap_or(std::path::Path::new("/"));
    if !root.is_absolute() || !root.is_dir() {
        return fail(
            exit::USAGE,
            format!("--root {}: expected the absolute path of a mounted root file system", root.display()),
        );
    }
    let chrooted = root != std::path::Path::new("/");
    let rt = or_exit!(runtime());
    if dry_run {
        return match rt.block_on(di::dry_run(&cfg, root)) {
            Ok(text) => {
                print!("{text}");
                exit::OK
            }
            Err(e) => fail(install_failure_code(&e), format!("{e:#}")),
        };
    }
    let store = match StateStore::lock(&cfg.state_dir) {
        Ok(s) => s,
        Err(e @ state::LockError::Busy { .. }) => return fail(exit::LOCKED, e),
        Err(e) => return fail(exit::FAILED, e),
    };
    rt.block_on(async {
        let mut rec = state::Recorder::new(&store, None);
        let mut progress = di::RecordProgress(&mut rec);
        let result = if chrooted {
            di::install(&cfg, root, &mut progress).await.map(|_| ())
        } else {
            di::ensure_engine(&cfg, &mut progress).await.map(|_| ())
        };
        match result {
            Ok(()) => {
                // Docker is there; Jupyter is not converged yet.
                rec.state.phase = Phase::Pending;
                rec.save();
                exit::OK
            }
            Err(e) => {
                let code = install_failure_code(&e);
                let failure = rec.fail("docker", format!("{e:#}"), None, Vec::new());
                fail(code, format!("{}: {}", failure.step, failure.cause))
            }
        }
    })
}

async fn wait_for_stop() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else { return };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Loads the configuration for a command that does not converge.
fn lenient_config(config_path: &std::path::Path) -> Result<Config, u8> {
    Config::load_or_default(config_path).map_err(|e| fail(exit::USAGE, e))
}

/// Asks the agent (or the state file) for the state; `Err(code)` after printing why.
fn fetch_state(rt: &tokio::runtime::Runtime, cfg: &Config, show_token: bool) -> Result<State, u8> {
    match rt.block_on(crate::client::state(cfg, show_token)) {
        Ok((s, _)) => Ok(s),
        Err(e) if e.is::<crate::client::Unreachable>() => Err(fail(exit::NO_STATE, e)),
        Err(e) => Err(fail(exit::FAILED, format!("{e:#}"))),
    }
}

fn print_one(config_path: &std::path::Path, json: bool, key: &str, pick: impl Fn(&State) -> Option<String>) -> u8 {
    let cfg = or_exit!(lenient_config(config_path));
    let rt = or_exit!(runtime());
    let state = or_exit!(fetch_state(&rt, &cfg, true));
    match (state.phase, pick(&state)) {
        (Phase::Ready, Some(v)) if json => {
            println!("{}", serde_json::json!({ key: v }));
            exit::OK
        }
        (Phase::Ready, Some(v)) => {
            println!("{v}");
            exit::OK
        }
        (phase, _) => {
            fail(exit::FAILED, format!("Jupyter is not ready (phase: {}); see jupyter-agent status", phase.as_str()))
        }
    }
}

fn status(config_path: &std::path::Path, json: bool, show_token: bool) -> u8 {
    let cfg = or_exit!(lenient_config(config_path));
    let rt = or_exit!(runtime());
    let state = or_exit!(fetch_state(&rt, &cfg, show_token));
    let mut out = std::io::stdout().lock();
    let _ = if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&state).expect("state serializes"))
    } else {
        write!(out, "{}", render(&state))
    };
    if state.phase == Phase::Failed {
        exit::FAILED
    } else {
        exit::OK
    }
}

fn wait(config_path: &std::path::Path, timeout: std::time::Duration, json: bool) -> u8 {
    let cfg = or_exit!(lenient_config(config_path));
    let rt = or_exit!(runtime());
    let (state, timed_out) = match rt.block_on(crate::client::wait(&cfg, timeout)) {
        Ok(answer) => answer,
        Err(e) if e.is::<crate::client::Unreachable>() => return fail(exit::NO_STATE, e),
        Err(e) => return fail(exit::FAILED, format!("{e:#}")),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&state).expect("state serializes"));
    } else {
        print!("{}", render(&state));
    }
    match state.phase {
        Phase::Ready => exit::OK,
        Phase::Failed => exit::FAILED,
        _ if timed_out => fail(exit::TIMED_OUT, format!("not ready after {}", humantime::format_duration(timeout))),
        _ => exit::FAILED,
    }
}

fn logs(config_path: &std::path::Path, follow: bool, lines: u64, json: bool) -> u8 {
    let cfg = or_exit!(lenient_config(config_path));
    let rt = or_exit!(runtime());
    let mut print = |line: &str| {
        let mut out = std::io::stdout().lock();
        let _ = if json { writeln!(out, "{}", serde_json::json!({ "line": line })) } else { writeln!(out, "{line}") };
        let _ = out.flush();
    };
    match rt.block_on(crate::client::logs(&cfg, lines, follow, &mut print)) {
        Ok(()) => exit::OK,
        Err(e) if e.is::<crate::client::Unreachable>() => fail(exit::NO_STATE, e),
        Err(e) => fail(exit::FAILED, format!("{e:#}")),
    }
}

fn install(config_path: &std::path::Path, json: bool) -> u8 {
    match crate::service::install(config_path) {
        Ok(crate::service::Installed::Foreground(how)) => {
            if json {
                println!("{}", serde_json::json!({ "installed": false, "systemd": false, "instructions": how }));
            } else {
                println!("{how}");
            }
            exit::OK
        }
        Ok(crate::service::Installed::Service { binary, unit }) => {
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
            exit::OK
        }
        Err(e) => fail(exit::FAILED, format!("{e:#}")),
    }
}

/// The `[workspace]` section, or exit 2 saying there is none.
fn workspace_config(config_path: &std::path::Path) -> Result<(Config, crate::config::WorkspaceConfig), u8> {
    let cfg = lenient_config(config_path)?;
    match cfg.workspace.clone() {
        Some(w) => Ok((cfg, w)),
        None => Err(fail(
            exit::USAGE,
            format!("{}: no [workspace] section: there are no materials to manage", config_path.display()),
        )),
    }
}

fn workspace_status(config_path: &std::path::Path, json: bool) -> u8 {
    let (cfg, w) = or_exit!(workspace_config(config_path));
    let record = match crate::workspace::pending(&cfg.state_dir) {
        Ok(Some(r)) => r,
        Ok(None) => {
            return fail(exit::NO_STATE, format!("{} has not been fetched yet: jupyter-agent run", w.path.display()))
        }
        Err(e) => return fail(exit::FAILED, format!("{e:#}")),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&record).expect("serializable"));
        return exit::OK;
    }
    println!(
        "{}: {} from {}, fetched {}",
        w.path.display(),
        record.copy.identity,
        record.copy.source,
        record.copy.fetched_at
    );
    match &record.pending {
        None => println!("the configured source is the one fetched: nothing pending"),
        Some(p) => {
            println!(
                "the source changed to {}: the new version {} is in {}",
                p.copy.source,
                p.copy.identity,
                p.copy.path.display()
            );
            println!("  {}", p.difference.summary());
            for (label, files) in [
                ("added upstream", &p.difference.added),
                ("removed upstream", &p.difference.removed),
                ("changed upstream", &p.difference.changed),
                ("edited here", &p.difference.edited_here),
            ] {
                for f in files {
                    println!("  {label}: {f}");
                }
            }
            println!("jupyter-agent workspace reset replaces your copy with it, moving yours aside first");
        }
    }
    exit::OK
}

fn workspace_reset(config_path: &std::path::Path) -> u8 {
    let (cfg, w) = or_exit!(workspace_config(config_path));
    let rt = or_exit!(runtime());
    match rt.block_on(crate::workspace::reset(&w, &cfg.state_dir)) {
        Ok(reset) => {
            println!(
                "your copy was moved to {}; {} now holds {}.\nRestart the agent (systemctl restart jupyter-agent, or jupyter-agent run) to restart Jupyter on it.",
                reset.aside.display(),
                w.path.display(),
                reset.identity
            );
            exit::OK
        }
        Err(e) => fail(exit::FAILED, format!("{e:#}")),
    }
}

fn doctor(config_path: &std::path::Path, json: bool) -> u8 {
    let cfg = or_exit!(lenient_config(config_path));
    let rt = or_exit!(runtime());
    let state = rt.block_on(crate::client::state(&cfg, true)).ok().map(|(s, _)| s);
    let checks = rt.block_on(crate::doctor::run(&cfg, state.as_ref()));
    if json {
        println!("{}", serde_json::to_string_pretty(&checks).expect("checks serialize"));
    } else {
        print!("{}", crate::doctor::render(&checks));
    }
    if checks.iter().any(|c| c.verdict == crate::doctor::Verdict::Fail) {
        exit::FAILED
    } else {
        exit::OK
    }
}

/// The human form of `status`.
pub fn render(s: &State) -> String {
    let mut out = format!("phase: {}\n", s.phase.as_str());
    if let Some(j) = &s.jupyter {
        out.push_str(&format!("url: {}\n", j.url));
    }
    if let Some(c) = &s.container {
        out.push_str(&format!(
            "container: {} ({}) on {}:{}\n",
            c.name,
            &c.id[..c.id.len().min(12)],
            c.host_address,
            c.host_port
        ));
    }
    if let Some(i) = &s.image {
        let id = i.id.as_deref().map(crate::image::short_id).unwrap_or("-");
        out.push_str(&format!("image: {} ({id}, {})\n", i.reference, i.source));
    }
    out.push_str("steps:\n");
    for step in &s.steps {
        let took = step.ended_at.map_or_else(
            || "running".to_string(),
            |end| format!("{:.1}s", (end - step.started_at).num_milliseconds() as f64 / 1000.0),
        );
        let status = match step.status {
            state::StepStatus::Running => "running",
            state::StepStatus::Done => "done",
            state::StepStatus::Failed => "FAILED",
        };
        out.push_str(&format!(
            "  {:<10} {:<8} {:>8}  {}\n",
            step.name,
            status,
            took,
            step.detail.as_deref().unwrap_or("")
        ));
    }
    if let Some(e) = &s.error {
        out.push_str(&format!("error: {}: {}\n", e.step, e.cause));
        if let Some(code) = e.exit_code {
            out.push_str(&format!("container exit code: {code}\n"));
        }
        if !e.log_tail.is_empty() {
            out.push_str("last log lines:\n");
            for line in &e.log_tail {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    out
}
