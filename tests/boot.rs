//! The first boot of an instance, played on this machine: the rendered user
//! data runs as root with this host's paths; a local HTTP server serves the
//! release bundle, another plays the ROS wait-condition endpoint, a third the
//! ECS metadata service; the agent fetches the materials from a local git
//! repository, builds the notebook image from them (FROM the local Jupyter
//! image) and converges against the real engine.
//!
//! The user data installs into /usr/local/bin, writes /etc/jupyter-agent and
//! runs a container named `notebook`, as on an instance (published on
//! loopback here): the tests run one at a time (`common::env::host_paths`) and
//! clean up after themselves. Each holds the engine lock's read guard
//! (`common::env::engine_shared`) for its whole duration, cleanup included.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::MutexGuard;
use std::time::Duration;

use crate::common;
use crate::common::env::EngineShared;
use crate::common::files::StaticServer;
use crate::common::metadata::FakeMetadata;
use crate::common::ros::{command_lines_with_signature, FakeRos};
use crate::common::{docker, get_status, sh, split_url};

const BIN_DIR: &str = "/usr/local/bin";

/// The release bundle: from `JA_RELEASE_DIR` (scripts/test.sh builds it with
/// scripts/release.sh), else packed here from this build's binaries.
pub(crate) fn bundle(dir: &Path) -> Vec<u8> {
    if let Ok(release) = std::env::var("JA_RELEASE_DIR") {
        let tarball = std::fs::read_dir(&release)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with("-x86_64-linux.tar.gz"))
            .unwrap_or_else(|| panic!("no release tarball in {release}"));
        return std::fs::read(tarball).unwrap();
    }
    let stage = dir.join("bundle/jupyter-agent-test-x86_64-linux");
    std::fs::create_dir_all(&stage).unwrap();
    for bin in ["jupyter-agent", "jupyter-bootstrap"] {
        std::fs::copy(common::bin(bin), stage.join(bin)).unwrap();
    }
    let out = Command::new("tar").arg("-C").arg(dir.join("bundle")).args(["-czf", "-", "."]).output().unwrap();
    assert!(out.status.success());
    out.stdout
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    let mut child =
        Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("sha256sum runs");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// The hands-on's materials as a git repository: a Dockerfile building on
/// the local image (serving / so the mount shows in the tree) and a notebook.
pub(crate) fn materials(dir: &Path, dockerfile_extra: &str) -> PathBuf {
    let repo = dir.join("materials");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("Dockerfile"),
        format!(
            "FROM {}\n{dockerfile_extra}WORKDIR /\nCMD [\"jupyter-notebook\", \"--ip=0.0.0.0\", \"--port=8888\", \"--allow-root\", \"--no-browser\", \"--notebook-dir=/\"]\n",
            common::test_image()
        ),
    )
    .unwrap();
    std::fs::write(
        repo.join("imagesearch.ipynb"),
        r#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#,
    )
    .unwrap();
    let git = |args: &[&str]| {
        sh(Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=T", "-c", "user.email=t@example.invalid"])
            .args(args))
    };
    git(&["init", "-q", "-b", "master"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "hands-on"]);
    repo
}

/// Everything a boot leaves on the host, removed before and after each test.
pub(crate) fn clean_host() {
    // Only this PID namespace's: the agents that the systemd tests run as
    // units in their containers have the same command line.
    let own = std::process::id().to_string();
    let _ = Command::new("pkill")
        .args([
            "--ns",
            &own,
            "--nslist",
            "pid",
            "-TERM",
            "-f",
            "jupyter-agent --config /etc/jupyter-agent/config.toml run",
        ])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    let _ = docker(&["rm", "-f", "notebook"]);
    for p in ["/etc/jupyter-agent", "/var/lib/jupyter-agent", "/var/log/jupyter-agent"] {
        let _ = std::fs::remove_dir_all(p);
    }
    for bin in ["jupyter-agent", "jupyter-bootstrap"] {
        let _ = std::fs::remove_file(Path::new(BIN_DIR).join(bin));
    }
    let _ = std::fs::remove_file("/run/jupyter-agent.sock");
}

