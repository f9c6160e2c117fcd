//! Forwarding one request to Jupyter on the host's loopback
//! (docs/front.md#forwarding): through a pool of kept-alive connections to
//! Jupyter, shared by all client connections (nginx's `upstream` with
//! `keepalive`), so that a client connection holds none while it is idle;
//! bodies streamed both ways, never held whole; an upgrade (a kernel's or a
//! terminal's WebSocket) answered by Jupyter is handed back to the client
//! connection, which then copies the bytes.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Connecting to Jupyter on loopback takes no time; longer means it is gone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Kept-alive connections to Jupyter waiting for a request: about the
/// requests in flight at once in a busy room's minute.
const POOL_IDLE: usize = 32;
/// An idle pooled connection is closed after this.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The connections to Jupyter, whatever its port.
pub struct Jupyter(Client<HttpConnector, Incoming>);

/// An upgrade Jupyter agreed to: its end, once its connection hands it over
/// (the client's end is the connection's own stream).
pub struct Upgrade {
    pub jupyter: OnUpgrade,
}

/// Jupyter's answer: the response, and the upgrade when it switched protocols.
pub struct Forwarded {
    pub response: Response<Incoming>,
    pub upgrade: Option<Upgrade>,
}

/// The request could not reach Jupyter: it is not up (yet, or any more).
#[derive(Debug, thiserror::Error)]
#[error("Jupyter at {addr} does not answer: {cause}")]
pub struct Unreachable {
    addr: SocketAddr,
    cause: String,
}

impl Jupyter {
    pub fn new() -> Jupyter {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(POOL_IDLE)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            // The client's own Host goes on: Jupyter checks Origin against it.
            .set_host(false)
            .build(connector);
        Jupyter(client)
    }

    /// Sends `req` from `client` to Jupyter at `addr`.
    pub async fn forward(
        &self,
        addr: SocketAddr,
        mut req: Request<Incoming>,
        client: IpAddr,
        https: bool,
    ) -> Result<Forwarded, Unreachable> {
        let upgrading = wants_upgrade(req.headers());
        prepare_request(req.headers_mut(), client, https, upgrading);
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = Uri::try_from(format!("http://{addr}{path}"))
            .map_err(|e| Unreachable { addr, cause: format!("the request's path: {e}") })?;
        let mut response = self.0.request(req).await.map_err(|e| Unreachable { addr, cause: format!("{e:?}") })?;
        let upgrade = match upgrading && response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // That connection to Jupyter now carries the WebSocket.
            true => Some(Upgrade { jupyter: hyper::upgrade::on(&mut response) }),
            false => None,
        };
        strip_hop_by_hop(response.headers_mut(), upgrade.is_some());
        Ok(Forwarded { response, upgrade })
    }
}

/// `Connection: upgrade` with an `Upgrade` header: a WebSocket's opening.
fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Headers for one hop only (RFC 9110 §7.6.1), and those `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrading: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if !(upgrading && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    for name in ["keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding"] {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
    if upgrading {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// What Jupyter is told of the client: its address and the scheme it used,
/// replacing whatever the client claimed. `Host` passes unchanged (Jupyter
/// checks a WebSocket's `Origin` against it).
fn prepare_request(headers: &mut HeaderMap, client: IpAddr, https: bool, upgrading: bool) {
    strip_hop_by_hop(headers, upgrading);
    let ip = HeaderValue::from_str(&client.to_string()).expect("an address is a header value");
    headers.insert("x-forwarded-for", ip.clone());
    headers.insert("x-real-ip", ip);
    headers.insert("x-forwarded-proto", HeaderValue::from_static(if https { "https" } else { "http" }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jupyter_learns_the_client_and_hop_by_hop_headers_stay_on_their_hop() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("cookie", "c=1".parse().unwrap());
        prepare_request(&mut h, "203.0.113.9".parse().unwrap(), true, false);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9", "the client's own claim is replaced");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert!(!h.contains_key("x-secret") && !h.contains_key("connection") && !h.contains_key("transfer-encoding"));
        assert_eq!(h["cookie"], "c=1");

        let mut ws = HeaderMap::new();
        ws.insert("connection", "keep-alive, Upgrade".parse().unwrap());
        ws.insert("upgrade", "websocket".parse().unwrap());
        assert!(wants_upgrade(&ws));
        prepare_request(&mut ws, "127.0.0.1".parse().unwrap(), false, true);
        assert_eq!(
            (&ws["connection"], &ws["upgrade"]),
            (&"upgrade".parse::<HeaderValue>().unwrap(), &"websocket".parse::<HeaderValue>().unwrap())
        );
        let mut plain = HeaderMap::new();
        plain.insert("upgrade", "websocket".parse().unwrap());
        assert!(!wants_upgrade(&plain), "no Connection: upgrade");
    }
}
