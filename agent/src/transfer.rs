//! Transfers over the network, each rule once: the retry of attempts that
//! run as long as they must (downloads, pulls, clones: their own timeouts
//! bound them, the budget bounds only the waits), and the one verified
//! download that workspace tarballs and image archives share: transient
//! answers retried, resumed where the server takes ranges, bounded in size,
//! refused when its filesystem lacks the room, its file removed when it
//! cannot be resumed, and the sha256 of what was written returned for the
//! caller to compare.

use std::fmt::Display;
use std::future::Future;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use jupyter_proto::redact::redact_url_credentials;
use jupyter_proto::retry::{retry, transient_status, Attempt, Error, Policy};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

/// An error that can say that retrying gave up: the context added to the
/// last attempt's error once the budget for more is spent.
pub trait GiveUp {
    fn give_up(self, why: String) -> Self;
}

impl GiveUp for anyhow::Error {
    fn give_up(self, why: String) -> Self {
        self.context(why)
    }
}

/// Runs `op` until it succeeds or fails for good, waiting between transient
/// failures as `policy` says; no attempt starts once its budget is spent,
/// and a running one is never cut. Each retry is logged with `what`
/// (`downloading the tarball`); the last failure, when there were several,
/// says how many and how long.
pub async fn with_retries<T, E, F, Fut>(policy: Policy, what: &str, mut op: F) -> Result<T, Attempt<E>>
where
    E: GiveUp + Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt<E>>>,
{
    let started = Instant::now();
    let on_retry = |a: &Attempt<E>, delay: Duration| {
        warn!(error = %a, "{what} failed; retrying in {}", seconds(delay));
    };
    retry(&policy.waits_only(), |_| op(), on_retry).await.map_err(|e| match e {
        Error::Permanent(a) => a,
        Error::GaveUp { attempts, last } if attempts > 1 => Attempt {
            error: last.error.give_up(format!(
                "{what}: gave up after {attempts} attempts in {} (retry budget spent)",
                seconds(started.elapsed())
            )),
            transient: true,
        },
        Error::GaveUp { last, .. } => last,
        Error::OutOfTime { .. } => unreachable!("waits_only never runs out of time during an attempt"),
    })
}

/// A duration in whole seconds, at least one, as people read it: `1m 30s`.
pub fn seconds(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs().max(1))).to_string()
}

/// How much of an error page goes into a message.
const ERROR_PAGE_CHARS: usize = 200;

/// The refusal of a download larger than its bound, told `is announced as`
/// or `sent`.
pub type TooLarge<'a> = &'a (dyn Fn(&str) -> anyhow::Error + Sync);

/// What to download, and how its messages name it.
pub struct Download<'a> {
    /// The URL as configured, credentials and signature included: only sent, never shown.
    pub url: &'a str,
    /// What the retries are of, for the log and the last failure: `downloading the tarball`.
    pub task: &'a str,
    /// How each failure's message begins: `downloading http://***@host/m.tgz`.
    pub prefix: &'a str,
    /// Where it goes (mode 0600): what an earlier attempt or run left there
    /// is resumed when the server answers the range. Removed on a failure
    /// that resuming would not mend: too large, a failed write (a full disk).
    pub path: &'a Path,
    /// The most it may be (bytes), and the refusal, which is not retried.
    /// `None`: no bound. Its filesystem must have the room for what the
    /// server announces, or for this much when it announces nothing.
    pub max_size: Option<(u64, TooLarge<'a>)>,
    /// Whether the start of an error page goes into the message. Not for
    /// signed URLs, whose store may echo the signature in it: a 403 then
    /// says that the signed URL may have expired.
    pub error_page: bool,
}

/// Downloads `d.url` into `d.path`, retrying transport errors, 408, 429 and
/// 5xx as `policy` says, and returns the sha256 (hex) of the whole file.
/// `on_progress` hears the bytes written so far and the total when known.
pub async fn download<P: FnMut(u64, Option<u64>)>(
    client: &reqwest::Client,
    d: &Download<'_>,
    policy: Policy,
    on_progress: P,
) -> anyhow::Result<String> {
    // One attempt at a time: each borrows the progress callback in turn.
    let progress = &tokio::sync::Mutex::new(on_progress);
    let attempt = || async move { download_once(client, d, &mut *progress.lock().await).await };
    with_retries(policy, d.task, attempt).await.map_err(|a| a.error)
}

