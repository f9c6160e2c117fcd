//! The converge: the runbook from "a bare host" to "a Jupyter container is
//! running and its login URL is proven", one step after the other, each
//! recorded in the state as it starts and ends; then, for a long-running
//! agent, watching the container through Docker's event stream so that the
//! state follows it when it dies or starts again.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use bollard::query_parameters::EventsOptionsBuilder;
use bollard::Docker;
use chrono::Utc;
use futures_util::StreamExt;
use tracing::{error, info, warn};

use jupyter_proto::redact::{redact, Redactor};
use jupyter_proto::report;
use jupyter_proto::retry::Policy;

use crate::config::{Config, ImageSource, TokenChoice};
use crate::container::{self, Endpoint, Spec};
use crate::docker_install;
use crate::image;
use crate::jupyter;
use crate::state::{ContainerState, Failure, ImageState, JupyterState, Phase, Recorder, State, StateStore};
use crate::url;

/// Reconnecting to the engine's event stream after it ended (the engine
/// restarted or went away): from 0.5 s, at most 10 s apart (20 s with
/// jitter), for as long as the agent runs.
const WATCH_RECONNECT: Policy = Policy::new(Duration::from_millis(500), Duration::from_secs(10), Duration::MAX);

/// Who writes the result file, in its first line.
const PROGRAM: &str = "jupyter-agent";

/// One agent's converge and watch, with the state it keeps.
pub struct Converger<'a> {
    cfg: &'a Config,
    rec: Recorder<'a>,
    docker: Option<Docker>,
    /// The token the agent gave the server, when it gave one.
    login: Option<crate::login::Login>,
    /// The URL's host, once resolved.
    host: Option<String>,
    /// The HTTPS listener in front of Jupyter, with `[tls]` on.
    tls: Option<crate::tls::Tls>,
    /// The URL's note apart from the certificate's (see [`Converger::note`]).
    token_note: Option<String>,
}

/// The server did not take the token from `JUPYTER_TOKEN_FILE`.
#[derive(Debug)]
struct FileIgnored;

impl std::fmt::Display for FileIgnored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server ignored JUPYTER_TOKEN_FILE")
    }
}

impl std::error::Error for FileIgnored {}

/// The notes a URL carries when it is not the stable one (JupyterState::note).
const IGNORED_NOTE: &str = "this image's Jupyter server sets its own token and ignores the agent's (JUPYTER_TOKEN_FILE and JUPYTER_TOKEN): the login URL changes whenever the container starts again; remove the token setting from the image, or set [jupyter] token = \"image\" to accept this";
const NO_TOKEN_NOTE: &str = "WARNING: this Jupyter server checks no token ([jupyter] token = \"none\"): anyone who can reach its port can log in and run code";
const NONE_BUT_TOKEN_NOTE: &str = "[jupyter] token = \"none\", but the server checks a token: the URL carries the token it printed, which changes whenever the container starts again";

/// From this many restarts by its restart policy, the container is in a
/// restart loop: the state stays `failed`, naming the loop, instead of
/// flipping between `waiting-for-token` and `failed` at every start.
const RESTART_LOOP_COUNT: i64 = 2;
/// In a restart loop, a start is believed once the container has stayed up
/// this long; then its token is proven.
const RESTART_LOOP_QUIET: Duration = Duration::from_secs(60);

impl<'a> Converger<'a> {
    /// Starts a fresh state; `watchers` receives every change (the local API).
    /// `Err` when the state file cannot be written.
    pub fn new(
        cfg: &'a Config,
        store: &'a StateStore,
        watchers: Option<tokio::sync::watch::Sender<State>>,
    ) -> Result<Self> {
        let mut rec = Recorder::new(store, watchers)
            .with_context(|| format!("writing the state file {}", store.path().display()))?;
        rec.redact_secrets(cfg.redactor());
        Ok(Converger { cfg, rec, docker: None, login: None, host: None, tls: None, token_note: None })
    }

    /// Converges the host. On failure the state is `failed` with the step,
    /// the cause, the container's exit code and log tail, and the error is
    /// returned too.
    pub async fn converge(&mut self) -> Result<()> {
        let mut result = self.steps().await;
        if let (Ok(()), Some(unsaved)) = (&result, self.rec.unsaved()) {
            // Ready, but nobody could have followed it there: say so loudly.
            result = Err(anyhow::anyhow!("{unsaved}; status, wait and jupyter-bootstrap cannot follow this agent"));
        }
        if let Err(err) = &result {
            self.record_failure("converge", format!("{err:#}")).await;
        }
        result
    }

