//! Waiting for Jupyter: follow the container's log stream (no polling) until
//! a login URL appears, ask the server itself when the log hides a
//! configured token, and prove the token against `/api/status` before it is
//! reported (docs/jupyter.md).

use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::LogsOptionsBuilder;
use bollard::Docker;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tracing::{debug, info};

use jupyter_proto::redact::{redact, MARK};
use jupyter_proto::retry::{self, Policy, Transient};

use crate::container::Endpoint;
use crate::state::{TokenSource, LOG_TAIL_LINES};
use crate::token::{base_url, parse_line, parse_server_list, Finding, LineAssembler};

/// The proof's wait for the published port to answer: it can lag the log
/// line by a moment, and a line may print a URL long before the server
/// starts. Retried from 50 ms, at most 1 s apart (2 s with jitter), for what
/// is left of `ready_timeout`; only that, or the container stopping, ends it.
const PROOF_RETRY: Policy = Policy::new(Duration::from_millis(50), Duration::from_secs(1), Duration::ZERO);

/// A token the server accepted.
#[derive(Clone)]
pub struct Proven {
    pub token: String,
    /// The path of the login URL: `/`, `/tree`, `/lab`, or below a base URL.
    pub path: String,
    /// Where the token was found.
    pub source: TokenSource,
    pub seen_at: DateTime<Utc>,
    pub proven_at: DateTime<Utc>,
    /// Where it was proven: the published port may have moved since the
    /// container step (a container published on port 0 that started again).
    pub endpoint: Endpoint,
}

impl std::fmt::Debug for Proven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proven").field("token", &MARK).field("path", &self.path).finish()
    }
}

/// Follows the log of `container` (from `since`, Docker's start time) until a
/// proven token is found, the stream ends (the container stopped), or
/// `timeout` passes. With `no_token` (`[jupyter] token = "none"`), a server
/// that checks no token is accepted, with an empty token, before the log is
/// followed for a server that does check one.
#[allow(clippy::too_many_arguments)]
pub async fn wait_for_token(
    docker: &Docker,
    container: &str,
    since: Option<&str>,
    endpoint: Endpoint,
    timeout: Duration,
    no_token: bool,
    given: Option<&str>,
) -> Result<Proven> {
    let deadline = retry::deadline_after(timeout);
    let endpoint = &std::sync::Mutex::new(endpoint);
    let at = || *endpoint.lock().expect("not poisoned");
    if no_token {
        let client = http_client()?;
        let seen_at = Utc::now();
        match prove(&client, docker, container, endpoint, "/", "", timeout, true).await? {
            Proof::Accepted => {
                info!("the server checks no token, as [jupyter] token = \"none\" allows");
                return Ok(Proven {
                    token: String::new(),
                    path: "/".into(),
                    source: TokenSource::Server,
                    seen_at,
                    proven_at: Utc::now(),
                    endpoint: at(),
                });
            }
            Proof::Rejected(status) => {
                info!(status, "[jupyter] token = \"none\", but the server checks a token: following its log")
            }
        }
    }
    // Only this run's lines: a restarted container's log still holds the
    // tokens of its earlier runs (and the proof would refuse them anyway).
    let since = since.and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map_or(0, |t| t.timestamp() as i32);
    let options = LogsOptionsBuilder::new().follow(true).stdout(true).stderr(true).since(since).build();
    let mut stream = docker.logs(container, Some(options));
    let mut lines = LineAssembler::new();
    let client = http_client()?;
    loop {
        let item = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => bail!(
                "no login URL with a token appeared in the container's log within {} ([jupyter] ready_timeout)",
                humantime::format_duration(timeout)
            ),
            Ok(None) => bail!("the container stopped before Jupyter was ready"),
            Ok(Some(item)) => item.context("following the container's log")?,
        };
        let bytes = match &item {
            LogOutput::StdOut { message } | LogOutput::StdErr { message } | LogOutput::Console { message } => message,
            LogOutput::StdIn { .. } => continue,
        };
        for line in lines.push(bytes) {
            let Some(finding) = parse_line(&line) else { continue };
            let seen_at = Utc::now();
            let candidates = match finding {
                // The agent's own token, printed by the server.
                Finding::Token { token, path } if Some(token.as_str()) == given => {
                    vec![(token, path, TokenSource::Agent)]
                }
                Finding::Token { token, path } => vec![(token, path, TokenSource::Log)],
                // The token the agent gave the server is the first candidate
                // (proven like any other), before asking the server, whose
                // `jupyter` command may not be on the container's PATH.
                Finding::Placeholder { path } => {
                    let mut candidates = Vec::new();
                    if let Some(given) = given {
                        info!("the log hides a configured token: proving the one the agent gave");
                        candidates.push((given.to_string(), path.clone(), TokenSource::Agent));
                    } else {
                        info!("the log hides a configured token; asking the server");
                    }
                    let listed = match ask_server(docker, container).await {
                        Ok(listed) => listed,
                        Err(_) if given.is_some() => Vec::new(),
                        Err(e) => return Err(e),
                    };
                    if listed.is_empty() && given.is_none() {
                        bail!("the log shows only ?token=... and neither `jupyter server list --json` nor `jupyter notebook list --json` in the container named a running server");
                    }
                    candidates.extend(listed.into_iter().map(|s| {
                        let under = if s.base_url == "/" {
                            path.clone()
                        } else {
                            format!("{}{}", s.base_url.trim_end_matches('/'), path)
                        };
                        let source =
                            if Some(s.token.as_str()) == given { TokenSource::Agent } else { TokenSource::ServerList };
                        (s.token, under, source)
                    }));
                    candidates
                }
            };
            for (token, path, source) in candidates {
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                match prove(&client, docker, container, endpoint, &base_url(&path), &token, remaining, false).await? {
                    Proof::Accepted => {
                        info!(source = %source, "token proven against /api/status");
                        return Ok(Proven { token, path, source, seen_at, proven_at: Utc::now(), endpoint: at() });
                    }
                    Proof::Rejected(status) => {
                        info!(status, "a token URL from the log did not open /api/status (an earlier run's, or not the server's); still following")
                    }
                }
            }
        }
    }
}

