//! Credentials in URLs (`user:token@`): replaced by `***` wherever a URL can
//! reach a message or a log.

/// The URL with the credentials of its authority (`user:token@`) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    redact(url, |c| matches!(c, '/' | '?' | '#' | '\\'))
}

/// Every URL in `text` with its credentials replaced by `***`; a URL ends at white space or a quote.
pub(super) fn redact_text(text: &str) -> String {
    redact(text, |c| {
        matches!(c, '/' | '?' | '#' | '\\' | '\'' | '"' | '`' | '<' | '>' | '(' | ')') || c.is_whitespace()
    })
}

fn redact(text: &str, ends_authority: impl Fn(char) -> bool) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use crate::workspace::fetch::{fetch, Source};
    use crate::workspace::test_support::{destination, message, names, serve, tar_bytes, Item, BUDGET};

    #[test]
    fn credentials_are_redacted() {
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
            redact_text("fatal: unable to access 'https://u:p@host/r.git/': Could not resolve host: host"),
            "fatal: unable to access 'https://***@host/r.git/': Could not resolve host: host"
        );
        assert_eq!(redact_text("see http://x:y@h and https://k@h2/p"), "see http://***@h and https://***@h2/p");
    }

    #[tokio::test]
    async fn credentials_never_reach_a_message() {
        let archive = tar_bytes(&[Item::File("a", b"a", 0o644)]);
        let server = serve(vec![(200, archive), (404, b"gone".to_vec())]);
        let (tmp, dest) = destination();
        let port = server.base.rsplit(':').next().unwrap();
        let secret = "s3cret-t0ken";

        let tarball =
            Source::Tarball { url: format!("http://alice:{secret}@127.0.0.1:{port}/m.tar"), sha256: "0".repeat(64) };
        assert_eq!(tarball.display_url(), format!("http://***@127.0.0.1:{port}/m.tar"));
        let checksum = fetch(&tarball, &dest, BUDGET).await.unwrap_err().to_string();
        let not_found = message(fetch(&tarball, &dest, BUDGET).await.unwrap_err());
        // Nothing listens on port 9 (discard): connection refused, and with no budget, no retry.
        let refused =
            Source::Tarball { url: format!("http://alice:{secret}@127.0.0.1:9/m.tar"), sha256: "0".repeat(64) };
        let refused = message(fetch(&refused, &dest, Duration::ZERO).await.unwrap_err());
        let git = Source::Git { url: format!("http://alice:{secret}@127.0.0.1:9/r.git"), reference: "main".into() };
        let cloned = message(fetch(&git, &dest, Duration::ZERO).await.unwrap_err());

        for text in [&checksum, &not_found, &refused, &cloned] {
            assert!(!text.contains(secret), "{text}");
            assert!(text.contains("http://***@127.0.0.1:"), "{text}");
        }
        assert!(checksum.starts_with("the tarball at http://***@127.0.0.1:"), "{checksum}");
        assert!(refused.starts_with("downloading http://***@127.0.0.1:9/m.tar: error sending request"), "{refused}");
        assert!(cloned.starts_with("`git clone http://***@127.0.0.1:9/r.git` failed (exit status: 128): "), "{cloned}");
        assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new());
    }
}
