//! A fake file server on 127.0.0.1: fixed files by path (tarballs, the
//! release bundle), 404 for any other path.

use super::http_fake::{response, FakeServer, Request};

pub struct StaticServer {
    /// `http://127.0.0.1:PORT`; a file's URL is this and its path.
    pub url: String,
    _server: FakeServer,
}

impl StaticServer {
    /// Serves each `(path, bytes)`, e.g. `("/ws.tar.gz", ...)`.
    pub fn start(files: Vec<(String, Vec<u8>)>) -> StaticServer {
        let server = FakeServer::tcp(move |request: Request| {
            Some(match files.iter().find(|(p, _)| *p == request.target) {
                Some((_, body)) => response(200, Some("application/gzip"), body.clone()),
                None => response(404, None, ""),
            })
        });
        StaticServer { url: server.url(), _server: server }
    }
}
