//! `jupyter-room watch`, `collect` and `update` against the participants'
//! fronts (docs/room.md#the-participants-fronts-watch-collect-update):
//!
//! - a round over 200 fronts on loopback (hyper servers in this process,
//!   some slow, some refusing connections, some answering something else):
//!   the round's time printed, each kind of front shown as it is;
//! - a self-signed front of a real agent, the room's input a saved answer:
//!   the token goes only to the certificate the participant's setup
//!   reported (or under `--insecure`).
//!
//! The whole day against real agents, the room by its name (watch while
//! they set up, a raised hand, collect byte for byte, update keeping edited
//! notebooks beside the new versions, down), is `room_cloud`'s test; the
//! archives are read back with [`unzip`] and [`sha256_hex`] here.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use sha2::Digest;

use crate::common::agent::{ready_url, ForegroundAgent};
use crate::common::env::Env;
use crate::common::{self, bin, split_url, NOTEBOOK};

fn room(args: &[&str], state: &Path) -> Output {
    Command::new(bin("jupyter-room")).args(args).env("XDG_STATE_HOME", state).output().expect("jupyter-room runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The row of `name` in a table (its first column).
fn row<'a>(table: &'a str, name: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name}:\n{table}"))
}

/// How a fake front behaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// The progress JSON at once (a phase, a step, its percentage).
    Busy,
    /// Ready, a hand raised.
    Hand,
    /// Answers after 5 s: past the probe's deadline.
    Slow,
    /// Not a front: a 404 page.
    Other,
    /// Nothing listens: the connection is refused.
    Closed,
}

fn kind(i: usize) -> Kind {
    match i % 10 {
        0 => Kind::Slow,
        1 => Kind::Closed,
        2 => Kind::Other,
        3 if i == 3 => Kind::Hand,
        _ => Kind::Busy,
    }
}

async fn answer(kind: Kind, req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    assert_eq!(req.uri().path(), "/_agent/progress", "watch asks for the progress only");
    assert!(req.headers().get("authorization").is_none(), "no token for the progress");
    let json = match kind {
        Kind::Busy => {
            r#"{"phase":"preparing-image","step":"image","progress":"45%","ready":false,"failed_step":null,"certificate":null,"hand":null}"#
        }
        Kind::Hand => {
            r#"{"phase":"ready","step":null,"progress":null,"ready":true,"failed_step":null,"certificate":null,"hand":{"raised_at":"2026-12-07T10:42:00Z","message":"stuck on step 3"}}"#
        }
        Kind::Slow => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            r#"{"phase":"ready","ready":true}"#
        }
        Kind::Other | Kind::Closed => {
            return Ok(Response::builder().status(404).body(Full::new(Bytes::from_static(b"<html>no"))).unwrap())
        }
    };
    let status = if kind == Kind::Busy { 503 } else { 200 };
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(json.as_bytes())))
        .unwrap())
}

/// 200 fronts on loopback, served by one runtime of this process; their
/// base URLs (the closed ones' ports are free again).
fn fake_fronts(n: usize) -> (Vec<String>, std::sync::mpsc::Sender<()>) {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let mut urls = Vec::new();
            // Closed only once every other front has its port, so that none takes theirs.
            let mut closed = Vec::new();
            for i in 0..n {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                urls.push(format!("http://{}", listener.local_addr().unwrap()));
                if kind(i) == Kind::Closed {
                    closed.push(listener);
                    continue;
                }
                let k = kind(i);
                tokio::spawn(async move {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else { return };
                        tokio::spawn(async move {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let service = hyper::service::service_fn(move |req| answer(k, req));
                            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                        });
                    }
                });
            }
            drop(closed);
            tx.send(urls).unwrap();
            tokio::task::spawn_blocking(move || stopped.recv()).await.ok();
        });
    });
    (rx.recv().unwrap(), stop)
}

#[test]
fn a_watch_round_over_200_fronts_shows_each_and_says_how_long_it_took() {
    const N: usize = 200;
    let (fronts, _stop) = fake_fronts(N);
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..N).map(|i| format!("p{i:03}")).collect();
    let signals: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .zip(&fronts)
        .map(|(name, front)| (name.clone(), serde_json::json!({ "url": format!("{front}/?token=secret-{name}") })))
        .collect();
    let input = dir.path().join("stack.json");
    let stack = serde_json::json!({
        "StackName": "big-1", "Status": "CREATE_COMPLETE",
        "Outputs": [
            {"OutputKey": "Participants", "OutputValue": names.join(",")},
            {"OutputKey": "Room", "OutputValue": signals},
        ]
    });
    std::fs::write(&input, stack.to_string()).unwrap();

    let started = Instant::now();
    let out = room(&["watch", "--once", input.to_str().unwrap()], dir.path());
    let wall = started.elapsed();
    let table = text(&out);
    assert_eq!(out.status.code(), Some(1), "not everyone is ready: {table}");
    let headline = table.lines().next().unwrap();
    let polled = headline
        .split("polled in ")
        .nth(1)
        .and_then(|r| r.split(" s").next())
        .unwrap_or_else(|| panic!("the round's time in: {headline}"));
    println!(
        "watch: one round over {N} fronts took {polled} s (the process, start to end: {:.2} s)",
        wall.as_secs_f64()
    );

    for (i, name) in names.iter().enumerate() {
        let r = row(&table, name);
        match kind(i) {
            Kind::Busy => assert!(r.contains("preparing-image") && r.contains("image 45%"), "{r}"),
            Kind::Hand => assert!(r.contains("ready") && r.contains("HAND 10:42 stuck on step 3"), "{r}"),
            Kind::Slow => assert!(r.contains("unreachable") && r.contains("no answer in time"), "{r}"),
            Kind::Closed => assert!(r.contains("unreachable") && r.contains("refused"), "{r}"),
            Kind::Other => assert!(r.contains("unreachable") && r.contains("HTTP 404"), "{r}"),
        }
    }
    assert!(table.contains("hand raised: p003 at 10:42 stuck on step 3"), "{table}");
    assert!(!table.contains("secret-"), "no token shown: {table}");
}

