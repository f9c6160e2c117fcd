//! The human forms of what the commands print: the state (`status`,
//! `wait`), the workspace record (`workspace status`) and a raised hand.

use crate::config::{Config, WorkspaceConfig};
use crate::state::{Hand, State, StepStatus};
use crate::workspace::Record;

/// A running step's time so far: `12s`, `3m 05s`.
fn elapsed(secs: u64) -> String {
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m {:02}s", secs / 60, secs % 60)
    }
}

/// The human form of `status`.
pub fn render(s: &State) -> String {
    let mut out = format!("phase: {}\n", s.phase);
    if let Some(j) = &s.jupyter {
        out.push_str(&format!("url: {}\n", j.url));
        if let Some(note) = &j.note {
            out.push_str(&format!("note: {note}\n"));
        }
        if !j.gpus.is_empty() {
            out.push_str(&format!("gpus: {}\n", j.gpus.join(", ")));
        }
    }
    if let Some(h) = &s.hand {
        out.push_str(&hand(h));
    }
    if let Some(t) = &s.tls {
        out.push_str(&format!(
            "tls: {} certificate for {} on {}, valid until {}, SHA-256 {}\n",
            t.served,
            t.subject,
            t.listen,
            t.not_after.format("%Y-%m-%d %H:%M UTC"),
            t.fingerprint
        ));
        if let Some(next) = t.next_renewal {
            out.push_str(&format!("tls: next ACME attempt {}\n", next.format("%Y-%m-%d %H:%M:%S UTC")));
        }
        if let Some(e) = &t.acme_error {
            out.push_str(&format!("tls: ACME failed: {e}\n"));
        }
    }
    if let Some(c) = &s.container {
        out.push_str(&format!(
            "container: {} ({}) on {}:{}\n",
            c.name,
            &c.id[..c.id.len().min(12)],
            c.host_address,
            c.host_port
        ));
    }
    if let Some(i) = &s.image {
        let id = i.id.as_deref().map(crate::image::short_id).unwrap_or("-");
        out.push_str(&format!("image: {} ({id}, {})\n", i.reference, i.source));
    }
    out.push_str("steps:\n");
    let now = chrono::Utc::now();
    for step in &s.steps {
        let took = match (step.started_at, step.ended_at) {
            (Some(start), Some(end)) => format!("{:.1}s", (end - start).num_milliseconds() as f64 / 1000.0),
            // Running: how long so far.
            (Some(start), None) => elapsed((now - start).num_seconds().max(0) as u64),
            _ => "-".to_string(),
        };
        let status = match &step.status {
            StepStatus::Failed => "FAILED",
            other => other.as_str(),
        };
        out.push_str(&format!(
            "  {:<10} {:<8} {:>8}  {}\n",
            step.name,
            status,
            took,
            step.progress.as_deref().or(step.detail.as_deref()).unwrap_or("")
        ));
    }
    if let Some(e) = &s.error {
        out.push_str(&format!("error: {}: {}\n", e.step, e.cause));
        if let Some(code) = e.exit_code {
            out.push_str(&format!("container exit code: {code}\n"));
        }
        if !e.log_tail.is_empty() {
            out.push_str("last log lines:\n");
            for line in &e.log_tail {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    out
}

/// A raised hand, in one line: when, until when, and the message (its
/// control characters, which the agent refuses, defused all the same).
pub fn hand(h: &Hand) -> String {
    let mut line = format!(
        "hand: raised {} (lowers itself at {})",
        h.raised_at.format("%Y-%m-%d %H:%M UTC"),
        crate::actions::expires_at(h).format("%H:%M UTC")
    );
    if let Some(m) = &h.message {
        let shown: String = m.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
        line.push_str(&format!(": {shown}"));
    }
    line.push('\n');
    line
}

/// The human form of `workspace status`: what was fetched, and what changed upstream.
pub fn workspace(w: &WorkspaceConfig, record: &Record) -> String {
    let mut out = format!(
        "{}: {} from {}, fetched {}\n",
        w.path.display(),
        record.copy.identity,
        record.copy.source,
        record.copy.fetched_at
    );
    match &record.pending {
        None => out.push_str("the configured source is the one fetched: nothing pending\n"),
        Some(p) => {
            out.push_str(&format!(
                "the source changed to {}: the new version {} is in {}\n",
                p.copy.source,
                p.copy.identity,
                p.copy.path.display()
            ));
            out.push_str(&format!("  {}\n", p.difference.summary()));
            for (label, files) in [
                ("added upstream", &p.difference.added),
                ("removed upstream", &p.difference.removed),
                ("changed upstream", &p.difference.changed),
                ("edited here", &p.difference.edited_here),
            ] {
                for f in files {
                    out.push_str(&format!("  {label}: {f}\n"));
                }
            }
            out.push_str(
                "jupyter-agent workspace update takes it into your copy, keeping every file you changed;\n\
                 jupyter-agent workspace reset replaces your copy with it, moving yours aside first\n",
            );
        }
    }
    out
}

/// What the human form of `status` adds about this host, beyond the state
/// document: a host account that has the container's uid (it owns the
/// token file the container mounts).
pub fn host_notes(cfg: &Config) -> String {
    match crate::login::container_user_warning(&cfg.state_dir) {
        Some(w) => format!("warning: {w}; give the container a uid no host account has ([container] user)\n"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn status_names_the_containers_gpus_when_it_has_some() {
        let mut s = crate::state::fresh();
        s.ready(crate::state::JupyterState { url: "http://h:8888/?token=<redacted>".into(), ..Default::default() });
        assert!(!render(&s).contains("gpus:"), "{}", render(&s));
        s.jupyter.as_mut().unwrap().gpus = vec!["Tesla T4".into(), "Tesla T4".into()];
        assert!(
            render(&s).contains("url: http://h:8888/?token=<redacted>\ngpus: Tesla T4, Tesla T4\n"),
            "{}",
            render(&s)
        );
    }

    #[test]
    fn status_shows_a_raised_hand_with_its_message() {
        let raised_at = "2026-12-07T10:02:00Z".parse().unwrap();
        let mut s = crate::state::fresh();
        assert!(!render(&s).contains("hand:"));
        s.hand = Some(Hand { raised_at, message: Some("stuck on step 3".into()) });
        assert!(
            render(&s).contains("hand: raised 2026-12-07 10:02 UTC (lowers itself at 12:02 UTC): stuck on step 3\n"),
            "{}",
            render(&s)
        );
        s.hand = Some(Hand { raised_at, message: Some("a\u{1b}[2Jb".into()) });
        assert!(render(&s).contains("12:02 UTC): a?[2Jb\n"));
        s.hand = Some(Hand { raised_at, message: None });
        assert!(render(&s).contains("(lowers itself at 12:02 UTC)\n"));
    }

    /// Issue 22, item 7: `status` warns when the container's uid is a host account's.
    #[test]
    fn status_names_a_host_account_with_the_containers_uid() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("state_dir = \"{}\"\n", dir.path().display());
        let cfg = Config::parse(Path::new("c.toml"), &format!("{text}[image]\nname = \"nb\"\n")).unwrap();
        assert_eq!(host_notes(&cfg), "");
        let source = crate::login::mount_source(dir.path());
        std::fs::write(&source, "t").unwrap();
        std::os::unix::fs::chown(&source, Some(65534), None).unwrap();
        assert_eq!(
            host_notes(&cfg),
            format!("warning: the container runs as uid 65534, which is the host account nobody: it owns the token file the container mounts ({}) and whatever the container writes in its mounts; give the container a uid no host account has ([container] user)\n", source.display())
        );
    }
}
