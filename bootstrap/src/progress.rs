//! Shows the converge as it changes, on stderr: on a terminal one live line
//! rewritten in place (`\r`, clear line), elsewhere (cloud-init's log) one
//! plain line per change of the phase or of a step. Never the token.

use std::io::Write;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use jupyter_proto::redact::{bound, redact};
use jupyter_proto::state::{State, Step, StepStatus};

/// The live line is cut to this many characters: a wrapped line cannot be rewritten in place.
pub const LIVE_WIDTH: usize = 79;

/// `[waiting-for-token] token: running (12s)`: the phase and the current step.
pub fn live_line(state: &State, now: DateTime<Utc>) -> String {
    let mut line = format!("[{}]", state.phase);
    if let Some(step) = state.current_step() {
        line.push(' ');
        line.push_str(&step.name);
        line.push_str(": ");
        line.push_str(step.status.as_str());
        if let Some(took) = took(step, now) {
            line.push_str(&format!(" ({took})"));
        }
        // A running step's progress (bytes pulled, build step, the package
        // manager's last line), else what a finished one did.
        if let Some(text) = step.progress.as_deref().or(step.detail.as_deref()).filter(|d| !d.is_empty()) {
            line.push_str(" - ");
            line.push_str(text);
        }
    }
    bound(&redact(&line), LIVE_WIDTH)
}

/// The line for the wait before the agent answers.
pub fn agent_line(socket: &str, waited: Duration) -> String {
    bound(&format!("[agent] waiting for jupyter-agent at {socket} ({}s)", waited.as_secs()), LIVE_WIDTH)
}

/// One plain line for what changed from `prev` to `next`: the phase and each
/// step that is new or changed. `None` when neither did (for example a pull's
/// layer progress).
pub fn change_line(prev: Option<&State>, next: &State) -> Option<String> {
    let phase_changed = prev.is_none_or(|p| p.phase != next.phase);
    let changed: Vec<String> = next
        .steps
        .iter()
        .enumerate()
        .filter(|(i, step)| {
            prev.and_then(|p| p.steps.get(*i))
                .is_none_or(|old| old.name != step.name || old.status != step.status || old.detail != step.detail)
        })
        .map(|(_, step)| step_summary(step))
        .collect();
    if !phase_changed && changed.is_empty() {
        return None;
    }
    let mut line = format!("[{}]", next.phase);
    if !changed.is_empty() {
        line.push(' ');
        line.push_str(&changed.join("; "));
    }
    Some(redact(&line))
}

/// `image: running`, `image: done in 1.2s (present)`, `token: failed after 3m 2s`.
fn step_summary(step: &Step) -> String {
    let mut s = format!("{}: {}", step.name, step.status);
    if let (Some(start), Some(end)) = (step.started_at, step.ended_at) {
        let ms = (end - start).num_milliseconds().max(0);
        let took = if ms < 60_000 {
            format!("{:.1}s", ms as f64 / 1000.0)
        } else {
            jupyter_proto::duration::show(Duration::from_millis(ms as u64))
        };
        s.push_str(if step.status == StepStatus::Failed { " after " } else { " in " });
        s.push_str(&took);
    }
    if let Some(detail) = step.detail.as_deref().filter(|d| !d.is_empty()) {
        s.push_str(&format!(" ({detail})"));
    }
    s
}

/// How long a running step has run, in whole seconds (`12s`, `3m 5s`).
fn took(step: &Step, now: DateTime<Utc>) -> Option<String> {
    if step.status != StepStatus::Running {
        return None;
    }
    let secs = (now - step.started_at?).num_seconds().max(0) as u64;
    Some(jupyter_proto::duration::show(Duration::from_secs(secs)).replace(' ', ""))
}

/// Where progress goes and how: live on a terminal, plain lines otherwise.
pub struct Progress<W: Write> {
    out: W,
    live: bool,
    last: Option<State>,
    /// The live line on screen, if any (it must be ended before other output).
    drawn: Option<String>,
    /// The socket and since when the agent has been waited for, while it does not answer.
    agent_wait: Option<(String, Instant)>,
}

impl<W: Write> Progress<W> {
    pub fn new(out: W, live: bool) -> Progress<W> {
        Progress { out, live, last: None, drawn: None, agent_wait: None }
    }

    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The last state shown.
    pub fn last(&self) -> Option<&State> {
        self.last.as_ref()
    }

    /// The agent does not answer (yet).
    pub fn agent_unavailable(&mut self, socket: &str, why: &str) {
        let since = match &self.agent_wait {
            Some((_, since)) => *since,
            None => {
                let first = self.last.is_none();
                let msg = if first {
                    format!("waiting for jupyter-agent at {socket} ({why})")
                } else {
                    format!("lost jupyter-agent at {socket} ({why}); waiting for it to come back")
                };
                if !self.live {
                    let _ = writeln!(self.out, "{msg}");
                } else if !first {
                    self.line(&msg);
                }
                let now = Instant::now();
                self.agent_wait = Some((socket.to_string(), now));
                now
            }
        };
        if self.live {
            self.draw(&agent_line(socket, since.elapsed()));
        }
    }

    /// A state document arrived.
    pub fn update(&mut self, state: &State) {
        self.agent_wait = None;
        if self.live {
            self.draw(&live_line(state, Utc::now()));
        } else if let Some(line) = change_line(self.last.as_ref(), state) {
            let _ = writeln!(self.out, "{line}");
        }
        self.last = Some(state.clone());
    }

