//! The watch: after the converge, a long-running agent follows its
//! container through Docker's event stream (no polling: the engine pushes),
//! so that the state follows it when it dies, starts again or is removed,
//! and the certificate's renewals reach the URL's note. Between events it
//! takes the actions it is asked for (crate::actions), one at a time: a
//! hand raised or lowered, a reset of the workspace (then the converge again).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bollard::query_parameters::EventsOptionsBuilder;
use bollard::Docker;
use chrono::Utc;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use jupyter_proto::retry::Policy;

use super::{container_state, Converger, Outcome, Step};
use crate::actions::{Action, ActionError, Hand, HandChange, Reply, ResetAnswer};
use crate::container::Endpoint;
use crate::state::{Phase, StepStatus};

/// The reset's own step, before the converge runs again.
const RESET: Step =
    Step { name: "workspace: reset", phase: Phase::FetchingWorkspace, context: "resetting the workspace" };

/// Reconnecting to the engine's event stream after it ended (the engine
/// restarted or went away): from 0.5 s, at most 10 s apart (20 s with
/// jitter), for as long as the agent runs.
const WATCH_RECONNECT: Policy = Policy::new(Duration::from_millis(500), Duration::from_secs(10), Duration::MAX);

/// From this many restarts by its restart policy, the container is in a
/// restart loop: the state stays `failed`, naming the loop, instead of
/// flipping between `waiting-for-token` and `failed` at every start.
const RESTART_LOOP_COUNT: i64 = 2;
/// In a restart loop, a start is believed once the container has stayed up
/// this long; then its token is proven.
const RESTART_LOOP_QUIET: Duration = Duration::from_secs(60);

/// What looking at the container after a reconnect came to.
enum Resynced {
    Done,
    /// The engine does not answer (yet).
    EngineAway,
    /// `stop` resolved meanwhile.
    Stopped,
}

