//! The converge: the runbook from "a bare host" to "a Jupyter container is
//! running and its login URL is proven", one step after the other
//! (ARCHITECTURE.md, "The converge"), each recorded in the state as it
//! starts and ends and wrapped in one context label; each returns what the
//! next one needs. Then, for a long-running agent, the container is watched
//! ([`watch`]).

mod watch;

use anyhow::{Context, Result};
use bollard::Docker;
use chrono::Utc;
use tracing::{error, info, warn};

use jupyter_proto::redact::redact;
use jupyter_proto::report;

use crate::config::{Config, ContainerConfig, ImageSource, TokenChoice};
use crate::container::{self, Running, Spec};
use crate::docker_install;
use crate::front::Front;
use crate::image::{self, Prepared};
use crate::jupyter::{self, Proven};
use crate::login::{Delivery, Login};
use crate::state::{
    ContainerState, Failure, ImageState, JupyterState, Phase, Recorder, State, StateStore, TokenSource,
};
use crate::tls::Tls;
use crate::url::{self, Host};
use crate::workspace::Ensured;

/// Who writes the result file, in its first line.
const PROGRAM: &str = "jupyter-agent";

/// One step of the runbook: its name in the state, the phase it belongs to,
/// and the context its errors are given.
struct Step {
    name: &'static str,
    phase: Phase,
    context: &'static str,
}

const DRIVER: Step =
    Step { name: "driver", phase: Phase::PreparingGpu, context: "waiting for the host's NVIDIA driver" };
const TOOLKIT: Step =
    Step { name: "toolkit", phase: Phase::PreparingGpu, context: "looking for the NVIDIA Container Toolkit" };
const WORKSPACE: Step = Step { name: "workspace", phase: Phase::FetchingWorkspace, context: "fetching the workspace" };
const IMAGE: Step = Step { name: "image", phase: Phase::PreparingImage, context: "preparing the image" };
const NETWORK: Step =
    Step { name: "network", phase: Phase::StartingContainer, context: "preparing the containers' network" };
const CONTAINER: Step = Step { name: "container", phase: Phase::StartingContainer, context: "starting the container" };
const FRONT: Step = Step { name: "front", phase: Phase::Pending, context: "serving the front on [container] publish" };
const GPU: Step = Step { name: "gpu", phase: Phase::StartingContainer, context: "proving the container's GPUs" };
const TOKEN: Step = Step { name: "token", phase: Phase::WaitingForToken, context: "waiting for Jupyter's login token" };

/// The notes a URL carries when it is not the stable one (JupyterState::note).
const IGNORED_NOTE: &str = "this image's Jupyter server sets its own token and ignores the agent's (JUPYTER_TOKEN_FILE and JUPYTER_TOKEN): the login URL changes whenever the container starts again; remove the token setting from the image, or set [jupyter] token = \"image\" to accept this";
const NO_TOKEN_NOTE: &str = "WARNING: this Jupyter server checks no token ([jupyter] token = \"none\"): anyone who can reach its port can log in and run code";
const NONE_BUT_TOKEN_NOTE: &str = "[jupyter] token = \"none\", but the server checks a token: the URL carries the token it printed, which changes whenever the container starts again";

/// One agent's converge and watch, with the state it keeps.
pub struct Converger<'a> {
    cfg: &'a Config,
    rec: Recorder<'a>,
    /// The engine, once it answered.
    docker: Option<Docker>,
    /// The container the converge started (the watch follows it).
    container: Option<Running>,
    /// The token the agent gave the server, when it gave one.
    login: Option<Login>,
    /// The URL's host, once resolved.
    host: Option<Host>,
    /// Whether the agent serves its front (not with `run --once`).
    fronted: bool,
    /// The converge's state as it changes, for the front's progress page.
    watched: Option<tokio::sync::watch::Receiver<State>>,
    /// The front on `[container] publish`, once its step ran.
    front: Option<std::sync::Arc<Front>>,
    /// The certificate and its renewal, with `[tls]` on.
    tls: Option<Tls>,
    /// The URL's note apart from the certificate's (see [`Converger::note`]).
    token_note: Option<String>,
    /// The participant's pages the front serves (docs/pages.md), when the
    /// agent takes actions.
    pages: Option<std::sync::Arc<crate::front::pages::Pages>>,
    /// The GPUs the `gpu` step found in the container, by name.
    gpus: Vec<String>,
}

