//! The one retry helper: exponential backoff (backon) with a cap on single
//! delays and jitter, inside a budget, optionally with a cap on the number
//! of attempts. The budget bounds everything, attempts included (a signal,
//! a ping), or only the waiting (a download or a package install whose own
//! timeout is longer than the budget: no retry starts after the budget, but
//! a running attempt is never cut). Only errors that say "try again" are
//! retried; any other ends at once.
//!
//! Every retry and reconnect loop of both binaries goes through here, with
//! its budget named where it is used: [`retry`] for an operation that
//! succeeds or fails, [`Policy::delays`] for a loop that reconnects for as
//! long as it runs (the container watch, the bootstrap's wait for the agent).
//! Beside it, the two rules every retried operation shares: which HTTP
//! answers are worth another try ([`transient_status`]), and the failure of
//! one attempt that knows whether it is ([`Attempt`]).

use std::fmt::Display;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use tokio::time::Instant;

/// Whether an error is worth another attempt.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

/// Whether an HTTP answer says "try again": 408, 429 and 5xx. Any other
/// answer that is not a success is final (STYLE: one retry rule).
pub fn transient_status(status: hyper::StatusCode) -> bool {
    status.is_server_error()
        || status == hyper::StatusCode::REQUEST_TIMEOUT
        || status == hyper::StatusCode::TOO_MANY_REQUESTS
}

/// One attempt's failure (a download, a pull, a clone), told apart where it
/// happened: whether another attempt may do better.
#[derive(Debug)]
pub struct Attempt<E> {
    pub error: E,
    pub transient: bool,
}

impl<E> Attempt<E> {
    /// A failure another attempt may not meet (the network, a busy server).
    pub fn transient(error: impl Into<E>) -> Self {
        Attempt { error: error.into(), transient: true }
    }

    /// A failure every attempt would meet again.
    pub fn permanent(error: impl Into<E>) -> Self {
        Attempt { error: error.into(), transient: false }
    }
}

impl<E> Transient for Attempt<E> {
    fn is_transient(&self) -> bool {
        self.transient
    }
}

/// The error in its alternate form: an `anyhow` error's whole chain, for a
/// log line.
impl<E: Display> Display for Attempt<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// How to retry: delays that double from `first_delay` up to `max_delay`
/// (jitter adds up to as much again), within `budget`, and at most
/// `max_attempts` attempts when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub first_delay: Duration,
    pub max_delay: Duration,
    pub budget: Duration,
    pub max_attempts: Option<u32>,
    /// Whether the budget cuts a running attempt ([`Policy::new`]) or only
    /// decides whether another attempt starts ([`Policy::waits_only`]).
    pub cuts_attempts: bool,
}

impl Policy {
    /// Everything, attempts and waits, ends within `budget`.
    pub const fn new(first_delay: Duration, max_delay: Duration, budget: Duration) -> Policy {
        Policy { first_delay, max_delay, budget, max_attempts: None, cuts_attempts: true }
    }

    /// The same policy, ending after `n` attempts at the latest.
    pub const fn attempts(self, n: u32) -> Policy {
        Policy { max_attempts: Some(n), ..self }
    }

    /// The same policy, where the budget bounds only the waiting: no
    /// attempt starts after it, and a running one is never cut.
    pub const fn waits_only(self) -> Policy {
        Policy { cuts_attempts: false, ..self }
    }

    fn backoff(&self) -> ExponentialBuilder {
        let b = ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter();
        match self.max_attempts {
            Some(n) => b.with_max_times(n.saturating_sub(1) as usize),
            None => b.without_max_times(),
        }
    }

    /// The delays between attempts, for a loop that reconnects for as long
    /// as it runs (the budget is the caller's: such loops end on a stop
    /// signal, not on time). Start a new iterator after a success.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        let max = self.max_delay * 2;
        self.backoff().build().chain(std::iter::repeat(max))
    }
}

/// How a retried operation ended without success.
#[derive(Debug, PartialEq, Eq)]
pub enum Error<E> {
    /// An error that retrying would not fix.
    Permanent(E),
    /// No further attempt: the attempts cap was reached, or the next wait
    /// would end past the budget. `last` is the last attempt's error.
    GaveUp { attempts: u32, last: E },
    /// The budget ran out during an attempt or a wait ([`Policy::new`]);
    /// `last` is the last error seen, if any attempt ended.
    OutOfTime { attempts: u32, last: Option<String> },
}

impl<E: Display> Error<E> {
    /// How many attempts were made.
    pub fn attempts(&self) -> u32 {
        match self {
            Error::Permanent(_) => 1,
            Error::GaveUp { attempts, .. } | Error::OutOfTime { attempts, .. } => *attempts,
        }
    }

    /// The last error's message, if there was one.
    pub fn last_message(&self) -> Option<String> {
        match self {
            Error::Permanent(e) | Error::GaveUp { last: e, .. } => Some(e.to_string()),
            Error::OutOfTime { last, .. } => last.clone(),
        }
    }
}