impl Converger<'_> {
    /// Watches the container through Docker's event stream until `stop`
    /// resolves: a death is recorded as `failed` with the exit code and log
    /// tail; a start (restart policy, reboot, `docker start`) is followed by
    /// a new token, proven, and a new URL.
    ///
    /// Whenever the stream ends (the engine restarted or went away for a
    /// while), events may have been missed: once the engine answers again,
    /// the container itself is looked at (running with a new start time: its
    /// token is proven again; stopped or gone: recorded), and the new stream
    /// starts from that moment, so nothing falls in between.
    ///
    /// Meanwhile it takes the `actions` asked (crate::actions), one at a
    /// time, even when there is no container to follow; and lowers a raised
    /// hand when its time is up.
    pub async fn watch(
        &mut self,
        mut stop: impl std::future::Future<Output = ()> + Unpin,
        mut actions: Option<mpsc::Receiver<Action>>,
    ) {
        let mut reconnect = WATCH_RECONNECT.delays();
        // Set once a stream has ended: from then on, look before listening.
        let mut reconnected = false;
        let mut since: Option<String> = None;
        loop {
            let (Some(docker), Some(id)) = (self.docker.clone(), self.container.as_ref().map(|c| c.id.clone())) else {
                // No container to follow (the converge failed before it, or
                // it was removed): actions only, a reset converges again.
                tokio::select! {
                    _ = &mut stop => return,
                    _ = sleep_until(self.hand_expiry()) => self.expire_hand(),
                    action = next_action(&mut actions) => {
                        if self.act(action, &mut stop).await.is_none() {
                            return;
                        }
                        reconnected = false;
                        since = None;
                    }
                }
                continue;
            };
            if reconnected {
                let from = Utc::now().timestamp().to_string();
                match self.resync(&docker, &id, &mut stop).await {
                    Resynced::Stopped => return,
                    Resynced::EngineAway => {
                        let delay = reconnect.next().unwrap_or(WATCH_RECONNECT.max_delay);
                        tokio::select! {
                            _ = &mut stop => return,
                            _ = tokio::time::sleep(delay) => {}
                        }
                        continue;
                    }
                    Resynced::Done => since = Some(from),
                }
            }
            let filters = HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                ("container".to_string(), vec![id.clone()]),
                ("event".to_string(), vec!["die".to_string(), "start".to_string(), "destroy".to_string()]),
            ]);
            let mut options = EventsOptionsBuilder::new().filters(&filters);
            if let Some(since) = &since {
                options = options.since(since);
            }
            let mut events = docker.events(Some(options.build()));
            reconnected = true;
            // In a restart loop: when a start that has stayed up is believed.
            let mut believe_at: Option<tokio::time::Instant> = None;
            // A reset converged again: follow the container it left, at once.
            let mut converged_again = false;
            loop {
                let hand_expiry = self.hand_expiry();
                let event = tokio::select! {
                    _ = &mut stop => return,
                    event = events.next() => event,
                    state = crate::tls::next_update(&mut self.tls) => {
                        // A new certificate, or ACME failing: the note follows; the URL does not change.
                        self.rec.state.tls = Some(state);
                        let _ = self.publish(Outcome::Renote);
                        continue;
                    }
                    _ = sleep_until(believe_at) => {
                        believe_at = None;
                        info!("the container has stayed up since it started: proving its token");
                        if self.prove_again(&docker, &id, &mut stop).await.is_none() {
                            return;
                        }
                        continue;
                    }
                    _ = sleep_until(hand_expiry) => {
                        self.expire_hand();
                        continue;
                    }
                    action = next_action(&mut actions) => {
                        let reset = matches!(action, Action::Reset(_));
                        if self.act(action, &mut stop).await.is_none() {
                            return;
                        }
                        if reset {
                            converged_again = true;
                            break;
                        }
                        continue;
                    }
                };
                let Some(Ok(event)) = event else { break };
                reconnect = WATCH_RECONNECT.delays();
                let action = event.action.unwrap_or_default();
                let attributes = event.actor.and_then(|a| a.attributes).unwrap_or_default();
                match action.as_str() {
                    "die" => {
                        let code = attributes.get("exitCode").and_then(|c| c.parse::<i64>().ok());
                        info!(exit_code = ?code, "the container died");
                        believe_at = None;
                        let cause = match restart_count(&docker, &id).await {
                            n if n >= RESTART_LOOP_COUNT => format!(
                                "the container is in a restart loop: restarted {n} times by its restart policy; last: {}",
                                exited(code)
                            ),
                            _ => exited(code),
                        };
                        self.record_failure("container", cause).await;
                    }
                    "start" if restart_count(&docker, &id).await >= RESTART_LOOP_COUNT => {
                        info!("the container started again, in a restart loop: its token is proven once it stays up");
                        believe_at = Some(tokio::time::Instant::now() + RESTART_LOOP_QUIET);
                    }
                    "start" => {
                        info!("the container started again: proving its new token");
                        if self.prove_again(&docker, &id, &mut stop).await.is_none() {
                            return;
                        }
                    }
                    "destroy" => {
                        self.record_removed().await;
                        break;
                    }
                    _ => {}
                }
            }
            if converged_again {
                // The container the reset left (a new one, or the old one
                // when the converge failed before it) is looked at, then followed.
                continue;
            }
            // The stream ended: the engine restarted or went away. Try again after a delay.
            let delay = reconnect.next().unwrap_or(WATCH_RECONNECT.max_delay);
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Takes one action (crate::actions); `None` when `stop` came first
    /// (the state then says `stopped`). An action whose asker has given up
    /// is not taken.
    async fn act(&mut self, action: Action, stop: &mut (impl std::future::Future<Output = ()> + Unpin)) -> Option<()> {
        match action {
            Action::Hand(change, reply) => {
                if !reply.is_closed() {
                    let _ = reply.send(self.change_hand(change));
                }
            }
            Action::Reset(reply) => {
                if !reply.is_closed() {
                    return self.reset_workspace(reply, stop).await;
                }
            }
            Action::Update(reply) => {
                if !reply.is_closed() {
                    let updated = tokio::select! {
                        updated = self.update_workspace() => updated,
                        _ = &mut *stop => return None,
                    };
                    let _ = reply.send(updated);
                }
            }
        }
        Some(())
    }

    /// The organiser's fixes taken in place (`workspace::update`): the files
    /// change under the running container, which is left as it is.
    async fn update_workspace(&mut self) -> Result<crate::workspace::Updated, ActionError> {
        let cfg = self.cfg;
        let Some(w) = &cfg.workspace else {
            return Err(ActionError::Refused(
                "the configuration has no [workspace] section: there are no materials to update".into(),
            ));
        };
        info!(path = %w.path.display(), "taking the organiser's fixes into the workspace");
        crate::workspace::update(w, &cfg.state_dir).await.map_err(|e| {
            let cause = crate::secrets::redact(&format!("{e:#}"));
            warn!("updating the workspace: {cause}");
            ActionError::Failed(format!("updating the workspace: {cause}"))
        })
    }

    /// Raises or lowers the hand: kept in the state directory first, then
    /// in the state.
    fn change_hand(&mut self, change: HandChange) -> Result<Option<Hand>, ActionError> {
        let hand = match change {
            HandChange::Raise { message } => Some(Hand { raised_at: Utc::now(), message }),
            HandChange::Lower => None,
        };
        crate::actions::save_hand(&self.cfg.state_dir, hand.as_ref())
            .map_err(|e| ActionError::Failed(format!("{e:#}")))?;
        match &hand {
            // The message is the participant's: its length only, in the log.
            Some(h) => info!(message_chars = h.message.as_ref().map_or(0, |m| m.chars().count()), "a hand was raised"),
            None => info!("the hand was lowered"),
        }
        self.rec.state.hand = hand.clone();
        self.rec.save();
        Ok(hand)
    }

    /// When the raised hand lowers itself, if one is raised.
    fn hand_expiry(&self) -> Option<tokio::time::Instant> {
        let hand = self.rec.state.hand.as_ref()?;
        let left = (crate::actions::expires_at(hand) - Utc::now()).to_std().unwrap_or_default();
        Some(tokio::time::Instant::now() + left)
    }

    /// The raised hand's time is up (docs/api.md#raise-a-hand): lowered.
    fn expire_hand(&mut self) {
        info!("the raised hand lowered itself after {}", jupyter_proto::duration::show(crate::actions::HAND_TTL));
        if let Err(e) = crate::actions::save_hand(&self.cfg.state_dir, None) {
            warn!("{e:#}");
        }
        self.rec.state.hand = None;
        self.rec.save();
    }

    /// The reset through the running agent: the participant's copy moved
    /// aside and the materials fetched fresh (`workspace::reset`), answered;
    /// then the converge again, which re-creates the container on the
    /// fresh copy (its identity changed) and proves the same login. A fetch
    /// that fails leaves the copy, the container and the URL as they were.
    async fn reset_workspace(
        &mut self,
        reply: Reply<ResetAnswer>,
        stop: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) -> Option<()> {
        let cfg = self.cfg;
        let Some(w) = &cfg.workspace else {
            let _ = reply.send(Err(ActionError::Refused(
                "the configuration has no [workspace] section: there are no materials to reset".into(),
            )));
            return Some(());
        };
        info!(path = %w.path.display(), "resetting the workspace");
        let before = (self.rec.state.phase.clone(), self.rec.state.jupyter.take(), self.rec.state.error.take());
        // A new converge: its steps start again.
        self.rec.state.steps.clear();
        self.rec.begin(RESET.name, RESET.phase);
        let reset = tokio::select! {
            reset = crate::workspace::reset(w, &cfg.state_dir) => reset,
            _ = &mut *stop => {
                self.record_stop();
                return None;
            }
        };
        let reset = match reset {
            Ok(reset) => reset,
            Err(e) => {
                let cause = crate::secrets::redact(&format!("{e:#}"));
                warn!("{}: {cause}; the copy and Jupyter are left as they were", RESET.context);
                self.rec.state.end(RESET.name, StepStatus::Failed, Some(cause.clone()));
                (self.rec.state.phase, self.rec.state.jupyter, self.rec.state.error) = before;
                self.rec.save();
                let _ = reply.send(Err(ActionError::Failed(format!(
                    "{}: {cause}; your copy and Jupyter are left as they were",
                    RESET.context
                ))));
                return Some(());
            }
        };
        self.rec.done(RESET.name, format!("moved your copy to {}; fetched {}", reset.aside.display(), reset.identity));
        let _ = reply.send(Ok(ResetAnswer { aside: reset.aside, identity: reset.identity }));
        if let Some(front) = &self.front {
            // The progress page, until the new container's token is proven.
            front.set_backend(None);
        }
        let converged = tokio::select! {
            converged = self.converge() => converged,
            _ = &mut *stop => {
                self.record_stop();
                return None;
            }
        };
        if let Err(e) = converged {
            // Recorded as the state's failure by the converge.
            warn!("the converge after the reset failed: {e:#}");
        }
        Some(())
    }

    /// Looks at the container after events may have been missed.
    async fn resync(
        &mut self,
        docker: &Docker,
        id: &str,
        stop: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) -> Resynced {
        let now = match docker.inspect_container(id, None).await {
            Ok(now) => now,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                self.record_removed().await;
                return Resynced::Done;
            }
            Err(e) => {
                info!(error = %e, "the Docker engine does not answer yet; looking again shortly");
                return Resynced::EngineAway;
            }
        };
        let state = now.state.unwrap_or_default();
        let known = self.container.as_ref().and_then(|c| c.started_at.clone());
        if state.running == Some(true) {
            if state.started_at != known || !self.rec.state.is_ready() {
                info!("the container runs since the engine came back: proving its token");
                if self.prove_again(docker, id, stop).await.is_none() {
                    return Resynced::Stopped;
                }
            }
        } else if !self.rec.state.is_failed() {
            info!(exit_code = ?state.exit_code, "the container stopped while the engine was away");
            self.record_failure("container", exited(state.exit_code)).await;
        }
        Resynced::Done
    }

    /// Proves the token of a container that (re)started; `None` when `stop`
    /// came first (the state then says `stopped`).
    async fn prove_again(
        &mut self,
        docker: &Docker,
        id: &str,
        stop: &mut (impl std::future::Future<Output = ()> + Unpin),
    ) -> Option<()> {
        let proven = tokio::select! {
            proven = self.restarted(docker, id) => Some(proven),
            _ = stop => None,
        };
        match proven {
            None => {
                self.record_stop();
                None
            }
            Some(Err(err)) => {
                self.record_failure("token", format!("{err:#}")).await;
                Some(())
            }
            Some(Ok(())) => Some(()),
        }
    }

    async fn record_removed(&mut self) {
        self.record_failure(
            "container",
            "the container was removed; run jupyter-agent again (or restart its service) to converge".into(),
        )
        .await;
        self.container = None;
        self.rec.state.container = None;
        self.rec.save();
    }

    /// The container started again: its start time and published port are
    /// new; its token is proven and the URL published again.
    async fn restarted(&mut self, docker: &Docker, id: &str) -> Result<()> {
        let now = docker.inspect_container(id, None).await.context("inspecting the restarted container")?;
        let Some(mut running) = self.container.clone() else { bail!("no container is watched") };
        running.endpoint = Endpoint::of(&now, self.cfg.container.port, &self.cfg.jupyter_publish(self.fronted));
        running.started_at = now.state.and_then(|s| s.started_at);
        self.container = Some(running.clone());
        self.rec.state.container = Some(container_state(&running));
        self.rec.state.error = None;
        // The GPUs once more: the runtime gives them again at each start.
        self.prove_gpus(docker, &running).await?;
        let proven = self.prove(&running).await?.proven()?;
        self.ready(proven).await
    }
}

