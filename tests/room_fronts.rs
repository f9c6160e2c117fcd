//! `jupyter-room watch`, `collect` and `update` against the participants'
//! fronts (docs/room.md#the-participants-fronts-watch-collect-update):
//!
//! - a round over 200 fronts on loopback (hyper servers in this process,
//!   some slow, some refusing connections, some answering something else):
//!   the round's time printed, each kind of front shown as it is;
//! - a room of real agents (each its own Env, materials from a local git
//!   repository, the room's input built from their login URLs as a saved
//!   GetStack answer): `watch --once` shows who is ready and one raised
//!   hand, `collect` brings back each participant's edited notebook byte
//!   for byte with an index, a second `collect` skips them, and `update`
//!   merges a pushed fix, reporting whose edited notebook was kept beside
//!   the new version.

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
use crate::common::{self, bin, git, split_url, MOUNT, NOTEBOOK};

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

// ---------------------------------------------------------------------------
// A room of real agents.
// ---------------------------------------------------------------------------

const READY: [&str; 3] = ["alice", "bob", "carol"];
/// Listed, never signalled.
const WAITING: &str = "dave";

struct Participant {
    env: Env,
    repo: std::path::PathBuf,
    handson: std::path::PathBuf,
    log: std::path::PathBuf,
    _agent: ForegroundAgent,
    url: String,
}

