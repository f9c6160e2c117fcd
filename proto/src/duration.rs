//! Durations as people write them, on the command line (`600`, `30m`,
//! `1h30m`) and in the configuration (`"10m"`), bounded so that no deadline
//! computed from one can overflow: anything above [`MAX`] is refused when it
//! is parsed, with the value named.

use std::time::Duration;

/// The longest duration accepted anywhere: 30 days. A workshop lasts days,
/// and a wait condition at most 12 hours.
pub const MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// How [`MAX`] is written in messages.
pub const MAX_SHOWN: &str = "30 days";

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not a number of seconds nor a humantime duration (its message).
    Invalid(String),
    Zero,
    /// Above [`MAX`].
    TooLong,
}

/// Parses `600` (seconds) or a humantime duration such as `30m` or `1h 30m`.
/// Zero and anything above [`MAX`] are refused; the message starts with the
/// value as given, in backquotes.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    check(s).map_err(|why| match why {
        Refused::Invalid(e) => format!("`{s}`: {e}; expected seconds (600) or a duration such as 30m or 1h30m"),
        Refused::Zero => format!("`{s}`: expected a duration greater than zero"),
        Refused::TooLong => format!("`{s}`: expected at most {MAX_SHOWN} (30d)"),
    })
}

/// [`parse`], telling why a value is refused without naming it.
pub fn check(s: &str) -> Result<Duration, Refused> {
    let s = s.trim();
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs.min(MAX.as_secs() + 1)),
        Err(_) => humantime::parse_duration(s).map_err(|e| Refused::Invalid(e.to_string()))?,
    };
    if d.is_zero() {
        return Err(Refused::Zero);
    }
    if d > MAX {
        return Err(Refused::TooLong);
    }
    Ok(d)
}

/// A duration rounded to whole seconds (or to milliseconds below one
/// second), for messages: `30m`, `3s`, `250ms`.
pub fn show(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string();
    }
    humantime::format_duration(Duration::from_secs(d.as_secs_f64().round() as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_humantime_are_accepted() {
        for (input, secs) in [("600", 600), ("30m", 1800), ("1h 30m", 5400), ("1h30m", 5400), ("90s", 90), (" 2s ", 2)]
        {
            assert_eq!(parse(input), Ok(Duration::from_secs(secs)), "{input}");
        }
        assert_eq!(parse("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("30d"), Ok(MAX));
    }

    #[test]
    fn zero_garbage_negative_and_huge_are_refused_with_the_value() {
        assert_eq!(parse("0").unwrap_err(), "`0`: expected a duration greater than zero");
        assert_eq!(parse("0s").unwrap_err(), "`0s`: expected a duration greater than zero");
        for bad in ["", "ten", "-5", "5 parsecs", "30 m s"] {
            let err = parse(bad).unwrap_err();
            assert!(err.starts_with(&format!("`{bad}`:")), "{bad}: {err}");
        }
        assert!(parse("ten").unwrap_err().ends_with("expected seconds (600) or a duration such as 30m or 1h30m"));
        for huge in ["18446744073709551615", "18446744073709551615s", "300000000000y", "9223372036854775807s", "31d"] {
            let err = parse(huge).unwrap_err();
            assert!(err.starts_with(&format!("`{huge}`:")), "{huge}: {err}");
        }
        assert_eq!(parse("2592001").unwrap_err(), "`2592001`: expected at most 30 days (30d)");
    }

    #[test]
    fn show_rounds_to_seconds() {
        assert_eq!(show(Duration::from_millis(1_800_400)), "30m");
        assert_eq!(show(Duration::from_millis(2600)), "3s");
        assert_eq!(show(Duration::from_millis(250)), "250ms");
    }
}
