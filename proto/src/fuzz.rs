//! The harness of the property-based fuzz tests of the agent and the
//! bootstrap (docs/fuzzing.md), and the text strategies they share; feature
//! `fuzz`, for their tests only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

/// One of `items`, as an owned string.
pub fn lit(items: &'static [&'static str]) -> BoxedStrategy<String> {
    select(items).prop_map(str::to_string).boxed()
}

/// Short text of any kind: printable, any `char` (controls included), or
/// runs of `odd`, the pieces that upset the parser under test.
pub fn odd_text(odd: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        any::<String>(),
        vec(any::<char>(), 0..40).prop_map(String::from_iter),
        vec(select(odd), 0..12).prop_map(|v| v.concat()),
    ]
    .boxed()
}

/// [`odd_text`], and now and then a long one (up to 40,000 characters).
pub fn arbitrary_text(odd: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![
        30 => odd_text(odd),
        1 => (odd_text(odd), 100..4_000usize).prop_map(|(s, n)| s.repeat(n).chars().take(40_000).collect()),
        1 => (select(odd), 1_000..40_000usize).prop_map(|(s, n)| s.repeat(n)),
    ]
    .boxed()
}

/// Runs `property` on proptest's configured number of inputs from
/// `strategy`, counting each one run; `property` says whether the parser
/// accepted its input. A failure or a panic fails the test with proptest's
/// minimal failing input; success prints the counts (seen with `--nocapture`).
pub fn fuzz<S: Strategy>(name: &str, strategy: S, property: impl Fn(S::Value) -> Result<bool, TestCaseError>) {
    // No regression files are written beside the sources: a failure is
    // reported with its minimal input instead.
    let settings = ProptestConfig { failure_persistence: None, ..ProptestConfig::default() };
    let cases = u64::from(settings.cases);
    let mut runner = TestRunner::new(settings);
    let (ran, accepted) = (AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    let result = runner.run(&strategy, |input| {
        ran.fetch_add(1, Ordering::Relaxed);
        if property(input)? {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    let ran = ran.into_inner();
    if let Err(e) = result {
        panic!("fuzz {name}: {e} (after {ran} inputs)");
    }
    assert!(ran >= cases, "fuzz {name}: only {ran} of {cases} inputs ran");
    eprintln!(
        "fuzz {name}: {ran} inputs, {} accepted, no panic, {:.1} s",
        accepted.into_inner(),
        start.elapsed().as_secs_f64()
    );
}
