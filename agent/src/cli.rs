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
    /// No state: the agent has not run on this host (with this state_dir).
    pub const NO_STATE: u8 = 4;
    /// Another agent holds the lock on the state directory.
    pub const LOCKED: u8 = 5;
    /// Docker cannot be installed on this distribution (or with this source); nothing was changed.
    pub const UNSUPPORTED: u8 = 6;
}

const EXIT_CODES: &str = "\
Exit codes:
  0  ready (status: the agent has not failed)
  1  the converge failed, or Jupyter is not ready yet (token, url)
  2  bad command line or configuration; nothing on the host was changed
  4  no state: the agent has not run here (status, token, url)
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
        <state_dir>/state.json (mode 0600); `status`, `token` and `url` read it.",
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
    /// Converge: engine, image, container, token, proof.
    #[command(after_help = EXIT_CODES)]
    Run {
        /// Exit when ready (0) or failed (1) instead of staying in the foreground.
        #[arg(long)]
        once: bool,
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
    Token,
    /// Print the login URL with its token, on one line.
    #[command(after_help = EXIT_CODES)]
    Url,
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
        Command::Token => print_one(&cli.config, |s| s.jupyter.as_ref().map(|j| j.token.clone())),
        Command::Url => print_one(&cli.config, |s| s.jupyter.as_ref().map(|j| j.url.clone())),
    })
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
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        if let (_, Some(err)) = crate::converge::converge(&cfg, &store).await {
            return install_failure_code(&err);
        }
        if !once {
            tracing::info!("ready; staying in the foreground (stop with Ctrl-C or SIGTERM)");
            wait_for_stop().await;
        }
        exit::OK
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
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
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
        let mut rec = state::Recorder::new(&store);
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

/// Loads the state named by the configuration; `Err(code)` after printing why.
fn load_state(config_path: &std::path::Path) -> Result<State, u8> {
    let cfg = Config::load_or_default(config_path).map_err(|e| fail(exit::USAGE, e))?;
    let path = cfg.state_file();
    match state::load(&path) {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(fail(
            exit::NO_STATE,
            format!(
                "no state at {}: the agent has not run on this host (start it with jupyter-agent run)",
                path.display()
            ),
        )),
        Err(e) => Err(fail(exit::FAILED, format!("{e:#}"))),
    }
}

fn print_one(config_path: &std::path::Path, pick: impl Fn(&State) -> Option<String>) -> u8 {
    let state = match load_state(config_path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match (state.phase, pick(&state)) {
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
    let state = match load_state(config_path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let shown = if show_token { state.clone() } else { state.redacted() };
    let mut out = std::io::stdout().lock();
    let _ = if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&shown).expect("state serializes"))
    } else {
        write!(out, "{}", render(&shown))
    };
    if state.phase == Phase::Failed {
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
