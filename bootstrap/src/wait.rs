//! `jupyter-bootstrap wait`, the runbook: wait for the agent's verdict (long
//! polls, never a fixed-interval poll), then pass it on in this order:
//! terminal, stdout (the URL), result file, ROS wait condition.

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use jupyter_proto::client::{AgentError, Client, Until};
use jupyter_proto::redact::{bound, is_redacted, redact};
use jupyter_proto::retry::{deadline_after, Policy};
use jupyter_proto::state::{Failure, State, StepStatus};
use jupyter_proto::{duration, report};
use tokio::time::Instant;

use crate::progress::Progress;
use crate::ros::{self, RosData, Signal, Target};

/// Exit codes of `wait` (`jupyter-bootstrap wait --help` documents them).
pub mod exit {
    pub use jupyter_proto::exit::{FAILED, OK, TIMED_OUT, USAGE};

    /// The result file could not be written (overrides 0, 1, 3).
    pub const RESULT_FILE: u8 = 4;
    /// The ROS signal could not be delivered (overrides 0, 1, 3, 4).
    pub const SIGNAL: u8 = 5;
}

/// What `wait` was asked to do (the validated command line).
#[derive(Debug, Clone)]
pub struct Options {
    pub socket: PathBuf,
    pub timeout: Duration,
    pub result_file: Option<PathBuf>,
    /// Whether stdout shows the token.
    pub show_token: bool,
    pub ros: Option<RosOptions>,
}

#[derive(Debug, Clone)]
pub struct RosOptions {
    pub target: Target,
    pub id: String,
    /// What SUCCESS carries as `data`.
    pub data: RosData,
    /// A failure goes as SUCCESS with `{"error", "step"}` data (a room that
    /// completes whoever failed), not as FAILURE.
    pub failure_as_data: bool,
    pub budget: Duration,
    /// Whether each milestone gets a SUCCESS signal of its own (the wait
    /// condition's `Count` then counts them: [`MILESTONES`]).
    pub milestones: bool,
}

/// The milestones a room of participants watches in the stack's events,
/// each a SUCCESS signal with its own id, sent when its step is done (or,
/// when the step does not run, once a later one has begun): the steps of
/// the agent they follow, and the id. The final signal (`--ros-id`, with the
/// URL) comes after them: a wait condition with `Count` = these + 1.
/// docs/ros.md#progress-signals.
pub const MILESTONES: &[(&str, &str)] =
    &[("engine", "docker"), ("workspace", "materials"), ("image", "image"), ("container", "container")];

/// The milestones already signalled.
#[derive(Debug, Default)]
pub struct Milestones {
    sent: Vec<&'static str>,
}

impl Milestones {
    /// The milestone signals `state` makes due: (id, data), in order.
    pub fn due(&mut self, state: &State) -> Vec<(&'static str, String)> {
        let mut due = Vec::new();
        for (i, (step, id)) in MILESTONES.iter().enumerate() {
            if self.sent.contains(id) {
                continue;
            }
            let done = state.steps.iter().rev().find(|s| s.name == *step && s.status == StepStatus::Done);
            let later_begun = MILESTONES[i + 1..].iter().any(|(later, _)| state.steps.iter().any(|s| s.name == *later))
                || state.is_ready();
            let data = match done {
                Some(s) => {
                    let took = match (s.started_at, s.ended_at) {
                        (Some(a), Some(b)) => format!(" in {:.1}s", (b - a).num_milliseconds().max(0) as f64 / 1000.0),
                        _ => String::new(),
                    };
                    format!("{step} done{took}: {}", s.detail.as_deref().unwrap_or(""))
                }
                None if later_begun && !state.steps.iter().any(|s| s.name == *step) => format!("{step}: not needed"),
                None => break,
            };
            self.sent.push(id);
            due.push((*id, redact(&bound(&data, 200))));
        }
        due
    }
}