/// What the token step came to.
enum Token {
    /// The login URL, proven.
    Proven(Proven),
    /// The server did not take the token from `JUPYTER_TOKEN_FILE`: the
    /// container is started again with `JUPYTER_TOKEN`.
    FileIgnored,
}

impl Token {
    fn proven(self) -> Result<Proven> {
        match self {
            Token::Proven(proven) => Ok(proven),
            Token::FileIgnored => anyhow::bail!("the server ignored JUPYTER_TOKEN_FILE"),
        }
    }
}

/// What is published for whoever waits: the state and the result file.
enum Outcome {
    /// Ready, with the proven login (the URL's note is the converger's).
    Ready {
        url: String,
        proven: Proven,
    },
    /// The URL's note changed (a new certificate): the same URL again.
    Renote,
    Failed(Failure),
}

impl<'a> Converger<'a> {
    /// Starts a fresh state; `watchers` receives every change (the local API,
    /// the front's progress page). With `fronted`, the agent serves its
    /// front on `[container] publish` and Jupyter is published on loopback
    /// (docs/front.md). `Err` when the state file cannot be written.
    pub fn new(
        cfg: &'a Config,
        store: &'a StateStore,
        watchers: Option<tokio::sync::watch::Sender<State>>,
        fronted: bool,
    ) -> Result<Self> {
        let watched = watchers.as_ref().map(|tx| tx.subscribe());
        let mut rec = Recorder::new(store, watchers)
            .with_context(|| format!("writing the state file {}", store.path().display()))?;
        // Whose document this is: readers of the file tell this run's from an ended one's.
        rec.state.run = Some(crate::state::AgentRun { pid: std::process::id(), once: !fronted });
        // A hand raised before the agent restarted stays raised (crate::actions).
        rec.state.hand = crate::actions::load_hand(&cfg.state_dir, Utc::now());
        rec.save();
        // The run's one redactor (crate::secrets) knows the file's secrets
        // before anything is logged or recorded.
        crate::secrets::add(cfg.secrets());
        if let ImageSource::Pull(crate::config::Pull { credentials: Some(path), .. }) = &cfg.image.source {
            // Checked before anything changes; a file it cannot read fails the pull.
            if let Ok(c) = crate::config::credentials::read(path) {
                crate::secrets::add([c.password]);
            }
        }
        Ok(Converger {
            cfg,
            rec,
            docker: None,
            container: None,
            login: None,
            host: None,
            fronted,
            watched,
            front: None,
            tls: None,
            token_note: None,
            pages: None,
            gpus: Vec::new(),
        })
    }

    /// Serves the participant's pages (docs/pages.md) on the front, taking
    /// the actions asked there through `actions`.
    pub fn with_pages(mut self, actions: crate::actions::Actions) -> Self {
        let pages = crate::front::pages::Pages::new(self.cfg, Some(actions));
        // Known before the container step, so that a participant whose
        // setup fails early still reaches the pages (download, reset).
        let known = match &self.cfg.jupyter.token {
            TokenChoice::Generate => crate::login::kept(&self.cfg.state_dir),
            TokenChoice::File(path) => crate::login::read_given(path).ok(),
            _ => None,
        };
        if let Some(token) = known {
            pages.set_token(&token);
        }
        self.pages = Some(std::sync::Arc::new(pages));
        self
    }

    /// The login token the pages accept: the one given to the server, or
    /// the one proven.
    fn pages_token(&self, token: &str) {
        if let Some(pages) = &self.pages {
            pages.set_token(token);
        }
    }

