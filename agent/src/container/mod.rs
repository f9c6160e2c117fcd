//! The Jupyter container: derive its specification from the configuration,
//! label it with a hash of that specification, and on each converge reuse,
//! start or recreate it (Docker Engine API `/containers/create`, `/start`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use jupyter_proto::retry::{retry, Policy, Transient};
use tracing::{debug, info};

use crate::config::Publish;
pub use spec::{read_env_file, Bind, Spec};

/// Marks containers this agent created; it never touches others.
pub use crate::engine::LABEL_MANAGED;
/// The hash of the specification the container was created from.
pub const LABEL_HASH: &str = "io.jupyter-agent.config-hash";

/// The engine's refusal of a bind mount whose source its host lacks, as a
/// message that names the path; `None` for any other error.
fn missing_source(spec: &Spec, error: &str) -> Option<String> {
    if !error.contains("bind source path does not exist") {
        return None;
    }
    let bind = spec.binds.iter().find(|b| error.contains(&*b.source.to_string_lossy()))?;
    let source = bind.source.display();
    Some(if bind.target == crate::login::MOUNTED_AT {
        format!(
            "the login token file {source} (mounted at {}) does not exist on the Docker engine's host: the agent must run on the engine's host, where its state directory is",
            bind.target
        )
    } else {
        format!(
            "the host path {source} of a bind mount (to {}) does not exist on the Docker engine's host; create it there or change [container] volumes (paths name the engine host's files)",
            bind.target
        )
    })
}

/// The container as the converge left it.
#[derive(Debug, Clone)]
pub struct Running {
    pub id: String,
    pub name: String,
    pub hash: String,
    /// Docker's start time (RFC 3339).
    pub started_at: Option<String>,
    /// What was done: `created`, `started`, `reused`, `recreated: ...`.
    pub action: String,
    /// Where to reach the published port from this host.
    pub endpoint: Endpoint,
}

/// Where the container's published port answers on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub address: IpAddr,
    pub port: u16,
}

impl Endpoint {
    pub fn socket_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.address, self.port)
    }

    /// `http://address:port<path>`.
    pub fn url(&self, path: &str) -> String {
        match self.address {
            IpAddr::V6(a) => format!("http://[{a}]:{}{path}", self.port),
            IpAddr::V4(a) => format!("http://{a}:{}{path}", self.port),
        }
    }

    /// Where the port `port` of a container, published as `publish`, is
    /// reached: the port Docker bound (it picks one for port 0), on the
    /// publish address or loopback for a wildcard. The one place that says so.
    pub fn of(c: &ContainerInspectResponse, port: u16, publish: &Publish) -> Endpoint {
        Endpoint::bound(c, port, publish)
            .unwrap_or(Endpoint { address: publish.reachable_address(), port: publish.port })
    }

    /// As [`Endpoint::of`], but `None` when the engine bound no host port.
    pub fn bound(c: &ContainerInspectResponse, port: u16, publish: &Publish) -> Option<Endpoint> {
        let bound = c
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.as_ref())
            .and_then(|p| p.get(&port_key(port))?.as_ref())
            .and_then(|bindings| {
                bindings.iter().find_map(|b| {
                    let address = b.host_ip.as_deref().and_then(|ip| ip.parse().ok());
                    Some((address, b.host_port.as_deref()?.parse().ok()?))
                })
            })?;
        // Where the engine bound it (loopback behind the front), else where the configuration says.
        let address = match bound.0 {
            Some(address) => Publish { address, port: bound.1 }.reachable_address(),
            None => publish.reachable_address(),
        };
        Some(Endpoint { address, port: bound.1 })
    }
}

fn port_key(port: u16) -> String {
    format!("{port}/tcp")
}

async fn inspect(docker: &Docker, name: &str) -> Result<Option<ContainerInspectResponse>> {
    match docker.inspect_container(name, None).await {
        Ok(c) => Ok(Some(c)),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("inspecting the container {name}")),
    }
}

