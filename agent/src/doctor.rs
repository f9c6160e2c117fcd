//! `jupyter-agent doctor`: what a participant or an organiser would check by
//! hand, one line per check, each failure with its fix.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, DockerConfig, UrlHost};
use crate::container::Endpoint;
use crate::runtimes;
use crate::state::{Phase, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// Worth knowing, not broken (no metadata service off the cloud).
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do about it, when it is not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check { name, verdict: Verdict::Ok, detail: detail.into(), fix: None }
}

fn bad(name: &'static str, verdict: Verdict, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check { name, verdict, detail: detail.into(), fix: Some(fix.into()) }
}

/// Runs every check. `state` is what the agent (or its state file) says.
pub async fn run(cfg: &Config, state: Option<&State>) -> Vec<Check> {
    let mut checks = Vec::new();
    let address = crate::engine::engine_address(&cfg.docker);
    let quick = DockerConfig { ping_timeout: Duration::from_secs(3), ..cfg.docker.clone() };
    let docker = crate::engine::connect(&quick).await;
    let root = std::path::Path::new("/");
    let local = crate::engine::is_local_default(&address);
    let runtimes = match (&docker, local && !runtimes::docker_installed(root)) {
        (Err(_), true) => runtimes::detect(root),
        _ => Vec::new(),
    };
    let podman_link = local && runtimes::docker_socket_is_podmans(root);
    checks.push(engine_check(
        &address,
        docker.as_ref().map(|d| d.client_version().to_string()).map_err(|_| ()),
        &runtimes,
        podman_link,
    ));

    let name = state.and_then(|s| s.container.as_ref()).map_or(cfg.container.name.clone(), |c| c.name.clone());
    let mut published: Option<Endpoint> = None;
    if let Ok(d) = &docker {
        match d.inspect_container(&name, None).await {
            Ok(c) => {
                let s = c.state.clone().unwrap_or_default();
                if s.running == Some(true) && s.restarting != Some(true) {
                    checks
                        .push(ok("container", format!("{name} is running since {}", s.started_at.unwrap_or_default())));
                } else {
                    checks.push(bad(
                        "container",
                        Verdict::Fail,
                        format!("{name} is not running (exit code {})", s.exit_code.unwrap_or_default()),
                        format!("jupyter-agent logs -n 50, then jupyter-agent run (or docker start {name})"),
                    ));
                }
                published = Endpoint::bound(&c, cfg.container.port, &cfg.container.publish);
                checks.push(match published {
                    Some(e) => ok(
                        "port",
                        format!("container port {}/tcp is published on host port {}", cfg.container.port, e.port),
                    ),
                    None => bad(
                        "port",
                        Verdict::Fail,
                        format!("container port {}/tcp is not published", cfg.container.port),
                        "check [container] port and publish, then jupyter-agent run",
                    ),
                });
            }
            Err(_) => checks.push(bad(
                "container",
                Verdict::Fail,
                format!("there is no container named {name}"),
                "jupyter-agent run",
            )),
        }
    }

    checks.push(image_check(cfg, docker.as_ref().ok()).await);
    checks.push(token_check(state, published).await);
    checks.extend(container_user_check(cfg));
    // Behind the front (a long-running agent, docs/front.md), participants
    // reach the agent's listener; Jupyter is on loopback.
    let fronted = state.is_some_and(|s| s.steps.iter().any(|step| step.name == "front"));
    let listen = state.and_then(|s| s.tls.as_ref()).map(|t| t.listen);
    let reached = match (fronted || cfg.tls.is_on(), published) {
        (true, Some(_)) => Some(listen.map_or(cfg.container.publish.port, |l| l.port())),
        (_, published) => published.map(|e| e.port),
    };
    if let Some(port) = reached {
        checks.push(own_address_check(cfg, port).await);
    }
    checks.push(tls_check(cfg, state));
    if cfg.container.gpus.is_some() {
        checks.push(gpu_check(cfg, docker.is_ok(), state).await);
    }
    checks.push(disk_check(cfg));
    checks.push(metadata_check(cfg).await);
    checks
}

