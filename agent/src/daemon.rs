//! `jupyter-agent run` as a library function: take the state directory's
//! lock, serve the local API, converge, and (unless `once`) watch the
//! container and take the actions asked (crate::actions) until `shutdown`
//! resolves. The CLI calls it with SIGTERM and
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
/// the exit code that says how: [`crate::exit::FAILED`], or
/// [`crate::exit::UNSUPPORTED`] when Docker cannot be installed here.
#[derive(Debug, thiserror::Error)]
#[error("the converge failed: {cause}")]
pub struct ConvergeFailed {
    pub cause: String,
    pub refused: bool,
}

/// The agent was stopped before its converge ended (`run --once` only; the
/// state says `stopped`).
#[derive(Debug, thiserror::Error)]
#[error("stopped before Jupyter was ready")]
pub struct Stopped;

/// Runs the agent: converges, then with `once` returns (`Err` of
/// [`ConvergeFailed`] when the converge failed); else watches the container
/// until `shutdown` resolves and returns `Ok`. `shutdown` also ends the
/// converge itself, at once, whatever step runs: the state then says
/// `stopped`. The socket is removed on the way out.
pub async fn run(cfg: &Config, once: bool, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    let store = StateStore::lock(&cfg.state_dir)?;
    if !once {
        crate::front::limits::raise_nofile();
    }
    // Revisions go on from the last run's, so that they only ever grow.
    let mut seed = state::fresh();
    seed.revision = state::load(&cfg.state_file()).ok().flatten().map_or(0, |s| s.revision);
    let (updates, watched) = tokio::sync::watch::channel(seed);
    // The first write of the state file, before anything else starts.
    let converger = Converger::new(cfg, &store, Some(updates), !once)?;
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let notifier = crate::notify::Notifier::from_env();
    let mut changes = watched.clone();
    // The actions the watch loop takes, asked through the local API and the
    // front's pages; `run --once` takes none (it ends with its converge).
    let (actions, taken) = match once {
        true => (None, None),
        false => {
            let (actions, taken) = crate::actions::channel();
            (Some(actions), Some(taken))
        }
    };
    let mut converger = match &actions {
        Some(actions) => converger.with_pages(actions.clone()),
        None => converger,
    };
    let server = match api::bind(&cfg.socket) {
        Ok(listener) => {
            let shared = Arc::new(api::Shared { state: watched, docker: cfg.docker.clone(), actions });
            Some(tokio::spawn(api::serve(listener, shared, async move {
                let _ = server_stopped.await;
            })))
        }
        Err(e) => {
            warn!(socket = %cfg.socket.display(), error = %e, "cannot serve the local API; status and wait read the state file instead");
            None
        }
    };
    // The service manager: ready once the socket answers (the converge may
    // take many minutes), then the phase and step as they change.
    if let Some(mut notifier) = notifier {
        notifier.ready();
        tokio::spawn(async move {
            loop {
                let state = changes.borrow_and_update().clone();
                notifier.status(&state);
                if changes.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    // Every step is cancellable: dropping it kills its child processes and
    // closes its connections.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let converged = {
        let converge = converger.converge();
        tokio::pin!(converge);
        tokio::select! {
            converged = &mut converge => Some(converged),
            _ = stopped(stop_rx.clone()) => None,
        }
    };
    let result = match (converged, once) {
        (None, once) => {
            converger.record_stop();
            if once {
                Err(Stopped.into())
            } else {
                Ok(())
            }
        }
        (Some(Err(e)), true) => {
            let refused = e.chain().any(|c| c.is::<crate::docker_install::Refused>());
            Err(ConvergeFailed { cause: format!("{e:#}"), refused }.into())
        }
        (Some(Ok(())), true) => Ok(()),
        (Some(_), false) => {
            info!("staying in the foreground, watching the container (stop with SIGTERM or Ctrl-C)");
            converger.watch(Box::pin(stopped(stop_rx)), taken).await;
            Ok(())
        }
    };
    if let Some(server) = server {
        let _ = stop_server.send(());
        let _ = server.await;
        let _ = std::fs::remove_file(&cfg.socket);
    }
    // Here, not in the status task: the process may end before that task runs again.
    if let Some(notifier) = crate::notify::Notifier::from_env() {
        notifier.stopping();
    }
    result
}

/// A long-running `run` whose configuration cannot be used: the refusal is
/// recorded (a failed `config` step) and served on the socket until
/// `shutdown`, so that `status`, `wait` and jupyter-bootstrap report it at
/// once instead of waiting for an agent that never answers, and a service
/// manager sees a process that stays, not a restart loop. The state and the
/// socket go where the file says, when it can be read that far (see
/// [`Config::locations`]). Returns the refusal.
pub async fn serve_refusal(
    config: &std::path::Path,
    refusal: crate::config::ConfigError,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Error {
    let (state_dir, socket) = Config::locations(config);
    let Ok(store) = StateStore::lock(&state_dir) else { return refusal.into() };
    let (updates, watched) = tokio::sync::watch::channel(state::fresh());
    let Ok(mut rec) = state::Recorder::new(&store, Some(updates)) else { return refusal.into() };
    rec.state.run = Some(state::AgentRun { pid: std::process::id(), once: false });
    rec.begin("config", crate::state::Phase::Pending);
    rec.fail("config", refusal.to_string(), None, Vec::new());
    tracing::error!("{refusal}; serving this failure on {} until stopped (SIGTERM)", socket.display());
    let Ok(listener) = api::bind(&socket) else { return refusal.into() };
    if let Some(mut notifier) = crate::notify::Notifier::from_env() {
        // Ready (the refusal is served), and its status says why.
        notifier.ready();
        notifier.status(&watched.borrow());
    }
    let shared = Arc::new(api::Shared { state: watched, docker: Config::defaults().docker, actions: None });
    api::serve(listener, shared, shutdown).await;
    let _ = std::fs::remove_file(&socket);
    refusal.into()
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
        let err = run(&cfg, true, std::future::pending()).await.unwrap_err();
        let failed = err.downcast_ref::<ConvergeFailed>().expect("a failed converge");
        assert!(!failed.refused);
        assert!(failed.cause.contains("did not answer within 1s"), "{}", failed.cause);
        let state = state::load(&cfg.state_file()).unwrap().unwrap();
        assert_eq!(state.phase, Phase::Failed);
        assert_eq!(state.error.unwrap().step, "engine");
        assert!(!cfg.socket.exists(), "the socket is removed on the way out");
    }

    /// A state file that cannot be written fails the run at once, loudly:
    /// before, it was a warning and the converge went on where nobody could
    /// follow it.
    #[tokio::test]
    async fn a_state_file_that_cannot_be_written_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let text = format!(
            "state_dir = \"{d}/state\"\nsocket = \"{d}/agent.sock\"\n[docker]\nhost = \"unix://{d}/no.sock\"\n\
             ping_timeout = \"1s\"\ninstall = false\n[image]\nname = \"nb\"\n"
        );
        let cfg = Config::parse(Path::new("t.toml"), &text).unwrap();
        std::fs::create_dir_all(cfg.state_file()).unwrap();
        let err = run(&cfg, true, std::future::pending()).await.unwrap_err();
        let message = format!("{err:#}");
        assert!(message.starts_with(&format!("writing the state file {d}/state/state.json: ")), "{message}");
        assert!(!cfg.socket.exists());
    }
}
