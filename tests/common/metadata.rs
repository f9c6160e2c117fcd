//! A fake ECS metadata service on 127.0.0.1, in hardened mode as documented
//! (docs/metadata.md): `PUT /latest/api/token` with
//! `X-aliyun-ecs-metadata-token-ttl-seconds` returns a session token, and
//! `GET /latest/meta-data/<key>` answers only with that token in
//! `X-aliyun-ecs-metadata-token`. Records each request line.

use std::sync::{Arc, Mutex};

use hyper::Method;

use super::http_fake::{response, FakeServer, Request, Response};

/// The session token this fake hands out.
const SESSION: &str = "session-token-1";

pub struct FakeMetadata {
    pub url: String,
    /// Each request's line (`GET /latest/meta-data/region-id HTTP/1.1`).
    pub requests: Arc<Mutex<Vec<String>>>,
    _server: FakeServer,
}

impl FakeMetadata {
    /// Serves `values` (`(key, value)`, e.g. `("region-id", "cn-beijing")`).
    pub fn start(values: &[(&str, &str)]) -> FakeMetadata {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let values: Vec<(String, String)> = values.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let log = requests.clone();
        let server = FakeServer::tcp(move |request: Request| {
            log.lock().unwrap().push(format!("{} {} {:?}", request.method, request.target, request.version));
            Some(answer(&request, &values))
        });
        FakeMetadata { url: server.url(), requests, _server: server }
    }
}

fn answer(request: &Request, values: &[(String, String)]) -> Response {
    let text = |status: u16, body: &str| response(status, Some("text/plain"), body.to_string());
    if request.method == Method::PUT && request.target == "/latest/api/token" {
        return match request.header("x-aliyun-ecs-metadata-token-ttl-seconds") {
            Some(_) => text(200, SESSION),
            None => text(400, ""),
        };
    }
    if request.method != Method::GET {
        return text(405, "");
    }
    if request.header("x-aliyun-ecs-metadata-token") != Some(SESSION) {
        return text(401, "");
    }
    match request.target.strip_prefix("/latest/meta-data/").and_then(|key| values.iter().find(|(k, _)| k == key)) {
        Some((_, value)) => text(200, value),
        None => text(404, ""),
    }
}