/// The `gpu` line, with `[container] gpus` (docs/gpu.md): the host's
/// driver (its version and GPUs), whether the engine offers the `nvidia`
/// runtime and dockerd's PATH has the hook that gives it its GPU device
/// driver, and the GPUs the container was given (the state's).
async fn gpu_check(cfg: &Config, engine_answers: bool, state: Option<&State>) -> Check {
    use crate::gpu::{driver, toolkit};
    let paths = driver::DriverPaths::from(&cfg.gpu);
    let (version, gpus) = match driver::probe(&paths).await {
        Ok(found) => found,
        Err(why) => {
            return bad(
                "gpu",
                Verdict::Fail,
                format!("the NVIDIA driver does not answer: {why}"),
                format!(
                    "wait for Alibaba's driver auto-install (tail {}), or use an image with the driver, then jupyter-agent run (docs/gpu.md#the-driver)",
                    paths.install_log.display()
                ),
            )
        }
    };
    let mut detail = format!("NVIDIA driver {version}, GPUs: {}", gpus.join(", "));
    let runtimes = match engine_answers {
        true => toolkit::offered_runtimes(cfg, Duration::from_secs(3)).await.ok(),
        false => None,
    };
    let hook = toolkit::gpu_hook();
    match (&runtimes, &hook) {
        (Some(r), Some(hook)) if r.iter().any(|r| r == toolkit::RUNTIME) => detail.push_str(&format!(
            "; the engine offers the {} runtime, and {} gives it the GPU device driver",
            toolkit::RUNTIME,
            hook.display()
        )),
        (None, _) => detail.push_str("; the engine does not answer"),
        (Some(r), _) => {
            let missing = match hook {
                None => format!("{} is not installed", toolkit::GPU_HOOK),
                Some(_) => format!("the engine offers the runtimes {}, not {}", r.join(", "), toolkit::RUNTIME),
            };
            return bad(
                "gpu",
                Verdict::Fail,
                format!("{detail}; the NVIDIA Container Toolkit is missing: {missing}"),
                "jupyter-agent install-nvidia-toolkit (it restarts dockerd), then jupyter-agent run (docs/gpu.md#the-nvidia-container-toolkit)",
            );
        }
    }
    if let Some(given) = state.and_then(|s| s.jupyter.as_ref()).map(|j| &j.gpus).filter(|g| !g.is_empty()) {
        detail.push_str(&format!("; the container was given: {}", given.join(", ")));
    }
    ok("gpu", detail)
}

/// The engine line: whether it answers (`api`: the API version agreed on),
/// and what runs instead when it does not (docs/docker-install.md#other-container-runtimes).
/// `podman_link`: Docker's socket is podman-docker's link to podman's.
fn engine_check(address: &str, api: Result<String, ()>, runtimes: &[runtimes::Found], podman_link: bool) -> Check {
    match api {
        Ok(api) if podman_link => bad(
            "engine",
            Verdict::Warn,
            format!(
                "the engine that answers at {address} (API {api}) is podman: podman-docker links Docker's socket to {}",
                runtimes::PODMAN_SOCKET
            ),
            "the agent is tested with Docker only: install Docker (jupyter-agent install-docker removes podman-docker on the RPM distributions)",
        ),
        Ok(api) => ok("engine", format!("the Docker engine answers at {address} (API {api})")),
        Err(()) if runtimes.is_empty() => bad(
            "engine",
            Verdict::Fail,
            format!("no Docker engine answers at {address}"),
            "jupyter-agent install-docker (or systemctl start docker)",
        ),
        Err(()) => {
            let found: Vec<String> = runtimes.iter().map(runtimes::Found::describe).collect();
            let podman = runtimes.iter().any(|r| r.kind == runtimes::Kind::Podman && r.socket.is_some());
            bad(
                "engine",
                Verdict::Fail,
                format!("no Docker engine answers at {address}, but {} is here", found.join(" and ")),
                if podman {
                    format!(
                        "jupyter-agent install-docker (on the RPM distributions it removes podman and runc first, see [docker] remove_conflicts), \
                         or [docker] host = \"unix://{}\" for podman's Docker-compatible API (Docker API 1.40, in part; the agent is not tested with it)",
                        runtimes::PODMAN_SOCKET
                    )
                } else {
                    "jupyter-agent install-docker: containerd alone does not serve Docker's API".to_string()
                },
            )
        }
    }
}

