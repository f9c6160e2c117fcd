//! The `CurlCli` attribute of an `ALIYUN::ROS::WaitConditionHandle`: a whole
//! curl command line (docs/ros.md), for example
//!
//! ```text
//! curl -i -X POST -H 'Content-Type: application/json' -H 'Accept: application/json' \
//!   -H 'x-acs-region-id: cn-beijing' http://100.100.100.110/waitcondition?stackname=...&signature=...
//! ```
//!
//! Split with POSIX shell quoting; what matters is the URL and the headers.
//! The method, body and output options are dropped (the signal is always a
//! JSON POST written here); an option curl would read differently is refused
//! rather than guessed.

use crate::ros::Target;

/// Short options that take no value (`-i`, `-s`, ... and clusters such as `-sS`).
const SHORT_FLAGS: &str = "isSfvLkgq46";
/// Short options that take a value, attached (`-XPOST`) or as the next word.
const SHORT_WITH_VALUE: &str = "HXdmoAw";
const LONG_FLAGS: &[&str] = &[
    "include",
    "silent",
    "show-error",
    "fail",
    "fail-with-body",
    "verbose",
    "location",
    "insecure",
    "globoff",
    "compressed",
    "ipv4",
    "ipv6",
    "retry-connrefused",
    "retry-all-errors",
    "no-progress-meter",
];
const LONG_WITH_VALUE: &[&str] = &[
    "header",
    "request",
    "url",
    "data",
    "data-raw",
    "data-binary",
    "data-ascii",
    "json",
    "max-time",
    "connect-timeout",
    "retry",
    "retry-delay",
    "retry-max-time",
    "output",
    "write-out",
    "user-agent",
];

/// Parses a `CurlCli` string into the URL and headers to signal.
pub fn parse(cli: &str) -> Result<Target, String> {
    let words = shell_words::split(cli).map_err(|e| format!("cannot split the curl command line: {e}"))?;
    let mut words = words.into_iter().peekable();
    if words.peek().is_some_and(|w| w == "curl" || w.ends_with("/curl")) {
        words.next();
    }
    let mut urls = Vec::new();
    let mut headers = Vec::new();
    let mut only_args = false;
    while let Some(word) = words.next() {
        if only_args || !word.starts_with('-') || word == "-" {
            urls.push(word);
            continue;
        }
        if word == "--" {
            only_args = true;
            continue;
        }
        let (option, value) = if let Some(long) = word.strip_prefix("--") {
            match long.split_once('=') {
                Some((name, value)) if LONG_WITH_VALUE.contains(&name) => (name.to_string(), value.to_string()),
                Some(_) => return Err(unsupported(&word)),
                None if LONG_FLAGS.contains(&long) => continue,
                None if LONG_WITH_VALUE.contains(&long) => {
                    (long.to_string(), words.next().ok_or_else(|| format!("curl option `{word}` needs a value"))?)
                }
                None => return Err(unsupported(&word)),
            }
        } else {
            match short_option(&word)? {
                None => continue,
                Some((letter, Some(value))) => (letter, value),
                Some((letter, None)) => {
                    (letter, words.next().ok_or_else(|| format!("curl option `{word}` needs a value"))?)
                }
            }
        };
        match option.as_str() {
            "H" | "header" => headers.push(value),
            "url" => urls.push(value),
            // The method is always POST and the body always ours: a template that
            // appends `-d '{"status":"SUCCESS"}'` to the CurlCli loses nothing.
            _ => {}
        }
    }
    let url = match urls.as_slice() {
        [url] => url,
        [] => {
            return Err(
                "no URL in the curl command line (expected http://100.100.100.110/waitcondition?...)".to_string()
            )
        }
        [..] => {
            let shown: Vec<String> =
                urls.iter().map(|u| format!("`{}`", jupyter_proto::redact::without_query(u))).collect();
            return Err(format!("more than one URL in the curl command line: {}", shown.join(", ")));
        }
    };
    Target::new(url, &headers)
}

/// Reads a short option word (`-i`, `-sS`, `-H`, `-XPOST`): `None` for flags
/// only, else the option letter and its attached value, if any.
fn short_option(word: &str) -> Result<Option<(String, Option<String>)>, String> {
    let letters = &word[1..];
    for (at, c) in letters.char_indices() {
        if SHORT_FLAGS.contains(c) {
            continue;
        }
        if SHORT_WITH_VALUE.contains(c) {
            let rest = &letters[at + c.len_utf8()..];
            return Ok(Some((c.to_string(), (!rest.is_empty()).then(|| rest.to_string()))));
        }
        return Err(unsupported(word));
    }
    Ok(None)
}

