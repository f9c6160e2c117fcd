//! The hands-on's legacy result file (`/root/userdata-result.txt`): the
//! participants' instructions say `tail -10` it, so its last line is the
//! login URL with the token; on failure it says what failed instead. The
//! format follows the agent's own (`agent/src/result_file.rs`). Mode 0600:
//! it holds a secret.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::redact::redact;
use crate::state::Failure;

/// The text written once Jupyter is ready: the URL is the last line.
pub fn ready_text(url: &str, at: DateTime<Utc>) -> String {
    format!(
        "# jupyter-bootstrap: Jupyter is ready ({})\n\
         ## Jupyter Notebook Token:\n\
         Copy/paste this URL into your browser when you connect for the first time,\n\
         to login with a token:\n    {url}\n",
        stamp(at)
    )
}

/// The text written when the converge failed: the step, the cause, the
/// exit code and the log tail, so that `tail` shows why.
pub fn failed_text(f: &Failure, at: DateTime<Utc>) -> String {
    let mut s = format!(
        "# jupyter-bootstrap: Jupyter is NOT ready ({})\n## failed step: {}\n## cause: {}\n",
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

/// The text written when no verdict came: a timeout, an agent that never
/// appeared, an answer this client cannot use.
pub fn not_ready_text(why: &str, at: DateTime<Utc>) -> String {
    format!(
        "# jupyter-bootstrap: Jupyter is NOT ready ({})\n## {}\n## more: jupyter-agent status\n",
        stamp(at),
        redact(why)
    )
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Writes the file atomically, mode 0600.
pub fn write(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, text.as_bytes(), 0o600).with_context(|| format!("writing the result file {}", path.display()))
}

/// A reader sees the old file or the new one, never a mix: temporary file in
/// the same directory (created with `mode`), fsync, rename, directory fsync.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("result");
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_of_the_ready_file_shows_the_url() {
        let text = ready_text("http://1.2.3.4:8888/tree?token=abc", Utc::now());
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
        let text = failed_text(&f, Utc::now());
        for want in [
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
    fn written_0600_atomically_replacing_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("userdata-result.txt");
        fs::write(&path, "old\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write(&path, &not_ready_text("timed out after 30m", Utc::now())).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("## timed out after 30m\n"), "{text}");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
        let err = write(&dir.path().join("missing/dir/file"), "x").unwrap_err();
        assert!(format!("{err:#}").starts_with("writing the result file "), "{err:#}");
    }
}
