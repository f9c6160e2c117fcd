use std::sync::Arc;

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::Host;
use crate::tls::certs;

#[test]
fn http_on_the_https_port_is_sent_to_https_and_only_known_tokens_are_answered() {
    let request = |path: &str, host: Option<&str>| {
        let mut builder = hyper::Request::builder().uri(path);
        if let Some(host) = host {
            builder = builder.header("host", host);
        }
        builder.body(()).unwrap()
    };
    let moved = redirect_to_https(&request("/tree?token=x", Some("1.2.3.4:8888")));
    assert_eq!(moved.status(), 301);
    assert_eq!(moved.headers()["location"], "https://1.2.3.4:8888/tree?token=x");
    assert_eq!(redirect_to_https(&request("/", None)).status(), 400);
    // A Host that would make another URL of the Location is not taken.
    assert_eq!(redirect_to_https(&request("/", Some("a b"))).status(), 400);

    let challenges = Challenges::default();
    challenges.set_http("tok", "tok.thumb");
    assert_eq!(http01_answer(&request("/.well-known/acme-challenge/tok", None), &challenges).status(), 200);
    assert_eq!(http01_answer(&request("/.well-known/acme-challenge/other", None), &challenges).status(), 404);
    assert_eq!(http01_answer(&request("/tok", None), &challenges).status(), 404);
}

/// A backend that answers every request with the `X-Forwarded-For` it got;
/// `/slow` after 1.5 s.
async fn backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    if req.uri().path() == "/slow" {
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                    }
                    let xff = req.headers().get("x-forwarded-for").map(|v| v.to_str().unwrap().to_string());
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                        "xff={}",
                        xff.unwrap_or_default()
                    )))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    addr
}

/// One request on an open client connection: status and body.
async fn get<B>(sender: &mut hyper::client::conn::http1::SendRequest<B>, path: &str, accept: &str) -> (u16, String)
where
    B: hyper::body::Body + Default + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    sender.ready().await.unwrap();
    let req = Request::builder().uri(path).header("host", "127.0.0.1").header("accept", accept).body(B::default());
    let response = sender.send_request(req.unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn client<IO>(io: IO) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<Bytes>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.unwrap();
    tokio::spawn(connection);
    sender
}

/// Plain HTTP: the progress until a backend is set, then the backend, told
/// who the client is; `/_agent/progress` always.
#[tokio::test]
async fn the_plain_front_shows_the_progress_then_forwards_with_the_clients_address() {
    let (_tx, rx) = watch::channel(crate::state::fresh());
    let front = Front::bind("127.0.0.1:0".parse().unwrap(), None, Some(rx)).await.unwrap();
    let mut sender = client(TcpStream::connect(front.reachable()).await.unwrap()).await;
    let (status, page) = get(&mut sender, "/lab", "text/html").await;
    assert_eq!(status, 503);
    assert!(page.contains("<title>Preparing Jupyter</title>"), "{page}");
    let (status, json) = get(&mut sender, "/api/status", "application/json").await;
    assert_eq!(status, 503);
    assert!(json.contains("\"ready\":false"), "{json}");

    front.set_backend(Some(backend().await));
    let (status, body) = get(&mut sender, "/api/status", "*/*").await;
    assert_eq!((status, body.as_str()), (200, "xff=127.0.0.1"), "the same connection goes on to Jupyter");
    let (status, json) = get(&mut sender, progress::PATH, "*/*").await;
    assert_eq!(status, 200);
    assert!(json.contains("\"ready\":true"), "{json}");
}

/// HTTPS: a swapped certificate reaches new handshakes while an open
/// connection goes on; plain HTTP is redirected.
#[tokio::test]
async fn the_https_front_swaps_its_certificate_under_an_open_connection() {
    let first = certs::self_signed(&Host::Ip(std::net::Ipv4Addr::LOCALHOST.into())).unwrap();
    let second = certs::self_signed(&Host::Ip(std::net::Ipv4Addr::LOCALHOST.into())).unwrap();
    let front =
        Front::bind("127.0.0.1:0".parse().unwrap(), Some((first.certified_key().unwrap(), Default::default())), None)
            .await
            .unwrap();
    front.set_backend(Some(backend().await));
    let at = front.reachable();
    let connect = |fingerprint: String| async move {
        let config = crate::tls::pinned_client_config(fingerprint).unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(at).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        connector.connect(name, tcp).await
    };
    let mut open = client(connect(first.info.fingerprint.clone()).await.expect("the first certificate")).await;
    assert_eq!(get(&mut open, "/api/status", "*/*").await, (200, "xff=127.0.0.1".to_string()));

    front.set_certificate(second.certified_key().unwrap());
    assert!(connect(first.info.fingerprint.clone()).await.is_err(), "new handshakes get the new certificate");
    connect(second.info.fingerprint.clone()).await.expect("the second certificate");
    assert_eq!(get(&mut open, "/api/status", "*/*").await.0, 200, "the open connection goes on");

    let mut plain = TcpStream::connect(at).await.unwrap();
    plain.write_all(b"GET /tree?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8888\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    plain.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 301 ")
            && answer.to_ascii_lowercase().contains("location: https://127.0.0.1:8888/tree?x=1\r\n"),
        "{answer}"
    );
}

/// A connection quiet past [`limits::PARK_AFTER`] is parked and answers its
/// next request; one whose request waits that long for Jupyter is not
/// parked under it (its answer would say `Connection: close`).
#[tokio::test]
async fn a_quiet_connection_is_parked_and_wakes_but_never_under_a_slow_answer() {
    let front = Front::bind("127.0.0.1:0".parse().unwrap(), None, None).await.unwrap();
    front.set_backend(Some(backend().await));
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(TcpStream::connect(front.reachable()).await.unwrap()))
            .await
            .unwrap();
    let closed = tokio::spawn(connection);
    sender.ready().await.unwrap();
    let req = Request::builder().uri("/slow").header("host", "127.0.0.1").body(http_body_util::Empty::<Bytes>::new());
    let response = sender.send_request(req.unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("connection"), None, "kept alive: {:?}", response.headers());
    response.into_body().collect().await.unwrap();
    tokio::time::sleep(limits::PARK_AFTER * 2).await;
    assert!(!closed.is_finished(), "parked, not closed");
    assert_eq!(
        get(&mut sender, "/api/status", "*/*").await,
        (200, "xff=127.0.0.1".to_string()),
        "a parked connection wakes"
    );
}
