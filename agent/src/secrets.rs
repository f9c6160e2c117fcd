//! The run's one redactor: every secret the configuration names (the values
//! of `[container] env`, the env file and `[workspace.env]`, the access keys
//! among them; the registry's password; the query of a signed archive or
//! materials URL and the credentials in a materials URL; the login token
//! once chosen), gathered into one process-wide set that only grows, and
//! applied by everything that writes text a person or ROS may read: the log
//! (`logging`'s writer), the state's failures, progress lines and details
//! (`state::Recorder`), the workspace record and the error the command line
//! prints (docs/threat-model.md, "Logs and redaction").
//!
//! One set rather than one redactor per step: before, a step that built its
//! own redactor replaced the one that held an earlier secret, and that
//! secret could reach the state again.

use std::sync::RwLock;

use jupyter_proto::redact::{Redactor, MIN_SECRET_LEN};

/// The secrets known so far and the redactor made of them.
struct Known {
    values: Vec<String>,
    redactor: Option<Redactor>,
}

static KNOWN: RwLock<Known> = RwLock::new(Known { values: Vec::new(), redactor: None });

/// Adds `values` to the run's secrets (values shorter than
/// [`MIN_SECRET_LEN`] are ignored, as the redactor ignores them).
pub fn add<I, S>(values: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let new: Vec<String> =
        values.into_iter().map(|v| v.as_ref().to_string()).filter(|v| v.chars().count() >= MIN_SECRET_LEN).collect();
    if new.is_empty() {
        return;
    }
    let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
    let before = known.values.len();
    for value in new {
        if !known.values.contains(&value) {
            known.values.push(value);
        }
    }
    if known.values.len() != before {
        known.redactor = Some(Redactor::new(&known.values));
    }
}

/// `text` with every login token (in any of its forms) and every secret
/// known so far replaced by `<redacted>`.
pub fn redact(text: &str) -> String {
    let known = KNOWN.read().unwrap_or_else(|e| e.into_inner());
    match &known.redactor {
        Some(r) => r.redact(text),
        None => jupyter_proto::redact::redact(text),
    }
}

/// The secrets a URL carries: its query (whole, and each parameter's value,
/// as written and decoded: a signed URL's signature and key id) and the
/// credentials of its authority (the password, or a user given alone, which
/// is then a token). Nothing for a URL without either, or a path.
pub fn of_url(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let before_fragment = url.split('#').next().unwrap_or_default();
    if let Some((_, query)) = before_fragment.split_once('?') {
        out.push(query.to_string());
        for pair in query.split('&') {
            let value = pair.split_once('=').map_or(pair, |(_, v)| v);
            out.push(value.to_string());
            let spaced = value.replace('+', " ");
            out.push(percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy().into_owned());
        }
    }
    if let Some((_, rest)) = url.split_once("://") {
        let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or_default();
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            out.push(userinfo.to_string());
            let secret = userinfo.split_once(':').map_or(userinfo, |(_, password)| password);
            out.push(secret.to_string());
            out.push(percent_encoding::percent_decode_str(secret).decode_utf8_lossy().into_owned());
        }
    }
    out.retain(|v| v.chars().count() >= MIN_SECRET_LEN);
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_gives_its_query_its_values_and_its_credentials() {
        let url = "https://b.oss-cn-beijing.aliyuncs.com/m.tgz?Expires=1700000000&OSSAccessKeyId=LTAI5tKey&Signature=ab%2Bc%3D";
        let got = of_url(url);
        for want in [
            "Expires=1700000000&OSSAccessKeyId=LTAI5tKey&Signature=ab%2Bc%3D",
            "1700000000",
            "LTAI5tKey",
            "ab%2Bc%3D",
            "ab+c=",
        ] {
            assert!(got.iter().any(|v| v == want), "{want} in {got:?}");
        }
        assert_eq!(of_url("https://alice:s3cr%40t@h/r.git"), ["alice:s3cr%40t", "s3cr%40t", "s3cr@t"]);
        assert_eq!(of_url("https://ghp_token123@github.com/o/r"), ["ghp_token123"]);
        assert!(of_url("https://host/people/someone@example.com").is_empty());
        assert!(of_url("/srv/materials").is_empty());
        assert!(of_url("http://h/x?a=1").is_empty(), "too short to be worth hiding");
    }

    #[test]
    fn the_set_only_grows_and_redacts_tokens_too() {
        add(["FirstSecretValue-2c1e"]);
        add(["SecondSecretValue-77a0", "abc"]);
        add(["FirstSecretValue-2c1e"]);
        assert_eq!(
            redact("a FirstSecretValue-2c1e b SecondSecretValue-77a0 c ?token=t0k abc"),
            "a <redacted> b <redacted> c ?token=<redacted> abc"
        );
    }
}
