//! Build once, start everywhere: `jupyter-agent image export` writes the
//! archive an organiser ships; an instance downloads it over HTTP from
//! 127.0.0.1 (resuming after a cut), verifies it and loads it, and refuses
//! a wrong checksum with nothing loaded; a private registry (Debian's
//! docker-registry with an htpasswd login) serves a pull with credentials
//! from a root-only file, and a wrong password fails at once, the password
//! appearing nowhere.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use hyper::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE};
use hyper::StatusCode;

use crate::common::env::Env;
use crate::common::http_fake::{file_body, response, Body, FakeServer, Request};
use crate::common::registry::Registry;
use crate::common::{bin, docker, get_status, split_url, test_image};

/// Serves one file at `/nb.tar.gz` (any query), honouring `Range: bytes=N-`;
/// the first answer is cut after `cut` bytes, as a dropped connection
/// would. Records the `Range` header of every request (`-` when none).
struct ArchiveServer {
    url: String,
    ranges: Arc<Mutex<Vec<String>>>,
    _server: FakeServer,
}

impl ArchiveServer {
    fn start(file: PathBuf, cut: u64) -> ArchiveServer {
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let seen = ranges.clone();
        let server = FakeServer::tcp(move |request: Request| {
            let range = request.header("range").unwrap_or("-").to_string();
            let first = {
                let mut seen = seen.lock().unwrap();
                seen.push(range.clone());
                seen.len() == 1
            };
            if !request.target.starts_with("/nb.tar.gz") {
                return Some(response(404, None, ""));
            }
            let f = std::fs::File::open(&file).unwrap();
            let len = f.metadata().unwrap().len();
            let start =
                range.strip_prefix("bytes=").and_then(|r| r.strip_suffix('-')).and_then(|n| n.parse::<u64>().ok());
            let answer = hyper::Response::builder();
            let answer = match start {
                Some(s) => answer
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(CONTENT_LENGTH, len - s)
                    .header(CONTENT_RANGE, format!("bytes {s}-{}/{len}", len - 1)),
                None => answer.header(CONTENT_LENGTH, len).header(ACCEPT_RANGES, "bytes"),
            };
            Some(answer.body(file_body(f, start.unwrap_or(0), first.then_some(cut))).unwrap())
        });
        let url = format!("{}/nb.tar.gz", server.url());
        ArchiveServer { url, ranges, _server: server }
    }
}

fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// The test image as `jupyter-agent image export` writes it (gzip), and its
/// sha256: made once per test run, shared by the tests that load it.
pub(crate) fn exported_test_image() -> &'static (PathBuf, String) {
    static EXPORTED: std::sync::OnceLock<(PathBuf, String)> = std::sync::OnceLock::new();
    EXPORTED.get_or_init(|| {
        // Kept for the whole run (tests load it until the end); earlier
        // runs' copies older than an hour go, or every run would leave
        // 168 MB behind (a run beside this one keeps its own).
        let tmp = std::env::temp_dir();
        for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > std::time::Duration::from_secs(3600));
            if old && entry.file_name().to_string_lossy().starts_with("ja-export-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = tempfile::Builder::new().prefix("ja-export-").tempdir_in(&tmp).unwrap().keep();
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "state_dir = \"{}/state\"\n\n[image]\nname = \"{}\"\npull = \"never\"\n",
                dir.display(),
                test_image()
            ),
        )
        .unwrap();
        let out = dir.join("nb.tar.gz");
        let export = Command::new(bin("jupyter-agent"))
            .arg("--config")
            .arg(&config)
            .args(["image", "export", "--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(export.status.success(), "image export: {}", String::from_utf8_lossy(&export.stderr));
        let sha256 = sha256sum(&out);
        assert!(
            String::from_utf8_lossy(&export.stdout).contains(&format!("sha256 = \"{sha256}\"")),
            "image export prints the archive's sha256: {}",
            String::from_utf8_lossy(&export.stdout)
        );
        (out, sha256)
    })
}

/// `[image]` lines in place of the base configuration's pull of the test image.
fn with_image(env: &Env, image: &str) -> String {
    env.base_config("").replace(&format!("[image]\nname = \"{}\"\npull = \"never\"\n", test_image()), image)
}

