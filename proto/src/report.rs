//! How a verdict is told where nobody can ask back: the failure in one line
//! (a ROS FAILURE reason, a line of a log) and the hands-on's legacy result
//! file (`/root/userdata-result.txt`). The participants' instructions say
//! `tail -10` that file, so once ready its last line is the login URL with
//! the token; on failure it says what failed instead. Mode 0600: it holds a
//! secret. Both the agent and `jupyter-bootstrap` write it, in this format.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::redact::redact;
use crate::state::Failure;

/// How many log lines the one-line reason carries.
pub const REASON_LOG_LINES: usize = 5;

/// `<step>: <cause>; container exit code N; log: <last lines>`.
pub fn failure_reason(f: &Failure) -> String {
    let mut reason = format!("{}: {}", f.step, f.cause);
    if let Some(code) = f.exit_code {
        reason.push_str(&format!("; container exit code {code}"));
    }
    let lines: Vec<&str> = f.log_tail.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect();
    if !lines.is_empty() {
        let tail = &lines[lines.len().saturating_sub(REASON_LOG_LINES)..];
        reason.push_str("; log: ");
        reason.push_str(&tail.join(" | "));
    }
    redact(&reason)
}

/// The result file once Jupyter is ready: the URL is the last line.
/// `by` names the program that wrote it.
/// `note` (the state's `jupyter.note`: the URL is not the stable one) and
/// `gpus` (the state's `jupyter.gpus`: the GPUs the container has) come
/// before the URL, which stays the last line.
pub fn ready_text(by: &str, url: &str, note: Option<&str>, gpus: &[String], at: DateTime<Utc>) -> String {
    let note = note.map(|n| format!("## Note: {n}\n")).unwrap_or_default();
    let gpus = match gpus.is_empty() {
        true => String::new(),
        false => format!("## GPUs: {}\n", gpus.join(", ")),
    };
    format!(
        "# {by}: Jupyter is ready ({})\n\
         {note}\
         {gpus}\
         ## Jupyter Notebook Token:\n\
         Copy/paste this URL into your browser when you connect for the first time,\n\
         to login with a token:\n    {url}\n",
        stamp(at)
    )
}

/// The result file when the converge failed: the step, the cause, the exit
/// code and the log tail, so that `tail` shows why. Never a token.
pub fn failed_text(by: &str, f: &Failure, at: DateTime<Utc>) -> String {
    let mut s = format!(
        "# {by}: Jupyter is NOT ready ({})\n## failed step: {}\n## cause: {}\n",
        stamp(at),
        f.step,
        redact(&f.cause)
    );
    if let Some(code) = f.exit_code {
        s.push_str(&format!("## container exit code: {code}\n"));
    }
    if !f.log_tail.is_empty() {
        s.push_str("## last log lines:\n");
        for line in &f.log_tail {
            s.push_str(&format!("    {}\n", redact(line)));
        }
    }
    s.push_str("## more: jupyter-agent status\n");
    s
}

/// The result file when no verdict came: a timeout, an agent that never
/// appeared, an answer the reader cannot use.
pub fn not_ready_text(by: &str, why: &str, at: DateTime<Utc>) -> String {
    format!("# {by}: Jupyter is NOT ready ({})\n## {}\n## more: jupyter-agent status\n", stamp(at), redact(why))
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Writes the result file atomically, mode 0600; the error names the file.
pub fn write_result_file(path: &Path, text: &str) -> Result<(), String> {
    crate::fs::write_atomic(path, text.as_bytes(), 0o600)
        .map_err(|e| format!("writing the result file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn tail_of_the_ready_file_shows_the_url() {
        let text = ready_text("jupyter-agent", "http://1.2.3.4:8888/tree?token=abc", None, &[], Utc::now());
        assert_eq!(text.lines().last(), Some("    http://1.2.3.4:8888/tree?token=abc"));
        assert!(text.starts_with("# jupyter-agent: Jupyter is ready ("));
        assert!(text.lines().count() <= 10, "tail -10 must show all of it");
        assert!(!text.contains("GPU"));
        let note = Some("the URL changes at every start");
        let gpus = ["Tesla T4".to_string(), "NVIDIA A10".to_string()];
        let text = ready_text("jupyter-agent", "http://1.2.3.4:8888/tree?token=abc", note, &gpus, Utc::now());
        assert!(text.contains("## GPUs: Tesla T4, NVIDIA A10\n"), "{text}");
        assert_eq!(text.lines().last(), Some("    http://1.2.3.4:8888/tree?token=abc"));
        assert!(text.lines().count() <= 10, "tail -10 must show all of it");
    }

    #[test]
    fn failure_text_names_step_cause_code_and_tail_without_tokens() {
        let f = Failure {
            step: "token".into(),
            cause: "the container stopped".into(),
            exit_code: Some(3),
            log_tail: vec!["boom http://h/?token=s3cret".into()],
        };
        let text = failed_text("jupyter-bootstrap", &f, Utc::now());
        for want in [
            "# jupyter-bootstrap: Jupyter is NOT ready (",
            "## failed step: token",
            "## cause: the container stopped",
            "## container exit code: 3",
            "    boom http://h/?token=<redacted>",
        ] {
            assert!(text.contains(want), "{text}");
        }
        assert_eq!(text.lines().last(), Some("## more: jupyter-agent status"));
    }

    #[test]
    fn a_failure_reason_names_step_cause_code_and_the_last_lines() {
        let f = Failure {
            step: "token".into(),
            cause: "the container stopped".into(),
            exit_code: Some(3),
            log_tail: (1..=8).map(|i| format!("line {i}")).chain(["  ".to_string()]).collect(),
        };
        assert_eq!(
            failure_reason(&f),
            "token: the container stopped; container exit code 3; log: line 4 | line 5 | line 6 | line 7 | line 8"
        );
        let bare = Failure { step: "image".into(), cause: "no such image".into(), ..Failure::default() };
        assert_eq!(failure_reason(&bare), "image: no such image");
    }

    #[test]
    fn written_0600_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("userdata-result.txt");
        write_result_file(&path, &not_ready_text("jupyter-bootstrap", "timed out after 30m", Utc::now())).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(std::fs::read_to_string(&path).unwrap().contains("## timed out after 30m\n"));
        let err = write_result_file(&dir.path().join("missing/dir/file"), "x").unwrap_err();
        assert!(err.starts_with("writing the result file "), "{err}");
    }
}