async fn token_check(state: Option<&State>, published: Option<Endpoint>) -> Check {
    let Some(s) = state else {
        return bad("token", Verdict::Fail, "the agent has no state: it has not run", "jupyter-agent run");
    };
    let (&Phase::Ready, Some(j), Some(endpoint)) = (&s.phase, s.jupyter.as_ref(), published) else {
        return bad(
            "token",
            Verdict::Fail,
            format!("Jupyter is not ready (phase: {})", s.phase.as_str()),
            "jupyter-agent status, then jupyter-agent run",
        );
    };
    let url = endpoint.url("/api/status");
    let client = crate::http::to_container(Duration::from_secs(5)).build();
    let status = match client {
        Ok(c) => {
            c.get(&url).header("Authorization", format!("token {}", j.token)).send().await.map(|r| r.status().as_u16())
        }
        Err(e) => Err(e),
    };
    match status {
        Ok(200) if j.note.is_some() => bad(
            "token",
            Verdict::Warn,
            format!("the reported token opens /api/status now, but: {}", j.note.as_deref().unwrap_or_default()),
            "see [jupyter] token in docs/configuration.md",
        ),
        Ok(200) => ok("token", "the reported token opens /api/status now"),
        Ok(code) => bad(
            "token",
            Verdict::Fail,
            format!("/api/status answered {code} to the reported token"),
            "the server restarted with a new token: jupyter-agent run",
        ),
        Err(e) => bad("token", Verdict::Fail, format!("{url} does not answer: {e}"), "jupyter-agent logs -n 50"),
    }
}

/// The certificate the agent serves: for what, from whom, until when, the
/// next renewal, and whether its chain verifies against the system's CAs and
/// `[tls] ca_file` (docs/tls.md#doctor). Read from the state directory: no network.
fn tls_check(cfg: &Config, state: Option<&State>) -> Check {
    use crate::tls::certs::{self, Kind, Served};
    if !cfg.tls.is_on() {
        return ok("tls", "off: plain http ([tls] mode = \"acme\" or \"self-signed\" serves HTTPS)");
    }
    let recorded = state.and_then(|s| s.tls.as_ref());
    let kind = match recorded.map(|t| t.served).or(cfg.tls.mode.cert_kind()) {
        Some(Kind::Acme) => Kind::Acme,
        _ => Kind::SelfSigned,
    };
    let served = match Served::load(kind, &cfg.state_dir) {
        Ok(Some(served)) => served,
        Ok(None) => {
            return bad(
                "tls",
                Verdict::Fail,
                format!("no {kind} certificate in {}", certs::path(kind, &cfg.state_dir).display()),
                "jupyter-agent run (it makes or orders one)",
            )
        }
        Err(e) => {
            return bad(
                "tls",
                Verdict::Fail,
                format!("{e:#}"),
                "remove the file; jupyter-agent run makes or orders a new one",
            )
        }
    };
    let info = &served.info;
    let next = recorded
        .and_then(|t| t.next_renewal)
        .map_or(String::new(), |n| format!(", next ACME attempt {}", n.format("%Y-%m-%d %H:%M UTC")));
    let what = format!(
        "{kind} certificate for {} from {}, valid until {}{next}, SHA-256 {}",
        info.subject(),
        info.issuer,
        info.not_after.format("%Y-%m-%d %H:%M UTC"),
        info.fingerprint
    );
    if info.not_after <= chrono::Utc::now() {
        return bad(
            "tls",
            Verdict::Fail,
            format!("{what}: expired"),
            "jupyter-agent status says why ACME fails; restart the agent to try at once",
        );
    }
    if let Some(e) = recorded.and_then(|t| t.acme_error.as_deref()) {
        // A trusted certificate not renewed: when it gives way, or that nothing replaces it.
        let until = match (kind, cfg.tls.fallback) {
            (Kind::Acme, crate::config::Fallback::SelfSigned) => format!(
                "; it could not be renewed: the self-signed fallback from {}",
                info.fallback_at().format("%Y-%m-%d %H:%M UTC")
            ),
            (Kind::Acme, crate::config::Fallback::Fail) => {
                "; it could not be renewed and [tls] fallback = \"fail\": it is served until it expires".into()
            }
            _ => String::new(),
        };
        return bad(
            "tls",
            Verdict::Warn,
            format!("{what}{until}; the last ACME attempt failed: {e}"),
            "see docs/tls.md#when-acme-fails: a public address, the challenge port open to 0.0.0.0/0",
        );
    }
    if kind == Kind::SelfSigned {
        return bad(
            "tls",
            Verdict::Warn,
            format!("{what}: browsers warn"),
            "participants compare the fingerprint; [tls] mode = \"acme\" on a public address gives a trusted one",
        );
    }
    let host = match (info.addresses.first(), info.names.first()) {
        (Some(ip), _) => certs::Host::Ip(*ip),
        (None, name) => certs::Host::Name(name.cloned().unwrap_or_default()),
    };
    match certs::roots(cfg.tls.ca_file.as_deref()).and_then(|roots| certs::verify(&served, &host, roots)) {
        Ok(()) => ok("tls", format!("{what}; the chain verifies")),
        Err(e) => bad(
            "tls",
            Verdict::Fail,
            format!("{what}; the chain does not verify: {e:#}"),
            "restart the agent to order a new certificate; check [tls] directory and ca_file",
        ),
    }
}