    /// Converges the host. On failure the state is `failed` with the step,
    /// the cause, the container's exit code and log tail, and the error is
    /// returned too.
    pub async fn converge(&mut self) -> Result<()> {
        let mut result = self.steps().await;
        if let (Ok(()), Some(unsaved)) = (&result, self.rec.unsaved()) {
            // Ready, but nobody could have followed it there: say so loudly.
            result = Err(anyhow::anyhow!("{unsaved}; status, wait and jupyter-bootstrap cannot follow this agent"));
        }
        if let Err(err) = &result {
            self.record_failure("converge", format!("{err:#}")).await;
        }
        result
    }

    /// The runbook. A step that fails is recorded as the failed one by
    /// [`Converger::converge`], with the error's whole chain.
    async fn steps(&mut self) -> Result<()> {
        let cfg = self.cfg;
        self.serve_front(false).await?;
        // Only root reaches the metadata service, from the start when it can
        // be done now (the network step makes sure of it).
        crate::network::apply_early(cfg.container.metadata_access, cfg.jupyter.metadata_address()).await;
        let docker = docker_install::ensure_engine(cfg, &mut docker_install::RecordProgress::docker(&mut self.rec))
            .await
            .context("connecting to the Docker engine")?;
        self.docker = Some(docker.clone());
        let docker = match cfg.container.gpus {
            Some(_) => self.prepare_gpu_host(docker).await?,
            None => docker,
        };
        crate::docker_install::git::ensure_for_workspace(cfg, &mut self.rec).await?;
        let workspace = match &cfg.workspace {
            Some(w) => Some(self.step(WORKSPACE, async |_| fetch_workspace(cfg, w).await).await?),
            None => None,
        };
        let image = self.step(IMAGE, async |rec| prepare_image(&docker, cfg, workspace.as_ref(), rec).await).await?;
        self.step(NETWORK, async |_| prepare_network(&docker, cfg).await).await?;
        let mut login = self.login_for(&image)?;
        let spec = self.container_spec(&image, workspace.map(|w| w.identity), login.as_ref())?;
        let mut running = self.start(&docker, &spec, &login).await?;
        // When an earlier container held the port, it is free now.
        self.serve_front(true).await?;
        let proven = match self.prove(&running).await? {
            Token::Proven(proven) => proven,
            // An older server: the container again, given JUPYTER_TOKEN.
            Token::FileIgnored => {
                login = crate::login::env_only(login, &cfg.state_dir, &image.id)?;
                running = self.start(&docker, &spec, &login).await?;
                self.prove(&running).await?.proven()?
            }
        };
        self.ready(proven).await
    }

