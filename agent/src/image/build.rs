//! Building the image from a context through `/build` (the classic
//! builder's output, `Step N/M`, is the progress).

use anyhow::{bail, Context, Result};
use bollard::query_parameters::BuildImageOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use tokio_util::io::ReaderStream;
use tracing::{info, warn};

use super::Progress;
use crate::config::BuildConfig;

/// Packs the build context into a temporary tar file (so memory stays flat
/// whatever its size), then streams it to `/build`.
pub(super) async fn build_image(
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