/// How the wait ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Ready; the URL holds the token.
    /// `note`: the agent's word on a URL that is not the stable one;
    /// `gpus`: the GPUs the container has, by name (none without `[container] gpus`).
    Ready { url: String, note: Option<String>, gpus: Vec<String> },
    /// The converge failed.
    Failed(Failure),
    /// The timeout ran out; `last` is the last state seen, `lost` why the
    /// agent was not answering at the end, if it was not.
    TimedOut { last: Box<State>, lost: Option<String> },
    /// The timeout ran out before the agent ever answered.
    NeverAppeared { why: Option<String> },
    /// The agent answered something this client cannot use, or may not be asked.
    Broken(String),
}

/// Backoff while the agent is not there: 50 ms at first, at most 1 s with
/// jitter; the wait's own timeout is its budget.
const CONNECT_FIRST_DELAY: Duration = Duration::from_millis(50);
const CONNECT_MAX_DELAY: Duration = Duration::from_millis(500);
/// The longest long poll asked for: a dead agent is noticed within it.
pub const MAX_LONG_POLL: Duration = Duration::from_secs(300);
/// How long one milestone signal may take to deliver.
const MILESTONE_BUDGET: Duration = Duration::from_secs(30);
/// Who asks, in the agent client's messages.
const PROGRAM: &str = "jupyter-bootstrap";

/// Runs the whole command; returns the exit code.
pub async fn run(opts: &Options) -> u8 {
    let live = {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb")
    };
    let mut progress = Progress::new(std::io::stderr(), live);
    let client = Client::new(&opts.socket, PROGRAM);
    let ros = opts.ros.as_ref().filter(|r| r.milestones);
    let outcome = watch(&client, opts.timeout, &mut progress, ros).await;
    progress.finish();
    report(opts, &outcome).await
}

/// Waits for the verdict, showing progress, for at most `timeout`; with
/// `milestones`, signals each milestone to that wait condition as it passes.
pub async fn watch<W: Write>(
    client: &Client,
    timeout: Duration,
    progress: &mut Progress<W>,
    milestones: Option<&RosOptions>,
) -> Outcome {
    let deadline = deadline_after(timeout);
    let mut lost = None;
    let follow = follow(client, deadline, progress, &mut lost, milestones);
    match tokio::time::timeout_at(deadline, follow).await {
        Ok(outcome) => outcome,
        Err(_) => match progress.last() {
            Some(last) => Outcome::TimedOut { last: Box::new(last.clone()), lost },
            None => Outcome::NeverAppeared { why: lost },
        },
    }
}

/// What to ask the agent next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// `/v1/status`: (re)connecting.
    Status,
    /// `/v1/wait?until=change&after=REV`.
    Change(u64),
    /// `/v1/status?show_token=true`, once ready.
    Url,
}

