//! Reaching the Docker engine: connect with bollard, wait (bounded) for it to
//! answer a ping, and agree on an API version the engine speaks.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use bollard::Docker;
use jupyter_proto::retry::{retry, Policy, Transient};
use tracing::{debug, info, warn};

use crate::config::DockerConfig;

/// The label on everything the agent makes on the engine (its containers,
/// its network): nothing without it is ever touched.
pub const LABEL_MANAGED: &str = "io.jupyter-agent.managed";

/// Requests that return a stream (pull, build, load) may take long before
/// their headers arrive; the engine answers everything else at once.
const REQUEST_TIMEOUT_SECS: u64 = 900;

/// The address the agent talks to, as a person would write it.
pub fn engine_address(cfg: &DockerConfig) -> String {
    cfg.host
        .clone()
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string())
}

fn connect_once(address: &str) -> Result<Docker, bollard::errors::Error> {
    let version = bollard::API_DEFAULT_VERSION;
    if let Some(path) = address.strip_prefix("unix://") {
        Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, version)
    } else {
        let http = address.replacen("tcp://", "http://", 1);
        Docker::connect_with_http(&http, REQUEST_TIMEOUT_SECS, version)
    }
}

/// When the local engine does not answer: the container runtime that is
/// here instead (podman, containerd alone) and what to do
/// (docs/docker-install.md#other-container-runtimes).
fn other_runtime(address: &str) -> Option<String> {
    if !is_local_default(address) {
        return None;
    }
    crate::runtimes::advice_here()
}

/// Only the local engine on its default socket is installed and started by the agent.
pub fn is_local_default(address: &str) -> bool {
    matches!(address, "unix:///var/run/docker.sock" | "unix:///run/docker.sock")
}

/// The engine does not answer (yet): no socket, refused, no answer in time.
struct NoAnswer(String);

impl Transient for NoAnswer {
    fn is_transient(&self) -> bool {
        true
    }
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Pinging an engine that may still be starting: from 100 ms, at most 1 s
/// apart (2 s with jitter), within `[docker] ping_timeout`.
const PING_RETRY: Policy = Policy::new(Duration::from_millis(100), Duration::from_secs(1), Duration::ZERO);

/// Connects and waits until the engine answers a ping, at most `cfg.ping_timeout`.
pub async fn connect(cfg: &DockerConfig) -> Result<Docker> {
    let address = engine_address(cfg);
    let mut said = false;
    let pinged = retry(
        &Policy { budget: cfg.ping_timeout, ..PING_RETRY },
        |left| {
            let address = &address;
            async move {
                let attempt = async {
                    let docker = connect_once(address)?;
                    docker.ping().await?;
                    Ok::<_, bollard::errors::Error>(docker)
                };
                match tokio::time::timeout(left.max(Duration::from_millis(100)), attempt).await {
                    Ok(Ok(docker)) => Ok(docker),
                    Ok(Err(e)) => Err(NoAnswer(e.to_string())),
                    Err(_) => Err(NoAnswer("no answer".into())),
                }
            }
        },
        |e, _| {
            if !said {
                info!(engine = %address, error = %e, "waiting for the Docker engine to answer");
                if let Some(advice) = other_runtime(&address) {
                    warn!("{advice}");
                }
                said = true;
            } else {
                debug!(engine = %address, error = %e, "Docker engine does not answer yet");
            }
        },
    )
    .await;
    let docker = match pinged {
        Ok(docker) => docker,
        Err(e) => bail!(
            "the Docker engine at {address} did not answer within {} ({}); {}",
            jupyter_proto::duration::show(cfg.ping_timeout),
            e.last_message().unwrap_or_else(|| "no answer".into()),
            other_runtime(&address).unwrap_or_else(|| {
                "start Docker (systemctl start docker, or dockerd &), or point [docker] host or DOCKER_HOST at a running engine"
                    .into()
            })
        ),
    };
    let docker = docker
        .negotiate_version()
        .await
        .with_context(|| format!("agreeing on an API version with the Docker engine at {address}"))?;
    info!(engine = %address, api = %docker.client_version(), "Docker engine answers");
    Ok(docker)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_default_local_socket_is_managed() {
        assert!(super::is_local_default("unix:///var/run/docker.sock"));
        assert!(super::is_local_default("unix:///run/docker.sock"));
        assert!(!super::is_local_default("unix:///tmp/other.sock"));
        assert!(!super::is_local_default("tcp://10.0.0.1:2375"));
    }
}
