//! One tracing setup: human-readable lines on stderr, colour on a terminal,
//! level from `JUPYTER_AGENT_LOG` (default `info`).
//!
//! The level asked for applies to this agent's own code only. Every other
//! crate (bollard, hyper, reqwest, rustls, whose `log` records are forwarded
//! here) is held at `info` whatever is asked: their debug output prints
//! whole requests and answers, the container's environment among them, and
//! no secret may reach a log line at any level. No secret is ever a field,
//! and every line is written through the run's one redactor
//! ([`crate::secrets`]), so that a secret inside an error, a container's
//! line or a URL is replaced before it reaches stderr (the journal).

use std::io::{IsTerminal, Write};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The crates whose logs follow `JUPYTER_AGENT_LOG` all the way down.
const OWN: [&str; 2] = ["jupyter_agent", "jupyter_proto"];

/// The filter for `JUPYTER_AGENT_LOG=<value>`: a level (`trace`, `debug`,
/// `info`, `warn`, `error`, `off`); anything else reads as `info`.
pub fn filter(value: Option<&str>) -> Targets {
    let asked = value.and_then(|v| v.trim().parse::<LevelFilter>().ok()).unwrap_or(LevelFilter::INFO);
    let others = asked.min(LevelFilter::INFO);
    // What a TLS client sends (a bad hello, an address as the server
    // name) is the client's doing: never a warning in the agent's log.
    let clients = asked.min(LevelFilter::ERROR);
    let targets =
        Targets::new().with_default(others).with_target("rustls", clients).with_target("tokio_rustls", clients);
    OWN.iter().fold(targets, |t, own| t.with_target(*own, asked))
}

pub fn init() {
    let value = std::env::var("JUPYTER_AGENT_LOG").ok();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(|| Redacted::new(std::io::stderr()))
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = tracing_subscriber::registry().with(fmt).with(filter(value.as_deref())).try_init();
}

/// One log line, held until the formatter is done with it, then written
/// redacted in one piece (the formatter makes one writer per event).
pub struct Redacted<W: Write> {
    line: Vec<u8>,
    out: W,
}

impl<W: Write> Redacted<W> {
    pub fn new(out: W) -> Self {
        Redacted { line: Vec::new(), out }
    }
}

impl<W: Write> Write for Redacted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for Redacted<W> {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let clean = crate::secrets::redact(&String::from_utf8_lossy(&self.line));
        let _ = self.out.write_all(clean.as_bytes());
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn other_crates_stay_at_info_whatever_is_asked() {
        let f = filter(Some("trace"));
        assert!(f.would_enable("jupyter_agent::converge", &Level::TRACE));
        assert!(f.would_enable("jupyter_proto::retry", &Level::DEBUG));
        assert!(!f.would_enable("bollard::docker", &Level::DEBUG));
        assert!(!f.would_enable("hyper_util::client", &Level::TRACE));
        assert!(f.would_enable("bollard::docker", &Level::INFO));
        let quiet = filter(Some("warn"));
        assert!(!quiet.would_enable("jupyter_agent::converge", &Level::INFO));
        assert!(!quiet.would_enable("reqwest::connect", &Level::INFO));
        assert!(filter(Some("nonsense")).would_enable("jupyter_agent", &Level::INFO));
        assert!(!filter(None).would_enable("rustls::server::hs", &Level::WARN), "a client's doing");
        assert!(filter(None).would_enable("rustls::server::hs", &Level::ERROR));
        assert!(!filter(None).would_enable("jupyter_agent", &Level::DEBUG));
    }

    #[test]
    fn every_line_is_written_through_the_runs_redactor() {
        crate::secrets::add(["LoggedSecret-5b3f"]);
        let mut out = Vec::new();
        {
            let mut line = Redacted::new(&mut out);
            write!(line, "fetching https://h/m.tgz?Signature=Logged").unwrap();
            writeln!(line, "Secret-5b3f and ?token=abc").unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "fetching https://h/m.tgz?Signature=<redacted> and ?token=<redacted>\n"
        );
    }
}
