//! Preparing the image: pull it (with per-layer progress and a registry's
//! login), load it from an archive (a path or a URL, verified), or build it
//! from a context, all through the Docker Engine API (`/images/create`,
//! `/images/load`, `/build`); and `image export`, the organiser's way to
//! ship what was built (docs/images.md).

mod archive;
mod build;
pub mod export;
mod pull;

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use bollard::Docker;
use tracing::info;

use crate::config::{ImageConfig, ImageSource, PullPolicy};
use crate::state::LayerProgress;
pub use pull::registry_host;

/// One attempt's failure (a pull), and whether another may do better.
type Attempt = jupyter_proto::retry::Attempt<anyhow::Error>;

/// What preparing the image came to.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub id: String,
    /// The image's `USER` (empty or absent: root).
    pub user: Option<String>,
    /// In a few words: `present`, `pulled`, `loaded`, `built`.
    pub detail: String,
}

/// Splits `repo:tag` or `repo@digest` into the parts `/images/create` takes.
pub fn split_reference(reference: &str) -> (&str, &str) {
    if let Some((repo, digest)) = reference.split_once('@') {
        return (repo, digest);
    }
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], &reference[slash + i + 1..]),
        None => (reference, "latest"),
    }
}

/// The image's id, or `None` when the engine has no image by that name.
pub async fn image_id(docker: &Docker, reference: &str) -> Result<Option<String>> {
    match docker.inspect_image(reference).await {
        Ok(img) => Ok(img.id),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("inspecting the image {reference}")),
    }
}

