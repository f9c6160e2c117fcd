//! Transfers over the network, each rule once: the retry of attempts that
//! run as long as they must (downloads, pulls, clones: their own timeouts
//! bound them, the budget bounds only the waits), and the one verified
//! download that workspace tarballs and image archives share: transient
//! answers retried, resumed where the server takes ranges, bounded in size,
//! and the sha256 of what was written returned for the caller to compare.

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
    /// is resumed when the server answers the range.
    pub path: &'a Path,
    /// The most it may be (bytes), and the refusal, which is not retried.
    /// `None`: no bound.
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
    let too_large = |verb: &str| d.max_size.map(|(_, refusal)| Attempt::permanent(refusal(verb)));
    if let (Some(t), Some((max, _))) = (total, d.max_size) {
        if t > max {
            return Err(too_large("is announced as").expect("a bound"));
        }
    }
    let mut hasher = if resumed {
        info!(file = %path.display(), from = have, "resuming the download");
        hash_file(path).await.map_err(local)?
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
        .map_err(local)?;
    while let Some(chunk) = response.chunk().await.map_err(net)? {
        done += chunk.len() as u64;
        if d.max_size.is_some_and(|(max, _)| done > max) {
            return Err(too_large("sent").expect("a bound"));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(local)?;
        on_progress(done, total);
    }
    file.flush().await.map_err(local)?;
    file.sync_all().await.map_err(local)?;
    if let Some(t) = total.filter(|t| done < *t) {
        return Err(Attempt::transient(anyhow!("{}: the transfer ended at {done} of {t} bytes", d.prefix)));
    }
    info!(file = %path.display(), bytes = done, "downloaded");
    Ok(hex::encode(hasher.finalize()))
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