async fn download_once<P: FnMut(u64, Option<u64>)>(
    client: &reqwest::Client,
    d: &Download<'_>,
    on_progress: &mut P,
) -> Result<String, Attempt<anyhow::Error>> {
    let path = d.path;
    // reqwest's messages carry the whole URL, credentials and signature included: name the caller's instead.
    let net = |e: reqwest::Error| Attempt {
        transient: !(e.is_builder() || e.is_redirect()),
        error: anyhow!(e.without_url()).context(d.prefix.to_string()),
    };
    let local = |e: std::io::Error| Attempt::permanent(anyhow!(e).context(format!("writing {}", path.display())));
    // What cannot be resumed goes: a full disk would be filled again by the next run.
    let discard = |a: Attempt<anyhow::Error>| {
        let _ = std::fs::remove_file(path);
        a
    };
    let have = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut request = client.get(d.url);
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut response = request.send().await.map_err(net)?;
    let status = response.status();
    if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
        // What is there is not a prefix of this file (or is all of it and more): start over.
        std::fs::remove_file(path).map_err(local)?;
        return Err(Attempt::transient(anyhow!("the server refused to resume; starting over")));
    }
    if !status.is_success() {
        let hint = if status == reqwest::StatusCode::FORBIDDEN && !d.error_page {
            " (a signed URL may have expired: sign a new one)"
        } else {
            ""
        };
        let page = if d.error_page { error_page(&mut response).await } else { String::new() };
        let message = if page.is_empty() {
            format!("{}: the server answered {status}{hint}", d.prefix)
        } else {
            format!("{}: the server answered {status}: {page}", d.prefix)
        };
        return Err(Attempt { error: anyhow!(message), transient: transient_status(status) });
    }
    let resumed = status == reqwest::StatusCode::PARTIAL_CONTENT && starts_at(&response, have);
    let mut done = if resumed { have } else { 0 };
    let total = response.content_length().map(|n| n + done);
    let too_large = |verb: &str| d.max_size.map(|(_, refusal)| discard(Attempt::permanent(refusal(verb))));
    if let (Some(t), Some((max, _))) = (total, d.max_size) {
        if t > max {
            return Err(too_large("is announced as").expect("a bound"));
        }
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let free = free_space(dir).map_err(|e| {
        Attempt::permanent(anyhow!(e).context(format!("measuring the free space of {}", dir.display())))
    })?;
    // Starting over frees what was there.
    let free = if resumed { free } else { free.saturating_add(have) };
    if let Some(room) = room_needed(done, total, d.max_size.map(|(max, _)| max)).filter(|room| *room > free) {
        let (why, way_out) = match total {
            Some(_) => (format!("{room} more bytes to write"), ""),
            None => (
                format!("the server does not announce the size, so up to max_size ({room} more bytes) may come"),
                ", or lower max_size",
            ),
        };
        return Err(Attempt::permanent(anyhow!(
            "{}: {why}, but the filesystem of {} has {free} bytes free; free some space there{way_out}",
            d.prefix,
            dir.display()
        )));
    }
    let mut hasher = if resumed {
        info!(file = %path.display(), from = have, "resuming the download");
        hash_file(path).await.map_err(|e| discard(local(e)))?
    } else {
        Sha256::new()
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .mode(0o600)
        .open(path)
        .await
        .map_err(|e| discard(local(e)))?;
    while let Some(chunk) = response.chunk().await.map_err(net)? {
        done += chunk.len() as u64;
        if d.max_size.is_some_and(|(max, _)| done > max) {
            return Err(too_large("sent").expect("a bound"));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| discard(local(e)))?;
        on_progress(done, total);
    }
    file.flush().await.map_err(|e| discard(local(e)))?;
    file.sync_all().await.map_err(|e| discard(local(e)))?;
    if let Some(t) = total.filter(|t| done < *t) {
        return Err(Attempt::transient(anyhow!("{}: the transfer ended at {done} of {t} bytes", d.prefix)));
    }
    info!(file = %path.display(), bytes = done, "downloaded");
    Ok(hex::encode(hasher.finalize()))
}

/// The bytes an unprivileged writer may still put on the filesystem of `dir`.
fn free_space(dir: &Path) -> nix::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir)?;
    #[allow(clippy::useless_conversion)] // u32 on some targets
    Ok(u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size())))
}

/// The room a download needs from where it stands (`done` bytes written):
/// the rest of what the server announced, else the rest of the bound, else
/// nothing known.
fn room_needed(done: u64, total: Option<u64>, max: Option<u64>) -> Option<u64> {
    total.or(max).map(|end| end.saturating_sub(done))
}

