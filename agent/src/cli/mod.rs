//! The command line: the commands (clap), and the one place where an
//! outcome becomes a documented exit code. Each command is a function in
//! [`commands`] that returns `anyhow::Result`; [`main`] prints the error
//! chain and maps it with [`exit_code`].

mod commands;
mod render;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

pub use render::render;

/// Exit codes, shared by every command, and the error that carries one.
pub use crate::exit::{self, Exit};

const EXIT_CODES: &str = "\
Exit codes:
  0  ready (status: neither failed nor stopped; doctor: no check failed;
     install: done)
  1  the converge failed, or Jupyter is not ready (token, url, wait), or a
     doctor check failed
  2  bad command line or configuration; nothing on the host was changed
  3  wait timed out
  4  the agent is not reachable and there is no state: it has not run here
     (hand: no agent runs)
  5  another jupyter-agent is converging this host
  6  Docker cannot be installed on this distribution (or from this source,
     or beside packages that conflict with it while [docker]
     remove_conflicts = false); nothing on the host was changed (run,
     install-docker); install-git: git cannot be installed on this
     distribution; install-nvidia-toolkit: the NVIDIA Container Toolkit
     cannot be installed on this distribution";

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
    /// With [tls] mode = "acme" or "self-signed" it also serves HTTPS on [container] publish
    /// and renews the certificate (docs/tls.md).
    #[command(after_help = EXIT_CODES)]
    Run {
        /// Exit when ready (0) or failed (1) instead of staying in the foreground
        /// (refused with [tls] on: exit 2, nothing changed).
        #[arg(long)]
        once: bool,
    },
    /// Wait until Jupyter is ready (exit 0) or the converge failed (exit 1); waits for a starting agent too.
    #[command(after_help = EXIT_CODES)]
    Wait {
        /// How long to wait: seconds, or a duration such as 10m.
        #[arg(long, value_name = "D", default_value = "10m", value_parser = jupyter_proto::duration::parse)]
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
    /// Apply the metadata service's firewall rules as the configuration says, and nothing else.
    ///
    /// What the converge's network step does for the metadata service, alone and idempotent:
    /// unless [container] metadata_access = true, only root may reach it (a rule in Docker's
    /// DOCKER-USER chain for the agent's containers, made with its jump from FORWARD when the
    /// engine has not started yet, and one in OUTPUT for local users); with it, the rules are
    /// removed. `install` enables jupyter-agent-firewall.service, which runs it at boot
    /// before docker.service, so that no container starts before the rules
    /// (docs/metadata.md#at-boot).
    #[command(after_help = EXIT_CODES)]
    Firewall,
    /// Print the script the user data runs to start Alibaba's GPU driver auto-install (docs/gpu.md).
    #[command(hide = true)]
    GpuAutoInstall,
    /// The workshop materials ([workspace]): what was fetched, what changed, reset, and the organiser's fixes (check, update).
    #[command(subcommand, after_help = EXIT_CODES)]
    Workspace(WorkspaceCommand),
    /// The participant's raised hand ("needs help"): raise it, or lower it once answered.
    ///
    /// Through the running agent only (exit 4 without one). The hand is shown by `status`,
    /// carried by the state document and the front's /_agent/progress JSON, kept across
    /// restarts of the agent, and lowers itself 2 hours after it was raised (docs/api.md).
    #[command(subcommand, after_help = EXIT_CODES)]
    Hand(HandCommand),
    /// The image, for organisers: build it once and ship the archive (image export).
    #[command(subcommand, after_help = EXIT_CODES)]
    Image(ImageCommand),
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
    /// Install git when it is missing: what `run` does before it fetches a git [workspace] source.
    ///
    /// Detects the distribution from /etc/os-release and installs its `git` package with its
    /// package manager (apt-get install --no-install-recommends git ca-certificates; dnf or yum
    /// install git), never a whole-system upgrade, with the same timeouts, retries, lock waits
    /// and apt roll-forward steps as install-docker; then runs `git --version`. Does nothing
    /// when git is installed. Output in <log_dir>/install-git.log; steps `git: ...` in the state.
    #[command(after_help = EXIT_CODES)]
    InstallGit {
        /// Print the exact plan (every command) and whether `run` would need it; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Install into this mounted root file system instead (commands run in `chroot DIR`).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Install the NVIDIA Container Toolkit and register its runtime with Docker (GPU hands-ons).
    ///
    /// Installs nvidia-container-toolkit (and nvidia-container-toolkit-base,
    /// libnvidia-container-tools, libnvidia-container1) from [docker] nvidia_toolkit_repository
    /// (NVIDIA's repository, or a mirror) with the distribution's package manager, with the same
    /// timeouts, retries, lock waits and apt roll-forward steps as install-docker; merges the
    /// `nvidia` runtime into /etc/docker/daemon.json; restarts dockerd (it registers runtimes only
    /// at start); checks that the engine's runtimes (docker info) include `nvidia`. Does nothing
    /// when the engine already offers it. The Docker engine must answer (install-docker first).
    /// Output in <log_dir>/install-nvidia-toolkit.log; steps `toolkit: ...` in the state.
    #[command(after_help = EXIT_CODES)]
    InstallNvidiaToolkit {
        /// Print the exact plan (every command and file) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Install into this mounted root file system instead (commands run in `chroot DIR`,
        /// daemon.json written below it, nothing restarted or checked): how images are pre-baked.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Print the proven login token, on one line; or, with --rotate, make a new one.
    #[command(after_help = EXIT_CODES)]
    Token {
        /// Print {"token": "..."}.
        #[arg(long)]
        json: bool,
        /// Make a new login token ([jupyter] token = "generate"). Every earlier URL stops
        /// working once Jupyter restarts with it: restart the agent (systemctl restart
        /// jupyter-agent, or jupyter-agent run) to recreate the container.
        #[arg(long, conflicts_with = "json")]
        rotate: bool,
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
    /// The copy is first moved aside to <path>.bak-<UTC timestamp>, never deleted. With the
    /// agent running, the agent does it and re-creates the container on the fresh copy (its
    /// kernels are lost); the command waits until Jupyter is back on the same URL (at most
    /// 15 minutes, else exit 3). Without a running agent, only the files are reset: then
    /// restart the agent (systemctl restart jupyter-agent, or jupyter-agent run) so that
    /// Jupyter is rebuilt and restarted on the new copy.
    Reset,
    /// Take the organiser's fixes: merge the source's newer version into the copy, in place.
    ///
    /// The source has moved when the configured branch points to another commit (git
    /// ls-remote) or the configuration names another source (a new tarball). File by file,
    /// as nbgitpuller merges: a file changed upstream and not here is updated, a new one
    /// appears, one deleted here comes back; one changed here and upstream stays yours and
    /// the new version is written beside it (name.new-<date>.ext); one you created under a
    /// name upstream now uses is renamed (name__<timestamp>.ext); one removed upstream is
    /// removed unless you changed it. Nothing of yours is overwritten or deleted. Jupyter
    /// keeps running (the container is not re-created). See docs/workspace-update.md.
    Update {
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Whether the source has moved and what `workspace update` would do; the copy is not touched.
    ///
    /// The newer version is fetched beside the copy (<path>.new) to compare. Exit 0 either way.
    Check {
        /// Print what an update would do as JSON (null when there is nothing to take).
        #[arg(long)]
        json: bool,
    },
    /// Write the participant's work as a zip ("download my work"): the workspace, or a
    /// copy a reset moved aside.
    ///
    /// Left out: [workspace] download_exclude, the env file and the top-level .git.
    /// Symbolic links are stored as links, never followed. The archive is written to a
    /// temporary file beside PATH (mode 0600) and renamed when complete; what it holds
    /// is printed on stderr.
    Download {
        /// A file, a directory (the archive is <workspace>-<YYYY-MM-DD>.zip in it), or -
        /// for stdout.
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
        /// A copy `workspace reset` moved aside, by name (as `workspace backups` lists
        /// it, or only its timestamp), instead of the workspace.
        #[arg(long, value_name = "NAME")]
        backup: Option<String>,
    },
    /// List the copies `workspace reset` moved aside, newest first.
    Backups {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum HandCommand {
    /// Raise the hand, with an optional message (one line, at most 280 characters); raising
    /// it again replaces the message and starts its 2 hours again.
    Raise {
        /// What the participant needs help with.
        #[arg(long, value_name = "TEXT")]
        message: Option<String>,
        /// Print {"hand": {...}}.
        #[arg(long)]
        json: bool,
    },
    /// Lower the hand (the organiser, once they have answered).
    Lower {
        /// Print {"hand": null}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Prepare the configured image (build, pull or load, as `run` does) and write it as an
    /// archive to ship, with its SHA-256.
    ///
    /// Writes FILE (gzip-compressed when its name ends in .gz or .tgz; docker load takes
    /// both) and FILE.sha256 (sha256sum format), and prints the [image] lines that load it
    /// on every instance: upload FILE (for example to OSS, with a signed URL) and set
    /// [image] archive to its URL and sha256 to the printed value. Nothing of the host's
    /// Jupyter container changes. See docs/images.md.
    Export {
        /// The archive to write (its directory must exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Print what was written as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The documented exit code of an error: the one place that decides it.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Exit>() {
            return e.code;
        }
        if cause.is::<crate::config::ConfigError>() {
            return exit::USAGE;
        }
        if let Some(crate::state::LockError::Busy { .. }) = cause.downcast_ref::<crate::state::LockError>() {
            return exit::LOCKED;
        }
        if cause.is::<crate::docker_install::Refused>()
            || cause.is::<crate::docker_install::git::Refused>()
            || cause.is::<crate::gpu::toolkit::Refused>()
        {
            return exit::UNSUPPORTED;
        }
        if let Some(failed) = cause.downcast_ref::<crate::daemon::ConvergeFailed>() {
            return if failed.refused { exit::UNSUPPORTED } else { exit::FAILED };
        }
        if cause.is::<crate::client::Unreachable>() {
            return exit::NO_STATE;
        }
    }
    exit::FAILED
}

impl Command {
    /// Whether the command logs as it works (the others print an answer and
    /// nothing else, and start as little as they can).
    fn logs(&self) -> bool {
        matches!(
            self,
            Command::Run { .. }
                | Command::InstallDocker { .. }
                | Command::InstallGit { .. }
                | Command::InstallNvidiaToolkit { .. }
                | Command::Install { .. }
                | Command::Doctor { .. }
                | Command::Workspace(_)
                | Command::Image(_)
        )
    }
}

/// Runs the parsed command line.
pub fn main() -> ExitCode {
    quiet_backtraces();
    let cli: Cli = match jupyter_proto::exit::parse_command_line() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    if cli.command.logs() {
        crate::logging::init();
    }
    match commands::dispatch(&cli.config, cli.command) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            let silent = e.downcast_ref::<Exit>().is_some_and(|x| x.message.is_empty())
                || e.is::<crate::daemon::ConvergeFailed>();
            if !silent {
                // Through the run's redactor: a failed step's chain may name a signed URL.
                eprintln!("jupyter-agent: {}", crate::secrets::redact(&format!("{e:#}")));
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Errors here are outcomes with a message, never printed with a backtrace;
/// with `RUST_BACKTRACE=1` in the environment, anyhow would still capture
/// one for each (a walk of the whole unwind table: most of a `status` call's
/// CPU time in a static binary). `RUST_LIB_BACKTRACE=1` still turns them on.
pub fn quiet_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // Before any thread exists: nothing else reads the environment yet.
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_their_documented_codes() {
        let cases: Vec<(anyhow::Error, u8)> = vec![
            (anyhow::anyhow!("boom"), exit::FAILED),
            (Exit::new(exit::TIMED_OUT, "not ready after 1s").into(), exit::TIMED_OUT),
            (crate::config::Config::parse(std::path::Path::new("c.toml"), "x = 1").unwrap_err().into(), exit::USAGE),
            (crate::client::Unreachable { socket: "s".into(), state: "t".into() }.into(), exit::NO_STATE),
            (crate::daemon::ConvergeFailed { cause: "x".into(), refused: true }.into(), exit::UNSUPPORTED),
            (anyhow::Error::new(Exit::silent(exit::FAILED)).context("while asking"), exit::FAILED),
        ];
        for (err, code) in cases {
            assert_eq!(exit_code(&err), code, "{err:#}");
        }
    }

    #[test]
    fn help_documents_every_exit_code() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for code in ["  0  ", "  1  ", "  2  ", "  3  ", "  4  ", "  5  ", "  6  "] {
            assert!(help.contains(code), "{help}");
        }
        Cli::command().debug_assert();
    }
}