/// A word may be the signed URL itself (a template that glued a `-` to it):
/// shown without its query, where the signature is.
fn unsupported(word: &str) -> String {
    let word = jupyter_proto::redact::bound(&jupyter_proto::redact::without_query(word), 80);
    format!(
        "unsupported curl option `{word}` in the curl command line: pass the wait condition's CurlCli unchanged, \
         or use --ros-url and --ros-header"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENTED: &str = "curl -i -X POST -H 'Content-Type: application/json' -H 'Accept: application/json' \
        -H 'x-acs-region-id: cn-beijing' \
        http://100.100.100.110/waitcondition?stackname=s1&stackid=abc&resource=Handle&expire=1700000000&signature=Zm9v%2B";

    fn headers(t: &Target) -> Vec<(String, String)> {
        t.headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string())).collect()
    }

    #[test]
    fn a_url_read_as_an_option_is_shown_without_its_signature() {
        // Found by the fuzzer (docs/fuzzing.md): a `-` glued to the URL.
        let err = parse("curl -100.100.100.110/waitcondition?stackid=1&signature=c2VjcmV0").unwrap_err();
        assert!(err.starts_with("unsupported curl option `-100.100.100.110/waitcondition`"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn the_reference_example() {
        let t = parse(DOCUMENTED).unwrap();
        assert_eq!(
            t.url.to_string(),
            "http://100.100.100.110/waitcondition?stackname=s1&stackid=abc&resource=Handle&expire=1700000000&signature=Zm9v%2B"
        );
        assert_eq!(
            headers(&t),
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("accept".to_string(), "application/json".to_string()),
                ("x-acs-region-id".to_string(), "cn-beijing".to_string()),
            ]
        );
    }

    #[test]
    fn quoting_and_option_variants() {
        let want_url = "http://100.100.100.110/waitcondition?stackname=s&signature=x";
        for cli in [
            // Double quotes, a quoted URL, --header with a space and with `=`.
            r#"curl -i -X POST -H "x-acs-region-id: cn-beijing" "http://100.100.100.110/waitcondition?stackname=s&signature=x""#,
            "curl --header 'x-acs-region-id: cn-beijing' 'http://100.100.100.110/waitcondition?stackname=s&signature=x'",
            "curl --header='x-acs-region-id: cn-beijing' http://100.100.100.110/waitcondition?stackname=s\\&signature=x",
            // Attached values, clustered flags, the URL first, a full path to curl.
            "/usr/bin/curl http://100.100.100.110/waitcondition?stackname=s\\&signature=x -sS -XPOST '-Hx-acs-region-id: cn-beijing'",
            "curl -sSf --request=POST -H x-acs-region-id:cn-beijing --url 'http://100.100.100.110/waitcondition?stackname=s&signature=x'",
            // The template's own body, appended, is dropped.
            "curl -i -X POST -H 'x-acs-region-id: cn-beijing' http://100.100.100.110/waitcondition?stackname=s\\&signature=x -d '{\"status\":\"SUCCESS\"}'",
            // Without the word curl.
            "-H 'x-acs-region-id: cn-beijing' -- 'http://100.100.100.110/waitcondition?stackname=s&signature=x'",
        ] {
            let t = parse(cli).unwrap_or_else(|e| panic!("{cli}: {e}"));
            assert_eq!(t.url.to_string(), want_url, "{cli}");
            assert_eq!(headers(&t), vec![("x-acs-region-id".to_string(), "cn-beijing".to_string())], "{cli}");
        }
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        for (cli, want) in [
            ("", "no URL in the curl command line (expected http://100.100.100.110/waitcondition?...)"),
            ("curl -i -X POST -H 'Accept: application/json'", "no URL in the curl command line"),
            ("curl -H 'Accept: application/json", "cannot split the curl command line: missing closing quote"),
            ("curl -i -X", "curl option `-X` needs a value"),
            ("curl --header", "curl option `--header` needs a value"),
            ("curl --cert me.pem http://h/w", "unsupported curl option `--cert`"),
            ("curl -Z http://h/w", "unsupported curl option `-Z`"),
            ("curl --silent=yes http://h/w", "unsupported curl option `--silent=yes`"),
            (
                "curl http://h/a?signature=s1 http://h/b?signature=s2",
                "more than one URL in the curl command line: `http://h/a`, `http://h/b`",
            ),
            ("curl ros-notify", "`ros-notify`: expected an http:// URL"),
            ("curl ftp://h/w", "`ftp://h/w`: expected an http:// URL"),
            ("curl https://ros.example/w?signature=s", "https:// is not supported"),
            ("curl -H 'no colon' http://h/w", "header `no colon`: expected `Name: value`"),
            ("curl -H 'bad name: v' http://h/w", "header `bad name: v`: invalid header name"),
            ("garbage '", "cannot split the curl command line"),
        ] {
            let err = parse(cli).unwrap_err();
            assert!(err.contains(want), "{cli}: got {err}");
            assert!(!err.contains("signature=s"), "{cli}: the signature shows in {err}");
        }
    }
}