impl Participant {
    fn said(&self) -> String {
        format!("--- {}'s agent log:\n{}", self.env.name, std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

fn unzip(path: &Path) -> BTreeMap<String, Vec<u8>> {
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

/// The front's base URL once the agent's first step (`front`) is done.
fn front_address(env: &Env) -> Option<String> {
    let run = env.agent(&["status", "--json"]);
    let state: serde_json::Value = serde_json::from_str(&run.stdout).ok()?;
    let step = state["steps"].as_array()?.iter().find(|s| s["name"] == "front" && s["detail"].is_string())?;
    let detail = step["detail"].as_str()?;
    detail.split_whitespace().find(|w| w.starts_with("127.0.0.1:")).map(|a| format!("http://{a}"))
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_room_of_real_agents_is_watched_collected_and_updated_through_their_fronts() {
    let files = [("hello.ipynb", NOTEBOOK), ("guide.md", "# Step 1\n")];
    // The three set up at once (Env is for one thread: the waits take turns).
    let started: Vec<_> = READY
        .iter()
        .map(|name| {
            let env = Env::new(&format!("fronts-{name}"));
            let (repo, handson) = common::materials(&env, &files, "");
            let log = env.path("agent.log");
            let agent = ForegroundAgent::start_logging(&env, &log);
            (env, repo, handson, log, agent)
        })
        .collect();
    // While they set up: each front is up before Jupyter is (its address
    // from the agent's first step), and `watch` shows the phases. (The
    // room's stacks give the instances' addresses that early; a saved
    // answer gives a front only with the ready URL, so this input holds
    // each front with a token that is not one.)
    let dir = tempfile::tempdir().unwrap();
    let setup = dir.path().join("setting-up.json");
    let fronts: Vec<String> = started
        .iter()
        .map(|(env, _, _, log, _)| {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                if let Some(front) = front_address(env) {
                    break front;
                }
                assert!(
                    Instant::now() < deadline,
                    "no front step: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .collect();
    let early: serde_json::Map<String, serde_json::Value> = READY
        .iter()
        .zip(&fronts)
        .map(|(name, front)| (name.to_string(), serde_json::json!({ "url": format!("{front}/?token=not-yet") })))
        .collect();
    std::fs::write(&setup, serde_json::Value::Object(early).to_string()).unwrap();
    let mut seen: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let out = room(&["watch", "--once", setup.to_str().unwrap()], &dir.path().join("state"));
        let table = text(&out);
        for name in READY {
            let setup = row(&table, name).split_whitespace().nth(1).unwrap_or_default().to_string();
            let phases = seen.entry(name).or_default();
            if phases.last() != Some(&setup) {
                phases.push(setup);
            }
        }
        if out.status.code() == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "not all ready in time: {table}");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("watch while the room set up: {seen:?}");
    let phases = ["fetching-workspace", "preparing-image", "starting-container", "waiting-for-token"];
    assert!(
        seen.values().flatten().any(|p| phases.contains(&p.as_str())),
        "watch showed a setup phase before ready: {seen:?}"
    );
    for (name, phases) in &seen {
        assert_eq!(phases.last().map(String::as_str), Some("ready"), "{name}: {phases:?}");
        assert!(!phases.iter().any(|p| p == "failed"), "{name}: {phases:?}");
    }

    let participants: Vec<Participant> = started
        .into_iter()
        .map(|(env, repo, handson, log, agent)| {
            let url = ready_url(&env, &log);
            Participant { env, repo, handson, log, _agent: agent, url }
        })
        .collect();

    // alice edits her notebook; bob raises his hand.
    let mine = r#"{"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["mine"]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;
    let alice = &participants[0];
    let edit = format!("printf '%s' '{mine}' > {MOUNT}/hello.ipynb");
    let edited = common::docker(&["exec", &alice.env.name, "sh", "-c", &edit]);
    assert!(edited.status.success(), "{}\n{}", String::from_utf8_lossy(&edited.stderr), alice.said());
    participants[1].env.agent(&["hand", "raise", "--message", "stuck on step 3"]).expect(0);

    // The organiser's input: the stack's outputs as GetStack prints them.
    let state = dir.path().join("state");
    let input = dir.path().join("room-1.json");
    let signals: serde_json::Map<String, serde_json::Value> = READY
        .iter()
        .zip(&participants)
        .map(|(name, p)| (name.to_string(), serde_json::Value::String(serde_json::json!({ "url": p.url }).to_string())))
        .collect();
    let mut listed: Vec<&str> = READY.to_vec();
    listed.push(WAITING);
    let stack = serde_json::json!({
        "StackName": "workshop-1", "Status": "CREATE_COMPLETE",
        "Outputs": [
            {"OutputKey": "Participants", "OutputValue": listed.join(",")},
            {"OutputKey": "Room", "OutputValue": serde_json::Value::Object(signals).to_string()},
        ]
    });
    std::fs::write(&input, stack.to_string()).unwrap();
    let input = input.to_str().unwrap();
    let tokens: Vec<String> = participants.iter().map(|p| split_url(&p.url).2).collect();
    let no_token = |what: &str, out: &str| {
        for t in &tokens {
            assert!(!out.contains(t.as_str()), "a token in {what}:\n{out}");
        }
    };

    // watch: each participant's setup, bob's hand.
    let out = room(&["watch", "--once", input], &state);
    let table = text(&out);
    assert_eq!(out.status.code(), Some(1), "dave is not ready: {table}");
    for name in READY {
        assert!(row(&table, name).split_whitespace().nth(1) == Some("ready"), "{name} ready: {table}");
    }
    assert!(row(&table, "bob").contains("HAND") && row(&table, "bob").contains("stuck on step 3"), "{table}");
    assert!(!row(&table, "alice").contains("HAND"), "{table}");
    assert!(row(&table, WAITING).contains("waiting"), "{table}");
    no_token("watch's output", &table);
    let page = dir.path().join("room.html");
    let out = room(&["watch", "--once", "--html", page.to_str().unwrap(), input], &state);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("http-equiv=\"refresh\"") && html.contains("stuck on step 3"), "{html}");
    no_token("the page", &html);

    // collect: one zip each, the edited notebook byte for byte, an index.
    let out_dir = dir.path().join("work");
    let started = Instant::now();
    let out = room(&["collect", "--out", out_dir.to_str().unwrap(), input], &state);
    eprintln!("collect: {} participants in {:.2} s", READY.len(), started.elapsed().as_secs_f64());
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "dave's work is missing: {said}");
    no_token("collect's output", &said);
    for (name, p) in READY.iter().zip(&participants) {
        let zip = out_dir.join(format!("{name}.zip"));
        let entries = unzip(&zip);
        let want_notebook = if *name == "alice" { mine } else { NOTEBOOK };
        assert_eq!(
            entries.get("hello.ipynb").map(|b| String::from_utf8_lossy(b).into_owned()).as_deref(),
            Some(want_notebook),
            "{name}'s notebook: {:?}\n{}",
            entries.keys(),
            p.said()
        );
        assert_eq!(entries.get("guide.md").map(Vec::as_slice), Some(&b"# Step 1\n"[..]), "{name}");
        assert!(entries.keys().all(|k| !k.starts_with(".git")), "{name}: {:?}", entries.keys());
        assert!(!out_dir.join(format!("{name}.zip.part")).exists());
    }
    let index = std::fs::read_to_string(out_dir.join("index.csv")).unwrap();
    let lines: Vec<&str> = index.lines().collect();
    assert_eq!(lines[0], "participant,file,size,sha256,time,error", "{index}");
    for name in READY {
        let zip = out_dir.join(format!("{name}.zip"));
        let line = lines.iter().find(|l| l.starts_with(&format!("{name},"))).unwrap_or_else(|| panic!("{index}"));
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[1], format!("{name}.zip"), "{line}");
        assert_eq!(fields[2], std::fs::metadata(&zip).unwrap().len().to_string(), "{line}");
        assert_eq!(fields[3], sha256_hex(&zip), "{line}");
        assert_eq!(fields[5], "", "{line}");
    }
    let dave = lines.iter().find(|l| l.starts_with("dave,")).unwrap_or_else(|| panic!("{index}"));
    assert!(dave.ends_with("not ready: no signal yet"), "{dave}");
    no_token("the index", &index);
    let record = std::fs::read_to_string(state.join("jupyter-room/workshop.json")).unwrap();
    let record: serde_json::Value = serde_json::from_str(&record).unwrap();
    let recorded: Vec<&str> = record["collected"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(recorded, READY, "the room's record of collected work: {record}");

    // A second collect: the complete archives are skipped, untouched.
    let before: Vec<_> = READY
        .iter()
        .map(|n| std::fs::metadata(out_dir.join(format!("{n}.zip"))).unwrap().modified().unwrap())
        .collect();
    let out = room(&["collect", "--out", out_dir.to_str().unwrap(), input], &state);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for (name, modified) in READY.iter().zip(before) {
        assert!(said.contains(&format!("{name}: already collected ({name}.zip)")), "{said}");
        assert_eq!(std::fs::metadata(out_dir.join(format!("{name}.zip"))).unwrap().modified().unwrap(), modified);
    }
    assert!(said.contains("0 collected now, 3 already in"), "{said}");

    // update: the organiser's fix to the notebook; alice's edited one is kept, the new one beside it.
    let fixed = NOTEBOOK.replace(
        "\"cells\": []",
        "\"cells\": [{\"cell_type\": \"markdown\", \"metadata\": {}, \"source\": [\"fixed\"]}]",
    );
    for p in &participants {
        std::fs::write(p.repo.join("hello.ipynb"), &fixed).unwrap();
        git(&p.repo, &["commit", "-q", "-am", "the organiser's fix"]);
    }
    let out = room(&["update", input], &state);
    let table = text(&out);
    assert_eq!(out.status.code(), Some(1), "dave is not ready: {table}");
    no_token("update's output", &table);
    let a = row(&table, "alice");
    assert!(
        a.contains("updated") && a.contains("yours kept: hello.ipynb (the new version beside it: hello.new-"),
        "{a}"
    );
    for name in ["bob", "carol"] {
        let r = row(&table, name);
        assert!(r.contains("updated") && r.contains("1 updated") && !r.contains("yours kept"), "{r}");
    }
    assert!(row(&table, WAITING).contains("not ready"), "{table}");
    assert!(table.contains("3 updated (1 with files of theirs kept beside the new versions)"), "{table}");
    assert_eq!(std::fs::read_to_string(alice.handson.join("hello.ipynb")).unwrap(), mine, "alice's, in place");
    let beside: Vec<String> = std::fs::read_dir(&alice.handson)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("hello.new-") && n.ends_with(".ipynb"))
        .collect();
    assert_eq!(beside.len(), 1, "the new version beside alice's");
    assert_eq!(std::fs::read_to_string(alice.handson.join(&beside[0])).unwrap(), fixed);
    for p in &participants[1..] {
        assert_eq!(std::fs::read_to_string(p.handson.join("hello.ipynb")).unwrap(), fixed, "{}", p.said());
    }
    // Again: nothing to take.
    let out = room(&["update", input], &state);
    let table = text(&out);
    for name in READY {
        assert!(row(&table, name).contains("up to date"), "{table}");
    }
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