/// Follows the state until ready or failed; the caller bounds it in time.
/// `lost` holds why the agent is not answering, while it is not.
async fn follow<W: Write>(
    client: &Client,
    deadline: Instant,
    progress: &mut Progress<W>,
    lost: &mut Option<String>,
    ros: Option<&RosOptions>,
) -> Outcome {
    let mut milestones = Milestones::default();
    let connect =
        Policy::new(CONNECT_FIRST_DELAY, CONNECT_MAX_DELAY, deadline.saturating_duration_since(Instant::now()));
    let mut backoff = connect.delays();
    let socket = client.socket().display().to_string();
    let mut ask = Ask::Status;
    loop {
        let answer = match ask {
            Ask::Status => ticking(progress, client.status(false)).await.map(|s| (s, false)),
            Ask::Url => client.status(true).await.map(|s| (s, false)),
            Ask::Change(after) => {
                let left = deadline.saturating_duration_since(Instant::now());
                let poll = left.clamp(Duration::from_secs(1), MAX_LONG_POLL);
                ticking(progress, client.wait(Until::Change(after), poll, false)).await.map(|w| (w.state, w.timed_out))
            }
        };
        let (state, timed_out) = match answer {
            Ok(answer) => answer,
            Err(AgentError::Broken(why) | AgentError::Untrusted(why)) => return Outcome::Broken(why),
            Err(AgentError::Unavailable(why)) => {
                progress.agent_unavailable(&socket, &why);
                *lost = Some(why);
                // A restarted agent counts revisions afresh: start over.
                ask = Ask::Status;
                let delay = backoff.next().unwrap_or(CONNECT_MAX_DELAY);
                ticking(progress, tokio::time::sleep(delay)).await;
                continue;
            }
        };
        if lost.take().is_some() {
            backoff = connect.delays();
        }
        if ask == Ask::Url && state.is_ready() {
            return match state.jupyter {
                Some(j) if !is_redacted(&j.url) => Outcome::Ready { url: j.url, note: j.note, gpus: j.gpus },
                Some(_) => Outcome::Broken("the agent redacted the token although show_token=true was asked".into()),
                None => Outcome::Broken("the agent is ready but its state has no jupyter.url".into()),
            };
        }
        let stalled = matches!(ask, Ask::Change(after) if state.revision <= after) && !timed_out;
        progress.update(&state);
        if let Some(ros) = ros {
            for (id, data) in milestones.due(&state) {
                // A lost milestone must not cost the verdict: a short budget, and on.
                let signal = Signal { reason: "milestone".into(), ..Signal::success(id, Some(&data), None) };
                let budget = ros.budget.min(MILESTONE_BUDGET);
                match ros::send(&ros.target, &signal, budget).await {
                    Ok(_) => eprintln!("jupyter-bootstrap: signalled milestone {id} to the ROS wait condition"),
                    Err(e) => {
                        eprintln!("jupyter-bootstrap: could not signal milestone {id}: {}", redact(&e.to_string()))
                    }
                }
            }
        }
        if state.is_failed() {
            return Outcome::Failed(state.failure());
        }
        ask = if state.is_ready() { Ask::Url } else { Ask::Change(state.revision) };
        if stalled {
            // An answer "changed" without a change: do not spin on it.
            ticking(progress, tokio::time::sleep(Duration::from_millis(250))).await;
        }
    }
}

/// Awaits `fut`, redrawing a live progress line every second meanwhile
/// (its clock moves; the agent is not asked).
async fn ticking<W: Write, F: Future>(progress: &mut Progress<W>, fut: F) -> F::Output {
    if !progress.is_live() {
        return fut.await;
    }
    tokio::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => progress.tick(),
        }
    }
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Ready { .. } => exit::OK,
            Outcome::Failed(_) | Outcome::Broken(_) => exit::FAILED,
            Outcome::TimedOut { .. } | Outcome::NeverAppeared { .. } => exit::TIMED_OUT,
        }
    }

    /// The step a failure names: the agent's failed step, or `timeout`,
    /// `agent` (it never appeared) or `bootstrap`.
    pub fn step(&self) -> &str {
        match self {
            Outcome::Ready { .. } => "",
            Outcome::Failed(f) => &f.step,
            Outcome::TimedOut { .. } => "timeout",
            Outcome::NeverAppeared { .. } => "agent",
            Outcome::Broken(_) => "bootstrap",
        }
    }

    /// One line on why Jupyter is not ready (the FAILURE reason, the result
    /// file's line); `None` when it is.
    pub fn reason(&self, opts: &Options) -> Option<String> {
        let timeout = duration::show(opts.timeout);
        let socket = opts.socket.display();
        Some(match self {
            Outcome::Ready { .. } => return None,
            Outcome::Failed(f) => report::failure_reason(f),
            Outcome::TimedOut { last, lost } => {
                let mut r = format!("timeout: Jupyter was not ready after {timeout} (phase {}", last.phase);
                if let Some(step) = last.current_step() {
                    r.push_str(&format!("; {}: {}", step.name, step.status));
                }
                r.push(')');
                if let Some(why) = lost {
                    r.push_str(&format!("; the agent stopped answering: {why}"));
                }
                r
            }
            Outcome::NeverAppeared { why } => {
                let mut r = format!("agent: jupyter-agent never appeared at {socket} within {timeout}");
                if let Some(why) = why {
                    r.push_str(&format!(" ({why})"));
                }
                r
            }
            Outcome::Broken(why) => format!("bootstrap: {why}"),
        })
    }
}

