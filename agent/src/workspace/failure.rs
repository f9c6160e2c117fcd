//! Why a fetch failed, and the retry of its attempts (tarball downloads,
//! git clones and fetches): what every part of the fetch shares, below the
//! entry point (`fetch`).

use std::future::Future;
use std::time::{Duration, Instant};

use jupyter_proto::retry::Policy;

use crate::transfer::{with_retries, GiveUp};

const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// Why a fetch failed; the caller branches on the kind (retry is done inside).
/// URLs in these errors have their credentials replaced by `***`.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The download's sha256 is not the configured one; nothing was extracted.
    #[error("the tarball at {url} has sha256 {actual}, not the expected {expected}; nothing was written")]
    Checksum { url: String, expected: String, actual: String },
    /// The repository has no branch, tag or commit by that name.
    #[error("the repository {url} has no branch, tag or commit `{reference}`")]
    UnknownRef { url: String, reference: String },
    /// An archive entry would land outside the destination, or is a device; nothing was written.
    /// `reason` reads after the entry's name: "has a `..` component".
    #[error("refusing the tarball: entry `{entry}` {reason}; nothing was written")]
    Unsafe { entry: String, reason: String },
    /// Anything else, transient failures included once the retry budget is spent.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl GiveUp for FetchError {
    fn give_up(self, why: String) -> Self {
        match self {
            FetchError::Other(e) => FetchError::Other(e.context(why)),
            other => other,
        }
    }
}

/// One attempt's failure, and whether another attempt may do better.
pub(super) type Attempt = jupyter_proto::retry::Attempt<FetchError>;

/// Runs `op` until it succeeds, fails for good, or the next wait would pass
/// `deadline` (a running attempt is never cut: downloads and clones have
/// timeouts of their own); waits grow exponentially from 1 s up to 60 s, with
/// jitter so that a room of instances does not retry in step.
pub(super) async fn with_retry<T, F, Fut>(deadline: Instant, what: &str, op: F) -> Result<T, FetchError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt>>,
{
    with_retries(policy(deadline), what, op).await.map_err(|a| a.error)
}

/// The retry policy of a fetch that must end its waits by `deadline`.
pub(super) fn policy(deadline: Instant) -> Policy {
    Policy::new(FIRST_RETRY_DELAY, MAX_RETRY_DELAY, deadline.saturating_duration_since(Instant::now()))
}