/// The files of the zip at `path` (folders left out), by name.
pub(crate) fn unzip(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut archive = zip::ZipArchive::new(file).expect("a zip");
    let mut entries = BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        if file.is_dir() {
            continue;
        }
        let mut content = Vec::new();
        file.read_to_end(&mut content).unwrap();
        entries.insert(file.name().to_string(), content);
    }
    entries
}

/// The SHA-256 of the file at `path`, in lowercase hex (as the index has it).
pub(crate) fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A self-signed front (docs/tls.md): the token goes to it when the input
/// carries the fingerprint the participant's setup reported (the ready
/// signal's note), or under `--insecure`; not when the fingerprint is
/// missing or another. The progress is read whatever the certificate.
#[test]
fn a_token_goes_only_to_the_certificate_the_participants_setup_reported() {
    let env = Env::new("fronts-tls");
    let (_repo, _handson) = common::materials(&env, &[("hello.ipynb", NOTEBOOK)], "");
    let meta = common::metadata::FakeMetadata::start(&[]);
    let config = std::fs::read_to_string(env.config_path()).unwrap().replace(
        "url_host = \"127.0.0.1\"",
        &format!("url_host = \"127.0.0.1\"\nmetadata_endpoint = \"{}\"", meta.url),
    );
    env.write_config(&format!("{config}\n[tls]\nmode = \"self-signed\"\n"));
    let log = env.path("agent.log");
    let _agent = ForegroundAgent::start_logging(&env, &log);
    let url = ready_url(&env, &log);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let state = env.state();
    let fingerprint = state["tls"]["fingerprint"].as_str().expect("a fingerprint").to_string();
    let note = state["jupyter"]["note"].as_str().expect("the URL's note").to_string();
    assert!(note.contains(&fingerprint), "{note}");

    let dir = tempfile::tempdir().unwrap();
    let input = |name: &str, note: Option<&str>| {
        let mut data = serde_json::json!({ "url": url });
        if let Some(note) = note {
            data["note"] = note.into();
        }
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::json!({ "erin": data.to_string() }).to_string()).unwrap();
        path.to_str().unwrap().to_string()
    };
    let pinned = input("pinned.json", Some(&note));
    let bare = input("bare.json", None);
    // Another certificate's fingerprint: its first byte changed.
    let other = if fingerprint.starts_with("00") {
        fingerprint.replacen("00", "01", 1)
    } else {
        format!("00{}", &fingerprint[2..])
    };
    let wrong = input("wrong.json", Some(&note.replace(&fingerprint, &other)));
    let state_dir = dir.path().join("state");
    let out_dir = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let index = |n: &str| std::fs::read_to_string(dir.path().join(n).join("index.csv")).unwrap();

    let out = room(&["watch", "--once", &bare], &state_dir);
    assert!(row(&text(&out), "erin").contains("ready"), "the progress whatever the certificate: {}", text(&out));

    let out = room(&["collect", "--out", &out_dir("pinned"), &pinned], &state_dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(unzip(&dir.path().join("pinned/erin.zip")).contains_key("hello.ipynb"));

    let out = room(&["collect", "--out", &out_dir("bare"), &bare], &state_dir);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        index("bare").contains("neither trusted by this system nor the one the participant's setup reported"),
        "{}",
        index("bare")
    );
    assert!(!dir.path().join("bare/erin.zip").exists());

    let out = room(&["collect", "--out", &out_dir("wrong"), &wrong], &state_dir);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        index("wrong").contains("is not the one the participant's setup reported, nor is the certificate trusted"),
        "{}",
        index("wrong")
    );
    let out = room(&["update", &wrong], &state_dir);
    let said = text(&out);
    assert!(row(&said, "erin").contains("failed") && row(&said, "erin").contains("token was not sent"), "{said}");

    let out = room(&["collect", "--out", &out_dir("insecure"), "--insecure", &bare], &state_dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(dir.path().join("insecure/erin.zip").exists());
    let said = std::fs::read_to_string(&log).unwrap();
    let downloads = said.lines().filter(|l| l.contains("path=/_agent/download")).count();
    assert_eq!(downloads, 2, "the front saw the two downloads that were sent, no more:\n{said}");
    assert!(!said.contains(&split_url(&url.replace("https://", "http://")).2), "no token in the agent's log");
}
