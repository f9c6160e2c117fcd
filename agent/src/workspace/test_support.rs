//! Helpers shared by the fetch tests: test HTTP servers, tar and gzip
//! builders, a scratch destination, and a small git repository.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use sha2::{Digest, Sha256};
use tar::EntryType;

use super::fetch::FetchError;

pub(super) const BUDGET: Duration = Duration::from_secs(30);

/// A test HTTP server on 127.0.0.1: hyper, on a thread and a Tokio runtime
/// of its own (so that it answers whatever the test's own runtime does),
/// answering each request with `answer(request)`. It runs until the test
/// process ends. Its address.
pub(crate) fn serve_with(
    answer: impl Fn(&hyper::Request<hyper::body::Incoming>) -> hyper::Response<Full<Bytes>> + Send + Sync + 'static,
) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let answer = answer.clone();
                let service = hyper::service::service_fn(move |request| {
                    std::future::ready(Ok::<_, std::convert::Infallible>(answer(&request)))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
    });
    addr
}

/// `status` with `body`.
pub(crate) fn response(status: u16, body: Vec<u8>) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response
}

/// A test HTTP server answering one scripted response per request, in order
/// (the last one again for any later request); `hits` counts the requests.
pub(super) struct Server {
    pub(super) base: String,
    pub(super) hits: Arc<AtomicUsize>,
}

pub(super) fn serve(responses: Vec<(u16, Vec<u8>)>) -> Server {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let addr = serve_with(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let (status, body) = &responses[n.min(responses.len() - 1)];
        response(*status, body.clone())
    });
    Server { base: format!("http://{addr}"), hits }
}

/// An archive entry, written with raw headers: tar's builder refuses some of these paths.
pub(super) enum Item {
    Dir(&'static str),
    File(&'static str, &'static [u8], u32),
    Symlink(&'static str, &'static str),
    HardLink(&'static str, &'static str),
    Special(&'static str, EntryType),
    /// The `pax_global_header` GitHub's archives begin with.
    GlobalPax,
}

pub(super) fn tar_bytes(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_gnu();
        let (path, kind, data, mode, link): (&str, EntryType, &[u8], u32, Option<&str>) = match item {
            Item::Dir(p) => (p, EntryType::Directory, b"", 0o755, None),
            Item::File(p, data, mode) => (p, EntryType::Regular, data, *mode, None),
            Item::Symlink(p, to) => (p, EntryType::Symlink, b"", 0o777, Some(to)),
            Item::HardLink(p, to) => (p, EntryType::Link, b"", 0o644, Some(to)),
            Item::Special(p, kind) => (p, *kind, b"", 0o644, None),
            Item::GlobalPax => (
                "pax_global_header",
                EntryType::XGlobalHeader,
                b"52 comment=0123456789abcdef0123456789abcdef01234567\n",
                0o666,
                None,
            ),
        };
        let name = &mut header.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(1_700_000_000);
        if let Some(link) = link {
            header.set_link_name(link).unwrap();
        }
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

pub(super) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A temporary directory with `home/` in it: `home/work` is the destination.
pub(super) fn destination() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("home")).unwrap();
    let dest = tmp.path().join("home/work");
    (tmp, dest)
}

/// The names in a directory, sorted.
pub(super) fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

pub(super) fn message(e: FetchError) -> String {
    format!("{:#}", anyhow::Error::from(e))
}

/// git for building the test repository, ignoring the machine's configuration.
pub(super) fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgSign=false"])
        .args(["-c", "tag.gpgSign=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A repository with `main` (one, two), a tag `v1` on one, and `workshop` (one, then b.txt).
pub(super) struct Repo {
    _tmp: tempfile::TempDir,
    pub(super) path: PathBuf,
    pub(super) one: String,
    pub(super) two: String,
    pub(super) workshop: String,
}

pub(super) fn repository() -> Repo {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("src");
    fs::create_dir(&path).unwrap();
    git(&path, &["init", "--quiet", "--initial-branch=main"]);
    fs::write(path.join("a.txt"), "one\n").unwrap();
    git(&path, &["add", "a.txt"]);
    git(&path, &["commit", "--quiet", "-m", "one"]);
    let one = git(&path, &["rev-parse", "HEAD"]);
    git(&path, &["tag", "-a", "v1", "-m", "version 1"]);
    fs::write(path.join("a.txt"), "two\n").unwrap();
    git(&path, &["commit", "--quiet", "-am", "two"]);
    let two = git(&path, &["rev-parse", "HEAD"]);
    git(&path, &["checkout", "--quiet", "-b", "workshop", &one]);
    fs::write(path.join("b.txt"), "workshop\n").unwrap();
    git(&path, &["add", "b.txt"]);
    git(&path, &["commit", "--quiet", "-m", "workshop"]);
    let workshop = git(&path, &["rev-parse", "HEAD"]);
    git(&path, &["checkout", "--quiet", "main"]);
    Repo { _tmp: tmp, path, one, two, workshop }
}
