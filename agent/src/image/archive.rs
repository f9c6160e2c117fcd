//! Image archives (`docker save` output, plain or gzip), from a path or from
//! an http(s) URL: downloaded with retries and resumed where the server
//! takes ranges, within `[image] max_size` and `download_timeout` and the
//! free space of the state directory's filesystem, verified against
//! `[image] sha256` before `/images/load`, never loaded on a mismatch, and
//! not loaded again while the engine still has what the same archive gave
//! (docs/images.md#an-archive).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bollard::query_parameters::{ImportImageOptionsBuilder, TagImageOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use jupyter_proto::retry::Policy;
use serde::{Deserialize, Serialize};
use tokio_util::io::ReaderStream;
use tracing::{info, warn};

use super::{image_id, split_reference, Progress};
use crate::config::{Archive, ArchiveLocation};
use crate::transfer::{self, Download};

/// Waits between attempts: 1 s doubling to 60 s, none started after 15
/// minutes of them (a room of instances downloading at once).
const RETRY: Policy = Policy::new(Duration::from_secs(1), Duration::from_secs(60), Duration::from_secs(900));

/// `<state_dir>/image-archive.json`: which archive gave which image.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Loaded {
    sha256: String,
    image: String,
}

fn marker(state_dir: &Path) -> PathBuf {
    state_dir.join("image-archive.json")
}

/// Where a download goes until it is verified and loaded.
fn download_path(state_dir: &Path, sha256: &str) -> PathBuf {
    state_dir.join("downloads").join(format!("image-{sha256}.tar.part"))
}

/// Removes what downloads of other archives left (an archive replaced
/// before its download finished): only the current one may be resumed.
fn remove_stale_downloads(state_dir: &Path, keep: Option<&Path>) {
    let Ok(entries) = std::fs::read_dir(state_dir.join("downloads")) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name.starts_with("image-") && name.ends_with(".tar.part");
        if ours && keep != Some(entry.path().as_path()) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => info!(file = %entry.path().display(), "removed the partial download of another archive"),
                Err(e) => warn!(file = %entry.path().display(), "cannot remove a stale partial download: {e}"),
            }
        }
    }
}