/// Passes the outcome on; returns the exit code.
async fn report(opts: &Options, outcome: &Outcome) -> u8 {
    let mut code = outcome.exit_code();
    match outcome {
        Outcome::Ready { url, note, gpus } => {
            eprintln!("jupyter-bootstrap: Jupyter is ready (the login URL is on stdout)");
            if let Some(note) = note {
                eprintln!("jupyter-bootstrap: note: {note}");
            }
            if !gpus.is_empty() {
                eprintln!("jupyter-bootstrap: GPUs: {}", gpus.join(", "));
            }
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", if opts.show_token { url.clone() } else { redact(url) });
            let _ = out.flush();
        }
        Outcome::Failed(f) => eprint!("{}", failure_message(f)),
        Outcome::TimedOut { .. } | Outcome::NeverAppeared { .. } => {
            let mut msg = outcome.reason(opts).unwrap_or_default();
            if matches!(outcome, Outcome::NeverAppeared { .. }) {
                msg.push_str("; is `jupyter-agent run` started, with this socket?");
            }
            eprintln!("jupyter-bootstrap: {}", redact(&msg));
        }
        Outcome::Broken(why) => eprintln!("jupyter-bootstrap: {}", redact(why)),
    }

    if let Some(path) = &opts.result_file {
        let now = Utc::now();
        let text = match outcome {
            Outcome::Ready { url, note, gpus } => report::ready_text(PROGRAM, url, note.as_deref(), gpus, now),
            Outcome::Failed(f) => report::failed_text(PROGRAM, f, now),
            _ => report::not_ready_text(PROGRAM, &outcome.reason(opts).unwrap_or_default(), now),
        };
        if let Err(e) = report::write_result_file(path, &text) {
            eprintln!("jupyter-bootstrap: {e}");
            code = exit::RESULT_FILE;
        }
    }

    if let Some(ros) = &opts.ros {
        let signal = match outcome {
            Outcome::Ready { url, note, gpus } => match ros.data {
                RosData::Url => Signal::success(&ros.id, Some(url), note.as_deref()),
                RosData::None => Signal::success(&ros.id, None, note.as_deref()),
                RosData::Json => Signal::success_json(&ros.id, url, note.as_deref(), gpus),
            },
            _ if ros.failure_as_data => {
                Signal::failure_as_data(&ros.id, outcome.step(), &outcome.reason(opts).unwrap_or_default())
            }
            _ => Signal::failure(&ros.id, &outcome.reason(opts).unwrap_or_default()),
        };
        match ros::send(&ros.target, &signal, ros.budget).await {
            Ok(attempts) => eprintln!(
                "jupyter-bootstrap: signalled {} to the ROS wait condition{}",
                match (outcome.exit_code() == exit::OK, ros.failure_as_data) {
                    (true, _) => "SUCCESS",
                    (false, true) => "SUCCESS (the failure as its data, for the room)",
                    (false, false) => "FAILURE",
                },
                if attempts > 1 { format!(" (after {attempts} attempts)") } else { String::new() }
            ),
            Err(e) => {
                eprintln!("jupyter-bootstrap: {e}");
                code = exit::SIGNAL;
            }
        }
    }
    code
}

