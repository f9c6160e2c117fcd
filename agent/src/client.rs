//! The CLI's side of the local API: ask the running agent on its socket, and
//! fall back to the state file (or to the engine, for logs) when no agent runs.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::config::Config;
use crate::state::{self, State};

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Agent,
    StateFile,
}

/// Neither a running agent nor a state file.
#[derive(Debug, thiserror::Error)]
#[error("the agent is not running (no answer on {socket}) and there is no state at {state}: start it with jupyter-agent run")]
pub struct Unreachable {
    pub socket: String,
    pub state: String,
}

/// A client of the agent's socket, if one answers there.
pub async fn agent(cfg: &Config) -> Option<reqwest::Client> {
    if !cfg.socket.exists() {
        return None;
    }
    let client = reqwest::Client::builder().unix_socket(cfg.socket.as_path()).build().ok()?;
    // A stale socket file (the agent died) refuses the connection.
    let probe = client.get("http://localhost/v1/status").timeout(Duration::from_secs(5)).send().await;
    probe.ok().filter(|r| r.status().is_success()).map(|_| client)
}

/// The state, from the running agent or else from the state file.
pub async fn state(cfg: &Config, show_token: bool) -> Result<(State, Source)> {
    // One request: the answer itself tells whether an agent runs (a stale
    // socket file refuses the connection), so no separate probe.
    let asked = match reqwest::Client::builder().unix_socket(cfg.socket.as_path()).build() {
        Ok(client) if cfg.socket.exists() => client
            .get(format!("http://localhost/v1/status?show_token={show_token}"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success()),
        _ => None,
    };
    if let Some(resp) = asked {
        let state = resp.json::<State>().await.context("reading the agent's status")?;
        return Ok((state, Source::Agent));
    }
    match state::load(&cfg.state_file())? {
        Some(s) => Ok((if show_token { s } else { s.redacted() }, Source::StateFile)),
        None => Err(unreachable(cfg).into()),
    }
}

fn unreachable(cfg: &Config) -> Unreachable {
    Unreachable { socket: cfg.socket.display().to_string(), state: cfg.state_file().display().to_string() }
}

#[derive(Deserialize)]
struct WaitAnswer {
    timed_out: bool,
    state: State,
}

/// Waits until the converge is ready or failed, at most `timeout`; returns
/// the state and whether the wait timed out. While no agent answers yet (it
/// may be starting) it looks again with a short backoff; a final state file
/// answers at once.
pub async fn wait(cfg: &Config, timeout: Duration) -> Result<(State, bool)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(50);
    let client = loop {
        if let Some(client) = agent(cfg).await {
            break client;
        }
        let saved = state::load(&cfg.state_file())?;
        if let Some(s) = &saved {
            if matches!(s.phase, state::Phase::Ready | state::Phase::Failed) {
                return Ok((s.redacted(), false));
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return match saved {
                Some(s) => Ok((s.redacted(), true)),
                None => Err(unreachable(cfg).into()),
            };
        }
        tokio::time::sleep(delay.min(deadline - now)).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    };
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now()).as_secs().min(3600);
        let answer: WaitAnswer = client
            .get(format!("http://localhost/v1/wait?until=ready&timeout={left}"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .context("waiting on the agent")?
            .json()
            .await
            .context("reading the agent's answer")?;
        if !answer.timed_out || tokio::time::Instant::now() >= deadline {
            return Ok((answer.state, answer.timed_out));
        }
    }
}

/// Writes the container's last `tail` lines (and, with `follow`, what comes
/// after) to `out`, one line at a time: from the agent, or from the engine
/// when no agent runs.
pub async fn logs(cfg: &Config, tail: u64, follow: bool, out: &mut dyn FnMut(&str)) -> Result<()> {
    if let Some(client) = agent(cfg).await {
        let resp = client
            .get(format!("http://localhost/v1/logs?tail={tail}&follow={follow}&show_token=true"))
            .timeout(Duration::from_secs(if follow { 365 * 24 * 3600 } else { 60 }))
            .send()
            .await
            .context("asking the agent for the container's log")?;
        if !resp.status().is_success() {
            let text = resp.text().await.unwrap_or_default();
            bail!("the agent answered: {}", text.trim());
        }
        let mut resp = resp;
        let mut assembler = crate::token::LineAssembler::new();
        while let Some(chunk) = resp.chunk().await.context("reading the log stream")? {
            for line in assembler.push(&chunk) {
                out(&line);
            }
        }
        return Ok(());
    }
    let Some(s) = state::load(&cfg.state_file())? else { return Err(unreachable(cfg).into()) };
    let Some(c) = s.container else { bail!("the state names no container yet (phase: {})", s.phase.as_str()) };
    let docker = crate::engine::connect(&crate::config::DockerConfig {
        ping_timeout: Duration::from_secs(5),
        ..cfg.docker.clone()
    })
    .await?;
    let options = crate::jupyter::logs_options(tail, follow);
    let mut stream = docker.logs(&c.id, Some(options));
    let mut assembler = crate::token::LineAssembler::new();
    while let Some(item) = stream.next().await {
        for line in assembler.push(&item.with_context(|| format!("reading the log of {}", c.name))?.into_bytes()) {
            out(&line);
        }
    }
    if let Some(rest) = assembler.finish() {
        out(&rest);
    }
    Ok(())
}
