//! Image archives (`docker save` output, plain or gzip), from a path or from
//! an http(s) URL: downloaded with retries and resumed where the server
//! takes ranges, verified against `[image] sha256` before `/images/load`,
//! never loaded on a mismatch, and not loaded again while the engine still
//! has what the same archive gave (docs/images.md#an-archive).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bollard::query_parameters::{ImportImageOptionsBuilder, TagImageOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;
use jupyter_proto::retry::Policy;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;
use tracing::{info, warn};

use super::{image_id, split_reference, with_retries, Attempt, Progress};
use crate::config::{Archive, ArchiveLocation};

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

/// Makes the archive's image present as `reference`; the step's detail.
pub(super) async fn ensure(
    docker: &Docker,
    archive: &Archive,
    reference: &str,
    state_dir: &Path,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<String> {
    let label = archive.label();
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
        ArchiveLocation::Path(p) => (p.clone(), false),
        ArchiveLocation::Url(url) => {
            let sha256 = archive.sha256.as_deref().ok_or_else(|| anyhow!("an archive URL without sha256"))?;
            let path = download_path(state_dir, sha256);
            download(url, &label, &path, on_progress).await?;
            (path, true)
        }
    };
    if let Some(expected) = &archive.sha256 {
        on_progress(Progress::Text("verifying the archive's sha256", true));
        let actual = sha256_of(&path).await.with_context(|| format!("reading the image archive {label}"))?;
        if actual != *expected {
            if downloaded {
                let _ = std::fs::remove_file(&path);
            }
            bail!(
                "the image archive {label} has sha256 {actual}, not {expected} as [image] sha256 says; nothing was loaded (a changed or damaged archive: check the file, or set sha256 to the new archive's)"
            );
        }
    }
    on_progress(Progress::Text("loading the archive into the engine", true));
    load(docker, &path, &label, reference).await?;
    if downloaded {
        let _ = std::fs::remove_file(&path);
    }
    if let (Some(sha256), Some(id)) = (&archive.sha256, image_id(docker, reference).await?) {
        let record = serde_json::to_vec(&Loaded { sha256: sha256.clone(), image: id })?;
        if let Err(e) = crate::state::write_atomic(&marker(state_dir), &record, 0o600) {
            warn!("cannot record the loaded archive ({e:#}); it is loaded again at the next converge");
        }
    }
    Ok(if downloaded { "downloaded, verified and loaded".into() } else { "loaded".into() })
}

async fn sha256_of(path: &Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(hex::encode(hasher.finalize()));
            }
            hasher.update(&buf[..n]);
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Downloads `url` into `path`, resuming what an earlier attempt (or an
/// earlier run) left there when the server answers a range.
async fn download(url: &str, label: &str, path: &Path, on_progress: &mut dyn FnMut(Progress)) -> Result<()> {
    let dir = path.parent().expect("the download path has a directory");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("setting the mode of {}", dir.display()))?;
    // No bound on the whole transfer: archives are large, and a stall ends an attempt.
    let client = &crate::http::download_client(None)?;
    // One attempt at a time: each borrows the progress callback in turn.
    let progress = &tokio::sync::Mutex::new(on_progress);
    let attempt = || async move { download_once(client, url, label, path, &mut **progress.lock().await).await };
    with_retries(RETRY, &format!("downloading the image archive {label}"), attempt).await.map_err(|a| a.error)
}

async fn download_once(
    client: &reqwest::Client,
    url: &str,
    label: &str,
    path: &Path,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<(), Attempt> {
    // reqwest's messages carry the whole URL, signature and all: name the label instead.
    let net = |e: reqwest::Error| Attempt {
        transient: !(e.is_builder() || e.is_redirect()),
        error: anyhow!(e.without_url()).context(format!("downloading the image archive {label}")),
    };
    let local = |e: std::io::Error| Attempt {
        transient: false,
        error: anyhow!(e).context(format!("writing {}", path.display())),
    };
    let have = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut request = client.get(url);
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut response = request.send().await.map_err(net)?;
    let status = response.status();
    let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT && starts_at(&response, have);
    if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
        // What is there is not a prefix of this file (or is all of it and more): start over.
        std::fs::remove_file(path).map_err(local)?;
        return Err(Attempt { error: anyhow!("the server refused to resume; starting over"), transient: true });
    }
    if !status.is_success() {
        let transient = status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        let hint = if status == reqwest::StatusCode::FORBIDDEN {
            " (a signed URL may have expired: sign a new one)"
        } else {
            ""
        };
        return Err(Attempt {
            error: anyhow!("downloading the image archive {label}: the server answered {status}{hint}"),
            transient,
        });
    }
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .mode(0o600)
        .open(path)
        .await
        .map_err(local)?;
    let mut done = if resumed { have } else { 0 };
    if resumed {
        info!(archive = %label, from = have, "resuming the download");
    }
    let total = response.content_length().map(|n| n + done);
    while let Some(chunk) = response.chunk().await.map_err(net)? {
        file.write_all(&chunk).await.map_err(local)?;
        done += chunk.len() as u64;
        let line = match total {
            Some(t) if t > 0 => format!("downloading: {} of {} ({}%)", size(done), size(t), done * 100 / t),
            _ => format!("downloading: {}", size(done)),
        };
        on_progress(Progress::Text(&line, false));
    }
    file.flush().await.map_err(local)?;
    file.sync_all().await.map_err(local)?;
    if let Some(t) = total.filter(|t| done < *t) {
        return Err(Attempt {
            error: anyhow!("downloading the image archive {label}: the transfer ended at {done} of {t} bytes"),
            transient: true,
        });
    }
    info!(archive = %label, bytes = done, "downloaded");
    Ok(())
}

/// Whether a 206 answer's `Content-Range` starts where the file ends.
fn starts_at(response: &reqwest::Response, have: u64) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|start| start.parse::<u64>().ok())
        == Some(have)
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