/// One boot: its files, fakes and image, and (dropped last, after the
/// host is cleaned) its use of the engine and of the host's paths.
pub(crate) struct Boot {
    pub(crate) dir: tempfile::TempDir,
    /// Run the user data in this container instead of on the host.
    pub(crate) inside: Option<String>,
    pub(crate) ros: FakeRos,
    _meta: FakeMetadata,
    /// The notebook image the user data builds, removed when the boot is dropped.
    pub(crate) image: String,
    /// The template's image source parameters (build, by default).
    pub(crate) image_source: Vec<(&'static str, String)>,
    _engine: EngineShared,
    _host: MutexGuard<'static, ()>,
}

impl Drop for Boot {
    fn drop(&mut self) {
        clean_host();
        let _ = docker(&["rmi", "-f", &self.image]);
    }
}

impl Boot {
    /// One boot at a time: they share the host's paths (and the engine).
    pub(crate) fn new() -> Boot {
        let host = common::env::host_paths();
        let engine = common::env::engine_shared();
        clean_host();
        let image = format!("ja-boot-{}:latest", std::process::id());
        Boot {
            dir: tempfile::tempdir().unwrap(),
            inside: None,
            ros: FakeRos::start(),
            _meta: FakeMetadata::start(&[("eipv4", "127.0.0.1")]),
            image,
            image_source: [
                ("ImageSource", "build"),
                ("ImageArchiveUrl", ""),
                ("ImageArchiveSha256", ""),
                ("RegistryImage", ""),
                ("RegistryUsername", ""),
                ("RegistryPassword", ""),
            ]
            .map(|(k, v)| (k, v.to_string()))
            .to_vec(),
            _engine: engine,
            _host: host,
        }
    }

    /// Renders the user data with these values and runs it under `sh`; no
    /// command line may hold the wait condition's signature meanwhile.
    fn run(&self, bundle_url: &str, bundle_sha: &str, repo: &Path, wait: &str) -> Output {
        let (out, exposed) = self.run_with(bundle_url, bundle_sha, repo, wait, &self.ros.curl_cli(), None);
        assert_eq!(exposed, Vec::<String>::new(), "the wait condition's signature was in the process list");
        out
    }

    /// [`Boot::run`] with this CurlCli, and `path` (if any) before the
    /// PATH; also returns every command line that held the wait condition's
    /// signature (none may: any local user can read them).
    pub(crate) fn run_with(
        &self,
        bundle_url: &str,
        bundle_sha: &str,
        repo: &Path,
        wait: &str,
        curl_cli: &str,
        path: Option<&Path>,
    ) -> (Output, Vec<String>) {
        self.run_watched(self.user_data(bundle_url, bundle_sha, repo, wait, curl_cli, path))
    }

    /// Runs `user_data` and collects the command lines that held the
    /// signature: those seen every 50 ms while it ran (the bootstrap's long
    /// wait), and those the fake ROS saw while each signal was being sent
    /// (a signal's curl or wget lives for milliseconds, between two looks).
    /// Only the user data's own processes count (on the host: the tests
    /// beside it may hold the signature in a command line on purpose).
    pub(crate) fn run_watched(&self, mut user_data: Command) -> (Output, Vec<String>) {
        let child = user_data.spawn().unwrap();
        let pid = child.id();
        let (tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(child.wait_with_output()));
        let mut seen = Vec::new();
        let out = loop {
            if let Ok(out) = done.recv_timeout(Duration::from_millis(50)) {
                break out.unwrap();
            }
            seen.extend(command_lines_with_signature());
        };
        seen.extend(self.ros.exposed());
        // In a container (`docker exec`) its processes descend from the
        // engine, not from the client: every one counts.
        let mut exposed: Vec<String> =
            seen.into_iter().filter(|e| self.inside.is_some() || e.lineage.contains(&pid)).map(|e| e.cmdline).collect();
        exposed.sort();
        exposed.dedup();
        (out, exposed)
    }