/// Runs `jupyter server list --json` (then `jupyter notebook list --json`
/// for Notebook 5/6) inside the container.
async fn ask_server(docker: &Docker, container: &str) -> Result<Vec<crate::token::ListedServer>> {
    for cmd in [["jupyter", "server", "list", "--json"], ["jupyter", "notebook", "list", "--json"]] {
        let output = exec_output(docker, container, &cmd)
            .await
            .with_context(|| format!("running `{}` in the container", cmd.join(" ")))?;
        let servers: Vec<_> = parse_server_list(&output).into_iter().filter(|s| !s.token.is_empty()).collect();
        if !servers.is_empty() {
            return Ok(servers);
        }
    }
    Ok(Vec::new())
}

async fn exec_output(docker: &Docker, container: &str, cmd: &[&str]) -> Result<String> {
    let exec = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(cmd.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(false),
                ..Default::default()
            },
        )
        .await?;
    let StartExecResults::Attached { mut output, .. } = docker.start_exec(&exec.id, None).await? else {
        bail!("the exec did not attach");
    };
    let mut out = Vec::new();
    while let Some(chunk) = output.next().await {
        if let LogOutput::StdOut { message } = chunk? {
            out.extend_from_slice(&message);
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

enum Proof {
    Accepted,
    Rejected(u16),
}

fn http_client() -> Result<reqwest::Client> {
    crate::http::to_container(Duration::from_secs(5)).build().context("building the HTTP client")
}

/// Why a proof's request got no answer.
enum NotUp {
    /// The server does not answer yet (connection refused, reset, timed out).
    Yet(String),
    /// The container is not running any more: no answer will come.
    Stopped,
}

impl Transient for NotUp {
    fn is_transient(&self) -> bool {
        matches!(self, NotUp::Yet(_))
    }
}

impl std::fmt::Display for NotUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotUp::Yet(why) => f.write_str(why),
            NotUp::Stopped => f.write_str("the container stopped before Jupyter was ready"),
        }
    }
}

/// `None` when the container does not run; else the host port its
/// published port is bound to now, if any (the agent publishes one).
async fn published_now(docker: &Docker, container: &str) -> Option<Option<u16>> {
    let c = docker.inspect_container(container, None).await.ok()?;
    if c.state.as_ref().is_none_or(|s| s.running != Some(true)) {
        return None;
    }
    let ports = c.network_settings.and_then(|n| n.ports).unwrap_or_default();
    Some(ports.values().flatten().flatten().find_map(|b| b.host_port.as_deref()?.parse().ok()))
}

