//! The CLI's side of the local API: ask the running agent on its socket
//! (`jupyter_proto::client`, the same client `jupyter-bootstrap` uses), and
//! fall back to the state file (or to the engine, for logs) when no agent
//! runs there. Actions (a reset, the hand) are asked of the running agent
//! only.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use jupyter_proto::client::{AgentError, Client, Until};
use jupyter_proto::retry::{self, Policy, Transient};

use crate::config::{Config, DockerConfig};
use crate::state::{self, State};
use crate::token::LineAssembler;

/// Who asks, in the client's messages.
const PROGRAM: &str = "jupyter-agent";

/// Waiting for an agent that is still starting: from 50 ms, at most 1 s
/// apart (2 s with jitter), within the wait's own timeout.
const STARTING_AGENT: Policy = Policy::new(Duration::from_millis(50), Duration::from_secs(1), Duration::ZERO);

/// Neither a running agent nor a state file.
#[derive(Debug, thiserror::Error)]
#[error("the agent is not running (no answer on {socket}) and there is no state at {state}: start it with jupyter-agent run")]
pub struct Unreachable {
    pub socket: String,
    pub state: String,
}

fn unreachable(cfg: &Config) -> Unreachable {
    Unreachable { socket: cfg.socket.display().to_string(), state: cfg.state_file().display().to_string() }
}

fn api(cfg: &Config) -> Client {
    Client::new(&cfg.socket, PROGRAM)
}

/// The state, from the running agent or else from the state file. One
/// request: its answer tells whether an agent runs.
pub async fn state(cfg: &Config, show_token: bool) -> Result<State> {
    let asked = api(cfg).status(show_token).await;
    let broken = match asked {
        Ok(state) => return Ok(state),
        // Another user's socket: say so rather than fall back in silence.
        Err(AgentError::Untrusted(why)) => bail!("{why}"),
        Err(AgentError::Broken(why)) => Some(why),
        Err(AgentError::Unavailable(_)) => None,
    };
    match state::load(&cfg.state_file())? {
        // Another agent took the directory and has not written its state yet.
        Some(s) if matches!(whose(cfg, &s), Whose::Starting(_)) => Ok(state::fresh()),
        Some(s) => Ok(if show_token { s } else { s.redacted() }),
        None => match broken {
            Some(why) => bail!("{why}"),
            None => Err(unreachable(cfg).into()),
        },
    }
}

/// The running agent's state (the token shown as asked), or `None` when
/// nobody answers on the socket; an error when the socket may not be
/// trusted or its answer is not the agent's.
pub async fn running(cfg: &Config, show_token: bool) -> Result<Option<State>> {
    match api(cfg).status(show_token).await {
        Ok(state) => Ok(Some(state)),
        Err(AgentError::Unavailable(_)) => Ok(None),
        Err(AgentError::Broken(why) | AgentError::Untrusted(why)) => bail!("{why}"),
    }
}

/// `POST /v1/workspace/reset` on the running agent: answered once the
/// fresh copy is in place (the container is re-created after).
pub async fn reset(cfg: &Config) -> Result<jupyter_proto::state::ResetAnswer> {
    api(cfg).reset().await.map_err(|e| anyhow::anyhow!("resetting the workspace through the agent: {e}"))
}

/// `POST /v1/hand` on the running agent: the hand as it is now. Without a
/// running agent: exit 4, saying so (the hand is the running agent's).
pub async fn hand(cfg: &Config, raise: bool, message: Option<&str>) -> Result<Option<state::Hand>> {
    if running(cfg, false).await?.is_none() {
        return Err(crate::exit::Exit::new(
            crate::exit::NO_STATE,
            format!(
                "the agent is not running (no answer on {}): the hand is raised and lowered through the running \
                 agent; start it (systemctl start jupyter-agent)",
                cfg.socket.display()
            ),
        )
        .into());
    }
    let answer = api(cfg).hand(raise, message).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(answer.hand)
}

/// Why an attempt to wait on the agent did not answer.
enum NotYet {
    /// Nobody answers on the socket (yet) and the state file is not final.
    Starting(String),
    /// The agent answered something unusable: waiting will not help.
    Broken(String),
}

impl Transient for NotYet {
    fn is_transient(&self) -> bool {
        matches!(self, NotYet::Starting(_))
    }
}