    /// Runs one step: begins it in the state, runs `work` (which may report
    /// progress on the recorder), gives its error the step's context, and
    /// ends it with the detail `work` returned. A failed step stays the
    /// running one until [`Converger::converge`] records the failure on it.
    async fn step<T>(
        &mut self,
        step: Step,
        work: impl AsyncFnOnce(&mut Recorder<'a>) -> Result<(T, String)>,
    ) -> Result<T> {
        self.rec.begin(step.name, step.phase);
        let (value, detail) = work(&mut self.rec).await.context(step.context)?;
        self.rec.done(step.name, detail);
        Ok(value)
    }

    /// With `[container] gpus`, before anything else is prepared: the
    /// `driver` step waits for the host's NVIDIA driver (following
    /// Alibaba's auto-install), the `toolkit` step looks for the NVIDIA
    /// Container Toolkit and, when the agent manages this host's engine,
    /// installs it and restarts dockerd (docs/gpu.md). The engine, again
    /// once it was restarted.
    async fn prepare_gpu_host(&mut self, docker: Docker) -> Result<Docker> {
        let cfg = self.cfg;
        self.step(DRIVER, async |rec| {
            let paths = crate::gpu::driver::DriverPaths::from(&cfg.gpu);
            let ready =
                crate::gpu::driver::wait(cfg.gpu.driver_timeout, &paths, |line| rec.progress(line, true)).await?;
            info!(version = %ready.version, gpus = %ready.gpus.join(", "), "the NVIDIA driver answers");
            Ok(((), ready.detail()))
        })
        .await?;
        let install = self.step(TOOLKIT, async |_| crate::gpu::toolkit::look(cfg).await).await?;
        if !install {
            return Ok(docker);
        }
        crate::gpu::toolkit::ensure(
            cfg,
            &mut docker_install::RecordProgress { rec: &mut self.rec, phase: Phase::PreparingGpu },
        )
        .await
        .context("installing the NVIDIA Container Toolkit")?;
        // dockerd was restarted: a new connection to it.
        let docker = crate::engine::connect(&cfg.docker).await.context("connecting to the restarted Docker engine")?;
        self.docker = Some(docker.clone());
        Ok(docker)
    }

    /// The container the configuration asks for, from this image, with
    /// the workspace copy it mounts (`workspace`: its identity). Behind the
    /// front, Jupyter is published on the host's loopback only.
    fn container_spec(&mut self, image: &Prepared, workspace: Option<String>, login: Option<&Login>) -> Result<Spec> {
        let cfg = self.cfg;
        let container = ContainerConfig { publish: cfg.jupyter_publish(self.fronted), ..cfg.container.clone() };
        let spec = Spec::new(&container, &cfg.image.reference, &image.id, workspace.as_deref())
            .context("preparing the container")?;
        // The env file's values and the login token are secrets too, from
        // now on, beside those the run's redactor already holds.
        crate::secrets::add(spec.env_values().chain(login.iter().map(|l| l.token.as_str())));
        Ok(spec)
    }

    /// The token the agent gives the server, when `[jupyter] token` asks for one.
    fn login_for(&self, image: &Prepared) -> Result<Option<Login>> {
        let cfg = self.cfg;
        crate::login::for_container(
            &cfg.jupyter.token,
            &cfg.state_dir,
            cfg.container.user.as_deref(),
            &image.id,
            image.user.as_deref(),
        )
        .context("choosing the login token")
    }

    /// The `container` step: the container as `spec` says, given `login`;
    /// the watch and the token step follow this one from now on.
    async fn start(&mut self, docker: &Docker, spec: &Spec, login: &Option<Login>) -> Result<Running> {
        let cfg = self.cfg;
        self.login = login.clone();
        if let Some(login) = login {
            self.pages_token(&login.token);
        }
        let running = self.step(CONTAINER, async |rec| start_container(docker, cfg, spec, login, rec).await).await?;
        self.container = Some(running.clone());
        self.prove_gpus(docker, &running).await?;
        Ok(running)
    }

    /// The `gpu` step, with `[container] gpus`: `nvidia-smi -L` inside the
    /// running container lists the GPUs it was given, before its token is
    /// called ready (docs/gpu.md#the-gpu-step).
    async fn prove_gpus(&mut self, docker: &Docker, running: &Running) -> Result<()> {
        self.gpus.clear();
        if self.cfg.container.gpus.is_none() {
            return Ok(());
        }
        let listed = self
            .step(GPU, async |_| {
                let listed = crate::gpu::list(docker, &running.id, crate::gpu::LIST_TIMEOUT).await?;
                let detail = listed.detail();
                Ok((listed, detail))
            })
            .await?;
        info!(gpus = %listed.names.join(", "), "the container's GPUs");
        self.gpus = listed.names;
        Ok(())
    }

    /// The `front` step, first, once per run of the agent (not with `run
    /// --once`): the listener on `[container] publish` that shows the
    /// progress until Jupyter is proven, then forwards to it; with `[tls]`
    /// on, HTTPS with its certificate (docs/front.md, docs/tls.md). When the
    /// address is in use (a container an older agent, or `run --once`,
    /// published there), it is taken again after the container step, unless
    /// that was the `last_chance`.
    async fn serve_front(&mut self, last_chance: bool) -> Result<()> {
        if self.front.is_some() || !self.fronted {
            return Ok(());
        }
        let cfg = self.cfg;
        let watched = self.watched.clone();
        let host = match cfg.tls.is_on() {
            true => Some(self.host().await),
            false => None,
        };
        let listen = std::net::SocketAddr::new(cfg.container.publish.address, cfg.container.publish.port);
        let bound = self
            .step(FRONT, async |rec| {
                let bound = match host {
                    Some(host) => Tls::start(cfg, &host, watched).await.map(|tls| {
                        rec.state.tls = Some(tls.state.clone());
                        (tls.front().clone(), tls.summary(), Some(tls))
                    }),
                    None => Front::bind(listen, None, watched).await.map(|front| {
                        let summary = format!("HTTP on {}", front.local);
                        (std::sync::Arc::new(front), summary, None)
                    }),
                };
                match bound {
                    Ok((front, summary, tls)) => Ok((Some((front, tls)), summary)),
                    Err(e) if !last_chance && in_use(&e) => {
                        warn!("{e:#}; taking it once the container step has run");
                        Ok((None, format!("{listen} is in use: taken once the container step has run")))
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        if let Some((front, tls)) = bound {
            if let Some(pages) = &self.pages {
                front.set_pages(pages.clone());
            }
            self.front = Some(front);
            self.tls = tls;
        }
        Ok(())
    }

    /// The `token` step: follows the container's log until its token is
    /// proven, directly and, with TLS, through the HTTPS listener.
    async fn prove(&mut self, running: &Running) -> Result<Token> {
        let cfg = self.cfg;
        let docker = self.docker.clone().expect("the engine answered");
        let login = self.login.clone();
        let (front, tls) = (self.front.clone(), self.tls.as_ref());
        self.rec.begin(TOKEN.name, TOKEN.phase);
        let proven = async {
            let proven = jupyter::wait_for_token(
                &docker,
                &running.id,
                running.started_at.as_deref(),
                running.endpoint,
                cfg.jupyter.ready_timeout,
                cfg.jupyter.token == TokenChoice::None,
                login.as_ref().map(|l| l.token.as_str()),
            )
            .await?;
            if let Some(front) = &front {
                front.set_backend(Some(proven.endpoint.socket_addr()));
                match tls {
                    Some(tls) => tls.prove(&proven.path, &proven.token).await,
                    None => front.prove(&proven.path, &proven.token, None).await,
                }
                .context("proving the login through the front")?;
            }
            anyhow::Ok(proven)
        }
        .await
        .context(TOKEN.context)?;
        // A token the image's server chose is a secret as much as the agent's.
        crate::secrets::add([proven.token.as_str()]);
        self.pages_token(&proven.token);
        if let Some(c) = self.container.as_mut().filter(|c| c.endpoint != proven.endpoint) {
            info!(port = proven.endpoint.port, "the container started again during the token step, on another port");
            c.endpoint = proven.endpoint;
            self.rec.state.container = Some(container_state(c));
        }
        let delivered_as_file = matches!(login, Some(Login { delivery: Delivery::File { .. }, .. }));
        if proven.source != TokenSource::Agent && delivered_as_file {
            warn!("the image's server ignored JUPYTER_TOKEN_FILE (Notebook before 6.1, jupyter_server before 1.6?): giving it JUPYTER_TOKEN instead");
            self.rec.done(TOKEN.name, "the server ignored JUPYTER_TOKEN_FILE; trying JUPYTER_TOKEN".into());
            return Ok(Token::FileIgnored);
        }
        let detail = match proven.source {
            TokenSource::Agent => "the agent's token, proven against /api/status".to_string(),
            TokenSource::Server => "the server checks no token ([jupyter] token = \"none\")".to_string(),
            other => format!("from the {other}, proven against /api/status"),
        };
        self.rec.done(TOKEN.name, detail);
        Ok(Token::Proven(proven))
    }

    /// The proven login is the URL: published, with what a participant
    /// must know of it.
    async fn ready(&mut self, proven: Proven) -> Result<()> {
        self.token_note = match (&self.login, proven.source) {
            (Some(_), TokenSource::Agent) => None,
            (Some(_), _) => {
                warn!("the image's server ignores JUPYTER_TOKEN_FILE and JUPYTER_TOKEN: its login URL changes whenever the container starts again");
                Some(IGNORED_NOTE.to_string())
            }
            (None, TokenSource::Server) => Some(NO_TOKEN_NOTE.to_string()),
            (None, _) if self.cfg.jupyter.token == TokenChoice::None => Some(NONE_BUT_TOKEN_NOTE.to_string()),
            (None, _) => None,
        };
        let host = self.host().await;
        let port = self.front.as_ref().map_or(proven.endpoint.port, |f| f.local.port());
        let url = url::login_url(self.tls.is_some(), &host, port, &proven.path, &proven.token);
        self.publish(Outcome::Ready { url, proven })?;
        info!("Jupyter is ready (jupyter-agent url prints the URL with its token)");
        Ok(())
    }

    /// Publishes an outcome: the result file first (whoever sees the
    /// published state may read it at once), then the state. The one place
    /// that writes either.
    fn publish(&mut self, outcome: Outcome) -> Result<()> {
        let now = Utc::now();
        let note = self.note();
        let text = match &outcome {
            Outcome::Ready { url, .. } => Some(report::ready_text(PROGRAM, url, note.as_deref(), &self.gpus, now)),
            Outcome::Renote => self
                .rec
                .state
                .jupyter
                .as_ref()
                .map(|j| report::ready_text(PROGRAM, &j.url, note.as_deref(), &j.gpus, now)),
            Outcome::Failed(failure) => Some(report::failed_text(PROGRAM, failure, now)),
        };
        let written = match (&self.cfg.result_file, text) {
            (Some(path), Some(text)) => report::write_result_file(path, &text).map_err(anyhow::Error::msg),
            _ => Ok(()),
        };
        match outcome {
            Outcome::Ready { url, proven } => {
                // A ready URL nobody can read is no URL: that fails the converge.
                written?;
                info!(url = %redact(&url), "publishing the login URL");
                self.rec.state.ready(JupyterState {
                    url,
                    token: proven.token,
                    token_source: proven.source,
                    token_seen_at: proven.seen_at,
                    proven_at: proven.proven_at,
                    note,
                    gpus: self.gpus.clone(),
                });
            }
            Outcome::Renote => {
                if let Err(e) = written {
                    warn!("{e:#}");
                }
                if let Some(j) = self.rec.state.jupyter.as_mut() {
                    j.note = note;
                }
            }
            Outcome::Failed(failure) => {
                if let Err(e) = written {
                    warn!("{e:#}");
                }
                self.rec.state.fail(failure);
            }
        }
        self.rec.save();
        Ok(())
    }

    /// Records a failure of the running step (or of `fallback_step` when
    /// none runs), with the container's exit code and log tail.
    async fn record_failure(&mut self, fallback_step: &str, cause: String) -> Failure {
        if let Some(front) = &self.front {
            // The front shows the failed step instead.
            front.set_backend(None);
        }
        let (mut exit_code, mut log_tail) = (None, Vec::new());
        if let (Some(docker), Some(c)) = (&self.docker, &self.container) {
            exit_code = jupyter::exit_code(docker, &c.id).await;
            log_tail = jupyter::log_tail(docker, &c.id).await;
        }
        let failure = self.rec.failure(fallback_step, cause, exit_code, log_tail);
        error!(step = %failure.step, exit_code = ?exit_code, "converge failed: {}", failure.cause);
        for line in &failure.log_tail {
            error!(step = %failure.step, "container log: {line}");
        }
        let _ = self.publish(Outcome::Failed(failure.clone()));
        failure
    }

    /// What a participant must know about the URL: the token's note, and
    /// the certificate's when browsers do not trust it.
    fn note(&self) -> Option<String> {
        crate::tls::with_note(self.token_note.clone(), self.tls.as_ref())
    }

    /// The URL's host, resolved once per run of the agent.
    async fn host(&mut self) -> Host {
        if self.host.is_none() {
            self.host = Some(url::resolve_host(&self.cfg.jupyter.url_host, &self.cfg.jupyter.metadata_endpoint).await);
        }
        self.host.clone().expect("set above")
    }

    /// Records that the agent was stopped (SIGTERM) in the middle of a step.
    pub fn record_stop(&mut self) {
        let step = self.rec.state.running_step().map(|s| s.name.clone());
        warn!(step = ?step, "stopped before the step ended; the next start of the agent converges again");
        self.rec.state.stop("stopped by SIGTERM before this step ended; the agent converges again when it starts");
        self.rec.save();
    }
}

/// The address is taken by another socket.
fn in_use(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse))
}

/// The `workspace` step: the materials fetched once, never overwritten.
async fn fetch_workspace(cfg: &Config, w: &crate::config::WorkspaceConfig) -> Result<(Ensured, String)> {
    let ensured = crate::workspace::ensure(w, &cfg.state_dir).await?;
    let detail = ensured.detail.clone();
    Ok((ensured, detail))
}

/// The `image` step: the image present by its source, its progress in the
/// state. An image built from the workspace is built from the materials as
/// fetched (the workspace's pristine copy), not from the participant's copy.
async fn prepare_image(
    docker: &Docker,
    cfg: &Config,
    workspace: Option<&Ensured>,
    rec: &mut Recorder<'_>,
) -> Result<(Prepared, String)> {
    let mut image_cfg = cfg.image.clone();
    let pristine = workspace.and_then(|w| w.pristine.clone());
    if let (ImageSource::Build(build), Some(pristine), Some(w)) = (&mut image_cfg.source, pristine, &cfg.workspace) {
        if build.context == w.path {
            build.context = pristine;
        }
    }
    rec.state.image = Some(ImageState {
        reference: cfg.image.reference.clone(),
        source: cfg.image.source.kind(),
        ..Default::default()
    });
    let prepared = image::ensure(docker, &image_cfg, &cfg.state_dir, &mut |p| image::record(rec, p)).await?;
    if let Some(image) = rec.state.image.as_mut() {
        image.id = Some(prepared.id.clone());
    }
    let detail = prepared.detail.clone();
    Ok((prepared, detail))
}

/// The `network` step: the containers' network, and the metadata service
/// blocked or allowed from it and from local users other than root
/// (docs/threat-model.md).
async fn prepare_network(docker: &Docker, cfg: &Config) -> Result<((), String)> {
    crate::network::ensure(docker).await?;
    let access = crate::network::apply(cfg.container.metadata_access, cfg.jupyter.metadata_address()).await?;
    Ok(((), format!("{}; metadata service: {access}", crate::network::NETWORK)))
}

/// The `container` step: the container as `spec` says, with the login,
/// recorded in the state.
async fn start_container(
    docker: &Docker,
    cfg: &Config,
    spec: &Spec,
    login: &Option<Login>,
    rec: &mut Recorder<'_>,
) -> Result<(Running, String)> {
    let spec = match login {
        Some(l) => {
            crate::login::write_mount_source(&cfg.state_dir, l)?;
            spec.clone().with_login(l, &crate::login::mount_source(&cfg.state_dir))
        }
        None => spec.clone(),
    };
    let running = container::ensure(docker, &spec).await?;
    rec.state.container = Some(container_state(&running));
    let action = running.action.clone();
    Ok((running, action))
}

/// What the state says of a running container.
fn container_state(running: &Running) -> ContainerState {
    ContainerState {
        id: running.id.clone(),
        name: running.name.clone(),
        config_hash: running.hash.clone(),
        started_at: running.started_at.clone(),
        host_address: running.endpoint.address,
        host_port: running.endpoint.port,
    }
}
