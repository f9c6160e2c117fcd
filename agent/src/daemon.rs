//! `jupyter-agent run` as a library function: take the state directory's
//! lock, serve the local API, converge, and (unless `once`) watch the
//! container until `shutdown` resolves. The CLI calls it with SIGTERM and
//! Ctrl-C as the shutdown; a test can call it in-process with its own.

use std::future::Future;
use std::sync::Arc;

use anyhow::Result;
use tracing::{info, warn};

use crate::api;
use crate::config::Config;
use crate::converge::Converger;
use crate::state::{self, StateStore};

/// The converge failed (the state says why, and it was logged); `code` is
/// the exit code that says how: [`crate::cli::exit::FAILED`], or
/// [`crate::cli::exit::UNSUPPORTED`] when Docker cannot be installed here.
#[derive(Debug, thiserror::Error)]
#[error("the converge failed: {cause}")]
pub struct ConvergeFailed {
    pub cause: String,
    pub refused: bool,
}

/// Runs the agent: converges, then with `once` returns (`Err` of
/// [`ConvergeFailed`] when the converge failed); else watches the container
/// until `shutdown` resolves and returns `Ok`. The socket is removed on the
/// way out.
pub async fn run(cfg: &Config, once: bool, shutdown: impl Future<Output = ()> + Unpin) -> Result<()> {
    let store = StateStore::lock(&cfg.state_dir)?;
    // Revisions go on from the last run's, so that they only ever grow.
    let mut seed = state::fresh();
    seed.revision = state::load(&cfg.state_file()).ok().flatten().map_or(0, |s| s.revision);
    let (updates, watched) = tokio::sync::watch::channel(seed);
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = match api::bind(&cfg.socket) {
        Ok(listener) => {
            let shared = Arc::new(api::Shared { state: watched, docker: cfg.docker.clone() });
            Some(tokio::spawn(api::serve(listener, shared, async move {
                let _ = server_stopped.await;
            })))
        }
        Err(e) => {
            warn!(socket = %cfg.socket.display(), error = %e, "cannot serve the local API; status and wait read the state file instead");
            None
        }
    };
    let mut converger = Converger::new(cfg, &store, Some(updates));
    let converged = converger.converge().await;
    let result = match (converged, once) {
        (Err(e), true) => {
            let refused = e.chain().any(|c| c.is::<crate::docker_install::Refused>());
            Err(ConvergeFailed { cause: format!("{e:#}"), refused }.into())
        }
        (Ok(()), true) => Ok(()),
        (_, false) => {
            info!("staying in the foreground, watching the container (stop with SIGTERM or Ctrl-C)");
            converger.watch(shutdown).await;
            Ok(())
        }
    };
    if let Some(server) = server {
        let _ = stop_server.send(());
        let _ = server.await;
        let _ = std::fs::remove_file(&cfg.socket);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::state::Phase;

    /// The daemon started in-process, as a test can: an engine that is not
    /// there (and may not be installed) fails the converge at its first step;
    /// the state says so, the error says how, and the socket is gone.
    #[tokio::test]
    async fn run_once_in_process_reports_a_failed_converge() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let text = format!(
            "state_dir = \"{d}/state\"\nsocket = \"{d}/agent.sock\"\nlog_dir = \"{d}/log\"\n\
             [docker]\nhost = \"unix://{d}/no-docker.sock\"\nping_timeout = \"1s\"\ninstall = false\n\
             [image]\nname = \"nb\"\n"
        );
        let cfg = Config::parse(Path::new("t.toml"), &text).unwrap();
        let err = run(&cfg, true, Box::pin(std::future::pending())).await.unwrap_err();
        let failed = err.downcast_ref::<ConvergeFailed>().expect("a failed converge");
        assert!(!failed.refused);
        assert!(failed.cause.contains("did not answer within 1s"), "{}", failed.cause);
        let state = state::load(&cfg.state_file()).unwrap().unwrap();
        assert_eq!(state.phase, Phase::Failed);
        assert_eq!(state.error.unwrap().step, "engine");
        assert!(!cfg.socket.exists(), "the socket is removed on the way out");
    }
}
