//! The front (docs/front.md): the one listener on `[container] publish`,
//! plain HTTP with `[tls]` off and HTTPS otherwise, in front of Jupyter on
//! the host's loopback. It speaks HTTP/1.1 (hyper) and forwards requests
//! and upgrades ([`proxy`]); it is bounded like a hardened server
//! ([`limits`]); until Jupyter's login is proven it shows the setup's
//! progress instead ([`progress`]); it logs one line per request.

pub mod limits;
pub mod pages;
mod progress;
mod proxy;
pub mod tls;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info};

use crate::state::State;
use limits::{Activity, Admission, Registry, Ticket, Watched};
use progress::Progress;
pub use tls::Challenges;

/// What a response's body is: Jupyter's, streamed, or the front's own.
type Body = Either<Incoming, OwnBody>;

/// The front's own answers' body: a page, or a download streamed by the
/// pages ([`pages`]).
pub type OwnBody = BoxBody<Bytes, std::io::Error>;

/// A body of `bytes`.
fn own_body(bytes: Bytes) -> OwnBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// What a listener answers.
enum Role {
    /// Jupyter, through its pool of connections, or the progress page
    /// while it is not ready.
    Jupyter(proxy::Jupyter),
    /// The ACME challenges only (a port of their own while an order is open).
    Challenge(Arc<Challenges>),
}

/// What every connection of one listener shares.
struct Shared {
    role: Role,
    /// HTTPS when set.
    tls: Option<tls::Side>,
    /// Where Jupyter answers, once its login is proven.
    backend: watch::Sender<Option<SocketAddr>>,
    /// The converge's state, for the progress page.
    state: Option<watch::Receiver<State>>,
    /// The participant's pages, once the agent gave them (not with `run --once`).
    pages: OnceLock<Arc<pages::Pages>>,
}

impl Shared {
    fn new(role: Role, tls: Option<tls::Side>, state: Option<watch::Receiver<State>>) -> Arc<Shared> {
        Arc::new(Shared { role, tls, backend: watch::channel(None).0, state, pages: OnceLock::new() })
    }
}

/// The front, listening until dropped.
pub struct Front {
    shared: Arc<Shared>,
    /// Where it listens (the port the system chose for port 0).
    pub local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Front {
    /// Listens on `addr`: HTTPS serving `tls`'s certificate (until
    /// [`Front::set_certificate`]) and answering its challenges, or plain
    /// HTTP without. Until [`Front::set_backend`] every request gets the
    /// progress page, made from `state`.
    pub async fn bind(
        addr: SocketAddr,
        tls: Option<(Arc<CertifiedKey>, Arc<Challenges>)>,
        state: Option<watch::Receiver<State>>,
    ) -> Result<Front> {
        let what = if tls.is_some() { "HTTPS" } else { "HTTP" };
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr} for {what} ([container] publish)"))?;
        let local = listener.local_addr()?;
        let tls = match tls {
            Some((first, challenges)) => {
                let current = tls::Current::new(first);
                Some(tls::Side { config: tls::server_config(current.clone())?, current, challenges })
            }
            None => None,
        };
        let shared = Shared::new(Role::Jupyter(proxy::Jupyter::new()), tls, state);
        let task = tokio::spawn(serve(listener, shared.clone(), what));
        Ok(Front { shared, local, task })
    }

    /// New handshakes get `key`; open connections keep theirs.
    pub fn set_certificate(&self, key: Arc<CertifiedKey>) {
        if let Some(tls) = &self.shared.tls {
            tls.current.set(key);
        }
    }

    /// Where Jupyter answers now (its published port changes when the
    /// container starts again); `None` while it is not ready, when the
    /// front shows the progress page.
    pub fn set_backend(&self, addr: Option<SocketAddr>) {
        self.shared.backend.send_replace(addr);
    }

    /// Serves the participant's pages under [`pages::PREFIX`] from now on
    /// (once: later calls change nothing).
    pub fn set_pages(&self, pages: Arc<pages::Pages>) {
        let _ = self.shared.pages.set(pages);
    }