#[test]
fn an_exported_archive_is_downloaded_resumed_verified_and_loaded_and_a_wrong_checksum_loads_nothing() {
    let mut env = Env::new("archive");
    // The organiser's side: export the image a build made (here: the test image).
    let (out, sha256) = exported_test_image().clone();
    let listed = std::fs::read_to_string(out.with_file_name("nb.tar.gz.sha256")).unwrap();
    assert_eq!(listed, format!("{sha256}  nb.tar.gz\n"), "sha256sum's format, for sha256sum -c");
    let mut magic = [0u8; 2];
    std::fs::File::open(&out).unwrap().read_exact(&mut magic).unwrap();
    assert_eq!(magic, [0x1f, 0x8b], "a .gz name gives a gzip archive");

    // An instance: the archive from a signed URL, cut once halfway.
    let size = std::fs::metadata(&out).unwrap().len();
    let server = ArchiveServer::start(out.clone(), size / 2);
    let signature = format!("Signature=sig{}secret", std::process::id());
    let tag = format!("{}-loaded:1", env.name);
    env.images.push(tag.clone());
    env.write_config(&with_image(
        &env,
        &format!(
            "[image]\narchive = \"{}?Expires=1&{signature}\"\nsha256 = \"{sha256}\"\ntag = \"{tag}\"\n",
            server.url
        ),
    ));
    // Every state the agent publishes, from the moment its socket answers.
    let agent = Command::new(bin("jupyter-agent"))
        .arg("--config")
        .arg(env.config_path())
        .args(["run", "--once"])
        .env("JUPYTER_AGENT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let events = crate::common::agent::follow_events(&env.socket(), 300);
    let out = agent.wait_with_output().unwrap();
    let run = crate::common::env::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(env.step_detail("image"), "downloaded, verified and loaded");
    let events = String::from_utf8_lossy(&events.wait_with_output().unwrap().stdout).into_owned();
    let mut progress: Vec<String> = Vec::new();
    for event in events.lines() {
        let state: serde_json::Value = serde_json::from_str(event).unwrap();
        for step in state["steps"].as_array().unwrap() {
            if let (true, Some(line)) = (step["name"] == "image", step["progress"].as_str()) {
                if progress.last().map(String::as_str) != Some(line) {
                    progress.push(line.to_string());
                }
            }
        }
    }
    assert!(progress.first().is_some_and(|l| l.starts_with("downloading: ") && l.ends_with("%)")), "{progress:?}");
    assert!(
        progress.ends_with(&["verifying the archive's sha256".into(), "loading the archive into the engine".into()]),
        "the image step's progress, as status shows it: {progress:?}"
    );
    assert!(!events.contains(&signature), "the URL's signature is in the published states");
    assert_eq!(
        *server.ranges.lock().unwrap(),
        ["-".to_string(), format!("bytes={}-", size / 2)],
        "resumed where the cut left it"
    );
    let (base, _, token) = split_url(env.agent(&["url"]).expect(0).stdout.trim());
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200, "Jupyter from the loaded image");
    let state = std::fs::read_to_string(env.state_dir().join("state.json")).unwrap();
    let status = env.agent(&["status", "--json"]).stdout;
    for (what, text) in [("the log", &run.stderr), ("the state", &state), ("status", &status)] {
        assert!(!text.contains(&signature), "the URL's signature is in {what}");
    }
    assert!(run.stderr.contains(&server.url), "the URL without its query names the archive: {}", run.stderr);
    let downloads = env.state_dir().join("downloads");
    assert_eq!(std::fs::read_dir(&downloads).unwrap().count(), 0, "the download is removed once loaded");

    // The next converge finds the image the same archive gave: no download.
    env.agent(&["run", "--once"]).expect(0);
    assert!(env.step_detail("image").starts_with("present (loaded before"), "{}", env.step_detail("image"));
    assert_eq!(server.ranges.lock().unwrap().len(), 2);

    // A wrong checksum: refused, and nothing is loaded under the tag.
    let wrong = format!("{}-wrong:1", env.name);
    env.images.push(wrong.clone());
    let zeros = "0".repeat(64);
    env.write_config(&with_image(
        &env,
        &format!("[image]\narchive = \"{}?{signature}\"\nsha256 = \"{zeros}\"\ntag = \"{wrong}\"\n", server.url),
    ));
    let run = env.agent(&["run", "--once"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = env.state()["error"]["cause"].as_str().unwrap().to_string();
    assert!(
        error.contains(&format!("has sha256 {sha256}, not {zeros} as [image] sha256 says; nothing was loaded")),
        "{error}"
    );
    assert!(!error.contains(&signature), "{error}");
    assert!(!docker(&["image", "inspect", &wrong]).status.success(), "nothing loaded on a mismatch");
}

/// An archive server that sends zeros without announcing a size: endless
/// as far as a 1 MiB bound can tell (it stops at 64 MiB, so that the agent
/// before the bound failed on the checksum instead of filling the disk).
fn endless_zeros() -> Body {
    let chunk = Bytes::from(vec![0u8; 64 << 10]);
    let frames = futures_util::stream::iter((0..1024).map(move |_| Ok(Frame::data(chunk.clone()))));
    StreamBody::new(frames).boxed()
}

/// An archive server that announces 30 bytes and sends one a second (one
/// every 50 s kept the agent's read timeout from firing, forever).
fn drip() -> Body {
    let frames = futures_util::stream::unfold(0, |sent| async move {
        if sent == 30 {
            return None;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        Some((Ok(Frame::data(Bytes::from_static(b"x"))), sent + 1))
    });
    StreamBody::new(frames).boxed()
}

/// `[image] archive` from `url`, sha256 of nothing that will come, and `extra` lines.
fn archive_config(env: &Env, url: &str, extra: &str) -> String {
    let sha256 = "1".repeat(64);
    with_image(
        env,
        &format!("[image]\narchive = \"{url}\"\nsha256 = \"{sha256}\"\ntag = \"{}-never:1\"\n{extra}", env.name),
    )
}

/// The partial downloads left in the state directory.
fn partial_downloads(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.state_dir().join("downloads"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// A server sending zeros for ever filled the disk (shared with
/// /var/lib/docker), and the next converge resumed the same partial file;
/// partial files of an archive replaced before it was loaded stayed for
/// ever. The download now stops at `[image] max_size` and removes its file,
/// and a converge removes the partial downloads of other archives.
#[test]
fn an_archive_server_sending_endless_zeros_is_cut_at_max_size_and_leaves_no_file() {
    let env = Env::new("archive-zeros");
    let server = FakeServer::tcp(|_| Some(hyper::Response::new(endless_zeros())));
    // What a download of an archive since replaced left behind.
    let downloads = env.state_dir().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    for dir in [env.state_dir(), downloads.clone()] {
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    let stale = format!("image-{}.tar.part", "2".repeat(64));
    std::fs::write(downloads.join(&stale), vec![0u8; 4096]).unwrap();
    env.write_config(&archive_config(&env, &format!("{}/nb.tar.gz", server.url()), "max_size = \"1MiB\"\n"));
    let started = std::time::Instant::now();
    let run = env.agent(&["run", "--once"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = env.state()["error"].clone();
    assert_eq!(error["step"], "image", "{error}");
    let cause = error["cause"].as_str().unwrap();
    assert!(cause.contains("sent more than [image] max_size (1048576 bytes)"), "{cause}");
    assert!(!run.stderr.contains("retrying"), "too large is not retried: {}", run.stderr);
    assert_eq!(partial_downloads(&env), Vec::<String>::new(), "neither this download nor the stale one is left");
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
}

/// A server sending a byte every 50 s wedged the image step for ever: no
/// timeout covered the whole download. `[image] download_timeout` does.
#[test]
fn an_archive_server_that_drips_fails_the_step_at_download_timeout() {
    let env = Env::new("archive-drip");
    let server = FakeServer::tcp(|_| Some(hyper::Response::builder().header(CONTENT_LENGTH, 30).body(drip()).unwrap()));
    env.write_config(&archive_config(&env, &format!("{}/nb.tar.gz", server.url()), "download_timeout = \"3s\"\n"));
    let started = std::time::Instant::now();
    let run = env.agent(&["run", "--once"]);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.stderr);
    let cause = env.state()["error"]["cause"].as_str().unwrap().to_string();
    assert!(cause.contains("not done within [image] download_timeout (3s)"), "{cause}");
    assert!(took < Duration::from_secs(25), "the step ended at its deadline, not with the drip: {took:?}");
}

/// A tiny image (one file), pushed to `registry` as `reference` with the
/// docker CLI logged in through a configuration directory of its own.
fn push_tiny_image(env: &Env, registry: &Registry, user: &str, password: &str, reference: &str) {
    let tree = env.path("tiny");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("hello"), "hello\n").unwrap();
    let tarball = env.path("tiny.tar");
    assert!(Command::new("tar").arg("-C").arg(&tree).arg("-cf").arg(&tarball).arg(".").status().unwrap().success());
    assert!(docker(&["import", tarball.to_str().unwrap(), reference]).status.success());
    let cli = env.path("docker-cli");
    let mut login = Command::new("docker")
        .arg("--config")
        .arg(&cli)
        .args(["login", "-u", user, "--password-stdin", &format!("127.0.0.1:{}", registry.port)])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    login.stdin.take().unwrap().write_all(password.as_bytes()).unwrap();
    assert!(login.wait().unwrap().success());
    let push = Command::new("docker").arg("--config").arg(&cli).args(["push", reference]).output().unwrap();
    assert!(push.status.success(), "{}", String::from_utf8_lossy(&push.stderr));
    assert!(docker(&["rmi", reference]).status.success());
}

/// Scans every process's arguments for `needle` until `child` exits.
fn watch_arguments(mut child: std::process::Child, needle: &str) -> (std::process::Output, bool) {
    let mut seen = false;
    while child.try_wait().unwrap().is_none() {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(args) = std::fs::read(entry.path().join("cmdline")) {
                seen |= String::from_utf8_lossy(&args).contains(needle);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), seen)
}

#[test]
fn a_private_registry_pull_logs_in_from_a_root_only_file_and_a_wrong_password_fails_at_once() {
    let mut env = Env::new("registry");
    let password = format!("pw-{}-s3cret", std::process::id());
    let registry = Registry::start_with_login("organiser", &password);
    let reference = format!("127.0.0.1:{}/ja-test/private:{}", registry.port, env.name);
    push_tiny_image(&env, &registry, "organiser", &password, &reference);
    env.images.push(reference.clone());

    let credentials = env.path("registry.toml");
    let write_credentials = |password: &str| {
        std::fs::write(&credentials, format!("username = \"organiser\"\npassword = \"{password}\"\n")).unwrap();
        std::fs::set_permissions(&credentials, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    };
    write_credentials(&password);
    // The tiny image runs no Jupyter: only the image step is this test's.
    // doctor (below) asks the metadata service: a local stand-in.
    let meta = crate::common::metadata::FakeMetadata::start(&[("instance-id", "i-test")]);
    env.write_config(
        &with_image(
            &env,
            &format!(
                "[image]\nname = \"{reference}\"\npull = \"always\"\ncredentials = \"{}\"\n",
                credentials.display()
            ),
        )
        .replace("ready_timeout = \"90s\"", "ready_timeout = \"2s\"")
        .replace(
            "url_host = \"127.0.0.1\"",
            &format!("url_host = \"127.0.0.1\"\nmetadata_endpoint = \"{}\"", meta.url),
        ),
    );
    let agent = Command::new(bin("jupyter-agent"))
        .arg("--config")
        .arg(env.config_path())
        .args(["run", "--once"])
        .env("JUPYTER_AGENT_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, in_arguments) = watch_arguments(agent, &password);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(env.step_detail("image"), "pulled", "{log}");
    assert!(!in_arguments, "the password was in a process's arguments");
    let state = std::fs::read_to_string(env.state_dir().join("state.json")).unwrap();
    let status = env.agent(&["status"]).stdout + &env.agent(&["status", "--json"]).stdout;
    for (what, text) in [("the debug log", &log), ("the state", &state), ("status", &status)] {
        assert!(!text.contains(&password), "the password is in {what}");
    }

    // A wrong password: the registry's refusal ends the step at once, no retries.
    let _ = docker(&["rm", "-f", &env.name]);
    assert!(docker(&["rmi", "-f", &reference]).status.success());
    write_credentials("not-the-password");
    let run = env.agent(&["run", "--once"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = env.state()["error"].clone();
    assert_eq!(error["step"], "image");
    let cause = error["cause"].as_str().unwrap();
    assert!(
        cause.contains(&format!(
            "the registry 127.0.0.1:{} refused the login from {} ([image] credentials); check its username and password",
            registry.port,
            credentials.display()
        )),
        "{cause}"
    );
    assert!(!run.stderr.contains("retrying"), "a refused login is not retried: {}", run.stderr);

    // A credentials file others may read is refused before anything changes,
    // and doctor says what to do about it.
    std::fs::set_permissions(&credentials, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let run = env.agent(&["run", "--once"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("must belong to root and be readable by no one else"), "{}", run.stderr);
    let doctor: serde_json::Value = serde_json::from_str(&env.agent(&["doctor", "--json"]).stdout).unwrap();
    let image = doctor.as_array().unwrap().iter().find(|c| c["name"] == "image").unwrap().clone();
    assert_eq!(image["verdict"], "fail", "{image}");
    assert!(image["fix"].as_str().unwrap().contains("mode 600"), "{image}");
    assert!(!image.to_string().contains("not-the-password"), "{image}");
}