    /// The user data rendered with these values and written to the boot's
    /// directory, as the command that runs it under `sh` (stdin empty,
    /// output captured), not yet started: the benchmark
    /// (`tests/bench_boot.rs`) times it from its start.
    pub(crate) fn user_data(
        &self,
        bundle_url: &str,
        bundle_sha: &str,
        repo: &Path,
        wait: &str,
        curl_cli: &str,
        path: Option<&Path>,
    ) -> Command {
        let render = |pairs: Vec<(&str, String)>| {
            let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/render-userdata.py"));
            cmd.arg("values");
            for (k, v) in pairs {
                cmd.arg(format!("{k}={v}"));
            }
            sh(&mut cmd)
        };
        let mut values = vec![
            ("BundleUrl", bundle_url.to_string()),
            ("BundleSha256", bundle_sha.to_string()),
            ("WaitConditionCurlCli", curl_cli.to_string()),
            ("MaterialsSource", format!("file://{}", repo.display())),
            ("MaterialsRef", "master".into()),
            ("JupyterImage", self.image.clone()),
            ("AccessKeyId", "LTAI-test-id".into()),
            ("AccessKeySecret", "test-secret-value".into()),
            ("Region", "cn-beijing".into()),
            ("BucketName", "handson-bucket".into()),
            ("ImageSearchInstanceName", "imagesearchhandson".into()),
            ("WaitTimeout", wait.into()),
            ("SignalId", "jupyter".into()),
            ("RoomMode", "single".into()),
            // Plain http: no test may ask Let's Encrypt for a certificate.
            ("TlsMode", "off".into()),
            // No GPU here (docs/gpu.md).
            ("GpuDriver", "none".into()),
            ("GpuDriverVersions", "550.127.08 12.4.1 9.2.0.82".into()),
        ];
        values.extend(self.image_source.iter().cloned());
        let script = render(values);
        let script_path = self.dir.path().join("userdata.sh");
        std::fs::write(&script_path, script).unwrap();
        let vars = [
            ("JA_WORKSPACE", self.dir.path().join("imagesearchhandson").display().to_string()),
            ("JA_RESULT_FILE", self.dir.path().join("userdata-result.txt").display().to_string()),
            ("JA_METADATA_ENDPOINT", self._meta.url.clone()),
            // One round of retries: the test's server is there or it is not.
            ("JA_NETWORK_WAIT", "0".to_string()),
            // Loopback, on a port Docker picks: nothing else on this host is disturbed.
            ("JA_PUBLISH", "127.0.0.1:0".to_string()),
        ];
        let mut cmd = match &self.inside {
            // In the systemd container (tests/systemd.rs), as cloud-init would run it there.
            Some(name) => {
                let mut c = Command::new("docker");
                c.arg("exec");
                for (k, v) in &vars {
                    c.arg("-e").arg(format!("{k}={v}"));
                }
                c.arg(name).arg("sh").arg(&script_path);
                c
            }
            None => {
                let mut c = Command::new("sh");
                c.arg(&script_path).envs(vars.iter().map(|(k, v)| (k, v)));
                c
            }
        };
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(dir) = path {
            cmd.env("PATH", format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default()));
        }
        cmd
    }

