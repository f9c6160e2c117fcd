//! One set of rules that keeps secrets out of text: the Jupyter login token,
//! the values of configured environment variables, and credentials in URLs.
//! Both binaries use these rules for everything they log, store or show,
//! except the few places a secret belongs (the URL on stdout when asked,
//! the 0600 result file, the SUCCESS signal's data).

use std::sync::LazyLock;

use regex_lite::Regex;

/// What a secret is replaced with. Readers test for it with [`is_redacted`].
pub const MARK: &str = "<redacted>";

/// `token=<value>` in a query string (`?token=`, `&token=`), an environment
/// assignment (`JUPYTER_TOKEN=...`) or an option (`--ServerApp.token='...'`,
/// `--NotebookApp.token=...`), quoted or not, in any case; and likewise a
/// signed URL's `signature=` (ROS's wait condition, OSS's `Signature=`,
/// `X-Amz-Signature=`). A value that already reads `<redacted>` does not
/// match (`<` ends a value).
static TOKEN_ASSIGNMENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?i)((?:token|signature)=)('[^']*'|"[^"]*"|[^\s&#<>"',;]+)"#).expect("valid regex"));

/// `"token": "<value>"` in JSON (`jupyter server list --json`, a state
/// document), and `"signature": "<value>"`.
static TOKEN_JSON: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)("(?:token|signature)"\s*:\s*")((?:[^"\\<]|\\.)(?:[^"\\]|\\.)*)(")"#).expect("valid regex")
});

/// Shorter configured values are not redacted: replacing every `1` or `on`
/// in a log would hide everything and protect nothing.
pub const MIN_SECRET_LEN: usize = 4;

/// Replaces every login token and URL signature in `text` with [`MARK`].
pub fn redact(text: &str) -> String {
    let once = TOKEN_ASSIGNMENT.replace_all(text, format!("${{1}}{MARK}").as_str());
    TOKEN_JSON.replace_all(&once, format!("${{1}}{MARK}${{3}}").as_str()).into_owned()
}

/// Whether `text` went through redaction and lost a secret to it.
pub fn is_redacted(text: &str) -> bool {
    text.contains(MARK)
}

/// The token rules plus the values of the configured environment variables
/// (`[container] env`, the env file, `[workspace.env]`): what a container
/// prints of its own environment must not reach a log or the state either.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a value containing another is replaced whole.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    pub fn new<I, S>(values: I) -> Redactor
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut secrets: Vec<String> = values
            .into_iter()
            .map(|v| v.as_ref().to_string())
            .filter(|v| v.chars().count() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor { secrets }
    }

    /// The configured values first, then the rules: a rule that rewrote
    /// part of a value (the `signature=` of a signed query) would keep the
    /// rest of it from being found.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MARK);
            }
        }
        redact(&out)
    }
}

/// The URL with the credentials of its authority (`user:token@`) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    redact_authorities(url, |c| matches!(c, '/' | '?' | '#' | '\\'))
}

/// Every URL in `text` with its credentials replaced by `***`; a URL ends at
/// white space or a quote (git's error messages quote the URL).
pub fn redact_url_credentials(text: &str) -> String {
    redact_authorities(text, |c| {
        matches!(c, '/' | '?' | '#' | '\\' | '\'' | '"' | '`' | '<' | '>' | '(' | ')') || c.is_whitespace()
    })
}

