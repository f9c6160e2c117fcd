//! Preparing the image: pull it (with per-layer progress), load it from an
//! archive (`docker load`), or build it from a context, all through the
//! Docker Engine API (`/images/create`, `/images/load`, `/build`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ImportImageOptionsBuilder, TagImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio_util::io::ReaderStream;
use tracing::{info, warn};

use crate::config::{BuildConfig, ImageConfig, ImageSource, PullPolicy};
use crate::state::LayerProgress;

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
}

/// Makes `cfg.reference` present, by the configured source.
/// `on_progress` receives a pull's layers and a build's steps as they go.
pub async fn ensure(docker: &Docker, cfg: &ImageConfig, on_progress: &mut dyn FnMut(Progress)) -> Result<Prepared> {
    let reference = cfg.reference.as_str();
    let detail = match &cfg.source {
        ImageSource::Pull(policy) => {
            let present = image_id(docker, reference).await?.is_some();
            match (policy, present) {
                (PullPolicy::Never, false) => bail!(
                    "the image {reference} is not on this host and [image] pull = \"never\"; load or build it first (scripts/build-test-image builds the local one), or set pull = \"if-not-present\""
                ),
                (PullPolicy::Never | PullPolicy::IfNotPresent, true) => "present".to_string(),
                (PullPolicy::Always, _) | (PullPolicy::IfNotPresent, false) => {
                    pull(docker, reference, on_progress).await?;
                    "pulled".to_string()
                }
            }
        }
        ImageSource::Archive(path) => {
            load(docker, path, reference).await?;
            "loaded".to_string()
        }
        ImageSource::Build(build) => {
            build_image(docker, build, reference, on_progress).await?;
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

async fn pull(docker: &Docker, reference: &str, on_progress: &mut dyn FnMut(Progress)) -> Result<()> {
    let (repo, tag) = split_reference(reference);
    info!(image = %reference, "pulling");
    let options = CreateImageOptionsBuilder::new().from_image(repo).tag(tag).build();
    let mut stream = docker.create_image(Some(options), None, None);
    let mut last_status: HashMap<String, String> = HashMap::new();
    while let Some(item) = stream.next().await {
        let info = item.with_context(|| format!("pulling {reference}"))?;
        if let Some(detail) = info.error_detail {
            bail!("pulling {reference}: {}", detail.message.unwrap_or_default());
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

async fn load(docker: &Docker, path: &Path, reference: &str) -> Result<()> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening the image archive {} ([image] archive)", path.display()))?;
    info!(archive = %path.display(), "loading image archive");
    let options = ImportImageOptionsBuilder::new().quiet(true).build();
    let mut stream = docker.import_image_stream(options, ReaderStream::new(file), None);
    let mut loaded = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.with_context(|| format!("loading {}", path.display()))?;
        if let Some(detail) = info.error_detail {
            bail!("loading {}: {}", path.display(), detail.message.unwrap_or_default());
        }
        // "Loaded image: name:tag" or "Loaded image ID: sha256:..."
        if let Some(line) = info.stream {
            let line = line.trim();
            if let Some(name) = line.strip_prefix("Loaded image ID: ").or_else(|| line.strip_prefix("Loaded image: ")) {
                loaded.push(name.to_string());
            }
        }
    }
    if image_id(docker, reference).await?.is_none() {
        // An archive without the configured tag: name what it held.
        match loaded.as_slice() {
            [one] => {
                let (repo, tag) = split_reference(reference);
                docker
                    .tag_image(one, Some(TagImageOptionsBuilder::new().repo(repo).tag(tag).build()))
                    .await
                    .with_context(|| format!("tagging the loaded image {one} as {reference}"))?;
            }
            _ => bail!(
                "the archive {} holds {} but not {reference}; set [image] tag to one of its images",
                path.display(),
                if loaded.is_empty() { "no named image".to_string() } else { loaded.join(", ") }
            ),
        }
    }
    Ok(())
}

/// Packs the build context into a temporary tar file (so memory stays flat
/// whatever its size), then streams it to `/build`.
async fn build_image(
    docker: &Docker,
    cfg: &BuildConfig,
    reference: &str,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    if !cfg.context.join(&cfg.dockerfile).is_file() {
        bail!(
            "there is no {} in the build context {} ([image.build] context and dockerfile)",
            cfg.dockerfile,
            cfg.context.display()
        );
    }
    let (context, dockerfile, withhold) = (cfg.context.clone(), cfg.dockerfile.clone(), cfg.withhold.clone());
    let (tar, packed) =
        tokio::task::spawn_blocking(move || crate::build_context::pack(&context, &dockerfile, &withhold)).await??;
    info!(
        image = %reference,
        files = packed.files,
        ignored = packed.ignored,
        "build context packed (.dockerignore honoured{})",
        if packed.withheld.is_empty() { String::new() } else { format!("; withheld: {}", packed.withheld.join(", ")) }
    );
    info!(image = %reference, context = %cfg.context.display(), "building");
    let mut options = BuildImageOptionsBuilder::new().dockerfile(&cfg.dockerfile).t(reference).rm(true).forcerm(true);
    if !cfg.args.is_empty() {
        options = options.buildargs(&cfg.args.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
    }
    let body = bollard::body_try_stream(ReaderStream::new(tokio::fs::File::from_std(tar)));
    let mut stream = docker.build_image(options.build(), None, Some(body));
    let mut tail: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                bail!("building {reference}: {error}; last output:\n{}", tail.join("\n"))
            }
            Err(e) => return Err(e).with_context(|| format!("building {reference}")),
        };
        if let Some(detail) = info.error_detail {
            bail!("building {reference}: {}; last output:\n{}", detail.message.unwrap_or_default(), tail.join("\n"));
        }
        if let Some(text) = info.stream {
            for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
                info!(image = %reference, "build: {line}");
                // The classic builder's "Step 3/7 : RUN ..." (BuildKit's "#5 [3/7] RUN ...").
                if line.starts_with("Step ") && line.contains('/') {
                    on_progress(Progress::Build(line));
                }
                tail.push(line.to_string());
                if tail.len() > 20 {
                    tail.remove(0);
                }
            }
        }
        if let Some(status) = info.status {
            warn!(image = %reference, "build: {status}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
