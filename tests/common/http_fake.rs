//! The one HTTP server under every fake service of the tests (the ECS
//! metadata service, the ROS wait condition, the agent's API, the file and
//! archive servers): hyper 1 on a Tokio runtime of its own, on a loopback
//! TCP port or a Unix socket, handing each request, whole, to a blocking
//! handler on a thread of its own. The tests are blocking code, and their
//! fakes block on purpose (a long poll waits for a change, a hanging
//! endpoint waits until the test ends), so a handler is a plain closure.
//!
//! hyper rather than a smaller blocking server: the workspace already builds
//! it (the agent serves its API with it), it serves a Unix socket as well as
//! TCP, and it lets a fake misbehave as the tests need: a handler that
//! answers `None` closes the connection unanswered, and a body that fails
//! midway ([`file_body`]) cuts the response as a dropped connection would.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt as _;

/// A response's body: whole, or streamed from a file.
pub type Body = BoxBody<Bytes, io::Error>;

pub type Response = hyper::Response<Body>;

/// One request as received, its body read whole.
pub struct Request {
    pub method: Method,
    /// Path and query, as sent.
    pub target: String,
    pub version: hyper::Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// A query parameter, not decoded.
    pub fn query(&self, name: &str) -> Option<&str> {
        let query = self.target.split_once('?')?.1;
        query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// A header's value, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `status` with `body` (and `Content-Type: content_type` when given).
pub fn response(status: u16, content_type: Option<&str>, body: impl Into<Bytes>) -> Response {
    let body = Full::new(body.into()).map_err(|e: Infallible| match e {}).boxed();
    let mut response = hyper::Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).expect("a valid status code");
    if let Some(t) = content_type {
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_str(t).expect("a valid content type"));
    }
    response
}

/// `file` from byte `start` to its end; with `cut`, only that many bytes,
/// and then the body fails, so that the server drops the connection
/// mid-response, as a cut connection would (the caller's `Content-Length`
/// promised more).
pub fn file_body(mut file: std::fs::File, start: u64, cut: Option<u64>) -> Body {
    use std::io::Seek as _;
    file.seek(io::SeekFrom::Start(start)).expect("seek in the served file");
    let file = tokio::fs::File::from_std(file).take(cut.unwrap_or(u64::MAX));
    let data = tokio_util::io::ReaderStream::new(file).map(|chunk| chunk.map(Frame::data));
    // The failure comes a second after the last bytes: hyper drops what it
    // has not flushed when a body fails, and flushes while the body is
    // pending; a client that reads on (the download) takes them meanwhile.
    let failure = futures_util::stream::iter(cut).then(|_| async {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        Err(io::Error::other("the fake cuts the response here"))
    });
    http_body_util::BodyExt::boxed(StreamBody::new(data.chain(failure)))
}

/// A running fake; it stops when dropped: its listener closes and every
/// open connection with it, answered or not.
///
/// A fake's handler gives a response to a request, or `None` to close the
/// connection without one. It runs on a blocking thread: it may wait.
pub struct FakeServer {
    runtime: Option<tokio::runtime::Runtime>,
    addr: Option<SocketAddr>,
}

impl FakeServer {
    /// Serves `handler` on a free port of 127.0.0.1.
    pub fn tcp(handler: impl Fn(Request) -> Option<Response> + Send + Sync + 'static) -> FakeServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local address");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let runtime = runtime();
        let handler = Arc::new(handler);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a Tokio listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                tokio::spawn(serve_connection(stream, handler.clone()));
            }
        });
        FakeServer { runtime: Some(runtime), addr: Some(addr) }
    }

    /// Serves `handler` on a Unix socket at `path` (created here, so that it
    /// exists when this returns).
    pub fn unix(path: &Path, handler: impl Fn(Request) -> Option<Response> + Send + Sync + 'static) -> FakeServer {
        let listener = std::os::unix::net::UnixListener::bind(path).expect("bind the Unix socket");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let runtime = runtime();
        let handler = Arc::new(handler);
        runtime.spawn(async move {
            let listener = tokio::net::UnixListener::from_std(listener).expect("a Tokio listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                tokio::spawn(serve_connection(stream, handler.clone()));
            }
        });
        FakeServer { runtime: Some(runtime), addr: None }
    }

    /// The TCP address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("a TCP fake")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // Not `drop(runtime)`: that would wait for handlers still blocked.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a Tokio runtime for a fake server")
}

async fn serve_connection<S, H>(stream: S, handler: Arc<H>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request) -> Option<Response> + Send + Sync + 'static,
{
    let service = hyper::service::service_fn(move |request| answer(request, handler.clone()));
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
}

/// The handler's answer to `request`, once its body is read. No answer is
/// an error, on which hyper closes the connection unanswered.
async fn answer<H>(request: hyper::Request<Incoming>, handler: Arc<H>) -> Result<Response, ServiceError>
where
    H: Fn(Request) -> Option<Response> + Send + Sync + 'static,
{
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return Err(Box::new(e)),
    };
    let request = Request {
        method: parts.method,
        target: parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default(),
        version: parts.version,
        headers: parts.headers,
        body,
    };
    match tokio::task::spawn_blocking(move || handler(request)).await {
        Ok(Some(response)) => Ok(response),
        _ => Err(Box::new(io::Error::other("the fake closes the connection unanswered"))),
    }
}

/// Why a connection ends unanswered: its request's body could not be read,
/// or the fake chose not to answer.
type ServiceError = Box<dyn std::error::Error + Send + Sync>;