/// The failure for a person: step, cause, exit code, log tail.
pub fn failure_message(f: &Failure) -> String {
    let mut s =
        format!("jupyter-bootstrap: Jupyter is NOT ready: the step `{}` failed: {}\n", f.step, redact(&f.cause));
    if let Some(code) = f.exit_code {
        s.push_str(&format!("  container exit code: {code}\n"));
    }
    if !f.log_tail.is_empty() {
        s.push_str("  last log lines:\n");
        for line in &f.log_tail {
            s.push_str(&format!("    {}\n", redact(line)));
        }
    }
    s.push_str("  more: jupyter-agent status; jupyter-agent logs\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_come_once_each_in_order_and_skipped_steps_are_named() {
        use jupyter_proto::state::Phase;
        let mut state = State::new("0.1.0");
        let mut m = Milestones::default();
        state.begin("engine", Phase::InstallingDocker);
        assert!(m.due(&state).is_empty(), "nothing is done yet");
        state.end("engine", StepStatus::Done, Some("answered".into()));
        let due = m.due(&state);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, "docker");
        assert!(due[0].1.starts_with("engine done in ") && due[0].1.ends_with(": answered"), "{due:?}");
        assert!(m.due(&state).is_empty(), "once");
        // No workspace step: once the image step begins, materials are not needed.
        state.begin("image", Phase::PreparingImage);
        assert_eq!(m.due(&state), [("materials", "workspace: not needed".to_string())]);
        state.end("image", StepStatus::Done, Some("present".into()));
        state.begin("network", Phase::StartingContainer);
        state.end("network", StepStatus::Done, None);
        state.begin("container", Phase::StartingContainer);
        state.end("container", StepStatus::Done, Some("created".into()));
        let ids: Vec<&str> = m.due(&state).iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, ["image", "container"]);
    }

    fn opts() -> Options {
        Options {
            socket: "/run/jupyter-agent.sock".into(),
            timeout: Duration::from_secs(1800),
            result_file: None,
            show_token: false,
            ros: None,
        }
    }

    #[test]
    fn reasons_say_what_ended_the_wait() {
        let last: State = serde_json::from_str(
            r#"{"version":1,"revision":7,"phase":"waiting-for-token",
                "steps":[{"name":"token","status":"running"}]}"#,
        )
        .unwrap();
        let cases = [
            (Outcome::Ready { url: "u".into(), note: None, gpus: Vec::new() }, None),
            (
                Outcome::Failed(Failure { step: "image".into(), cause: "pull failed".into(), ..Default::default() }),
                Some("image: pull failed"),
            ),
            (
                Outcome::TimedOut { last: Box::new(last.clone()), lost: None },
                Some("timeout: Jupyter was not ready after 30m (phase waiting-for-token; token: running)"),
            ),
            (
                Outcome::TimedOut { last: Box::new(last), lost: Some("no socket at /s".into()) },
                Some(
                    "timeout: Jupyter was not ready after 30m (phase waiting-for-token; token: running); \
                     the agent stopped answering: no socket at /s",
                ),
            ),
            (
                Outcome::NeverAppeared { why: Some("no socket at /run/jupyter-agent.sock".into()) },
                Some(
                    "agent: jupyter-agent never appeared at /run/jupyter-agent.sock within 30m \
                     (no socket at /run/jupyter-agent.sock)",
                ),
            ),
            (Outcome::Broken("GET /v1/wait: 404".into()), Some("bootstrap: GET /v1/wait: 404")),
        ];
        for (outcome, want) in cases {
            assert_eq!(outcome.reason(&opts()).as_deref(), want, "{outcome:?}");
        }
    }

    #[test]
    fn exit_codes_follow_the_outcome() {
        assert_eq!(Outcome::Ready { url: "u".into(), note: None, gpus: Vec::new() }.exit_code(), 0);
        assert_eq!(Outcome::Failed(Failure::default()).exit_code(), 1);
        assert_eq!(Outcome::Broken("x".into()).exit_code(), 1);
        assert_eq!(Outcome::NeverAppeared { why: None }.exit_code(), 3);
    }

    #[test]
    fn the_failure_message_is_redacted() {
        let f = Failure {
            step: "token".into(),
            cause: "proof failed".into(),
            exit_code: Some(137),
            log_tail: vec!["http://0.0.0.0:8888/?token=abc".into()],
        };
        assert_eq!(
            failure_message(&f),
            "jupyter-bootstrap: Jupyter is NOT ready: the step `token` failed: proof failed\n  \
             container exit code: 137\n  last log lines:\n    http://0.0.0.0:8888/?token=<redacted>\n  \
             more: jupyter-agent status; jupyter-agent logs\n"
        );
    }
}