    async fn record_failure(&mut self, fallback_step: &str, cause: String) -> Failure {
        let (mut exit_code, mut log_tail) = (None, Vec::new());
        if let (Some(docker), Some(c)) = (&self.docker, &self.rec.state.container) {
            exit_code = jupyter::exit_code(docker, &c.id).await;
            log_tail = jupyter::log_tail(docker, &c.id).await;
        }
        let failure = self.rec.failure(fallback_step, cause, exit_code, log_tail);
        error!(step = %failure.step, exit_code = ?exit_code, "converge failed: {}", failure.cause);
        for line in &failure.log_tail {
            error!(step = %failure.step, "container log: {line}");
        }
        // The result file first: whoever sees the published state may read it at once.
        if let Some(path) = &self.cfg.result_file {
            if let Err(e) = report::write_result_file(path, &report::failed_text(PROGRAM, &failure, Utc::now())) {
                warn!("{e}");
            }
        }
        self.rec.record_failure(failure.clone());
        failure
    }

    async fn steps(&mut self) -> Result<()> {
        let cfg = self.cfg;
        let docker = docker_install::ensure_engine(cfg, &mut docker_install::RecordProgress::docker(&mut self.rec))
            .await
            .context("connecting to the Docker engine")?;
        self.docker = Some(docker.clone());
        let t = &mut self.rec;

        let mut workspace = None;
        let mut image_cfg = cfg.image.clone();
        crate::docker_install::git::ensure_for_workspace(cfg, t).await?;
        if let Some(w) = &cfg.workspace {
            t.begin("workspace", Phase::FetchingWorkspace);
            let ensured = crate::workspace::ensure(w, &cfg.state_dir).await.context("fetching the workspace")?;
            t.done("workspace", ensured.detail);
            workspace = Some(ensured.identity);
            // Built from the materials as fetched, not from the participant's copy.
            if let (ImageSource::Build(build), Some(pristine)) = (&mut image_cfg.source, ensured.pristine) {
                if build.context == w.path {
                    build.context = pristine;
                }
            }
        }

        t.begin("image", Phase::PreparingImage);
        let source = match &cfg.image.source {
            ImageSource::Pull(_) => "pull",
            ImageSource::Archive(_) => "archive",
            ImageSource::Build(_) => "build",
        };
        t.state.image =
            Some(ImageState { reference: cfg.image.reference.clone(), source: source.into(), ..Default::default() });
        let prepared = {
            let mut on_progress = |progress: image::Progress| match progress {
                image::Progress::Layer(layer, mut progress) => {
                    let image = t.state.image.as_mut().expect("set above");
                    // "Pull complete" carries no size: keep the one the download had.
                    if progress.total.is_none() {
                        progress.total = image.layers.get(layer).and_then(|old| old.total);
                    }
                    let changed = image.layers.get(layer).is_none_or(|old| old.status != progress.status);
                    image.layers.insert(layer.to_string(), progress);
                    let line = image::pull_progress(&image.layers);
                    t.progress(line, changed);
                }
                image::Progress::Build(step) => t.progress(step.to_string(), true),
                image::Progress::Text(line, force) => t.progress(line.to_string(), force),
            };
            image::ensure(&docker, &image_cfg, &cfg.state_dir, &mut on_progress).await.context("preparing the image")?
        };
        if let Some(image) = t.state.image.as_mut() {
            image.id = Some(prepared.id.clone());
        }
        t.done("image", prepared.detail);

        t.begin("network", Phase::StartingContainer);
        crate::network::ensure(&docker).await?;
        let access = match (cfg.container.metadata_access, cfg.jupyter.metadata_address()) {
            (false, Some(address)) => crate::network::block(address).await?,
            (true, Some(address)) => crate::network::allow(address).await?,
            // Refused by the configuration's check; nothing to allow by address.
            (_, None) => "allowed",
        };
        t.done("network", format!("{}; metadata service: {access}", crate::network::NETWORK));

        // With TLS, Jupyter is published on the host's loopback only.
        let container_cfg = crate::config::ContainerConfig { publish: cfg.jupyter_publish(), ..cfg.container.clone() };
        let base = Spec::new(&container_cfg, &cfg.image.reference, &prepared.id, workspace.as_deref())
            .context("preparing the container")?;
        let mut login = crate::login::for_container(
            &cfg.jupyter.token,
            &cfg.state_dir,
            cfg.container.user.as_deref(),
            &prepared.id,
            prepared.user.as_deref(),
        )
        .context("choosing the login token")?;
        // The env file's values and the login token are secrets too, from now on.
        t.redact_secrets(Redactor::new(
            base.env_values()
                .chain(cfg.workspace.iter().flat_map(|w| w.env.values().map(String::as_str)))
                .chain(login.iter().map(|l| l.token.as_str())),
        ));
        loop {
            self.login = login.clone();
            let spec = match &login {
                Some(l) => {
                    crate::login::write_mount_source(&cfg.state_dir, l)?;
                    base.clone().with_login(l, &crate::login::mount_source(&cfg.state_dir))
                }
                None => base.clone(),
            };
            self.rec.begin("container", Phase::StartingContainer);
            let running = container::ensure(&docker, &spec).await.context("starting the container")?;
            self.rec.state.container = Some(ContainerState {
                id: running.id.clone(),
                name: running.name.clone(),
                config_hash: running.hash.clone(),
                started_at: running.started_at.clone(),
                host_address: running.endpoint.address.to_string(),
                host_port: running.endpoint.port,
            });
            self.rec.done("container", running.action.clone());
            if cfg.tls.is_on() && self.tls.is_none() {
                self.tls_step().await?;
            }
            match self.token().await {
                Err(e) if e.downcast_ref::<FileIgnored>().is_some() => {
                    warn!("the image's server ignored JUPYTER_TOKEN_FILE (Notebook before 6.1, jupyter_server before 1.6?): giving it JUPYTER_TOKEN instead");
                    crate::login::remember_env_only(&cfg.state_dir, &prepared.id)?;
                    if let Some(l) = login.as_mut() {
                        l.delivery = crate::login::Delivery::Env;
                    }
                }
                other => return other,
            }
        }
    }

