//! Reaching the Docker engine: connect with bollard, wait (bounded) for it to
//! answer a ping, and agree on an API version the engine speaks.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bollard::Docker;
use tracing::{debug, info};

use crate::config::DockerConfig;

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

/// Connects and waits until the engine answers a ping, at most `cfg.ping_timeout`.
pub async fn connect(cfg: &DockerConfig) -> Result<Docker> {
    let address = engine_address(cfg);
    let deadline = Instant::now() + cfg.ping_timeout;
    let mut delay = Duration::from_millis(100);
    let mut attempts = 0u32;
    let last_error = loop {
        attempts += 1;
        let attempt = async {
            let docker = connect_once(&address)?;
            docker.ping().await?;
            Ok::<_, bollard::errors::Error>(docker)
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let err = match tokio::time::timeout(left.max(Duration::from_millis(100)), attempt).await {
            Ok(Ok(docker)) => {
                let docker = docker
                    .negotiate_version()
                    .await
                    .with_context(|| format!("agreeing on an API version with the Docker engine at {address}"))?;
                info!(engine = %address, api = %docker.client_version(), "Docker engine answers");
                return Ok(docker);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer".to_string(),
        };
        if attempts == 1 {
            info!(engine = %address, error = %err, "waiting for the Docker engine to answer");
        } else {
            debug!(engine = %address, error = %err, "Docker engine does not answer yet");
        }
        if Instant::now() + delay >= deadline {
            break err;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    };
    bail!(
        "the Docker engine at {address} did not answer within {} ({last_error}); \
         start Docker (systemctl start docker, or dockerd &), or point [docker] host or DOCKER_HOST at a running engine",
        humantime::format_duration(cfg.ping_timeout)
    )
}
