//! The download's archive, streamed to the client as it is written (docs/pages.md#download).

use std::io::{self, Write};
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::StreamBody;
use hyper::body::Frame;
use tracing::{info, warn};

use super::{CHUNK, CHUNKS_IN_FLIGHT};
use crate::front::OwnBody;
use crate::workspace::download::{self, Exclude};

/// The archive, written on a blocking thread into a bounded channel: at
/// most [`CHUNKS_IN_FLIGHT`] chunks wait for a slow client; one that goes
/// away ends the walk. An error mid-way ends the body with an error, so
/// the client sees a broken download, never a short archive that looks whole.
pub(super) fn zip_stream(root: PathBuf, exclude: Exclude) -> OwnBody {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let out = io::BufWriter::with_capacity(CHUNK, ChannelWriter(tx.clone()));
        match download::write_zip(&root, &exclude, out) {
            Ok(summary) => info!(
                root = %root.display(),
                files = summary.files,
                bytes = summary.archive_bytes,
                "the participant downloaded the workspace from the pages"
            ),
            Err(e) => {
                if tx.is_closed() {
                    info!(root = %root.display(), "a download from the pages ended: the client went away");
                } else {
                    warn!(root = %root.display(), "a download from the pages failed: {e:#}");
                    let _ = tx.blocking_send(Err(io::Error::other(format!("{e:#}"))));
                }
            }
        }
    });
    let chunks =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|chunk| (chunk.map(Frame::data), rx)) },
        );
    OwnBody::new(StreamBody::new(chunks))
}

/// The blocking side of the download's channel.
struct ChannelWriter(tokio::sync::mpsc::Sender<io::Result<Bytes>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
