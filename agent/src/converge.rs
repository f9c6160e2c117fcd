//! The converge: the runbook from "a bare host with Docker" to "a Jupyter
//! container is running and its login URL is proven", one step after the
//! other, each recorded in the state file as it starts and ends.

use anyhow::{Context, Result};
use bollard::Docker;
use chrono::Utc;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::container::{self, Spec};
use crate::docker_install;
use crate::image;
use crate::jupyter::{self, Endpoint};
use crate::result_file;
use crate::state::{ContainerState, ImageState, JupyterState, Phase, Recorder, State, StateStore};
use crate::token::redact;
use crate::url;

/// Converges the host; the returned state is `ready`, or `failed` with the error.
pub async fn converge(cfg: &Config, store: &StateStore) -> (State, Option<anyhow::Error>) {
    let mut t = Recorder::new(store);
    let mut docker = None;
    let result = steps(cfg, &mut t, &mut docker).await;
    if let Err(err) = &result {
        let (mut exit_code, mut log_tail) = (None, Vec::new());
        if let (Some(docker), Some(c)) = (&docker, &t.state.container) {
            exit_code = jupyter::exit_code(docker, &c.id).await;
            log_tail = jupyter::log_tail(docker, &c.id).await;
        }
        let failure = t.fail("converge", format!("{err:#}"), exit_code, log_tail);
        error!(step = %failure.step, exit_code = ?exit_code, "converge failed: {}", failure.cause);
        for line in &failure.log_tail {
            error!(step = %failure.step, "container log: {line}");
        }
        if let Some(path) = &cfg.result_file {
            if let Err(e) = result_file::write(path, &result_file::failed_text(&failure, Utc::now())) {
                warn!("{e:#}");
            }
        }
    }
    (t.state, result.err())
}

async fn steps(cfg: &Config, t: &mut Recorder<'_>, engine: &mut Option<Docker>) -> Result<()> {
    let docker = docker_install::ensure_engine(cfg, &mut docker_install::RecordProgress(t))
        .await
        .context("connecting to the Docker engine")?;
    *engine = Some(docker.clone());

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