    /// The `tls` step: the certificate and the HTTPS listener on `[container]
    /// publish` (docs/tls.md), once per run of the agent.
    async fn tls_step(&mut self) -> Result<()> {
        self.rec.begin("tls", Phase::StartingContainer);
        let host = self.host().await;
        let tls = crate::tls::Tls::start(self.cfg, &host).await.context("serving HTTPS")?;
        self.rec.state.tls = Some(tls.state.clone());
        self.rec.done("tls", tls.summary());
        self.tls = Some(tls);
        Ok(())
    }

    /// What a participant must know about the URL: the token's note, and
    /// the certificate's when browsers do not trust it.
    fn note(&self) -> Option<String> {
        crate::tls::with_note(self.token_note.clone(), self.tls.as_ref())
    }

    /// The renewal task changed the certificate or failed: the state, the
    /// URL's note and the result file follow; the URL does not change.
    fn tls_changed(&mut self, state: crate::state::TlsState) {
        self.rec.state.tls = Some(state);
        let note = self.note();
        if let Some(j) = self.rec.state.jupyter.as_mut() {
            j.note = note.clone();
            if let Some(path) = &self.cfg.result_file {
                if let Err(e) =
                    report::write_result_file(path, &report::ready_text(PROGRAM, &j.url, note.as_deref(), Utc::now()))
                {
                    warn!("{e}");
                }
            }
        }
        self.rec.save();
    }

    /// The URL's host, resolved once per run of the agent.
    async fn host(&mut self) -> String {
        if self.host.is_none() {
            self.host = Some(url::resolve_host(&self.cfg.jupyter.url_host, &self.cfg.jupyter.metadata_endpoint).await);
        }
        self.host.clone().expect("set above")
    }

