//! Durations on the command line: plain seconds (`600`) or humantime
//! (`30m`, `1h 30m`, `90s`), and their short display.

use std::time::Duration;

/// Parses `600` (seconds) or a humantime duration such as `30m`; zero is refused.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = match s.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("`{s}`: {e}; expected seconds (600) or a duration such as 30m or 1h30m"))?,
    };
    if d.is_zero() {
        return Err(format!("`{s}`: expected a duration greater than zero"));
    }
    Ok(d)
}

/// A duration rounded to whole seconds (or to milliseconds below one second), for messages.
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
    }

    #[test]
    fn zero_garbage_and_negative_are_refused_with_the_value() {
        assert_eq!(parse("0").unwrap_err(), "`0`: expected a duration greater than zero");
        assert_eq!(parse("0s").unwrap_err(), "`0s`: expected a duration greater than zero");
        for bad in ["", "ten", "-5", "5 parsecs", "30 m s"] {
            let err = parse(bad).unwrap_err();
            assert!(err.starts_with(&format!("`{bad}`:")), "{bad}: {err}");
        }
        assert!(parse("ten").unwrap_err().ends_with("expected seconds (600) or a duration such as 30m or 1h30m"));
    }

    #[test]
    fn show_rounds_to_seconds() {
        assert_eq!(show(Duration::from_millis(1_800_400)), "30m");
        assert_eq!(show(Duration::from_millis(2600)), "3s");
        assert_eq!(show(Duration::from_millis(250)), "250ms");
    }
}
