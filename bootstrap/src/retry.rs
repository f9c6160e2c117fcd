//! The one retry helper: exponential backoff (backon) with a cap on single
//! delays, inside a budget that also counts the attempts themselves.
//! Only errors that say "try again" are retried; any other ends at once.

use std::cell::{Cell, RefCell};
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tokio::time::Instant;

/// Whether an error is worth another attempt.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The first delay; each next one doubles.
    pub first_delay: Duration,
    /// The cap on one delay before jitter (jitter adds up to as much again).
    pub max_delay: Duration,
    /// Everything, attempts and delays, ends within this.
    pub budget: Duration,
}

impl Policy {
    pub fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
    }
}

/// How a retried operation ended without success.
#[derive(Debug, PartialEq, Eq)]
pub enum Error<E> {
    /// An error that retrying would not fix.
    Permanent(E),
    /// The budget ran out; `last` is the last error seen, if any attempt ended.
    Exhausted { attempts: u32, last: Option<String> },
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
    let deadline = Instant::now() + policy.budget;
    let attempts = Cell::new(0u32);
    let last = RefCell::new(None::<String>);
    let attempt = || {
        attempts.set(attempts.get() + 1);
        let fut = op(deadline.saturating_duration_since(Instant::now()));
        let last = &last;
        async move {
            let r = fut.await;
            if let Err(e) = &r {
                *last.borrow_mut() = Some(e.to_string());
            }
            r
        }
    };
    let retried = attempt
        .retry(policy.backoff())
        .sleep(tokio::time::sleep)
        .when(|e: &E| e.is_transient())
        .notify(|e: &E, delay| on_retry(e, delay));
    match tokio::time::timeout_at(deadline, retried).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if !e.is_transient() => Err(Error::Permanent(e)),
        Ok(Err(e)) => Err(Error::Exhausted { attempts: attempts.get(), last: Some(e.to_string()) }),
        Err(_) => Err(Error::Exhausted { attempts: attempts.get(), last: last.take() }),
    }
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

    const POLICY: Policy = Policy {
        first_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(15),
        budget: Duration::from_secs(300),
    };

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_at_most_doubling() {
        use backon::BackoffBuilder;
        let delays: Vec<Duration> = POLICY.backoff().build().take(8).collect();
        let bases = [1, 2, 4, 8, 15, 15, 15, 15];
        for (d, base) in delays.iter().zip(bases) {
            let base = Duration::from_secs(base);
            assert!(*d >= base && *d <= base * 2, "{delays:?}");
        }
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
        let Err(Error::Exhausted { attempts, last }) = r else { panic!("{r:?}") };
        assert!((2..=4).contains(&attempts), "{attempts}");
        assert_eq!(last, Some(format!("Again({attempts})")));
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(budgets[0], Duration::from_secs(10));
        assert!(budgets.windows(2).all(|w| w[1] < w[0]), "{budgets:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_never_ends_is_cut_at_the_budget() {
        let start = Instant::now();
        let policy = Policy { budget: Duration::from_secs(3), ..POLICY };
        let r: Result<(), Error<Fake>> = retry(&policy, |_| std::future::pending(), |_, _| {}).await;
        assert_eq!(r, Err(Error::Exhausted { attempts: 1, last: None }));
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
