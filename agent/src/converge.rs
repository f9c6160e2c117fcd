//! The converge: the runbook from "a bare host with Docker" to "a Jupyter
//! container is running and its login URL is proven", one step after the
//! other, each recorded in the state file as it starts and ends.

use anyhow::{Context, Result};
use bollard::Docker;
use chrono::Utc;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::container::{self, Spec};
use crate::engine;
use crate::image;
use crate::jupyter::{self, Endpoint};
use crate::result_file;
use crate::state::{ContainerState, Failure, ImageState, JupyterState, Phase, State, StateStore, StepStatus};
use crate::token::redact;
use crate::url;

/// Keeps the state and writes it at every change.
struct Tracker<'a> {
    state: State,
    store: &'a StateStore,
    /// Set once the engine answers, to read a failed container's log.
    docker: Option<Docker>,
}

impl Tracker<'_> {
    fn save(&self) {
        if let Err(e) = self.store.save(&self.state) {
            warn!(path = %self.store.path().display(), error = %e, "cannot write the state file");
        }
    }

    fn begin(&mut self, step: &str, phase: Phase) {
        info!(step, phase = phase.as_str(), "step started");
        self.state.begin(step, phase);
        self.save();
    }

    fn done(&mut self, step: &str, detail: String) {
        info!(step, detail = %detail, "step done");
        self.state.end(step, StepStatus::Done, Some(detail));
        self.save();
    }
}

/// Converges the host; the returned state is `ready` or `failed`.
pub async fn converge(cfg: &Config, store: &StateStore) -> State {
    let mut t = Tracker { state: State::new(), store, docker: None };
    t.save();
    if let Err(err) = steps(cfg, &mut t).await {
        let step = t.state.running_step().map_or_else(|| "converge".to_string(), |s| s.name.clone());
        let (mut exit_code, mut log_tail) = (None, Vec::new());
        if let (Some(docker), Some(c)) = (&t.docker, &t.state.container) {
            exit_code = jupyter::exit_code(docker, &c.id).await;
            log_tail = jupyter::log_tail(docker, &c.id).await;
        }
        let failure = Failure { step: step.clone(), cause: redact(&format!("{err:#}")), exit_code, log_tail };
        error!(step = %step, exit_code = ?exit_code, "converge failed: {}", failure.cause);
        for line in &failure.log_tail {
            error!(step = %step, "container log: {line}");
        }
        t.state.fail(failure.clone());
        t.save();
        if let Some(path) = &cfg.result_file {
            if let Err(e) = result_file::write(path, &result_file::failed_text(&failure, Utc::now())) {
                warn!("{e:#}");
            }
        }
    }
    t.state
}

async fn steps(cfg: &Config, t: &mut Tracker<'_>) -> Result<()> {
    t.begin("engine", Phase::InstallingDocker);
    let docker = engine::connect(&cfg.docker).await.context("connecting to the Docker engine")?;
    t.docker = Some(docker.clone());
    t.done("engine", format!("answered at {}", engine::engine_address(&cfg.docker)));

    t.begin("image", Phase::PreparingImage);
    let source = match &cfg.image.source {
        crate::config::ImageSource::Pull(_) => "pull",
        crate::config::ImageSource::Archive(_) => "archive",
        crate::config::ImageSource::Build(_) => "build",
    };
    t.state.image =
        Some(ImageState { reference: cfg.image.reference.clone(), source: source.into(), ..Default::default() });
    let prepared = {
        let mut on_layer = |layer: &str, progress: crate::state::LayerProgress| {
            let image = t.state.image.as_mut().expect("set above");
            let changed = image.layers.get(layer).is_none_or(|old| old.status != progress.status);
            image.layers.insert(layer.to_string(), progress);
            if changed {
                t.save();
            }
        };
        image::ensure(&docker, &cfg.image, &mut on_layer).await.context("preparing the image")?
    };
    if let Some(image) = t.state.image.as_mut() {
        image.id = Some(prepared.id.clone());
    }
    t.done("image", prepared.detail);

    t.begin("container", Phase::StartingContainer);
    let spec = Spec::new(&cfg.container, &cfg.image.reference, &prepared.id).context("preparing the container")?;
    let running = container::ensure(&docker, &spec).await.context("starting the container")?;
    t.state.container = Some(ContainerState {
        id: running.id.clone(),
        name: running.name.clone(),
        config_hash: running.hash.clone(),
        started_at: running.started_at.clone(),
        host_address: running.host_address.to_string(),
        host_port: running.host_port,
    });
    t.done("container", running.action.clone());

    t.begin("token", Phase::WaitingForToken);
    let endpoint = Endpoint { address: running.host_address, port: running.host_port };
    let proven = jupyter::wait_for_token(
        &docker,
        &running.id,
        running.started_at.as_deref(),
        endpoint,
        cfg.jupyter.ready_timeout,
    )
    .await
    .context("waiting for Jupyter's login token")?;
    t.done("token", format!("from the {}, proven against /api/status", proven.source));

    let host = url::resolve_host(&cfg.jupyter.url_host, &cfg.jupyter.metadata_endpoint).await;
    let login = url::login_url(&host, running.host_port, &proven.path, &proven.token);
    t.state.ready(JupyterState {
        url: login.clone(),
        token: proven.token.clone(),
        token_source: proven.source.to_string(),
        token_seen_at: proven.seen_at,
        proven_at: proven.proven_at,
    });
    t.save();
    if let Some(path) = &cfg.result_file {
        result_file::write(path, &result_file::ready_text(&login, Utc::now()))?;
    }
    info!(url = %redact(&login), "Jupyter is ready (jupyter-agent url prints the URL with its token)");
    Ok(())
}