    /// Redraws the live line (its clock moves); nothing in plain mode.
    pub fn tick(&mut self) {
        if !self.live {
            return;
        }
        if let Some((socket, since)) = &self.agent_wait {
            let line = agent_line(socket, since.elapsed());
            self.draw(&line);
        } else if let Some(state) = &self.last {
            let line = live_line(state, Utc::now());
            self.draw(&line);
        }
    }

    /// Writes a whole line, below the live line if one is drawn.
    pub fn line(&mut self, msg: &str) {
        self.finish();
        let _ = writeln!(self.out, "{msg}");
    }

    /// Ends the live line so that what follows starts on its own line.
    pub fn finish(&mut self) {
        if self.drawn.take().is_some() {
            let _ = writeln!(self.out);
        }
        let _ = self.out.flush();
    }

    fn draw(&mut self, line: &str) {
        if self.drawn.as_deref() == Some(line) {
            return;
        }
        let _ = write!(self.out, "\r\x1b[2K{line}");
        let _ = self.out.flush();
        self.drawn = Some(line.to_string());
    }

    #[cfg(test)]
    fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn state(phase: &str, steps: &[(&str, &str, Option<&str>)]) -> State {
        let mut s = State::new("0.1.0");
        s.revision = 1;
        s.phase = phase.to_string().into();
        s.steps = steps
            .iter()
            .map(|(name, status, detail)| Step {
                name: name.to_string(),
                phase: s.phase.clone(),
                status: status.to_string().into(),
                started_at: Some(at("2026-11-27T04:17:00Z")),
                ended_at: (*status != "running").then(|| at("2026-11-27T04:17:01.250Z")),
                detail: detail.map(Into::into),
                progress: None,
            })
            .collect();
        s
    }

    #[test]
    fn the_live_line_shows_phase_step_and_time() {
        let now = at("2026-11-27T04:17:12.900Z");
        let s = state("waiting-for-token", &[("image", "done", Some("present")), ("token", "running", None)]);
        assert_eq!(live_line(&s, now), "[waiting-for-token] token: running (12s)");
        let s = state("preparing-image", &[("image", "running", Some("pulling"))]);
        assert_eq!(live_line(&s, at("2026-11-27T04:20:05Z")), "[preparing-image] image: running (3m5s) - pulling");
        assert_eq!(live_line(&state("pending", &[]), now), "[pending]");
        let s = state("ready", &[("token", "done", Some("proven"))]);
        assert_eq!(live_line(&s, now), "[ready] token: done - proven");
        let s = state("starting-container", &[("container", "running", Some(&"x".repeat(200)))]);
        let line = live_line(&s, now);
        assert_eq!(line.chars().count(), LIVE_WIDTH);
        assert!(line.ends_with('…'));
    }

    #[test]
    fn the_live_line_never_shows_a_token() {
        let s = state("ready", &[("token", "done", Some("http://h:8888/?token=s3cret"))]);
        assert_eq!(live_line(&s, Utc::now()), "[ready] token: done - http://h:8888/?token=<redacted>");
    }

    #[test]
    fn plain_lines_name_the_phase_and_the_steps_that_changed() {
        let a = state("installing-docker", &[("engine", "running", None)]);
        assert_eq!(change_line(None, &a).unwrap(), "[installing-docker] engine: running");
        let b = state("preparing-image", &[("engine", "done", Some("answered")), ("image", "running", None)]);
        assert_eq!(
            change_line(Some(&a), &b).unwrap(),
            "[preparing-image] engine: done in 1.2s (answered); image: running"
        );
        // Nothing a reader would see changed: no line.
        let mut b2 = b.clone();
        b2.revision = 2;
        assert_eq!(change_line(Some(&b), &b2), None);
        let c = state("failed", &[("engine", "done", Some("answered")), ("image", "failed", None)]);
        assert_eq!(change_line(Some(&b), &c).unwrap(), "[failed] image: failed after 1.2s");
        let d = state("ready", &[("engine", "done", Some("answered")), ("image", "failed", None)]);
        assert_eq!(change_line(Some(&c), &d).unwrap(), "[ready]");
    }

    #[test]
    fn a_terminal_gets_one_line_rewritten_in_place() {
        let mut p = Progress::new(Vec::new(), true);
        p.update(&state("pending", &[]));
        p.tick();
        p.update(&state("ready", &[("token", "done", None)]));
        p.line("done");
        let out = String::from_utf8(p.into_inner()).unwrap();
        assert_eq!(out, "\r\x1b[2K[pending]\r\x1b[2K[ready] token: done\ndone\n");
    }

    #[test]
    fn elsewhere_each_change_is_one_plain_line() {
        let mut p = Progress::new(Vec::new(), false);
        p.agent_unavailable("/run/a.sock", "no socket at /run/a.sock");
        p.agent_unavailable("/run/a.sock", "no socket at /run/a.sock");
        let a = state("pending", &[]);
        p.update(&a);
        p.update(&a);
        p.tick();
        p.update(&state("installing-docker", &[("engine", "running", None)]));
        p.agent_unavailable("/run/a.sock", "connection refused");
        let out = String::from_utf8(p.into_inner()).unwrap();
        assert_eq!(
            out,
            "waiting for jupyter-agent at /run/a.sock (no socket at /run/a.sock)\n\
             [pending]\n\
             [installing-docker] engine: running\n\
             lost jupyter-agent at /run/a.sock (connection refused); waiting for it to come back\n"
        );
    }
}