/// The published port from the instance's own address, as participants reach it.
async fn own_address_check(cfg: &Config, port: u16) -> Check {
    let addr = match cfg.container.publish.address {
        a if !a.is_unspecified() => Some(a),
        _ => crate::url::primary_address(),
    };
    let Some(addr) = addr else {
        return bad("reachable", Verdict::Warn, "this host has no primary address", "check the network configuration");
    };
    let target = SocketAddr::new(addr, port);
    let connected = tokio::task::spawn_blocking(move || TcpStream::connect_timeout(&target, Duration::from_secs(2)))
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
    if connected {
        ok("reachable", format!("{target} accepts connections"))
    } else {
        bad(
            "reachable",
            Verdict::Fail,
            format!("{target} refuses connections"),
            "publish on this address ([container] publish) and check the host firewall",
        )
    }
}

/// The image: whether the engine has it, where it comes from, and for a
/// private registry whether its login file is usable (docs/images.md).
async fn image_check(cfg: &Config, docker: Option<&bollard::Docker>) -> Check {
    use crate::config::{ImageSource, Pull, PullPolicy};
    use crate::image::{image_id, registry_host, short_id};
    let reference = &cfg.image.reference;
    let source = match &cfg.image.source {
        ImageSource::Pull(Pull { credentials: Some(path), .. }) => match crate::config::credentials::read(path) {
            Ok(login) => {
                format!("pulled from {} as {} (login in {})", registry_host(reference), login.username, path.display())
            }
            Err(e) => {
                return bad(
                    "image",
                    Verdict::Fail,
                    format!("{e:#}"),
                    format!(
                        "write {} as root, mode 600, with username = \"...\" and password = \"...\"",
                        path.display()
                    ),
                )
            }
        },
        // Never pulled: built or loaded on this host by hand (the local default's image).
        ImageSource::Pull(Pull { policy: PullPolicy::Never, .. }) => {
            "never pulled ([image] pull = \"never\": it must be on this host already)".to_string()
        }
        ImageSource::Pull(_) => format!("pulled from {}", registry_host(reference)),
        ImageSource::Archive(a) => match &a.sha256 {
            Some(sha) => format!("loaded from {} (sha256 {}...)", a.label(), &sha[..12]),
            None => format!("loaded from {}", a.label()),
        },
        ImageSource::Build(b) => format!("built from {}", b.context.display()),
    };
    let Some(docker) = docker else {
        return bad(
            "image",
            Verdict::Warn,
            format!("{reference}: {source}; not checked (no engine)"),
            "see the engine line",
        );
    };
    match image_id(docker, reference).await {
        Ok(Some(id)) => ok("image", format!("{reference} is here ({}), {source}", short_id(&id))),
        Ok(None) => bad(
            "image",
            Verdict::Warn,
            format!("{reference} is not on this host yet ({source})"),
            "jupyter-agent run prepares it",
        ),
        Err(e) => bad("image", Verdict::Fail, format!("{e:#}"), "see the engine line"),
    }
}