    /// The verdicts: the signals with id `jupyter` (the bootstrap's final
    /// one, or the user data's own FAILURE), once one has arrived.
    pub(crate) fn signals(&self) -> Vec<common::ros::Request> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let all = self.ros.requests();
            if all.iter().any(|r| r.field("id") == Some("jupyter")) || std::time::Instant::now() > deadline {
                return all.into_iter().filter(|r| r.field("id") == Some("jupyter")).collect();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything signalled, in order: the milestones, then the verdict.
    pub(crate) fn all_signals(&self) -> Vec<common::ros::Request> {
        self.signals();
        self.ros.requests()
    }
}

#[test]
fn a_first_boot_ends_in_exactly_one_success_whose_url_opens_jupyter() {
    let boot = Boot::new();
    let repo = materials(boot.dir.path(), "");
    let bundle = bundle(boot.dir.path());
    let server = StaticServer::start(vec![("/jupyter-agent.tar.gz".into(), bundle.clone())]);
    let (out, exposed) = boot.run_with(
        &format!("{}/jupyter-agent.tar.gz", server.url),
        &sha256(&bundle),
        &repo,
        "10m",
        &boot.ros.curl_cli(),
        None,
    );
    assert_eq!(out.status.code(), Some(0), "user data:\n{}", String::from_utf8_lossy(&out.stderr));
    // The signed URL (ROS's CurlCli, with \& in it) never stood in a process's arguments.
    assert_eq!(exposed, Vec::<String>::new(), "the wait condition's signature was in the process list");

    let signals = boot.signals();
    assert_eq!(signals.len(), 1, "exactly one verdict: {signals:?}");
    assert_eq!(signals[0].field("status"), Some("SUCCESS"));
    let url = signals[0].field("data").unwrap().to_string();
    // Before it, the milestones in order, each a SUCCESS with its own id:
    // with the template's Count (5), what the stack's progress events show.
    let all = boot.all_signals();
    let ids: Vec<&str> = all.iter().map(|r| r.field("id").unwrap_or_default()).collect();
    assert_eq!(ids, ["docker", "materials", "image", "container", "jupyter"], "{all:?}");
    for milestone in &all[..4] {
        assert_eq!(milestone.field("status"), Some("SUCCESS"), "{milestone:?}");
    }
    assert!(all[1].field("data").unwrap_or_default().starts_with("workspace done in "), "{:?}", all[1]);
    assert!(all[2].field("data").unwrap_or_default().contains("built"), "{:?}", all[2]);
    assert!(url.starts_with("http://127.0.0.1:"), "the URL names the address from the metadata service: {url}");
    let (base, _, token) = split_url(&url);
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200, "the signalled URL opens Jupyter");
    assert_eq!(get_status(&format!("{base}/api/status"), "wrong"), 403);

    // As the hands-on instructions say: tail the result file for the URL.
    let result = std::fs::read_to_string(boot.dir.path().join("userdata-result.txt")).unwrap();
    assert_eq!(result.lines().last().unwrap().trim(), url);
    // The configuration holds the access key: 0600.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata("/etc/jupyter-agent/config.toml").unwrap().permissions().mode() & 0o777, 0o600);
    // The materials are mounted where the hands-on put them.
    let ls = docker(&["exec", "notebook", "ls", "/home/jupyter/jupyter-working"]);
    assert!(String::from_utf8_lossy(&ls.stdout).contains("imagesearch.ipynb"));
}

#[test]
fn a_wrong_checksum_sends_failure_naming_it_and_installs_nothing() {
    let boot = Boot::new();
    let repo = materials(boot.dir.path(), "");
    let bundle = bundle(boot.dir.path());
    let server = StaticServer::start(vec![("/b.tar.gz".into(), bundle.clone())]);
    let wrong = "f".repeat(64);
    let out = boot.run(&format!("{}/b.tar.gz", server.url), &wrong, &repo, "10m");
    assert_ne!(out.status.code(), Some(0));
    let signals = boot.signals();
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0].field("status"), Some("FAILURE"));
    let reason = signals[0].field("reason").unwrap();
    assert!(reason.starts_with("verify: "), "{reason}");
    assert!(reason.contains(&sha256(&bundle)) && reason.contains(&wrong), "names both checksums: {reason}");
    assert!(!Path::new(BIN_DIR).join("jupyter-agent").exists(), "nothing was installed");
    assert!(!Path::new("/etc/jupyter-agent").exists());
}

#[test]
fn an_unreachable_bundle_sends_failure_after_its_retries() {
    let boot = Boot::new();
    let repo = materials(boot.dir.path(), "");
    // A loopback port where nothing listens.
    let port = crate::common::free_port();
    let out = boot.run(&format!("http://127.0.0.1:{port}/b.tar.gz"), &"0".repeat(64), &repo, "10m");
    assert_ne!(out.status.code(), Some(0));
    let signals = boot.signals();
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0].field("status"), Some("FAILURE"));
    let reason = signals[0].field("reason").unwrap();
    assert!(
        reason.starts_with("download: could not download the bundle") && reason.contains("5 attempts each time"),
        "{reason}"
    );
}