    pub fn is_https(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// The address a client on this host reaches the listener at.
    pub fn reachable(&self) -> SocketAddr {
        let mut addr = self.local;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        addr
    }

    /// Proves the path through the front: `/api/status` answering 200 to
    /// `token`, over HTTPS with `tls` (a client that checks the certificate).
    pub async fn prove(&self, path: &str, token: &str, tls: Option<rustls::ClientConfig>) -> Result<()> {
        let mut client = crate::http::to_container(Duration::from_secs(10));
        let scheme = match tls {
            Some(config) => {
                client = client.tls_backend_preconfigured(config);
                "https"
            }
            None => "http",
        };
        let client = client.build().context("building the front's proof client")?;
        let addr = self.reachable();
        let url = format!("{scheme}://{addr}{}api/status", crate::token::base_url(path));
        let mut request = client.get(&url);
        if !token.is_empty() {
            request = request.header("Authorization", format!("token {token}"));
        }
        let response = request.send().await.map_err(|e| anyhow!("through the front on {addr}: {}", e.without_url()))?;
        if !response.status().is_success() {
            bail!("through the front on {addr}, /api/status answered {}", response.status());
        }
        Ok(())
    }
}

/// A listener for the challenges alone, while an order is open: HTTP-01's
/// plain HTTP answers, or TLS-ALPN-01's handshakes; bounded as the front
/// is. Stops when dropped.
pub struct ChallengeListener(tokio::task::JoinHandle<()>);

impl Drop for ChallengeListener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl ChallengeListener {
    pub async fn http01(port: u16, challenges: Arc<Challenges>) -> Result<ChallengeListener> {
        let listener = bind_any(port).await?;
        let shared = Shared::new(Role::Challenge(challenges), None, None);
        Ok(ChallengeListener(tokio::spawn(serve(listener, shared, "HTTP-01"))))
    }

    pub async fn tls_alpn01(port: u16, challenges: Arc<Challenges>) -> Result<ChallengeListener> {
        let listener = bind_any(port).await?;
        // The real certificate is never asked for here: only acme-tls/1 hellos are answered.
        let placeholder = challenges.alpn().ok_or_else(|| anyhow!("no TLS-ALPN-01 certificate set"))?;
        let current = tls::Current::new(placeholder);
        let side = tls::Side { config: tls::server_config(current.clone())?, current, challenges: challenges.clone() };
        let shared = Shared::new(Role::Challenge(challenges), Some(side), None);
        Ok(ChallengeListener(tokio::spawn(serve(listener, shared, "TLS-ALPN-01"))))
    }
}

async fn bind_any(port: u16) -> Result<TcpListener> {
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    TcpListener::bind(addr).await.with_context(|| format!("listening on {addr} for the ACME challenge"))
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, what: &'static str) {
    let registry = Arc::new(Registry::default());
    limits::accept_loop(listener, registry, what, move |tcp, peer, admission| {
        let (ticket, busy) = match admission {
            Admission::Open(ticket) => (ticket, false),
            Admission::Busy(ticket) => (ticket, true),
            Admission::Refused(_) => return,
        };
        let conn = Arc::new(Conn {
            shared: shared.clone(),
            client: peer.ip(),
            busy,
            ticket,
            activity: Activity::new(),
            answering: Default::default(),
            upgrade: Mutex::new(None),
        });
        tokio::spawn(async move {
            let ended = tokio::select! {
                served = conn.clone().run(tcp) => match served {
                    Ok(()) => return,
                    Err(e) => format!("{e:#}"),
                },
                why = conn.activity.expired() => why.to_string(),
                () = conn.ticket.evicted() => "dropped to make room".to_string(),
            };
            // The client's doing: never above debug.
            debug!(client = %conn.client, "a {what} connection ended: {ended}");
        });
    })
    .await
}

/// One client connection.
struct Conn {
    shared: Arc<Shared>,
    client: IpAddr,
    /// Over its address's cap: every request gets the busy answer.
    busy: bool,
    ticket: Ticket,
    activity: Arc<Activity>,
    /// Requests in the service, waiting for their answer's head.
    answering: std::sync::atomic::AtomicUsize,
    /// A WebSocket both sides agreed to, once the HTTP side hands it over.
    upgrade: Mutex<Option<proxy::Upgrade>>,
}

impl Conn {
    async fn run(self: Arc<Self>, tcp: TcpStream) -> Result<()> {
        let Some(side) = &self.shared.tls else {
            return self.http(Watched::new(tcp, self.activity.clone()), false).await;
        };
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 0 {
            return Ok(());
        }
        // 0x16: a TLS handshake record. Anything else is someone typing http://.
        if first[0] != 0x16 {
            return self.http(Watched::new(tcp, self.activity.clone()), true).await;
        }
        match tls::handshake(Watched::new(tcp, self.activity.clone()), side).await? {
            tls::Handshake::Done(stream) => self.http(stream, false).await,
            tls::Handshake::Challenge => Ok(()),
        }
    }