/// Looking again whether the engine has finished removing a container that
/// an earlier request (a killed agent's, someone's `docker rm`) is removing:
/// every 0.2 to 2 s, for at most 2 minutes.
const REMOVAL_WAIT: Policy = Policy::new(Duration::from_millis(200), Duration::from_secs(1), Duration::from_secs(120));

/// The container exists and the engine is removing it, or left it `dead`
/// (a removal that failed half-way).
fn is_removing(c: &ContainerInspectResponse) -> bool {
    matches!(c.state.as_ref().and_then(|s| s.status), Some(ContainerStateStatusEnum::REMOVING))
}

fn is_dead(c: &ContainerInspectResponse) -> bool {
    matches!(c.state.as_ref().and_then(|s| s.status), Some(ContainerStateStatusEnum::DEAD))
}

/// Still being removed.
struct StillRemoving;

impl Transient for StillRemoving {
    fn is_transient(&self) -> bool {
        true
    }
}

impl std::fmt::Display for StillRemoving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("still being removed")
    }
}

/// Waits until the engine has finished an earlier removal of `name`;
/// returns what is left (`None`: gone; a `dead` container: the removal failed).
async fn wait_for_removal(docker: &Docker, name: &str) -> Result<Option<ContainerInspectResponse>> {
    info!(container = %name, "an earlier request is removing the container: waiting for the engine to finish removing it");
    let left = std::sync::Mutex::new(None);
    let waited = retry(
        &REMOVAL_WAIT,
        |_| async {
            match inspect(docker, name).await {
                Ok(Some(c)) if is_removing(&c) => Err(Waited::Still(StillRemoving)),
                Ok(found) => {
                    *left.lock().expect("not poisoned") = found;
                    Ok(())
                }
                Err(e) => Err(Waited::Failed(e)),
            }
        },
        |_, _| {},
    )
    .await;
    match waited {
        Ok(()) => Ok(left.into_inner().expect("not poisoned")),
        Err(jupyter_proto::retry::Error::Permanent(Waited::Failed(e))) => Err(e),
        Err(_) => bail!(
            "the engine was still removing the container {name} after {}; see `docker ps -a` and the engine's log, then run the agent again",
            humantime::format_duration(REMOVAL_WAIT.budget)
        ),
    }
}

enum Waited {
    Still(StillRemoving),
    Failed(anyhow::Error),
}

impl Transient for Waited {
    fn is_transient(&self) -> bool {
        matches!(self, Waited::Still(_))
    }
}

impl std::fmt::Display for Waited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Waited::Still(s) => s.fmt(f),
            Waited::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

/// Removes an outdated (or dead) container, waiting for a removal that is
/// already in progress (409 from the engine) instead of failing on it.
async fn remove(docker: &Docker, id: &str, name: &str) -> Result<()> {
    let force = || Some(RemoveContainerOptionsBuilder::new().force(true).build());
    match docker.remove_container(id, force()).await {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, message })
            if message.contains("already in progress") =>
        {
            if wait_for_removal(docker, name).await?.is_some() {
                docker
                    .remove_container(name, force())
                    .await
                    .with_context(|| format!("removing the container {name} that an earlier removal left"))?;
            }
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("removing the outdated container {name}")),
    }
}