impl std::fmt::Display for NotYet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotYet::Starting(why) | NotYet::Broken(why) => f.write_str(why),
        }
    }
}

/// Waits until the converge is ready or failed, at most `timeout`; returns
/// the state and whether the wait timed out. While no agent answers yet (it
/// may be starting) it asks again ([`STARTING_AGENT`]); a final state file
/// answers at once.
pub async fn wait(cfg: &Config, timeout: Duration) -> Result<(State, bool)> {
    let client = api(cfg);
    let policy = Policy { budget: timeout, ..STARTING_AGENT };
    let deadline = retry::deadline_after(timeout);
    let asked = retry::retry(
        &policy,
        |left| {
            let client = &client;
            async move {
                match client.wait(Until::Ready, left, false).await {
                    Ok(answer) => Ok((answer.state, answer.timed_out)),
                    Err(AgentError::Broken(why) | AgentError::Untrusted(why)) => Err(NotYet::Broken(why)),
                    Err(AgentError::Unavailable(why)) => match state::load(&cfg.state_file()) {
                        Ok(Some(s)) => match whose(cfg, &s) {
                            Whose::Current if s.phase.is_final() => Ok((s.redacted(), false)),
                            Whose::Current => Err(NotYet::Starting(why)),
                            ended => Err(NotYet::Starting(ended.why(cfg))),
                        },
                        Ok(None) => Err(NotYet::Starting(why)),
                        Err(e) => Err(NotYet::Broken(format!("{e:#}"))),
                    },
                }
            }
        },
        |_, _| {},
    )
    .await;
    match asked {
        // The agent's long poll ran out before ours: ask again with what is left.
        Ok((_, true)) if tokio::time::Instant::now() < deadline => {
            Box::pin(wait(cfg, deadline.saturating_duration_since(tokio::time::Instant::now()))).await
        }
        Ok(answer) => Ok(answer),
        Err(retry::Error::Permanent(e)) => bail!("waiting on the agent: {e}"),
        Err(retry::Error::GaveUp { .. } | retry::Error::OutOfTime { .. }) => match state::load(&cfg.state_file())? {
            Some(s) => match whose(cfg, &s) {
                Whose::Current => Ok((s.redacted(), true)),
                ended => Err(crate::exit::Exit::new(
                    crate::exit::TIMED_OUT,
                    format!("not ready after {}: {}", jupyter_proto::duration::show(timeout), ended.why(cfg)),
                )
                .into()),
            },
            None => Err(unreachable(cfg).into()),
        },
    }
}

/// Whose document the state file holds, for a reader that found no agent
/// on the socket.
#[derive(Debug, PartialEq)]
enum Whose {
    /// The run that is current: its writer runs, or it was a `run --once`
    /// (its last document stays the answer), or it names no run (older
    /// agents, the one-off commands).
    Current,
    /// An ended run's: another agent (this pid) holds the state directory
    /// and has not written its own yet.
    Starting(u32),
    /// An ended run's: its writer (this pid) kept watching, as a service
    /// does, and is gone; the next run's document is what counts.
    Gone(u32),
}

impl Whose {
    fn why(&self, cfg: &Config) -> String {
        let file = cfg.state_file();
        match self {
            Whose::Current => String::new(),
            Whose::Starting(pid) => {
                format!("the agent (pid {pid}) is starting; {} is still an earlier run's", file.display())
            }
            Whose::Gone(pid) => format!(
                "the agent that wrote {} (pid {pid}) is not running, and its state is no answer for the next run; start it (systemctl start jupyter-agent)",
                file.display()
            ),
        }
    }
}

/// Tells the current run's document from an ended one's, by the run it
/// names and the agent that holds the state directory now.
fn whose(cfg: &Config, state: &State) -> Whose {
    let Some(run) = state.run else { return Whose::Current };
    match holder(&cfg.state_dir) {
        Some(pid) if pid != run.pid => Whose::Starting(pid),
        Some(_) => Whose::Current,
        None if run.once => Whose::Current,
        None => Whose::Gone(run.pid),
    }
}

/// The agent that last took the state directory's lock (its pid is in the
/// lock file), when that process still runs and is a jupyter-agent. Read,
/// never locked: a reader holding the lock would refuse a starting agent.
fn holder(state_dir: &std::path::Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(state_dir.join("agent.lock")).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (pid != std::process::id() && comm.trim() == "jupyter-agent").then_some(pid)
}

