//! The hands-on's legacy result file (`/root/userdata-result.txt`): the
//! participants' instructions say `tail -10` it, so its last lines hold the
//! login URL with the token. Mode 0600: it holds a secret.

use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::state::{write_atomic, Failure};

/// The text written once Jupyter is ready.
pub fn ready_text(url: &str, at: DateTime<Utc>) -> String {
    format!(
        "# jupyter-agent: Jupyter is ready ({})\n\
         ## Jupyter Notebook Token:\n\
         Copy/paste this URL into your browser when you connect for the first time,\n\
         to login with a token:\n    {url}\n",
        at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// The text written when the converge failed: the step, the cause, the
/// exit code and the log tail, so that `tail` shows why.
pub fn failed_text(f: &Failure, at: DateTime<Utc>) -> String {
    let mut s = format!(
        "# jupyter-agent: Jupyter is NOT ready ({})\n## failed step: {}\n## cause: {}\n",
        at.to_rfc3339_opts(SecondsFormat::Secs, true),
        f.step,
        f.cause
    );
    if let Some(code) = f.exit_code {
        s.push_str(&format!("## container exit code: {code}\n"));
    }
    if !f.log_tail.is_empty() {
        s.push_str("## last log lines:\n");
        for line in &f.log_tail {
            s.push_str(&format!("    {line}\n"));
        }
    }
    s.push_str("## more: jupyter-agent status\n");
    s
}

pub fn write(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, text.as_bytes(), 0o600).with_context(|| format!("writing the result file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_of_the_ready_file_shows_the_url() {
        let text = ready_text("http://1.2.3.4:8888/tree?token=abc", Utc::now());
        let last: Vec<&str> = text.lines().rev().take(1).collect();
        assert_eq!(last, vec!["    http://1.2.3.4:8888/tree?token=abc"]);
    }

    #[test]
    fn failure_text_names_step_cause_code_and_tail() {
        let f = Failure {
            step: "token".into(),
            cause: "the container stopped".into(),
            exit_code: Some(3),
            log_tail: vec!["boom".into()],
        };
        let text = failed_text(&f, Utc::now());
        for want in
            ["## failed step: token", "## cause: the container stopped", "## container exit code: 3", "    boom"]
        {
            assert!(text.contains(want), "{text}");
        }
    }
}