/// Makes the container named in `spec` exist, match `spec`, and run.
/// A running container with the same hash is left alone (never restarted).
pub async fn ensure(docker: &Docker, spec: &Spec) -> Result<Running> {
    let hash = spec.hash();
    // `Spec`'s Debug form hides the environment's values.
    debug!(spec = ?spec, hash = %hash, "the container's specification");
    let mut found = inspect(docker, &spec.name).await?;
    if found.as_ref().is_some_and(is_removing) {
        found = wait_for_removal(docker, &spec.name).await?;
    }
    let action = match found {
        None => {
            create_and_start(docker, spec).await?;
            "created".to_string()
        }
        Some(existing) => {
            let labels = existing.config.as_ref().and_then(|c| c.labels.clone()).unwrap_or_default();
            if labels.get(LABEL_MANAGED).map(String::as_str) != Some("true") {
                bail!(
                    "a container named {} exists and was not created by jupyter-agent; remove it (docker rm -f {}) or choose another [container] name",
                    spec.name,
                    spec.name
                );
            }
            let id = existing.id.clone().unwrap_or_default();
            let state = existing.state.as_ref();
            let running = state.and_then(|s| s.running).unwrap_or(false);
            if is_dead(&existing) {
                info!(container = %spec.name, "the container is dead (a removal failed half-way): recreating it");
                remove(docker, &id, &spec.name).await?;
                create_and_start(docker, spec).await?;
                "recreated: it was dead".to_string()
            } else if labels.get(LABEL_HASH) == Some(&hash) {
                if running {
                    "reused".to_string()
                } else {
                    if let Err(e) = docker.start_container(&id, None).await {
                        if let Some(refused) = spec.gpus.and_then(|g| crate::gpu::refusal(g, &e.to_string())) {
                            bail!("{refused}; the container {} was left as it is (stopped)", spec.name);
                        }
                        return Err(anyhow!(e).context(format!("starting the existing container {}", spec.name)));
                    }
                    "started".to_string()
                }
            } else {
                // A user the image lacks, or GPUs the engine cannot give,
                // must not cost the container that is there.
                probe(docker, spec, running).await?;
                info!(container = %spec.name, "configuration changed: recreating the container");
                remove(docker, &id, &spec.name).await?;
                create_and_start(docker, spec).await?;
                "recreated: configuration changed".to_string()
            }
        }
    };
    let now = inspect(docker, &spec.name)
        .await?
        .ok_or_else(|| anyhow!("the container {} vanished right after it was started", spec.name))?;
    let endpoint = Endpoint::of(&now, spec.port, &spec.publish);
    let running = Running {
        id: now.id.unwrap_or_default(),
        name: spec.name.clone(),
        hash,
        started_at: now.state.and_then(|s| s.started_at),
        action,
        endpoint,
    };
    info!(container = %running.name, id = %&running.id[..running.id.len().min(12)], port = running.endpoint.port, "container {}", running.action);
    Ok(running)
}

async fn create_and_start(docker: &Docker, spec: &Spec) -> Result<()> {
    let options = CreateContainerOptionsBuilder::new().name(&spec.name).build();
    let created = match docker.create_container(Some(options), spec.body()).await {
        Ok(created) => created,
        Err(e) => {
            let engine = e.to_string();
            // An engine that refuses the device request when creating rather than starting.
            let refused = spec.gpus.and_then(|g| crate::gpu::refusal(g, &engine));
            match missing_source(spec, &engine).or(refused) {
                Some(message) => bail!("{message}"),
                None => {
                    return Err(anyhow!(e).context(format!("creating the container {} from {}", spec.name, spec.image)))
                }
            }
        }
    };
    if let Err(e) = docker.start_container(&created.id, None).await {
        // A container that never started is removed: the next run starts clean
        // and nothing is left behind by a refused setting.
        let force = Some(RemoveContainerOptionsBuilder::new().force(true).build());
        if let Err(removal) = docker.remove_container(&created.id, force).await {
            tracing::warn!(container = %spec.name, "could not remove the container that failed to start: {removal}");
        }
        if let Some(missing) = missing_user(spec, &e.to_string()) {
            bail!("{missing}; the container was removed");
        }
        if let Some(refused) = spec.gpus.and_then(|g| {
            crate::gpu::refusal(g, &e.to_string()).or_else(|| crate::gpu::hook_failure(g, &e.to_string()))
        }) {
            bail!("{refused}; the container that could not start was removed");
        }
        return Err(anyhow!(e).context(format!(
            "starting the container {} (publishing {}; is that port taken? set [container] publish); the container was removed",
            spec.name, spec.publish
        )));
    }
    Ok(())
}