fn redact_authorities(text: &str, ends_authority: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, after) = rest.split_at(i + 3);
        out.push_str(head);
        let end = after.find(&ends_authority).unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `scheme://host/path` of a URL, without the query and fragment (which may
/// hold a signature), for messages.
pub fn without_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_string()
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
    fn token_values_are_redacted_in_every_form() {
        for (input, want) in [
            ("http://1.2.3.4:8888/tree?token=abc123", "http://1.2.3.4:8888/tree?token=<redacted>"),
            ("http://h/?a=1&token=abc&b=2", "http://h/?a=1&token=<redacted>&b=2"),
            ("JUPYTER_TOKEN=s3cret python", "JUPYTER_TOKEN=<redacted> python"),
            ("--ServerApp.token='x y' --port 8888", "--ServerApp.token=<redacted> --port 8888"),
            ("--NotebookApp.token=abc --ip=0.0.0.0", "--NotebookApp.token=<redacted> --ip=0.0.0.0"),
            (r#"{"url": "http://h/?token=abc"}"#, r#"{"url": "http://h/?token=<redacted>"}"#),
            (r#"{"port": 8888, "token": "s3cret", "pid": 7}"#, r#"{"port": 8888, "token": "<redacted>", "pid": 7}"#),
            (r#"{"token":"a\"b"}"#, r#"{"token":"<redacted>"}"#),
            (r#"{"token": ""}"#, r#"{"token": ""}"#),
            (r#"{"token": "<redacted>"}"#, r#"{"token": "<redacted>"}"#),
            ("?Token=ABC", "?Token=<redacted>"),
            ("already token=<redacted>", "already token=<redacted>"),
            ("no secret here", "no secret here"),
            ("two: ?token=a and ?token=b.", "two: ?token=<redacted> and ?token=<redacted>"),
            // Signed URLs: ROS's wait condition, OSS, S3-style; and in JSON.
            ("/waitcondition?stackid=1&signature=c2ln%2B&x=1", "/waitcondition?stackid=1&signature=<redacted>&x=1"),
            ("?Expires=1&OSSAccessKeyId=LTAI&Signature=ab%2Fc", "?Expires=1&OSSAccessKeyId=LTAI&Signature=<redacted>"),
            ("?X-Amz-Signature=0a1b", "?X-Amz-Signature=<redacted>"),
            (r#"{"Signature": "c2ln+x"}"#, r#"{"Signature": "<redacted>"}"#),
        ] {
            assert_eq!(redact(input), want, "{input}");
        }
        assert!(is_redacted(&redact("?token=x")) && !is_redacted("?token=x"));
    }

    #[test]
    fn configured_values_are_redacted_too_but_not_short_ones() {
        let r = Redactor::new(["LTAI5tSecretKeyId", "abc", "LTAI5t", "on"]);
        assert_eq!(
            r.redact("export KEY=LTAI5tSecretKeyId; token=zz; short abc on; LTAI5t"),
            "export KEY=<redacted>; token=<redacted>; short abc on; <redacted>"
        );
        assert_eq!(format!("{r:?}"), "Redactor(2 secrets)");
        // A configured value holding what a rule rewrites is still replaced whole.
        let r = Redactor::new(["stackid=7&expire=9&signature=c2ln"]);
        assert_eq!(r.redact("GET /w?stackid=7&expire=9&signature=c2ln HTTP"), "GET /w?<redacted> HTTP");
    }

    #[test]
    fn credentials_in_urls_are_redacted() {
        let cases = [
            ("https://user:token@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
            ("https://ghp_secret@github.com/org/repo", "https://***@github.com/org/repo"),
            ("http://a:b@c@host:8080/x?y=z", "http://***@host:8080/x?y=z"),
            ("https://user:token@host", "https://***@host"),
            ("https://github.com/org/repo", "https://github.com/org/repo"),
            ("https://host/people/someone@example.com", "https://host/people/someone@example.com"),
            ("file:///srv/repo", "file:///srv/repo"),
            ("/srv/materials", "/srv/materials"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "{url}");
        }
        assert_eq!(
            redact_url_credentials("fatal: unable to access 'https://u:p@host/r.git/': Could not resolve host: host"),
            "fatal: unable to access 'https://***@host/r.git/': Could not resolve host: host"
        );
        assert_eq!(
            redact_url_credentials("see http://x:y@h and https://k@h2/p"),
            "see http://***@h and https://***@h2/p"
        );
        assert_eq!(without_query("http://h/w?signature=s#f"), "http://h/w");
    }

    #[test]
    fn bound_cuts_on_a_char_boundary_with_a_marker() {
        assert_eq!(bound("short", 10), "short");
        assert_eq!(bound("exactly10!", 10), "exactly10!");
        assert_eq!(bound("abcdefghijk", 10), "abcdefghi…");
        let cut = bound(&"é".repeat(50), 10);
        assert_eq!(cut, format!("{}…", "é".repeat(9)));
        assert_eq!(cut.chars().count(), 10);
        assert_eq!(bound("日本語のテキスト", 4), "日本語…");
    }
}