    /// HTTP/1.1 on `io` until the client or the limits end it; then the
    /// WebSocket, if a request was upgraded. A kept-alive connection quiet
    /// for [`limits::PARK_AFTER`] is parked: hyper's buffers and the
    /// connection to Jupyter are let go until the client sends again.
    async fn http<IO>(self: &Arc<Self>, io: IO, plain_on_https: bool) -> Result<()>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let keep_alive = !self.busy && !plain_on_https;
        let mut io = limits::Prefixed::new(io);
        loop {
            let conn = self.clone();
            let service = hyper::service::service_fn(move |req| {
                let conn = conn.clone();
                Box::pin(async move { Ok::<_, Infallible>(conn.answer(req, plain_on_https).await) })
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            // The deadlines are the connection's own (limits::Activity), one for all.
            builder.header_read_timeout(None).keep_alive(keep_alive).max_buf_size(limits::MAX_HEAD_BUFFER);
            let mut http = builder.serve_connection(TokioIo::new(io), service);
            let mut parking = false;
            loop {
                tokio::select! {
                    done = std::future::poll_fn(|cx| http.poll_without_shutdown(cx)) => {
                        done?;
                        break;
                    }
                    () = self.park_due(), if keep_alive && !parking => {
                        // Ends the connection once its request (if any) is answered.
                        std::pin::Pin::new(&mut http).graceful_shutdown();
                        parking = true;
                    }
                }
            }
            let parts = http.into_parts();
            io = parts.io.into_inner();
            io.unread(parts.read_buf);
            let upgrade = self.upgrade.lock().expect("not poisoned").take();
            if let Some(up) = upgrade {
                let jupyter = up.jupyter.await?;
                tokio::io::copy_bidirectional(&mut io, &mut TokioIo::new(jupyter)).await?;
                return Ok(());
            }
            if !parking {
                // The client closed, or asked for no keep-alive.
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut io).await;
                return Ok(());
            }
            limits::parked();
            if !io.has_unread() {
                // Parked: a few bytes of state wait for the client's next request.
                let mut first = [0u8; 64];
                let n = tokio::io::AsyncReadExt::read(&mut io, &mut first).await?;
                if n == 0 {
                    return Ok(());
                }
                io.unread(Bytes::copy_from_slice(&first[..n]));
            }
        }
    }

    /// Resolves once the connection has been quiet for
    /// [`limits::PARK_AFTER`] with no request waiting for Jupyter's answer
    /// (parking then would end that answer with `Connection: close`, a
    /// WebSocket's among them).
    async fn park_due(&self) {
        loop {
            self.activity.quiet_for(limits::PARK_AFTER).await;
            if self.answering.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep(limits::PARK_AFTER).await;
        }
    }

    /// One request: answered, then logged (never its query).
    async fn answer(self: &Arc<Self>, req: Request<Incoming>, plain_on_https: bool) -> Response<Body> {
        self.activity.requested();
        self.ticket.requested();
        self.answering.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _answered = Answered(&self.answering);
        let started = std::time::Instant::now();
        let method = req.method().clone();
        let path = jupyter_proto::redact::bound(req.uri().path(), 200);
        let response = self.route(req, plain_on_https).await;
        info!(
            client = %self.client,
            method = %method,
            path = %path,
            status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "request"
        );
        response
    }