/// `GET /api/status` with the token must answer 200, and with a wrong token
/// must be refused (unless `open_ok`: a server that checks no token, asked
/// for with an empty token). Connection errors are retried
/// ([`PROOF_RETRY`]) while the container runs; any answer but 200 rejects
/// the candidate (a stray URL in the log), and the caller goes on following
/// the log.
#[allow(clippy::too_many_arguments)]
async fn prove(
    client: &reqwest::Client,
    docker: &Docker,
    container: &str,
    endpoint: &std::sync::Mutex<Endpoint>,
    base: &str,
    token: &str,
    within: Duration,
    open_ok: bool,
) -> Result<Proof> {
    let path = format!("{base}api/status");
    let url = || endpoint.lock().expect("not poisoned").url(&path);
    let policy = Policy { budget: within, ..PROOF_RETRY };
    let asked = retry::retry(
        &policy,
        |_| async {
            let request = client.get(url());
            let request =
                if token.is_empty() { request } else { request.header("Authorization", format!("token {token}")) };
            match request.send().await {
                Ok(resp) => Ok(resp.status().as_u16()),
                Err(e) => match published_now(docker, container).await {
                    None => Err(NotUp::Stopped),
                    Some(port) => {
                        // Started again meanwhile, on another port Docker picked: follow it.
                        if let Some(port) = port {
                            endpoint.lock().expect("not poisoned").port = port;
                        }
                        Err(NotUp::Yet(format!("{:#}", anyhow!(e))))
                    }
                },
            }
        },
        |e, _| debug!(url = %url(), error = %e, "Jupyter does not answer yet"),
    )
    .await;
    let url = url();
    let status = match asked {
        Ok(status) => status,
        Err(e) => {
            bail!("asking {url} whether the token works: {}", e.last_message().unwrap_or_else(|| "no answer".into()))
        }
    };
    if status != 200 {
        return Ok(Proof::Rejected(status));
    }
    let wrong = format!("wrong-{}", &token.chars().rev().collect::<String>());
    let resp = client
        .get(&url)
        .header("Authorization", format!("token {wrong}"))
        .send()
        .await
        .with_context(|| format!("asking {url} to refuse a wrong token"))?;
    match resp.status().as_u16() {
        401 | 403 => Ok(Proof::Accepted),
        200 if open_ok => Ok(Proof::Accepted),
        other => bail!("{url} answered {other} to a wrong token: the server does not check tokens, so no login token can be proven"),
    }
}

/// Both streams of the container's log: the last `tail` lines, and with
/// `follow` whatever comes after.
pub fn logs_options(tail: u64, follow: bool) -> bollard::query_parameters::LogsOptions {
    LogsOptionsBuilder::new().stdout(true).stderr(true).follow(follow).tail(&tail.to_string()).build()
}

/// The container's last lines (tokens redacted), for failure reports.
pub async fn log_tail(docker: &Docker, container: &str) -> Vec<String> {
    let mut stream = docker.logs(container, Some(logs_options(LOG_TAIL_LINES as u64, false)));
    let mut lines = LineAssembler::new();
    let mut out: VecDeque<String> = VecDeque::new();
    while let Some(Ok(item)) = stream.next().await {
        for line in lines.push(&item.into_bytes()) {
            out.push_back(redact(&line));
        }
    }
    out.extend(lines.finish().map(|l| redact(&l)));
    while out.len() > LOG_TAIL_LINES {
        out.pop_front();
    }
    out.into()
}

/// The exit code of a container that is not running, if any.
pub async fn exit_code(docker: &Docker, container: &str) -> Option<i64> {
    let c = docker.inspect_container(container, None).await.ok()?;
    let state = c.state?;
    if state.running == Some(true) && state.restarting != Some(true) {
        return None;
    }
    state.exit_code
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::workspace::test_support::{response, serve_with};

    /// A server in the container that answers the proof with a redirect to
    /// another address: followed, it made the agent send GETs (with the
    /// token) on the host's network, and a listener there could pass the
    /// proof. The proof follows no redirect: a 302 is an answer that is not
    /// 200, and the candidate is rejected.
    #[tokio::test]
    async fn the_proof_follows_no_redirect() {
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = hits.clone();
        let elsewhere = serve_with(move |request| {
            seen.fetch_add(1, Ordering::SeqCst);
            let right = request.headers().get("authorization").is_some_and(|v| v == "token t0k3n-for-the-proof");
            response(if right { 200 } else { 403 }, b"{}".to_vec())
        });
        let jupyter = serve_with(move |_| {
            let mut answer = response(302, Vec::new());
            let location = format!("http://{elsewhere}/api/status");
            answer.headers_mut().insert("location", location.parse().unwrap());
            answer
        });
        // Not asked: it serves only when a request gets no answer at all.
        let docker = Docker::connect_with_http("http://127.0.0.1:9", 1, bollard::API_DEFAULT_VERSION).unwrap();
        let endpoint = Mutex::new(Endpoint { address: IpAddr::V4(Ipv4Addr::LOCALHOST), port: jupyter.port() });
        let client = http_client().unwrap();
        let proof =
            prove(&client, &docker, "c", &endpoint, "/", "t0k3n-for-the-proof", Duration::from_secs(5), false).await;
        assert!(matches!(proof, Ok(Proof::Rejected(302))), "{:?}", proof.map(|_| ()).map_err(|e| format!("{e:#}")));
        assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");
    }
}