/// The start of an error page, which often says why: white space folded,
/// credentials in URLs removed, at most [`ERROR_PAGE_CHARS`] characters.
async fn error_page(response: &mut reqwest::Response) -> String {
    let mut page = Vec::new();
    while page.len() < 4 * ERROR_PAGE_CHARS {
        match response.chunk().await {
            Ok(Some(chunk)) => page.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let page = String::from_utf8_lossy(&page);
    let folded: String = page.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(ERROR_PAGE_CHARS).collect();
    redact_url_credentials(&folded)
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

/// The sha256 of a file, as the hasher that read it (to go on with a resumed download).
async fn hash_file(path: &Path) -> std::io::Result<Sha256> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(hasher);
            }
            hasher.update(&buf[..n]);
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The sha256 (hex) of a file.
pub async fn sha256_of(path: &Path) -> std::io::Result<String> {
    Ok(hex::encode(hash_file(path).await?.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Full, StreamBody};

    #[test]
    fn the_room_a_download_needs() {
        let cases = [
            // (written, announced end, bound, room)
            (0, Some(500), Some(1000), Some(500)),
            (200, Some(500), Some(1000), Some(300)),
            (0, None, Some(1000), Some(1000)),
            (400, None, Some(1000), Some(600)),
            (0, None, None, None),
            (700, Some(500), None, Some(0)),
        ];
        for (done, total, max, room) in cases {
            assert_eq!(room_needed(done, total, max), room, "{done} {total:?} {max:?}");
        }
    }

    /// A tmpfs of 1 MiB in a temporary directory, unmounted when dropped;
    /// `None` where this process may not mount one (not root).
    struct SmallFs {
        dir: tempfile::TempDir,
    }

    impl SmallFs {
        fn mount() -> Option<SmallFs> {
            let dir = tempfile::tempdir().unwrap();
            let mounted = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
                .arg(dir.path())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !mounted {
                eprintln!("cannot mount a tmpfs here (not root?): skipping the free-space test");
            }
            mounted.then_some(SmallFs { dir })
        }
    }

    impl Drop for SmallFs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
        }
    }

    /// Serves `body` to every request on 127.0.0.1, with its length or
    /// (`announce` false) in chunks without one; the base URL.
    async fn serve(body: Vec<u8>, announce: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let body = body.clone();
                let service = hyper::service::service_fn(move |_| {
                    let body = body.clone();
                    async move {
                        let body = if announce {
                            Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed()
                        } else {
                            let chunks: Vec<Result<_, std::convert::Infallible>> = body
                                .chunks(64 << 10)
                                .map(|c| Ok(hyper::body::Frame::data(Bytes::copy_from_slice(c))))
                                .collect();
                            StreamBody::new(futures_util::stream::iter(chunks)).boxed()
                        };
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        format!("http://{addr}/a.tar")
    }

    async fn fetch_into(url: &str, path: &Path, max_size: Option<u64>) -> String {
        let refusal = |verb: &str| anyhow!("{verb} more than max_size");
        let d = Download {
            url,
            task: "downloading",
            prefix: "downloading a.tar",
            path,
            max_size: max_size.map(|m| (m, &refusal as TooLarge)),
            error_page: false,
        };
        let client = crate::http::download_client(None).unwrap();
        let once = Policy::new(Duration::from_secs(1), Duration::from_secs(1), Duration::ZERO);
        format!("{:#}", download(&client, &d, once, |_, _| {}).await.unwrap_err())
    }

    #[tokio::test]
    async fn a_download_its_filesystem_cannot_hold_is_refused_and_a_full_disk_leaves_no_file() {
        let Some(fs) = SmallFs::mount() else { return };
        let path = fs.dir.path().join("a.tar.part");
        let free = free_space(fs.dir.path()).unwrap();
        assert_eq!(free, 1 << 20);

        // Announced: 2 MiB do not fit; nothing is written.
        let url = serve(vec![0; 2 << 20], true).await;
        let err = fetch_into(&url, &path, Some(16 << 20)).await;
        let dir = fs.dir.path().display();
        assert_eq!(
            err,
            format!("downloading a.tar: 2097152 more bytes to write, but the filesystem of {dir} has 1048576 bytes free; free some space there")
        );
        assert!(!path.exists());

        // Not announced: up to the bound must fit.
        let url = serve(vec![0; 512 << 10], false).await;
        let err = fetch_into(&url, &path, Some(2 << 20)).await;
        assert_eq!(
            err,
            format!("downloading a.tar: the server does not announce the size, so up to max_size (2097152 more bytes) may come, but the filesystem of {dir} has 1048576 bytes free; free some space there, or lower max_size")
        );
        assert!(!path.exists());

        // Unbounded and not announced, the disk fills: the partial file goes,
        // or the next run would resume it and fill the disk again.
        let url = serve(vec![0; 2 << 20], false).await;
        let err = fetch_into(&url, &path, None).await;
        assert!(err.contains("No space left on device"), "{err}");
        assert!(!path.exists());
        assert_eq!(free_space(fs.dir.path()).unwrap(), 1 << 20);
    }
}