    async fn route(self: &Arc<Self>, req: Request<Incoming>, plain_on_https: bool) -> Response<Body> {
        let jupyter = match &self.shared.role {
            Role::Challenge(challenges) => return http01_answer(&req, challenges),
            Role::Jupyter(jupyter) => jupyter,
        };
        if plain_on_https {
            return redirect_to_https(&req);
        }
        if self.busy {
            return busy();
        }
        if req.uri().path() == progress::PATH {
            let json = serde_json::to_string(&self.progress()).expect("serialisable");
            return own(StatusCode::OK, "application/json", json);
        }
        let secure = self.shared.tls.is_some();
        let pages = self.shared.pages.get();
        if let Some(pages) = pages {
            let path = req.uri().path();
            if path.starts_with(pages::PREFIX) || path == pages::PREFIX.trim_end_matches('/') {
                let asked = pages::Asked { pages, state: self.shared.state.as_ref(), secure };
                return asked.answer(req).await.map(Either::Right);
            }
        }
        // The login link: the pages' session cookie rides on the answer,
        // Jupyter's or the progress page.
        // Only on a page the browser opens (not JupyterLab's own calls that
        // carry the token): a new session replaces the cookie, and with it the
        // anti-forgery token of a page of ours open in another tab.
        let navigation = req.headers().get("sec-fetch-mode").is_none_or(|m| m.as_bytes() == b"navigate");
        let cookie = pages.filter(|_| navigation).and_then(|p| p.login_cookie(req.uri(), secure));
        let Some(addr) = *self.shared.backend.borrow() else {
            return with_cookie(self.progress_reply(accepts_html(&req)), cookie);
        };
        let html = accepts_html(&req);
        let forwarded = jupyter.forward(addr, req, self.client, secure).await;
        match forwarded {
            Ok(forwarded) => {
                if let Some(up) = forwarded.upgrade {
                    *self.upgrade.lock().expect("not poisoned") = Some(up);
                }
                with_cookie(forwarded.response.map(Either::Left), cookie)
            }
            Err(e) => {
                // Restarting, most likely: the watch clears the backend soon.
                debug!("{e}");
                with_cookie(self.progress_reply(html), cookie)
            }
        }
    }

    fn progress(&self) -> Progress {
        let forwarding = self.shared.backend.borrow().is_some();
        match &self.shared.state {
            Some(state) => Progress::of(&state.borrow(), forwarding),
            None => Progress::of(&crate::state::fresh(), forwarding),
        }
    }

    /// 503 with the progress: the page for a browser, else the JSON.
    fn progress_reply(&self, html: bool) -> Response<Body> {
        let mut progress = self.progress();
        // Jupyter did not answer: not ready, whatever the backend says.
        progress.ready = false;
        let mut response = match html {
            true => own(StatusCode::SERVICE_UNAVAILABLE, "text/html; charset=utf-8", progress.page()),
            false => own(
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                serde_json::to_string(&progress).expect("serialisable"),
            ),
        };
        response.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from_static("2"));
        response
    }
}

fn with_cookie(mut response: Response<Body>, cookie: Option<hyper::header::HeaderValue>) -> Response<Body> {
    if let Some(cookie) = cookie {
        response.headers_mut().append(hyper::header::SET_COOKIE, cookie);
    }
    response
}

/// Counts a request out of the service, however its future ends.
struct Answered<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Answered<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn accepts_html<B>(req: &Request<B>) -> bool {
    req.headers().get(hyper::header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

/// The front's own answer, never cached.
fn own(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Either::Right(own_body(Bytes::from(body))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    headers.insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-store"));
    response
}

/// Over the address's cap ([`limits::MAX_PER_CLIENT`]): say so, rather than hang.
fn busy() -> Response<Body> {
    let mut response = own(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/html; charset=utf-8",
        "<!DOCTYPE html><title>Busy</title><p>This Jupyter is busy: too many connections from your address. Close some tabs and try again in a few seconds.</p>\n".into(),
    );
    response.headers_mut().insert(hyper::header::RETRY_AFTER, hyper::header::HeaderValue::from_static("5"));
    response
}

/// `http://` typed on the HTTPS port: a redirect to the same place over https://.
fn redirect_to_https<B>(req: &Request<B>) -> Response<Body> {
    let host = req.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok());
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = host
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .and_then(|h| hyper::header::HeaderValue::from_str(&format!("https://{h}{path}")).ok());
    match location {
        Some(location) => {
            let mut response = own(StatusCode::MOVED_PERMANENTLY, "text/plain", String::new());
            response.headers_mut().insert(hyper::header::LOCATION, location);
            response
        }
        None => own(StatusCode::BAD_REQUEST, "text/plain", String::new()),
    }
}

/// `GET /.well-known/acme-challenge/<token>`: the key authorization, or 404.
fn http01_answer<B>(req: &Request<B>, challenges: &Challenges) -> Response<Body> {
    let answer = req.uri().path().strip_prefix("/.well-known/acme-challenge/").and_then(|token| challenges.http(token));
    match answer {
        Some(body) => own(StatusCode::OK, "text/plain", body),
        None => own(StatusCode::NOT_FOUND, "text/plain", String::new()),
    }
}

#[cfg(test)]
mod tests;
