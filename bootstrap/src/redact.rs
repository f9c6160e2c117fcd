//! Keeps the login token out of everything but the one place it belongs
//! (the URL on stdout, the result file and the SUCCESS `data`).

use std::sync::LazyLock;

use regex::Regex;

/// `token=<value>` in a query string, an environment assignment
/// (`JUPYTER_TOKEN=...`) or an option (`--ServerApp.token='...'`), quoted or
/// not. A value already reading `<redacted>` does not match (`<` ends a value).
static TOKEN_VALUE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)(token=)('[^']*'|"[^"]*"|[^\s&#<>"',;]+)"#).expect("valid regex"));

/// Replaces every `token=<value>` with `token=<redacted>`.
pub fn redact(s: &str) -> String {
    TOKEN_VALUE.replace_all(s, "${1}<redacted>").into_owned()
}

/// At most `max` characters of `s`, cut on a character boundary; a cut
/// string ends with `…` (counted in `max`).
pub fn bound(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(1);
    let mut out: String = s.chars().take(keep).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_values_are_redacted() {
        for (input, want) in [
            ("http://1.2.3.4:8888/tree?token=abc123", "http://1.2.3.4:8888/tree?token=<redacted>"),
            ("http://h/?a=1&token=abc&b=2", "http://h/?a=1&token=<redacted>&b=2"),
            ("JUPYTER_TOKEN=s3cret python", "JUPYTER_TOKEN=<redacted> python"),
            ("--ServerApp.token='x y' --port 8888", "--ServerApp.token=<redacted> --port 8888"),
            (r#"{"url": "http://h/?token=abc"}"#, r#"{"url": "http://h/?token=<redacted>"}"#),
            ("?Token=ABC", "?Token=<redacted>"),
            ("already token=<redacted>", "already token=<redacted>"),
            ("no secret here", "no secret here"),
            ("two: ?token=a and ?token=b.", "two: ?token=<redacted> and ?token=<redacted>"),
        ] {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn bound_cuts_on_a_char_boundary_with_a_marker() {
        assert_eq!(bound("short", 10), "short");
        assert_eq!(bound("exactly10!", 10), "exactly10!");
        assert_eq!(bound("abcdefghijk", 10), "abcdefghi…");
        // Multi-byte characters are never split.
        let cut = bound(&"é".repeat(50), 10);
        assert_eq!(cut, format!("{}…", "é".repeat(9)));
        assert_eq!(cut.chars().count(), 10);
        assert_eq!(bound("日本語のテキスト", 4), "日本語…");
    }
}