/// Makes the archive's image present as `reference`; the step's detail.
pub(super) async fn ensure(
    docker: &Docker,
    archive: &Archive,
    reference: &str,
    state_dir: &Path,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<String> {
    let label = archive.label();
    let current = match (&archive.location, &archive.sha256) {
        (ArchiveLocation::Url(_), Some(sha256)) => Some(download_path(state_dir, sha256)),
        _ => None,
    };
    remove_stale_downloads(state_dir, current.as_deref());
    if let Some(sha256) = &archive.sha256 {
        let loaded: Option<Loaded> =
            std::fs::read(marker(state_dir)).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if let (Some(loaded), Some(id)) = (loaded, image_id(docker, reference).await?) {
            if loaded.sha256 == *sha256 && loaded.image == id {
                info!(archive = %label, "the image from this archive is present; not loading it again");
                return Ok(format!("present (loaded before from the archive with sha256 {})", &sha256[..12]));
            }
        }
    }
    let (path, downloaded) = match &archive.location {
        ArchiveLocation::Path(p) => (p.clone(), None),
        ArchiveLocation::Url(url) => {
            let sha256 = archive.sha256.as_deref().ok_or_else(|| anyhow!("an archive URL without sha256"))?;
            let path = download_path(state_dir, sha256);
            let actual = download(url, archive, &label, &path, on_progress).await?;
            (path, Some(actual))
        }
    };
    if let Some(expected) = &archive.sha256 {
        on_progress(Progress::Text("verifying the archive's sha256", true));
        let actual = match &downloaded {
            Some(actual) => actual.clone(),
            None => transfer::sha256_of(&path).await.with_context(|| format!("reading the image archive {label}"))?,
        };
        if actual != *expected {
            if downloaded.is_some() {
                let _ = std::fs::remove_file(&path);
            }
            bail!(
                "the image archive {label} has sha256 {actual}, not {expected} as [image] sha256 says; nothing was loaded (a changed or damaged archive: check the file, or set sha256 to the new archive's)"
            );
        }
    }
    on_progress(Progress::Text("loading the archive into the engine", true));
    load(docker, &path, &label, reference).await?;
    if downloaded.is_some() {
        let _ = std::fs::remove_file(&path);
    }
    if let (Some(sha256), Some(id)) = (&archive.sha256, image_id(docker, reference).await?) {
        let record = serde_json::to_vec(&Loaded { sha256: sha256.clone(), image: id })?;
        if let Err(e) = crate::state::write_atomic(&marker(state_dir), &record, 0o600) {
            warn!("cannot record the loaded archive ({e:#}); it is loaded again at the next converge");
        }
    }
    Ok(if downloaded.is_some() { "downloaded, verified and loaded".into() } else { "loaded".into() })
}

/// Downloads `url` into `path`, resuming what an earlier attempt (or an
/// earlier run) left there when the server answers a range, within the
/// archive's `max_size` and `download_timeout`; its sha256.
async fn download(
    url: &str,
    archive: &Archive,
    label: &str,
    path: &Path,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<String> {
    let dir = path.parent().expect("the download path has a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("setting the mode of {}", dir.display()))?;
    // A stall ends an attempt; download_timeout bounds them all, the waits between included.
    let client = crate::http::download_client(None)?;
    let what = format!("downloading the image archive {label}");
    let max_size = archive.max_size;
    let too_large = |verb: &str| {
        anyhow!(
            "the image archive {label} {verb} more than [image] max_size ({max_size} bytes); nothing is kept (raise max_size if the archive really is that large)"
        )
    };
    // Messages name the label (the URL without its query, a signed URL's
    // signature) and show no error page, which may echo the signature.
    let d =
        Download { url, task: &what, prefix: &what, path, max_size: Some((max_size, &too_large)), error_page: false };
    let transfer = transfer::download(&client, &d, RETRY, |done, total| {
        let line = match total {
            Some(t) if t > 0 => format!("downloading: {} of {} ({}%)", size(done), size(t), done * 100 / t),
            _ => format!("downloading: {}", size(done)),
        };
        on_progress(Progress::Text(&line, false));
    });
    let timeout = archive.download_timeout;
    match tokio::time::timeout(timeout, transfer).await {
        Ok(result) => result,
        // What arrived stays for the next converge to resume.
        Err(_) => bail!(
            "{what}: not done within [image] download_timeout ({}); what arrived is resumed at the next converge (raise download_timeout for a slow link)",
            humantime::format_duration(timeout)
        ),
    }
}

/// A byte count as Docker shows sizes.
fn size(bytes: u64) -> String {
    super::size(i64::try_from(bytes).unwrap_or(i64::MAX))
}

/// `/images/load` from `path`; names the loaded image `reference` when the
/// archive holds exactly one image by another name (or none).
async fn load(docker: &Docker, path: &Path, label: &str, reference: &str) -> Result<()> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("opening the image archive {label} ([image] archive)"))?;
    info!(archive = %label, "loading image archive");
    let options = ImportImageOptionsBuilder::new().quiet(true).build();
    let mut stream = docker.import_image_stream(options, ReaderStream::new(file), None);
    let mut loaded = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.with_context(|| format!("loading {label}"))?;
        if let Some(detail) = info.error_detail {
            bail!("loading {label}: {}", detail.message.unwrap_or_default());
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
                "the archive {label} holds {} but not {reference}; set [image] tag to one of its images",
                if loaded.is_empty() { "no named image".to_string() } else { loaded.join(", ") }
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_docker_writes_them() {
        assert_eq!(size(999), "999 B");
        assert_eq!(size(12_300_000), "12.3 MB");
        assert_eq!(size(1_100_000_000), "1.1 GB");
        assert_eq!(size(u64::MAX), "9223372036.9 GB");
    }
}