/// The cause recorded when the container exited.
fn exited(code: Option<i64>) -> String {
    match code {
        Some(code) => format!("the container exited with code {code}"),
        None => "the container exited".to_string(),
    }
}

/// How many times the restart policy restarted the container (0 when it
/// cannot be asked).
async fn restart_count(docker: &Docker, id: &str) -> i64 {
    docker.inspect_container(id, None).await.ok().and_then(|c| c.restart_count).unwrap_or(0)
}

/// The next action asked, or never once every sender is gone (or there is
/// no channel: an agent that takes no actions).
async fn next_action(actions: &mut Option<mpsc::Receiver<Action>>) -> Action {
    if let Some(rx) = actions {
        if let Some(action) = rx.recv().await {
            return action;
        }
    }
    *actions = None;
    std::future::pending().await
}

/// Sleeps until `at`, or for ever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::actions::{channel, Actions, HAND_TTL};
    use crate::config::Config;
    use crate::state::StateStore;

    /// A converger that has no engine (its converge never ran): the watch
    /// serves actions only, as after a converge that failed early.
    fn config(dir: &Path) -> Config {
        let d = dir.display();
        let text = format!("state_dir = \"{d}/state\"\nsocket = \"{d}/agent.sock\"\n[image]\nname = \"nb\"\n");
        Config::parse(Path::new("t.toml"), &text).unwrap()
    }

    /// Runs the watch until `ask` has asked what it asks; the states it published.
    async fn watching<F: std::future::Future<Output = ()>>(
        cfg: &Config,
        before: impl FnOnce(&mut Converger<'_>),
        ask: impl FnOnce(Actions) -> F,
    ) -> tokio::sync::watch::Receiver<crate::state::State> {
        let store = StateStore::lock(&cfg.state_dir).unwrap();
        let (tx, rx) = tokio::sync::watch::channel(crate::state::fresh());
        let mut converger = Converger::new(cfg, &store, Some(tx), true).unwrap();
        before(&mut converger);
        let (actions, taken) = channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let watch = converger.watch(
            Box::pin(async move {
                let _ = stop_rx.await;
            }),
            Some(taken),
        );
        let asking = async move {
            ask(actions).await;
            let _ = stop_tx.send(());
        };
        tokio::join!(watch, asking);
        rx
    }

    #[tokio::test]
    async fn the_watch_takes_hands_and_refuses_a_reset_or_an_update_without_a_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let rx = watching(
            &cfg,
            |_| {},
            |actions| async move {
                let hand = actions.hand(HandChange::raise(Some("stuck")).unwrap()).await.unwrap().unwrap();
                assert_eq!(hand.message.as_deref(), Some("stuck"));
                assert_eq!(
                    actions.reset().await,
                    Err(ActionError::Refused(
                        "the configuration has no [workspace] section: there are no materials to reset".into()
                    ))
                );
                assert_eq!(
                    actions.update().await.map(|_| ()),
                    Err(ActionError::Refused(
                        "the configuration has no [workspace] section: there are no materials to update".into()
                    ))
                );
            },
        )
        .await;
        assert_eq!(rx.borrow().hand.as_ref().unwrap().message.as_deref(), Some("stuck"));
        assert!(cfg.state_dir.join("hand.json").exists());
        // Kept for the next start of the agent, and lowered there.
        let again = watching(
            &cfg,
            |c| assert_eq!(c.rec.state.hand.as_ref().and_then(|h| h.message.as_deref()), Some("stuck")),
            |actions| async move { assert_eq!(actions.hand(HandChange::Lower).await, Ok(None)) },
        )
        .await;
        assert_eq!(again.borrow().hand, None);
        assert!(!cfg.state_dir.join("hand.json").exists());
    }

    #[tokio::test]
    async fn a_raised_hand_lowers_itself_when_its_time_is_up() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let almost = Utc::now() - chrono::Duration::from_std(HAND_TTL).unwrap() + chrono::Duration::milliseconds(300);
        let hand = Hand { raised_at: almost, message: None };
        crate::state::ensure_private_dir(&cfg.state_dir).unwrap();
        crate::actions::save_hand(&cfg.state_dir, Some(&hand)).unwrap();
        let rx = watching(
            &cfg,
            |c| assert_eq!(c.rec.state.hand, Some(hand.clone()), "raised before this start"),
            |_| tokio::time::sleep(Duration::from_secs(1)),
        )
        .await;
        assert_eq!(rx.borrow().hand, None);
        assert!(!cfg.state_dir.join("hand.json").exists());
    }
}