/// What a pull or a build reports while it runs.
pub enum Progress<'a> {
    /// A layer of a pull changed (status, bytes).
    Layer(&'a str, LayerProgress),
    /// A build began a Dockerfile instruction: `Step 3/7 : RUN pip install ...`.
    Build(&'a str),
    /// Any other line (a download's bytes, verifying, loading); `true` when
    /// it must be published at once rather than at most twice a second.
    Text(&'a str, bool),
}

/// Records what a pull or a build reports as the running step's progress,
/// and a pull's layers in the state's `image` (docs/api.md).
pub fn record(rec: &mut crate::state::Recorder<'_>, progress: Progress) {
    match progress {
        Progress::Layer(layer, mut progress) => {
            let Some(image) = rec.state.image.as_mut() else { return };
            // "Pull complete" carries no size: keep the one the download had.
            if progress.total.is_none() {
                progress.total = image.layers.get(layer).and_then(|old| old.total);
            }
            let changed = image.layers.get(layer).is_none_or(|old| old.status != progress.status);
            image.layers.insert(layer.to_string(), progress);
            let line = pull_progress(&image.layers);
            rec.progress(line, changed);
        }
        Progress::Build(step) => rec.progress(step.to_string(), true),
        Progress::Text(line, force) => rec.progress(line.to_string(), force),
    }
}

/// Makes `cfg.reference` present, by the configured source.
/// `on_progress` receives a pull's layers, a build's steps and a download's
/// bytes as they go. Downloads and the record of a loaded archive live in
/// `state_dir`.
pub async fn ensure(
    docker: &Docker,
    cfg: &ImageConfig,
    state_dir: &Path,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Prepared> {
    let reference = cfg.reference.as_str();
    let detail = match &cfg.source {
        ImageSource::Pull(p) => {
            let present = image_id(docker, reference).await?.is_some();
            match (p.policy, present) {
                (PullPolicy::Never, false) => bail!(
                    "the image {reference} is not on this host and [image] pull = \"never\"; load or build it first (scripts/build-test-image.sh builds the local one), or set pull = \"if-not-present\""
                ),
                (PullPolicy::Never | PullPolicy::IfNotPresent, true) => "present".to_string(),
                (PullPolicy::Always, _) | (PullPolicy::IfNotPresent, false) => {
                    pull::pull(docker, reference, p.credentials.as_deref(), on_progress).await?;
                    "pulled".to_string()
                }
            }
        }
        ImageSource::Archive(a) => archive::ensure(docker, a, reference, state_dir, on_progress).await?,
        ImageSource::Build(build) => {
            build::build_image(docker, build, reference, on_progress).await?;
            "built".to_string()
        }
    };
    let image = match docker.inspect_image(reference).await {
        Ok(image) => image,
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
            bail!("the engine has no image {reference} after it was {detail}")
        }
        Err(e) => return Err(e).with_context(|| format!("inspecting the image {reference}")),
    };
    let id = image.id.ok_or_else(|| anyhow!("the engine gave no id for the image {reference}"))?;
    let user = image.config.and_then(|c| c.user).filter(|u| !u.is_empty());
    info!(image = %reference, id = %short_id(&id), "image ready ({detail})");
    Ok(Prepared { id, user, detail })
}

pub fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

/// A pull's progress over all its layers, in one line: bytes and percent of
/// the layers whose size is known yet, and how many layers are complete.
pub fn pull_progress(layers: &std::collections::BTreeMap<String, LayerProgress>) -> String {
    let (mut done_bytes, mut total_bytes, mut complete) = (0i64, 0i64, 0usize);
    for layer in layers.values() {
        if matches!(layer.status.as_str(), "Pull complete" | "Already exists") {
            complete += 1;
        }
        if let Some(total) = layer.total.filter(|t| *t > 0) {
            total_bytes += total;
            done_bytes += match layer.status.as_str() {
                "Downloading" => layer.current.unwrap_or(0).min(total),
                "Pulling fs layer" | "Waiting" | "Retrying" => 0,
                // Verifying, downloaded, extracting, complete: all its bytes are here.
                _ => total,
            };
        }
    }
    let mut line = format!("pulling: {complete} of {} layers complete", layers.len());
    if total_bytes > 0 {
        let percent = done_bytes * 100 / total_bytes;
        line.push_str(&format!(", {} of {} ({percent}%)", size(done_bytes), size(total_bytes)));
    }
    line
}

/// `12.3 MB`, `1.1 GB`, `512 kB` (decimal, as Docker shows sizes).
pub fn size(bytes: i64) -> String {
    let b = bytes as f64;
    match bytes {
        n if n >= 1_000_000_000 => format!("{:.1} GB", b / 1e9),
        n if n >= 1_000_000 => format!("{:.1} MB", b / 1e6),
        n if n >= 1_000 => format!("{:.0} kB", b / 1e3),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_progress_adds_up_the_layers() {
        let layer = |status: &str, current: Option<i64>, total: Option<i64>| LayerProgress {
            status: status.into(),
            current,
            total,
        };
        let mut layers = std::collections::BTreeMap::new();
        layers.insert("a".to_string(), layer("Downloading", Some(25_000_000), Some(100_000_000)));
        layers.insert("b".to_string(), layer("Pull complete", None, Some(50_000_000)));
        layers.insert("d".to_string(), layer("Verifying Checksum", None, Some(0)));
        layers.insert("c".to_string(), layer("Waiting", None, None));
        assert_eq!(pull_progress(&layers), "pulling: 1 of 4 layers complete, 75.0 MB of 150.0 MB (50%)");
        layers.clear();
        layers.insert("a".to_string(), layer("Pulling fs layer", None, None));
        assert_eq!(pull_progress(&layers), "pulling: 0 of 1 layers complete");
    }

    #[test]
    fn references_always_have_a_tag() {
        assert_eq!(split_reference("notebook:latest"), ("notebook", "latest"));
        assert_eq!(split_reference("notebook"), ("notebook", "latest"));
        assert_eq!(split_reference("localhost:5000/team/nb:1.0"), ("localhost:5000/team/nb", "1.0"));
        assert_eq!(split_reference("localhost:5000/team/nb"), ("localhost:5000/team/nb", "latest"));
        assert_eq!(split_reference("nb@sha256:abcd"), ("nb", "sha256:abcd"));
    }

    #[test]
    fn short_ids() {
        assert_eq!(short_id("sha256:0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }
}