fn disk_check(cfg: &Config) -> Check {
    let dir = ["/var/lib/docker", cfg.state_dir.to_str().unwrap_or("/")]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("/");
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            let free = s.blocks_available() * s.fragment_size();
            let gib = free as f64 / (1u64 << 30) as f64;
            if gib >= 2.0 {
                ok("disk", format!("{gib:.1} GiB free under {dir}"))
            } else {
                bad(
                    "disk",
                    Verdict::Fail,
                    format!("only {gib:.1} GiB free under {dir}"),
                    "docker system prune, or a larger disk",
                )
            }
        }
        Err(e) => bad("disk", Verdict::Warn, format!("cannot tell the free space under {dir}: {e}"), "df -h"),
    }
}

/// Whether the ECS metadata service answers at `metadata_endpoint`; asked
/// only when `[jupyter] url_host = "auto"`, the one setting that reads it.
/// With the URL's host named, doctor sends nothing there either: off the
/// cloud (the local default, examples/local.toml) that address must see no
/// packet (docs/metadata.md#development-machines).
async fn metadata_check(cfg: &Config) -> Check {
    if let UrlHost::Explicit(host) = &cfg.jupyter.url_host {
        return ok(
            "metadata",
            format!(
                "not asked: [jupyter] url_host = \"{host}\" names the URL's host, and nothing else of the agent's reads the metadata service"
            ),
        );
    }
    let endpoint = &cfg.jupyter.metadata_endpoint;
    let client = match crate::http::client()
        .no_proxy()
        .connect_timeout(Duration::from_millis(300))
        .timeout(Duration::from_secs(1))
        .build()
    {
        Ok(c) => c,
        Err(e) => return bad("metadata", Verdict::Warn, e.to_string(), "-"),
    };
    let token = client
        .put(format!("{endpoint}/latest/api/token"))
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", "60")
        .send()
        .await;
    let mut req = client.get(format!("{endpoint}/latest/meta-data/instance-id"));
    if let Ok(resp) = token {
        if resp.status().is_success() {
            if let Ok(t) = resp.text().await {
                req = req.header("X-aliyun-ecs-metadata-token", t.trim());
            }
        }
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => ok(
            "metadata",
            format!("the ECS metadata service answers (instance {})", r.text().await.unwrap_or_default().trim()),
        ),
        Ok(r) => bad(
            "metadata",
            Verdict::Warn,
            format!("the metadata service answered {}", r.status().as_u16()),
            "set [jupyter] url_host to the public address",
        ),
        Err(_) => bad(
            "metadata",
            Verdict::Warn,
            format!("no ECS metadata service at {endpoint} (not on Alibaba Cloud?)"),
            "set [jupyter] url_host to the address participants use",
        ),
    }
}

/// A host account that has the uid of the container's user: a warning
/// (docs/threat-model.md#a-local-user-on-the-instance-not-root).
fn container_user_check(cfg: &Config) -> Option<Check> {
    let warning = crate::login::container_user_warning(&cfg.state_dir)?;
    Some(bad(
        "uid",
        Verdict::Warn,
        warning,
        "set [container] user to a uid no host account has, then jupyter-agent run",
    ))
}

/// One line per check: `ok    engine     ...`, `FAIL  container  ...; fix: ...`.
pub fn render(checks: &[Check]) -> String {
    checks
        .iter()
        .map(|c| {
            let verdict = match c.verdict {
                Verdict::Ok => "ok",
                Verdict::Warn => "warn",
                Verdict::Fail => "FAIL",
            };
            match &c.fix {
                Some(fix) => format!("{verdict:<5} {:<10} {}; fix: {fix}\n", c.name, c.detail),
                None => format!("{verdict:<5} {:<10} {}\n", c.name, c.detail),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