/// Runs `op` until it succeeds, fails for good, or the budget runs out.
/// `op` receives what is left of the budget, to bound its own attempt;
/// `on_retry` hears each transient error and the delay before the next try.
pub async fn retry<T, E, F, Fut>(
    policy: &Policy,
    mut op: F,
    mut on_retry: impl FnMut(&E, Duration),
) -> Result<T, Error<E>>
where
    E: Transient + Display,
    F: FnMut(Duration) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = deadline_after(policy.budget);
    // Atomics and a mutex, not cells: the retried future must stay `Send`.
    let attempts = AtomicU32::new(0);
    let last = Mutex::new(None::<String>);
    let attempt = || {
        attempts.fetch_add(1, Ordering::Relaxed);
        let fut = op(deadline.saturating_duration_since(Instant::now()));
        let last = &last;
        async move {
            let r = fut.await;
            if let Err(e) = &r {
                *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
            }
            r
        }
    };
    let retried = attempt
        .retry(policy.backoff())
        .sleep(tokio::time::sleep)
        .when(|e: &E| e.is_transient())
        // No wait that would end past the budget: give up with the last error instead.
        .adjust(|_: &E, delay: Option<Duration>| delay.filter(|d| Instant::now() + *d <= deadline))
        .notify(|e: &E, delay| on_retry(e, delay));
    let ended = if policy.cuts_attempts {
        match tokio::time::timeout_at(deadline, retried).await {
            Ok(ended) => ended,
            Err(_) => {
                return Err(Error::OutOfTime {
                    attempts: attempts.load(Ordering::Relaxed),
                    last: last.lock().unwrap_or_else(|e| e.into_inner()).take(),
                })
            }
        }
    } else {
        retried.await
    };
    match ended {
        Ok(v) => Ok(v),
        Err(e) if !e.is_transient() => Err(Error::Permanent(e)),
        Err(e) => Err(Error::GaveUp { attempts: attempts.load(Ordering::Relaxed), last: e }),
    }
}

/// `now + d`, or the far future when that does not fit (it always fits for
/// durations parsed by [`crate::duration`]).
pub fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + crate::duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    enum Fake {
        Again(u32),
        Stop,
    }

    impl Transient for Fake {
        fn is_transient(&self) -> bool {
            matches!(self, Fake::Again(_))
        }
    }

    impl Display for Fake {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    const POLICY: Policy = Policy::new(Duration::from_secs(1), Duration::from_secs(15), Duration::from_secs(300));

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_at_most_doubling() {
        let delays: Vec<Duration> = POLICY.delays().take(8).collect();
        let bases = [1, 2, 4, 8, 15, 15, 15, 15];
        for (d, base) in delays.iter().zip(bases) {
            let base = Duration::from_secs(base);
            assert!(*d >= base && *d <= base * 2, "{delays:?}");
        }
        // A policy with few attempts still yields delays for a reconnect loop.
        assert_eq!(POLICY.attempts(2).delays().take(5).count(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_success() {
        let mut calls = 0;
        let mut heard = Vec::new();
        let r = retry(
            &POLICY,
            |_| {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(Fake::Again(n))
                    } else {
                        Ok(n)
                    }
                }
            },
            |e, _| heard.push(e.to_string()),
        )
        .await;
        assert_eq!(r, Ok(3));
        assert_eq!(heard, ["Again(1)", "Again(2)"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_ends_at_once() {
        let start = Instant::now();
        let mut calls = 0;
        let r: Result<(), _> = retry(
            &POLICY,
            |_| {
                calls += 1;
                async { Err(Fake::Stop) }
            },
            |_, _| {},
        )
        .await;
        assert_eq!(r, Err(Error::Permanent(Fake::Stop)));
        assert_eq!(calls, 1);
        assert!(start.elapsed() < Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_bounds_everything_and_keeps_the_last_error() {
        let start = Instant::now();
        let policy = Policy { budget: Duration::from_secs(10), ..POLICY };
        let mut budgets = Vec::new();
        let r: Result<(), _> = retry(
            &policy,
            |left| {
                budgets.push(left);
                let n = budgets.len() as u32;
                async move { Err(Fake::Again(n)) }
            },
            |_, _| {},
        )
        .await;
        let Err(Error::GaveUp { attempts, last }) = r else { panic!("{r:?}") };
        assert!((2..=4).contains(&attempts), "{attempts}");
        assert_eq!(last, Fake::Again(attempts));
        assert!(start.elapsed() <= Duration::from_secs(10), "{:?}", start.elapsed());
        assert_eq!(budgets[0], Duration::from_secs(10));
        assert!(budgets.windows(2).all(|w| w[1] < w[0]), "{budgets:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_attempts_cap_ends_early_with_the_last_error() {
        let mut calls = 0u32;
        let r: Result<(), _> = retry(
            &POLICY.attempts(3),
            |_| {
                calls += 1;
                let n = calls;
                async move { Err(Fake::Again(n)) }
            },
            |_, _| {},
        )
        .await;
        assert_eq!(r, Err(Error::GaveUp { attempts: 3, last: Fake::Again(3) }));
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_never_ends_is_cut_at_the_budget() {
        let start = Instant::now();
        let policy = Policy { budget: Duration::from_secs(3), ..POLICY };
        let r: Result<(), Error<Fake>> = retry(&policy, |_| std::future::pending(), |_, _| {}).await;
        assert_eq!(r, Err(Error::OutOfTime { attempts: 1, last: None }));
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn with_waits_only_a_long_attempt_is_never_cut_but_no_retry_starts_late() {
        let start = Instant::now();
        let policy = Policy { budget: Duration::from_secs(3), ..POLICY }.waits_only();
        let mut calls = 0u32;
        let r: Result<(), _> = retry(
            &policy,
            |_| {
                calls += 1;
                let n = calls;
                async move {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    Err(Fake::Again(n))
                }
            },
            |_, _| {},
        )
        .await;
        assert_eq!(r, Err(Error::GaveUp { attempts: 1, last: Fake::Again(1) }));
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[test]
    fn only_408_429_and_5xx_are_worth_another_try() {
        for code in [408, 429, 500, 502, 503, 504, 599] {
            assert!(transient_status(hyper::StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [200, 301, 400, 401, 403, 404, 409, 410, 416, 422] {
            assert!(!transient_status(hyper::StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }

    #[test]
    fn deadlines_never_overflow() {
        let _ = deadline_after(Duration::MAX);
    }
}