    /// Follows the log of the container in the state until its token is
    /// proven, then records the URL: the `token` step and `ready`.
    async fn token(&mut self) -> Result<()> {
        let cfg = self.cfg;
        let docker = self.docker.clone().expect("the engine answered");
        let c = self.rec.state.container.clone().expect("the container step ran");
        self.rec.begin("token", Phase::WaitingForToken);
        let endpoint =
            Endpoint { address: c.host_address.parse().context("the published address")?, port: c.host_port };
        let no_token = cfg.jupyter.token == TokenChoice::None;
        let proven = jupyter::wait_for_token(
            &docker,
            &c.id,
            c.started_at.as_deref(),
            endpoint,
            cfg.jupyter.ready_timeout,
            no_token,
            self.login.as_ref().map(|l| l.token.as_str()),
        )
        .await
        .context("waiting for Jupyter's login token")?;
        let mut source = proven.source.to_string();
        let mut note = None;
        match &self.login {
            Some(l) if proven.token == l.token => source = "agent".into(),
            Some(l) if matches!(l.delivery, crate::login::Delivery::File { .. }) => {
                self.rec.done("token", "the server ignored JUPYTER_TOKEN_FILE; trying JUPYTER_TOKEN".into());
                return Err(anyhow::Error::new(FileIgnored));
            }
            Some(_) => {
                warn!("the image's server ignores JUPYTER_TOKEN_FILE and JUPYTER_TOKEN: its login URL changes whenever the container starts again");
                note = Some(IGNORED_NOTE.to_string());
            }
            None if proven.token.is_empty() => note = Some(NO_TOKEN_NOTE.to_string()),
            None if no_token => note = Some(NONE_BUT_TOKEN_NOTE.to_string()),
            None => {}
        }
        let detail = match source.as_str() {
            "agent" => "the agent's token, proven against /api/status".to_string(),
            _ if proven.token.is_empty() => "the server checks no token ([jupyter] token = \"none\")".to_string(),
            other => format!("from the {other}, proven against /api/status"),
        };
        self.rec.done("token", detail);

        let host = self.host().await;
        let login = match &self.tls {
            None => url::login_url(false, &host, c.host_port, &proven.path, &proven.token),
            Some(tls) => {
                tls.set_backend(std::net::SocketAddr::new(endpoint.address, endpoint.port));
                tls.prove(&proven.path, &proven.token).await.context("proving the login through HTTPS")?;
                url::login_url(true, &host, tls.port(), &proven.path, &proven.token)
            }
        };
        self.token_note = note;
        let note = self.note();
        // The result file first: whoever sees the published state may read it at once.
        if let Some(path) = &cfg.result_file {
            report::write_result_file(path, &report::ready_text(PROGRAM, &login, note.as_deref(), Utc::now()))
                .map_err(anyhow::Error::msg)?;
        }
        self.rec.state.ready(JupyterState {
            url: login.clone(),
            token: proven.token.clone(),
            token_source: source,
            token_seen_at: proven.seen_at,
            proven_at: proven.proven_at,
            note,
        });
        self.rec.save();
        info!(url = %redact(&login), "Jupyter is ready (jupyter-agent url prints the URL with its token)");
        Ok(())
    }

    /// Records that the agent was stopped (SIGTERM) in the middle of a step.
    pub fn record_stop(&mut self) {
        let step = self.rec.state.running_step().map(|s| s.name.clone());
        warn!(step = ?step, "stopped before the step ended; the next start of the agent converges again");
        self.rec.state.stop("stopped by SIGTERM before this step ended; the agent converges again when it starts");
        self.rec.save();
    }

    /// Watches the container through Docker's event stream until `stop`
    /// resolves: a death is recorded as `failed` with the exit code and log
    /// tail; a start (restart policy, reboot, `docker start`) is followed by
    /// a new token, proven, and a new URL. No polling: the engine pushes.
    ///
    /// Whenever the stream ends (the engine restarted or went away for a
    /// while), events may have been missed: once the engine answers again,
    /// the container itself is looked at (running with a new start time: its
    /// token is proven again; stopped or gone: recorded), and the new stream
    /// starts from that moment, so nothing falls in between.
    pub async fn watch(&mut self, mut stop: impl std::future::Future<Output = ()> + Unpin) {
        let Some(docker) = self.docker.clone() else {
            stop.await;
            return;
        };
        let mut reconnect = WATCH_RECONNECT.delays();
        // Set once a stream has ended: from then on, look before listening.
        let mut reconnected = false;
        let mut since: Option<String> = None;
        loop {
            let Some(id) = self.rec.state.container.as_ref().map(|c| c.id.clone()) else {
                stop.await;
                return;
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
            loop {
                let event = tokio::select! {
                    _ = &mut stop => return,
                    event = events.next() => event,
                    state = crate::tls::next_update(&mut self.tls) => {
                        self.tls_changed(state);
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
            // The stream ended: the engine restarted or went away. Try again after a delay.
            let delay = reconnect.next().unwrap_or(WATCH_RECONNECT.max_delay);
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
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
        let started_at = state.started_at.clone();
        let known = self.rec.state.container.as_ref().and_then(|c| c.started_at.clone());
        if state.running == Some(true) {
            if started_at != known || !self.rec.state.is_ready() {
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
        self.rec.state.container = None;
        self.rec.save();
    }

    /// The container started again: its start time and published port are new.
    async fn restarted(&mut self, docker: &Docker, id: &str) -> Result<()> {
        let now = docker.inspect_container(id, None).await.context("inspecting the restarted container")?;
        if let Some(c) = self.rec.state.container.as_mut() {
            let endpoint = Endpoint::of(&now, self.cfg.container.port, &self.cfg.jupyter_publish());
            c.started_at = now.state.and_then(|s| s.started_at);
            c.host_port = endpoint.port;
        }
        self.rec.state.error = None;
        self.token().await
    }
}

/// What looking at the container after a reconnect came to.
enum Resynced {
    Done,
    /// The engine does not answer (yet).
    EngineAway,
    /// `stop` resolved meanwhile.
    Stopped,
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

/// Sleeps until `at`, or for ever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
