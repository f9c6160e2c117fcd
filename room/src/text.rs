//! Text from the stack made safe to show: secrets out, one line, no
//! terminal control sequences, and how wide it is on a terminal.
//!
//! Names and reasons come from the template's parameters and from what each
//! instance signalled; whoever is root on an instance can send anything,
//! escape sequences included, to the organiser's terminal.

use jupyter_proto::redact;

/// Login tokens (`token=<redacted>`) and credentials in URLs (`***@`) hidden.
pub fn scrub(s: &str) -> String {
    redact::redact_url_credentials(&redact::redact(s))
}

/// One line: each run of white space (new lines included) becomes one
/// space, and every other control character, and the bidirectional
/// overrides that reorder what a terminal shows, becomes U+FFFD.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for c in s.trim().chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
            continue;
        }
        in_space = false;
        out.push(if c.is_control() || is_bidi_control(c) { '\u{fffd}' } else { c });
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Columns `s` takes on a terminal: two for East Asian wide and full-width
/// characters (CJK ideographs, Hangul, kana, full-width forms), none for
/// combining marks, one otherwise. Participants' names are often Chinese.
pub fn width(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// `s` followed by spaces up to `columns` terminal columns.
pub fn pad(s: &str, columns: usize) -> String {
    let mut out = s.to_string();
    out.extend(std::iter::repeat_n(' ', columns.saturating_sub(width(s))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_hides_tokens_and_url_credentials() {
        assert_eq!(scrub("http://1.2.3.4:8888/?token=abc123"), "http://1.2.3.4:8888/?token=<redacted>");
        assert_eq!(scrub("fetch https://u:p@git.example/r failed"), "fetch https://***@git.example/r failed");
        assert_eq!(scrub("no secret"), "no secret");
    }

    #[test]
    fn one_line_flattens_and_defuses_control_characters() {
        assert_eq!(one_line("  a\n\n b\tc  "), "a b c");
        assert_eq!(one_line("red \u{1b}[31mX\u{1b}[0m"), "red \u{fffd}[31mX\u{fffd}[0m");
        assert_eq!(one_line("a\u{7}b\u{9b}c\u{7f}"), "a\u{fffd}b\u{fffd}c\u{fffd}");
        assert_eq!(one_line("evil\u{202e}txt.exe"), "evil\u{fffd}txt.exe");
        assert_eq!(one_line("张伟"), "张伟");
    }

    #[test]
    fn widths_count_wide_characters_twice() {
        assert_eq!(width("alice"), 5);
        assert_eq!(width("张伟"), 4);
        assert_eq!(width("ｆｕｌｌ"), 8);
        assert_eq!(width("e\u{301}"), 1);
        assert_eq!(pad("张伟", 6), "张伟  ");
        assert_eq!(pad("toolong", 3), "toolong");
    }
}
