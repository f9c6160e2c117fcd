//! Pulling through `/images/create`, with per-layer progress, the registry's
//! login from `[image] credentials` (docs/images.md#a-private-registry), and
//! retries for what a retry can fix: a refused login or an unknown image
//! ends the step at once.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Result};
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use jupyter_proto::retry::Policy;
use tracing::info;

use super::{split_reference, Attempt, Progress};
use crate::state::LayerProgress;
use crate::transfer::with_retries;

/// Waits between attempts: 2 s doubling to 30 s; no attempt starts after 5
/// minutes of them (a room's registry under load answers again).
const RETRY: Policy = Policy::new(Duration::from_secs(2), Duration::from_secs(30), Duration::from_secs(300));

/// The registry a reference names, as Docker reads it: the first path
/// component when it has a `.` or a `:` or is `localhost`, else Docker Hub.
pub fn registry_host(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

pub(super) async fn pull(
    docker: &Docker,
    reference: &str,
    credentials: Option<&Path>,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    let registry = registry_host(reference);
    // One attempt at a time: each borrows the progress callback in turn.
    let progress = &tokio::sync::Mutex::new(on_progress);
    let attempt = || async move {
        // Read at each attempt: an organiser may fix the file meanwhile.
        let auth = match credentials {
            Some(path) => {
                let c = crate::config::credentials::read(path).map_err(|error| Attempt { error, transient: false })?;
                Some(DockerCredentials {
                    username: Some(c.username),
                    password: Some(c.password),
                    serveraddress: Some(registry.to_string()),
                    ..Default::default()
                })
            }
            None => None,
        };
        pull_once(docker, reference, auth, &mut **progress.lock().await).await
    };
    let failed = match with_retries(RETRY, &format!("pulling {reference}"), attempt).await {
        Ok(()) => return Ok(()),
        Err(failed) => failed,
    };
    if !refused_login(&failed.error) {
        return Err(failed.error);
    }
    Err(failed.error.context(match credentials {
        Some(path) => format!(
            "the registry {registry} refused the login from {} ([image] credentials); check its username and password",
            path.display()
        ),
        None => format!(
            "the registry {registry} wants a login; set [image] credentials to a root-only file with username and password"
        ),
    }))
}

async fn pull_once(
    docker: &Docker,
    reference: &str,
    auth: Option<DockerCredentials>,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<(), Attempt> {
    let (repo, tag) = split_reference(reference);
    info!(image = %reference, "pulling");
    let options = CreateImageOptionsBuilder::new().from_image(repo).tag(tag).build();
    let mut stream = docker.create_image(Some(options), None, auth);
    let mut last_status: HashMap<String, String> = HashMap::new();
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(e) => {
                let message = match &e {
                    bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                let transient = !matches!(
                    e,
                    bollard::errors::Error::DockerResponseServerError { status_code: 400 | 401 | 403 | 404, .. }
                ) && is_transient(&message);
                return Err(Attempt { error: anyhow!("pulling {reference}: {message}"), transient });
            }
        };
        if let Some(detail) = info.error_detail {
            let message = detail.message.unwrap_or_default();
            let transient = is_transient(&message);
            return Err(Attempt { error: anyhow!("pulling {reference}: {message}"), transient });
        }
        let (Some(layer), Some(status)) = (info.id, info.status) else { continue };
        // "Pulling from <repository>" comes with the tag as its id: not a layer.
        if status.starts_with("Pulling from") || layer == tag {
            continue;
        }
        let (current, total) = info.progress_detail.map_or((None, None), |p| (p.current, p.total));
        // Log a layer when its status changes, not at every byte.
        if last_status.get(&layer) != Some(&status) {
            info!(image = %reference, layer = %layer, status = %status, "pull");
            last_status.insert(layer.clone(), status.clone());
        }
        on_progress(Progress::Layer(&layer, LayerProgress { status, current, total }));
    }
    Ok(())
}

/// The engine's words for a registry that refused a login (or wants one).
fn refused_login(e: &anyhow::Error) -> bool {
    let m = format!("{e:#}").to_ascii_lowercase();
    ["unauthorized", "authentication required", "no basic auth credentials", "denied", "incorrect username or password"]
        .iter()
        .any(|w| m.contains(w))
}

/// Whether a pull's failure is one a later attempt may not meet: the
/// network or the registry's load, not the name, the tag or the login.
fn is_transient(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    let permanent = [
        "unauthorized",
        "authentication required",
        "denied",
        "not found",
        "manifest unknown",
        "invalid reference",
        "no basic auth credentials",
        "does not exist",
    ];
    if permanent.iter().any(|w| m.contains(w)) {
        return false;
    }
    [
        "timeout",
        "timed out",
        "connection reset",
        "connection refused",
        "eof",
        "tls handshake",
        "temporary failure",
        "502",
        "503",
        "504",
        "too many requests",
        "i/o",
    ]
    .iter()
    .any(|w| m.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_read_from_the_reference_as_docker_reads_them() {
        assert_eq!(registry_host("registry.cn-hangzhou.example.com/team/nb:1"), "registry.cn-hangzhou.example.com");
        assert_eq!(registry_host("127.0.0.1:5000/nb:1"), "127.0.0.1:5000");
        assert_eq!(registry_host("localhost/nb"), "localhost");
        assert_eq!(registry_host("jupyter/base-notebook:latest"), "docker.io");
        assert_eq!(registry_host("notebook"), "docker.io");
    }

    #[test]
    fn a_refused_login_or_a_missing_image_is_not_retried_but_a_network_failure_is() {
        for m in [
            "Head \"http://127.0.0.1:5000/v2/nb/manifests/1\": unauthorized: authentication required",
            "pull access denied for nb, repository does not exist or may require 'docker login'",
            "manifest for nb:2 not found: manifest unknown: manifest unknown",
        ] {
            assert!(!is_transient(m), "{m}");
        }
        for m in [
            "Get \"https://r.example/v2/\": net/http: TLS handshake timeout",
            "read tcp 10.0.0.2:3456->10.0.0.1:443: read: connection reset by peer",
            "received unexpected HTTP status: 503 Service Unavailable",
        ] {
            assert!(is_transient(m), "{m}");
        }
        assert!(refused_login(&anyhow!("pulling x: unauthorized: authentication required")));
        assert!(!refused_login(&anyhow!("pulling x: manifest unknown")));
    }
}
