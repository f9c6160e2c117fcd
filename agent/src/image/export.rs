//! `jupyter-agent image export`: the organiser builds (or pulls, or loads)
//! the configured image once, and ships the archive this writes, with its
//! SHA-256, to every instance (`[image] archive` + `sha256`;
//! docs/images.md#build-once-ship-everywhere).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bollard::Docker;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

/// What was written.
#[derive(Debug, serde::Serialize)]
pub struct Exported {
    pub archive: PathBuf,
    /// `<archive>.sha256`, in `sha256sum` format.
    pub checksum_file: PathBuf,
    pub sha256: String,
    pub bytes: u64,
    pub gzip: bool,
    pub reference: String,
}

/// Whether the archive is compressed: by the name the organiser chose.
pub fn gzip_by_name(out: &Path) -> bool {
    let name = out.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    name.ends_with(".gz") || name.ends_with(".tgz")
}

/// Writes `/images/<reference>/get` to `out` (gzip when its name ends in
/// `.gz` or `.tgz`) through a temporary file beside it, and its SHA-256 to
/// `<out>.sha256`. Nothing is left at `out` when it fails.
pub async fn export(docker: &Docker, reference: &str, out: &Path) -> Result<Exported> {
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("{}: no such directory for the archive (--out)", dir.display());
    }
    if out.is_dir() {
        bail!("{} is a directory; expected the archive's file name (--out)", out.display());
    }
    let gzip = gzip_by_name(out);
    let tmp = tempfile::Builder::new()
        .prefix(".jupyter-agent-export")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let (file, tmp_path) = tmp.into_parts();
    let mut sink = Hashing { inner: std::io::BufWriter::new(file), hasher: Sha256::new(), bytes: 0 };
    let mut stream = docker.export_image(reference);
    // A gzip encoder on top when asked: level 1, since the archive is made once
    // but the organiser waits for it (docker load takes gzip as it is).
    let mut encoder = gzip.then(|| flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("exporting the image {reference} from the engine"))?;
        match encoder.as_mut() {
            Some(enc) => {
                enc.write_all(&chunk)?;
                let compressed = std::mem::take(enc.get_mut());
                sink.write_all(&compressed).context("writing the archive")?;
            }
            None => sink.write_all(&chunk).context("writing the archive")?,
        }
    }
    if let Some(enc) = encoder {
        let rest = enc.finish()?;
        sink.write_all(&rest).context("writing the archive")?;
    }
    let Hashing { inner, hasher, bytes } = sink;
    let file = inner.into_inner().map_err(|e| e.into_error()).context("writing the archive")?;
    file.sync_all().context("writing the archive")?;
    std::fs::set_permissions(&tmp_path, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp_path.persist(out).with_context(|| format!("moving the archive to {}", out.display()))?;
    let sha256 = hex::encode(hasher.finalize());
    let checksum_file = PathBuf::from(format!("{}.sha256", out.display()));
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    std::fs::write(&checksum_file, format!("{sha256}  {name}\n"))
        .with_context(|| format!("writing {}", checksum_file.display()))?;
    Ok(Exported { archive: out.to_path_buf(), checksum_file, sha256, bytes, gzip, reference: reference.to_string() })
}

/// Counts and hashes what goes through it.
struct Hashing<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_says_whether_the_archive_is_compressed() {
        assert!(gzip_by_name(Path::new("/srv/notebook.tar.gz")));
        assert!(gzip_by_name(Path::new("nb.TGZ")));
        assert!(!gzip_by_name(Path::new("/srv/notebook.tar")));
    }
}