/// Writes the container's last `tail` lines (and, with `follow`, what comes
/// after) to `out`, one line at a time: from the agent, or from the engine
/// when no agent runs.
pub async fn logs(cfg: &Config, tail: u64, follow: bool, out: &mut dyn FnMut(&str)) -> Result<()> {
    let mut lines = LineAssembler::new();
    match api(cfg).logs(tail, follow, true).await {
        Ok(mut stream) => {
            while let Some(chunk) = stream.next_chunk().await.context("reading the log stream")? {
                lines.push(&chunk).iter().for_each(|l| out(l));
            }
            lines.finish().iter().for_each(|l| out(l));
            return Ok(());
        }
        Err(AgentError::Broken(why) | AgentError::Untrusted(why)) => {
            bail!("asking the agent for the container's log: {why}")
        }
        Err(AgentError::Unavailable(_)) => {}
    }
    let Some(s) = state::load(&cfg.state_file())? else { return Err(unreachable(cfg).into()) };
    let Some(c) = s.container else { bail!("the state names no container yet (phase: {})", s.phase) };
    let docker =
        crate::engine::connect(&DockerConfig { ping_timeout: Duration::from_secs(5), ..cfg.docker.clone() }).await?;
    let mut stream = docker.logs(&c.id, Some(crate::jupyter::logs_options(tail, follow)));
    while let Some(item) = stream.next().await {
        let chunk = item.with_context(|| format!("reading the log of {}", c.name))?.into_bytes();
        lines.push(&chunk).iter().for_each(|l| out(l));
    }
    lines.finish().iter().for_each(|l| out(l));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::AgentRun;
    use std::os::unix::fs::PermissionsExt;

    /// `status` before the state file: a socket another user could have put
    /// there is refused by name, not passed over for the state file in silence.
    #[tokio::test]
    async fn status_names_a_socket_another_user_could_have_put_there() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut cfg = Config::defaults();
        cfg.socket = open.join("agent.sock");
        cfg.state_dir = dir.path().join("state");
        let _listener = std::os::unix::net::UnixListener::bind(&cfg.socket).unwrap();
        let store = state::StateStore::lock(&cfg.state_dir).unwrap();
        store.save(&state::fresh()).unwrap();
        let err = state(&cfg, false).await.unwrap_err().to_string();
        assert!(err.starts_with(&format!("refusing the agent's socket {}: ", cfg.socket.display())), "{err}");
        assert!(err.contains("is writable by other users (mode 0777)"), "{err}");
    }

    /// Each kind of document a reader meets without an agent on the socket,
    /// with a stand-in agent: `sleep` copied under the agent's name.
    #[test]
    fn the_state_file_is_the_current_runs_only_while_its_writer_runs_or_it_was_once() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        std::fs::create_dir(&state_dir).unwrap();
        let cfg = Config { state_dir: state_dir.clone(), ..Config::defaults() };
        let stand_in = dir.path().join("jupyter-agent");
        std::fs::copy("/bin/sleep", &stand_in).unwrap();
        let mut agent = std::process::Command::new(&stand_in).arg("30").spawn().unwrap();
        let running = agent.id();
        let lock = |pid: u32| std::fs::write(state_dir.join("agent.lock"), pid.to_string()).unwrap();
        let doc = |run: Option<AgentRun>| State { run, ..state::fresh() };
        let service = |pid| Some(AgentRun { pid, once: false });
        let once = |pid| Some(AgentRun { pid, once: true });

        // Its name, once the kernel shows the stand-in's.
        let comm = || std::fs::read_to_string(format!("/proc/{running}/comm")).unwrap_or_default();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while comm().trim() != "jupyter-agent" && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        lock(running);
        assert_eq!(whose(&cfg, &doc(service(running))), Whose::Current, "its writer runs ({:?})", comm());
        assert_eq!(whose(&cfg, &doc(service(running + 1))), Whose::Starting(running), "another agent starts");
        assert_eq!(whose(&cfg, &doc(None)), Whose::Current, "a document that names no run");
        agent.kill().unwrap();
        agent.wait().unwrap();
        assert_eq!(whose(&cfg, &doc(service(running))), Whose::Gone(running), "a service run that ended");
        assert_eq!(whose(&cfg, &doc(once(running))), Whose::Current, "a run --once that ended");
        assert!(Whose::Gone(running).why(&cfg).contains("is not running"));
    }
}