/// The entrypoint of the probe: a path no image has, so that the probe
/// runs nothing.
const USER_PROBE_ENTRYPOINT: &str = "/.jupyter-agent-user-probe";

/// Tries what the engine only checks when it starts a container, before
/// the container that is there is replaced: `spec`'s user (and group)
/// against its image, when that container `running` (the engine looks
/// the user up in the image's `/etc/passwd` and `/etc/group`), and its
/// device request for GPUs (the engine picks a device driver for it, and
/// the NVIDIA runtime's hook gives the devices: docs/gpu.md). A probe
/// container (no network, its entrypoint a path no image has: nothing
/// runs) is started and removed at once. `Err` naming the user or group
/// the image lacks, or the GPUs the engine cannot give; any other outcome
/// leaves the decision to the real start.
async fn probe(docker: &Docker, spec: &Spec, running: bool) -> Result<()> {
    let user = spec.user.clone().filter(|_| running);
    if user.is_none() && spec.gpus.is_none() {
        return Ok(());
    }
    let body = ContainerCreateBody {
        image: Some(spec.image_id.clone()),
        entrypoint: Some(vec![USER_PROBE_ENTRYPOINT.to_string()]),
        cmd: Some(Vec::new()),
        user,
        network_disabled: Some(true),
        labels: Some(HashMap::from([(LABEL_MANAGED.to_string(), "true".to_string())])),
        host_config: Some(HostConfig {
            network_mode: Some("none".into()),
            device_requests: spec.gpus.map(|g| vec![g.device_request()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Named after the container, so that one an interrupted run left is replaced.
    let name = format!("{}-user-probe", spec.name);
    let force = || Some(RemoveContainerOptionsBuilder::new().force(true).build());
    let _ = docker.remove_container(&name, force()).await;
    let created = docker
        .create_container(Some(CreateContainerOptionsBuilder::new().name(&name).build()), body)
        .await
        .map_err(|e| match spec.gpus.and_then(|g| crate::gpu::refusal(g, &e.to_string())) {
        Some(refused) => anyhow!("{refused}; the container {} was left as it is", spec.name),
        None => anyhow!(e).context(format!("trying [container] user and gpus against the image {}", spec.image)),
    })?;
    let started = docker.start_container(&created.id, None).await;
    if let Err(removal) = docker.remove_container(&created.id, force()).await {
        tracing::warn!(id = %created.id, "could not remove the container that tried [container] user and gpus: {removal}");
    }
    let Err(e) = started else { return Ok(()) };
    let engine = e.to_string();
    let kept = match running {
        true => format!("the running container {} was left as it is", spec.name),
        false => format!("the container {} was left as it is", spec.name),
    };
    if let Some(missing) = missing_user(spec, &engine) {
        bail!("{missing}; {kept}");
    }
    if let Some(gpus) = spec.gpus {
        if let Some(refused) = crate::gpu::refusal(gpus, &engine).or_else(|| crate::gpu::hook_failure(gpus, &engine)) {
            bail!("{refused}; {kept}");
        }
    }
    Ok(())
}

/// When the engine's refusal to start says the image lacks the configured
/// user or group: that, named, with the way out.
fn missing_user(spec: &Spec, engine: &str) -> Option<String> {
    let user = spec.user.as_deref()?;
    let (what, name) = ["user", "group"].into_iter().find_map(|what| {
        let rest = engine.split(&format!("unable to find {what} ")).nth(1)?;
        Some((what, rest.split(':').next().unwrap_or_default().trim()))
    })?;
    Some(format!(
        "the image {} has no {what} {name} ([container] user = \"{user}\"); name a user the image has (or a numeric uid), or leave user unset",
        spec.image
    ))
}

mod spec;

#[cfg(test)]
mod tests;
