//! Helpers for the end-to-end tests, by job:
//!
//! - `env`: each test's world (directory, config, container name) and the
//!   locks through which the tests share the Docker engine and the host's
//!   install paths (the engine lock: read `env`'s documentation first);
//! - `agent`: the agent running in the background, and its published states;
//! - fakes of the services around the agent, all on one small HTTP server
//!   (`http_fake`): the ECS metadata service (`metadata`), the ROS wait
//!   condition (`ros`), the agent's own API for `jupyter-bootstrap`
//!   (`fake_agent`), a file server (`files`), the `aliyun` CLI and the cloud
//!   behind it, whose stacks start real agents (`aliyun`); and real ones: an ACME CA
//!   (`pebble`), a registry (`registry`), a second engine that offers GPUs
//!   through a test double of the NVIDIA hook (`gpu_engine`);
//! - clients: plain HTTP (here), HTTPS and a kernel's WebSocket (`wss`), a
//!   headless browser (`chromium`);
//! - the ROS template checker (`template`), a Debian root (`debian_root`).

pub mod agent;
pub mod aliyun;
pub mod chromium;
pub mod debian_root;
pub mod env;
pub mod fake_agent;
pub mod files;
pub mod gpu_engine;
pub mod http_fake;
pub mod metadata;
pub mod netns;
pub mod pebble;
pub mod registry;
pub mod roots;
pub mod ros;
pub mod template;
pub mod wss;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// A loopback port free right now, never the same twice in this process.
///
/// Chosen below the kernel's ephemeral range (32768 and up), so neither an
/// outgoing connection nor another `bind(0)` takes it between this call and
/// the caller's bind; and handed out from a moving cursor, so two calls in a
/// row never answer the same port (asking the kernel for `127.0.0.1:0` twice
/// can, and once gave one test a challenge port equal to its HTTPS port).
/// Another process may still take it: callers that can notice retry (as
/// [`pebble::Pebble::start`] does).
pub fn free_port() -> u16 {
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static CURSOR: Mutex<Option<u16>> = Mutex::new(None);
    let mut cursor = CURSOR.lock().unwrap_or_else(|e| e.into_inner());
    // Two test processes at once start apart.
    let mut next = cursor.unwrap_or((std::process::id() % u32::from(SPAN)) as u16);
    for _ in 0..SPAN {
        let port = LOW + next;
        next = (next + 1) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            *cursor = Some(next);
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN)
}

/// The Jupyter image built by `scripts/build-test-image.sh`.
pub fn test_image() -> String {
    std::env::var("JUPYTER_TEST_IMAGE").unwrap_or_else(|_| "jupyter-agent/notebook:local".into())
}

/// The jupyter_server 2 image built by `scripts/build-server2-image.sh`.
pub fn server2_image() -> String {
    std::env::var("JUPYTER_SERVER2_IMAGE").unwrap_or_else(|_| "jupyter-agent/server2:local".into())
}

/// A binary of this workspace, next to the test executable's `deps/` folder.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target directory");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: build the workspace first (cargo build --workspace)", path.display());
    path
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("the docker CLI runs")
}

/// `docker inspect -f FORMAT NAME`, trimmed.
pub fn inspect(name: &str, format: &str) -> String {
    let out = docker(&["inspect", "-f", format, name]);
    assert!(out.status.success(), "docker inspect {name}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Splits a login URL into (base `http://host:port`, path, token).
pub fn split_url(url: &str) -> (String, String, String) {
    let (before, token) = url.split_once("?token=").expect("URL has a token");
    let rest = before.strip_prefix("http://").expect("http URL");
    let slash = rest.find('/').unwrap_or(rest.len());
    (format!("http://{}", &rest[..slash]), rest[slash..].to_string(), token.to_string())
}

/// An HTTP client for the tests (plain http to 127.0.0.1). The workspace
/// builds reqwest with rustls and no default crypto provider (the agent
/// installs ring itself), so the tests install ring too, once.
pub fn http() -> reqwest::blocking::Client {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::blocking::Client::builder().no_proxy().build().expect("an HTTP client")
}

/// `GET base + path` with `Authorization: token T`; the status code.
pub fn get_status(url: &str, token: &str) -> u16 {
    let client = http();
    client.get(url).header("Authorization", format!("token {token}")).send().map(|r| r.status().as_u16()).unwrap_or(0)
}

/// `git -C repo ARGS` as a test's committer; its stdout (panics when it fails).
pub fn git(repo: &Path, args: &[&str]) -> String {
    sh(Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.invalid"])
        .args(args))
}

/// An empty notebook, as the materials' `hello.ipynb`.
pub const NOTEBOOK: &str = r#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;
/// Where the workshop tests mount the workspace in the container.
pub const MOUNT: &str = "/home/jupyter/jupyter-working";

/// Workshop materials for `env`: `files` (path, text) committed on `main`
/// in a local git repository, served into the participant's copy and
/// mounted in the container at [`MOUNT`] (as root); `extra` goes into
/// `[workspace]`. Writes the agent's config; the repository and the copy.
pub fn materials(env: &env::Env, files: &[(&str, &str)], extra: &str) -> (PathBuf, PathBuf) {
    let repo = env.path("repo");
    materials_repo(&repo, files);
    env.write_config(&materials_config(env, &repo, extra));
    (repo, env.path("handson"))
}

/// A local git repository at `repo` of `files` (path, text), committed on `main`.
pub fn materials_repo(repo: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = repo.join(path);
        std::fs::create_dir_all(path.parent().expect("in the repository")).expect("the materials' directory");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "materials"]);
}

/// The agent's config for `env` with the materials of `repo` (its `main`)
/// copied to `env.path("handson")` and mounted in the container at
/// [`MOUNT`] (as root); `extra` goes into `[workspace]`.
pub fn materials_config(env: &env::Env, repo: &Path, extra: &str) -> String {
    format!(
        "{}\n[workspace]\nsource = \"file://{}\"\nref = \"main\"\npath = \"{}\"\n{extra}\n",
        env.base_config(&format!("user = \"root\"\nvolumes = [\"workspace:{MOUNT}\"]")),
        repo.display(),
        env.path("handson").display()
    )
}

/// Where the tests keep what a person may want to look at after a run
/// (screenshots): `test-artefacts/` in the target directory.
pub fn artefacts() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable");
    // target/debug/deps/tests-... -> target/test-artefacts
    let target = exe.ancestors().nth(3).expect("the target directory");
    target.join("test-artefacts")
}

/// Runs a command, panicking with its output when it fails; its stdout.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