#[test]
fn an_image_that_cannot_be_prepared_sends_failure_with_the_agents_reason() {
    let boot = Boot::new();
    let repo = materials(boot.dir.path(), "COPY no-such-file /x\n");
    let bundle = bundle(boot.dir.path());
    let server = StaticServer::start(vec![("/b.tar.gz".into(), bundle.clone())]);
    let out = boot.run(&format!("{}/b.tar.gz", server.url), &sha256(&bundle), &repo, "10m");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let signals = boot.signals();
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0].field("status"), Some("FAILURE"));
    let reason = signals[0].field("reason").unwrap();
    assert!(reason.starts_with("image: preparing the image: building"), "{reason}");
    assert!(reason.contains("no-such-file"), "{reason}");
}

#[test]
fn the_user_data_is_posix_sh_that_dash_busybox_and_shellcheck_accept() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../userdata/userdata.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.is_ascii(), "plain ASCII only (full-width spaces once broke the original template)");
    for (what, cmd) in [
        ("dash", vec!["dash", "-n"]),
        ("busybox sh", vec!["busybox", "sh", "-n"]),
        ("shellcheck", vec!["shellcheck", "-s", "sh"]),
    ] {
        let out = Command::new(cmd[0]).args(&cmd[1..]).arg(&script).output().unwrap_or_else(|e| {
            panic!("{what} is needed for this test ({e}); scripts/test.sh installs it from Debian's packages")
        });
        assert!(
            out.status.success(),
            "{what} refuses userdata.sh:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A directory holding a `uname` that says aarch64, for the front of PATH.
fn arm64_uname(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let fake = dir.join("fake-bin");
    std::fs::create_dir(&fake).unwrap();
    std::fs::write(fake.join("uname"), "#!/bin/sh\necho aarch64\n").unwrap();
    std::fs::set_permissions(fake.join("uname"), std::fs::Permissions::from_mode(0o755)).unwrap();
    fake
}

/// An arm64 instance (g8y and the other Yitian families): the bundle is
/// x86_64 only. The user data names the architecture in a FAILURE before it
/// downloads anything; before, the install died with an exec format error.
#[test]
fn an_arm64_instance_sends_failure_naming_the_architecture() {
    let boot = Boot::new();
    let repo = materials(boot.dir.path(), "");
    let fake = arm64_uname(boot.dir.path());
    let server = StaticServer::start(vec![]);
    let (out, exposed) = boot.run_with(
        &format!("{}/b.tar.gz", server.url),
        &"0".repeat(64),
        &repo,
        "10m",
        &boot.ros.curl_cli(),
        Some(&fake),
    );
    assert_ne!(out.status.code(), Some(0));
    let signals = boot.signals();
    assert_eq!(signals.len(), 1, "{signals:?}");
    assert_eq!(signals[0].field("status"), Some("FAILURE"));
    let reason = signals[0].field("reason").unwrap();
    assert!(reason.starts_with("arch: this instance is aarch64") && reason.contains("x86_64"), "{reason}");
    assert!(!Path::new(BIN_DIR).join("jupyter-agent").exists(), "nothing was installed");
    // The user data's own FAILURE went out with curl, the signed URL on its standard input.
    assert_eq!(exposed, Vec::<String>::new(), "the wait condition's signature was in the process list");
}

/// The user data's own FAILURE where only wget is installed (as on some
/// minimal images): it reaches the fake ROS too, and the signed URL goes to
/// wget on its standard input, never in its arguments. The instance says
/// it is arm64 (a fake `uname`), so that the failure comes at once, and its
/// PATH holds only the tools the script needs that far, without curl.
#[test]
fn the_user_datas_own_failure_goes_out_with_wget_when_there_is_no_curl() {
    let boot = Boot::new();
    let repo = materials(boot.dir.path(), "");
    let fake = arm64_uname(boot.dir.path());
    for tool in ["sh", "cat", "tr", "cut", "grep", "head", "sed", "sleep", "rm", "wget"] {
        let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().unwrap();
        let found = String::from_utf8_lossy(&found.stdout).trim().to_string();
        assert!(!found.is_empty(), "{tool} is needed for this test");
        std::os::unix::fs::symlink(found, fake.join(tool)).unwrap();
    }
    let server = StaticServer::start(vec![]);
    let mut user_data =
        boot.user_data(&format!("{}/b.tar.gz", server.url), &"0".repeat(64), &repo, "10m", &boot.ros.curl_cli(), None);
    user_data.env("PATH", &fake);
    let (out, exposed) = boot.run_watched(user_data);
    assert_ne!(out.status.code(), Some(0));
    let signals = boot.signals();
    assert_eq!(signals.len(), 1, "{signals:?} {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(signals[0].problem, None, "a valid signal");
    assert_eq!(signals[0].field("status"), Some("FAILURE"));
    assert!(signals[0].field("reason").unwrap().starts_with("arch: this instance is aarch64"), "{signals:?}");
    assert!(signals[0].header("user-agent").unwrap_or_default().starts_with("Wget"), "{signals:?}");
    assert_eq!(exposed, Vec::<String>::new(), "the wait condition's signature was in the process list");
}

/// A CurlCli that jupyter-bootstrap cannot use (here an option it does not
/// know): it exits 2 without a signal, and the user data, which no longer
/// hands over with `exec`, sends the FAILURE itself. Before, the stack
/// waited out its whole timeout.
#[test]
fn a_curl_cli_the_bootstrap_refuses_still_ends_in_a_failure() {
    let boot = Boot::new();
    let repo = materials(boot.dir.path(), "");
    let bundle = bundle(boot.dir.path());
    let server = StaticServer::start(vec![("/b.tar.gz".into(), bundle.clone())]);
    let curl_cli = format!("{} -u organiser:pw", boot.ros.curl_cli());
    let (out, exposed) =
        boot.run_with(&format!("{}/b.tar.gz", server.url), &sha256(&bundle), &repo, "10m", &curl_cli, None);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let signals = boot.signals();
    assert_eq!(signals.len(), 1, "{signals:?}");
    assert_eq!(signals[0].field("status"), Some("FAILURE"));
    let reason = signals[0].field("reason").unwrap();
    assert!(reason.starts_with("wait: jupyter-bootstrap could not signal (exit 2)"), "{reason}");
    assert_eq!(exposed, Vec::<String>::new(), "the wait condition's signature was in the process list");
}

/// The template's image source `archive`: the user data writes `[image]
/// archive` + `sha256` from the parameters, and the instance loads the
/// organiser's archive (`jupyter-agent image export`) instead of building:
/// one SUCCESS whose URL opens Jupyter.
#[test]
fn an_image_archive_from_the_templates_parameters_is_loaded_instead_of_built() {
    let mut boot = Boot::new();
    let (archive, sha) = crate::images::exported_test_image();
    let repo = materials(boot.dir.path(), "");
    let bundle = bundle(boot.dir.path());
    let server = StaticServer::start(vec![
        ("/jupyter-agent.tar.gz".into(), bundle.clone()),
        ("/nb.tar.gz".into(), std::fs::read(archive).unwrap()),
    ]);
    for (key, value) in boot.image_source.iter_mut() {
        match *key {
            "ImageSource" => *value = "archive".into(),
            "ImageArchiveUrl" => *value = format!("{}/nb.tar.gz", server.url),
            "ImageArchiveSha256" => *value = sha.clone(),
            _ => {}
        }
    }
    let out = boot.run(&format!("{}/jupyter-agent.tar.gz", server.url), &sha256(&bundle), &repo, "10m");
    assert_eq!(out.status.code(), Some(0), "user data:\n{}", String::from_utf8_lossy(&out.stderr));
    let all = boot.all_signals();
    let image = all.iter().find(|r| r.field("id") == Some("image")).expect("the image milestone");
    assert!(image.field("data").unwrap_or_default().contains("downloaded, verified and loaded"), "{image:?}");
    let signals = boot.signals();
    assert_eq!(signals.len(), 1, "exactly one verdict: {signals:?}");
    assert_eq!(signals[0].field("status"), Some("SUCCESS"));
    let (base, _, token) = split_url(signals[0].field("data").unwrap());
    assert_eq!(get_status(&format!("{base}/api/status"), &token), 200, "the signalled URL opens Jupyter");
    let config = std::fs::read_to_string("/etc/jupyter-agent/config.toml").unwrap();
    assert!(config.contains(&format!("sha256 = '{sha}'")), "{config}");
    assert!(!config.contains("[image.build]"), "{config}");
}
