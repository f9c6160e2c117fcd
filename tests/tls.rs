//! HTTPS in front of Jupyter (docs/tls.md), against a real ACME server
//! (Debian's pebble on 127.0.0.1, its challenge ports pointed at the agent),
//! a real dockerd and a real Jupyter server: the certificate is issued for
//! 127.0.0.1, curl trusting only pebble's root gets 200 from /api/status, a
//! kernel answers over its WebSocket through TLS, a renewal swaps the
//! certificate without changing the URL or killing the kernel, and a CA that
//! refuses leads to the configured fallback with the reason in `status`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::agent::ForegroundAgent;
use crate::common::env::Env;
use crate::common::free_port;
use crate::common::pebble::{Pebble, PebbleOptions};
use crate::common::wss::{self, KernelSocket};

/// A configuration for the test image with `[tls]` as given; the agent
/// listens on `port` (fixed, so that a restarted agent keeps the URL). The
/// metadata service is a stand-in on loopback (`doctor` asks it).
fn config(env: &Env, port: u16, tls: &str, metadata: &common::metadata::FakeMetadata) -> String {
    let base =
        env.base_config("").replace("publish = \"127.0.0.1:0\"", &format!("publish = \"127.0.0.1:{port}\"")).replace(
            "url_host = \"127.0.0.1\"",
            &format!("url_host = \"127.0.0.1\"\nmetadata_endpoint = \"{}\"", metadata.url),
        );
    format!("{base}\n[tls]\n{tls}\n")
}

/// A metadata fake, a Pebble issuing 60 s certificates over HTTP-01 on
/// `http_port`, and the agent's configuration for it written, listening on
/// `port`: (metadata, pebble, http_port, port).
fn over_http_01_with_60s_certificates(env: &Env) -> (common::metadata::FakeMetadata, Pebble, u16, u16) {
    let meta = common::metadata::FakeMetadata::start(&[]);
    let http_port = free_port();
    let pebble = Pebble::start(
        env.dir.path(),
        &PebbleOptions { http_port, tls_port: free_port(), validity_secs: 60, refuse_accounts: false },
    );
    let port = free_port();
    env.write_config(&config(env, port, &acme(&pebble, "http-01", http_port), &meta));
    (meta, pebble, http_port, port)
}

/// `doctor --json`'s `tls` check.
fn doctor_tls(env: &Env) -> serde_json::Value {
    let run = env.agent(&["doctor", "--json"]);
    let checks: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    let reachable = checks.as_array().unwrap().iter().find(|c| c["name"] == "reachable").cloned();
    assert_eq!(reachable.as_ref().map(|r| r["verdict"].clone()), Some("ok".into()), "{checks:#}");
    checks.as_array().unwrap().iter().find(|c| c["name"] == "tls").cloned().unwrap_or_else(|| panic!("{checks:#}"))
}

fn acme(pebble: &Pebble, challenge: &str, port: u16) -> String {
    format!(
        "mode = \"acme\"\ndirectory = \"{}\"\nchallenge = \"{challenge}\"\nchallenge_port = {port}\nca_file = \"{}\"\n",
        pebble.directory,
        pebble.ca_file.display()
    )
}

/// Listens on 0.0.0.0:`port` as another process would, once the agent
/// lets go of it (it holds it while a renewal answers its challenge).
fn hold_port(port: u16) -> std::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match std::net::TcpListener::bind(("0.0.0.0", port)) {
            Ok(listener) => return listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("taking port {port}: {e}"),
        }
    }
}

/// `status --json --show-token` once the agent is ready.
fn ready(env: &Env) -> serde_json::Value {
    env.agent(&["wait", "--timeout", "120s"]).expect(0);
    env.state()
}

/// `status` of the agent started after the one that wrote `before`, once ready.
fn restarted_and_ready(env: &Env, before: &serde_json::Value) -> serde_json::Value {
    state_until(env, Duration::from_secs(120), |s| s["started_at"] != before["started_at"] && s["phase"] == "ready")
}

/// `curl --cacert ROOT URL/api/status` with the token in a header read from a
/// file (not in curl's arguments): the status code.
fn curl_status(env: &Env, url: &str, cacert: Option<&Path>) -> String {
    let (base, _, token) = split_https(url);
    let header = env.path("auth-header");
    std::fs::write(&header, format!("Authorization: token {token}\n")).unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", "-H"]);
    cmd.arg(format!("@{}", header.display()));
    match cacert {
        Some(root) => cmd.arg("--cacert").arg(root),
        None => cmd.arg("--insecure"),
    };
    let out = cmd.arg(format!("{base}/api/status")).output().expect("curl runs");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr).trim())
}

/// `https://host:port`, the path, the token.
fn split_https(url: &str) -> (String, String, String) {
    let (before, token) = url.split_once("?token=").expect("the URL has a token");
    let rest = before.strip_prefix("https://").unwrap_or_else(|| panic!("an https URL: {url}"));
    let slash = rest.find('/').unwrap_or(rest.len());
    (format!("https://{}", &rest[..slash]), rest[slash..].to_string(), token.to_string())
}

/// Polls `status` until `until` holds (or panics after `timeout` with the state).
fn state_until(env: &Env, timeout: Duration, until: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let state = env.state();
        if until(&state) {
            return state;
        }
        assert!(Instant::now() < deadline, "not within {timeout:?}: {state:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// The whole story over HTTP-01: issued, trusted, a kernel through TLS, the
/// container restarted, the certificate renewed, the agent restarted, and
/// the URL the same throughout.
#[test]
fn acme_over_http_01_serves_a_trusted_certificate_renewed_under_a_running_kernel() {
    let env = Env::new("tls-http01");
    // 60 s certificates: the agent renews at half-life, 30 s in.
    let (_meta, pebble, _http_port, port) = over_http_01_with_60s_certificates(&env);
    let mut agent = ForegroundAgent::start(&env);
    let state = ready(&env);
    let url = state["jupyter"]["url"].as_str().unwrap().to_string();
    assert!(url.starts_with(&format!("https://127.0.0.1:{port}/")), "{url}");
    assert_eq!(state["tls"]["served"], "acme", "{state:#}");
    assert_eq!(state["tls"]["subject"], "IP 127.0.0.1");
    assert!(state["jupyter"]["note"].is_null(), "a trusted certificate needs no note: {state:#}");
    // Jupyter itself is on the host's loopback only, at another port.
    assert_eq!(state["container"]["host_address"], "127.0.0.1");
    assert_ne!(state["container"]["host_port"].as_u64(), Some(port as u64));

    // What a participant's browser does: trust pebble's root, nothing else.
    assert_eq!(curl_status(&env, &url, Some(&pebble.root_file())), "200");
    let served = wss::sha256_fingerprint(&wss::served_leaf(port));
    assert_eq!(state["tls"]["fingerprint"], served.as_str());
    let doctor = doctor_tls(&env);
    assert_eq!(doctor["verdict"], "ok", "{doctor:#}");
    let detail = doctor["detail"].as_str().unwrap();
    assert!(
        detail.contains("IP 127.0.0.1")
            && detail.contains("the chain verifies")
            && detail.contains("next ACME attempt"),
        "{detail}"
    );
    for file in ["state/tls/acme.pem", "state/tls/acme-account.json"] {
        assert_eq!(mode(&env.path(file)), 0o600, "{file}");
    }
    let pem = std::fs::read_to_string(env.path("state/tls/acme.pem")).unwrap();
    let (_, _, token) = split_https(&url);
    assert!(!common::sh(Command::new("ps").arg("axww")).contains(&token), "the token in a process's arguments");
    assert!(
        pem.contains("PRIVATE KEY") && !std::fs::read_to_string(env.path("result.txt")).unwrap().contains("PRIVATE")
    );

    // A kernel over its WebSocket, through the agent's TLS.
    let (base, path, token) = split_https(&url);
    let base_path = format!("{}/", path.trim_end_matches(['/']).trim_end_matches("/tree").trim_end_matches("/lab"));
    let client = wss::https_client(&pebble.root_file());
    let kernel = wss::start_kernel(&client, &format!("{base}{base_path}"), &token);
    let stream = wss::tls_stream(port, &pebble.root_file());
    let mut socket = KernelSocket::open(stream, &format!("127.0.0.1:{port}"), &base_path, &kernel, &token, &[])
        .unwrap_or_else(|status| panic!("the kernel's WebSocket through TLS: {status}"));
    assert_eq!(socket.execute("x = 41\nx + 1", Duration::from_secs(60)), "42");

    // The renewal: a new certificate, the same URL, the kernel and its open socket alive.
    let renewed = state_until(&env, Duration::from_secs(90), |s| {
        s["tls"]["fingerprint"].as_str().is_some_and(|f| f != served) && s["tls"]["served"] == "acme"
    });
    assert_eq!(renewed["jupyter"]["url"], url.as_str(), "the URL changed at renewal");
    assert_eq!(wss::sha256_fingerprint(&wss::served_leaf(port)), renewed["tls"]["fingerprint"].as_str().unwrap());
    assert_eq!(socket.execute("x + 1", Duration::from_secs(60)), "42", "the kernel or its socket died at renewal");
    assert_eq!(curl_status(&env, &url, Some(&pebble.root_file())), "200");
    assert!(pebble.new_orders() >= 2, "{}", pebble.log_text());

    // The container restarted: Jupyter's loopback port moves, the URL stays.
    common::docker(&["restart", &env.name]);
    let again = state_until(&env, Duration::from_secs(90), |s| {
        s["phase"] == "ready" && s["container"]["host_port"] != renewed["container"]["host_port"]
    });
    assert_eq!(again["jupyter"]["url"], url.as_str());
    assert_eq!(curl_status(&env, &url, Some(&pebble.root_file())), "200");

    // The agent restarted: the same URL again.
    agent.stop();
    let _agent = ForegroundAgent::start(&env);
    let restarted = restarted_and_ready(&env, &again);
    assert_eq!(restarted["jupyter"]["url"], url.as_str());
    assert_eq!(curl_status(&env, &url, Some(&pebble.root_file())), "200");
}

/// TLS-ALPN-01: the agent answers the CA's handshake on the challenge port.
#[test]
fn acme_over_tls_alpn_01_is_issued_and_trusted() {
    let env = Env::new("tls-alpn");
    let meta = common::metadata::FakeMetadata::start(&[]);
    let tls_port = free_port();
    let pebble = Pebble::start(
        env.dir.path(),
        &PebbleOptions { http_port: free_port(), tls_port, validity_secs: 3600, refuse_accounts: false },
    );
    let port = free_port();
    env.write_config(&config(&env, port, &acme(&pebble, "tls-alpn-01", tls_port), &meta));
    let _agent = ForegroundAgent::start(&env);
    let state = ready(&env);
    assert_eq!(state["tls"]["served"], "acme", "{state:#}");
    let url = state["jupyter"]["url"].as_str().unwrap();
    assert_eq!(curl_status(&env, url, Some(&pebble.root_file())), "200");
    // http:// typed by hand on the HTTPS port: sent to https://.
    let out = common::sh(
        Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"])
            .arg(format!("http://127.0.0.1:{port}/tree")),
    );
    assert_eq!(out, format!("301 https://127.0.0.1:{port}/tree"));
}

/// A CA that refuses (pebble requiring external account binding): the
/// self-signed fallback, its fingerprint next to the URL, the reason in
/// `status`; with fallback = "fail", the converge fails at `front`.
#[test]
fn a_refusing_acme_server_leads_to_the_configured_fallback_with_the_reason() {
    let env = Env::new("tls-refused");
    let meta = common::metadata::FakeMetadata::start(&[]);
    let pebble = Pebble::start(
        env.dir.path(),
        &PebbleOptions { http_port: free_port(), tls_port: free_port(), validity_secs: 3600, refuse_accounts: true },
    );
    let port = free_port();
    let tls = acme(&pebble, "http-01", free_port());
    env.write_config(&config(&env, port, &tls, &meta));
    let mut agent = ForegroundAgent::start(&env);
    let state = ready(&env);
    assert_eq!(state["tls"]["served"], "self-signed", "{state:#}");
    let error = state["tls"]["acme_error"].as_str().unwrap_or_default();
    assert!(error.contains("externalAccountRequired"), "{state:#}");
    let fingerprint = wss::sha256_fingerprint(&wss::served_leaf(port));
    assert_eq!(state["tls"]["fingerprint"], fingerprint.as_str());
    let note = state["jupyter"]["note"].as_str().unwrap_or_default();
    assert!(note.contains(&fingerprint) && note.contains("externalAccountRequired"), "{note}");
    assert!(state["tls"]["next_renewal"].is_string(), "the agent retries: {state:#}");
    let url = state["jupyter"]["url"].as_str().unwrap();
    assert_eq!(
        curl_status(&env, url, Some(&pebble.root_file())).get(..3),
        Some("000"),
        "pebble's root does not vouch for it"
    );
    assert_eq!(curl_status(&env, url, None), "200");
    let result = std::fs::read_to_string(env.path("result.txt")).unwrap();
    assert!(result.contains(&fingerprint), "{result}");
    let human = env.agent(&["status"]).expect(0).stdout;
    assert!(human.contains("ACME failed") && human.contains(&fingerprint), "{human}");
    agent.stop();
    let before = env.state();

    env.write_config(&config(&env, port, &format!("{tls}fallback = \"fail\"\n"), &meta));
    let run = env.agent(&["run", "--once"]).expect(2);
    assert!(run.stderr.contains("[tls] mode = \"acme\": needs the agent to keep running"), "{}", run.stderr);
    let _agent = ForegroundAgent::start(&env);
    let state = state_until(&env, Duration::from_secs(120), |s| {
        s["started_at"] != before["started_at"] && s["phase"] == "failed"
    });
    assert_eq!(state["error"]["step"], "front", "{state:#}");
    assert!(state["error"]["cause"].as_str().unwrap().contains("externalAccountRequired"), "{state:#}");
}

/// self-signed for closed networks: served at once, kept across restarts
/// (participants who accepted it are not asked again).
#[test]
fn self_signed_is_served_and_kept_across_restarts() {
    let env = Env::new("tls-self");
    let meta = common::metadata::FakeMetadata::start(&[]);
    let port = free_port();
    env.write_config(&config(&env, port, "mode = \"self-signed\"\n", &meta));
    let mut agent = ForegroundAgent::start(&env);
    let state = ready(&env);
    let fingerprint = wss::sha256_fingerprint(&wss::served_leaf(port));
    assert_eq!(state["tls"]["fingerprint"], fingerprint.as_str());
    assert!(state["tls"]["acme_error"].is_null() && state["tls"]["next_renewal"].is_null(), "{state:#}");
    assert!(state["jupyter"]["note"].as_str().unwrap_or_default().contains(&fingerprint));
    assert_eq!(mode(&env.path("state/tls/self-signed.pem")), 0o600);
    let doctor = doctor_tls(&env);
    assert_eq!(doctor["verdict"], "warn", "{doctor:#}");
    assert!(doctor["detail"].as_str().unwrap().contains(&fingerprint), "{doctor:#}");
    let url = state["jupyter"]["url"].as_str().unwrap().to_string();
    assert_eq!(curl_status(&env, &url, None), "200");
    agent.stop();
    let _agent = ForegroundAgent::start(&env);
    let again = restarted_and_ready(&env, &state);
    assert_eq!(again["jupyter"]["url"], url.as_str());
    assert_eq!(wss::sha256_fingerprint(&wss::served_leaf(port)), fingerprint);
}

/// Renewals that fail (the challenge port taken by another process, so the
/// agent cannot answer): from the first failure the URL's note, `status`,
/// the result file and `doctor` say the trusted certificate is not being
/// renewed and when it expires; before it expires (the last tenth of its
/// life, 6 s of 60) the self-signed fallback is served with the reason, as
/// at first issue; the next attempt that succeeds serves a trusted
/// certificate again, the URL unchanged throughout.
#[test]
fn failing_renewals_are_warned_about_then_the_fallback_is_served_before_expiry_until_a_renewal_succeeds() {
    let env = Env::new("tls-expiry");
    // 60 s certificates: renewal at 30 s, the fallback from 54 s, the first
    // retry 60 s after the failed renewal.
    let (_meta, pebble, http_port, port) = over_http_01_with_60s_certificates(&env);
    let _agent = ForegroundAgent::start(&env);
    let state = ready(&env);
    assert_eq!(state["tls"]["served"], "acme", "{state:#}");
    let url = state["jupyter"]["url"].as_str().unwrap().to_string();

    // Another process holds the challenge port: the next renewal at
    // half-life fails. The certificate it cannot renew is the one served
    // once the port is held: on a slow machine the first renewal (30 s after
    // the first issue) may come before the port is taken.
    let squatter = hold_port(http_port);
    let held = env.state();
    assert_eq!(held["tls"]["served"], "acme", "{held:#}");
    let trusted = held["tls"]["fingerprint"].as_str().unwrap().to_string();
    let not_after = held["tls"]["not_after"].as_str().unwrap().to_string();
    let failing = state_until(&env, Duration::from_secs(60), |s| {
        s["tls"]["served"] == "acme" && s["tls"]["acme_error"].is_string()
    });
    assert_eq!(failing["tls"]["fingerprint"], trusted.as_str(), "still the trusted certificate: {failing:#}");
    let note =
        failing["jupyter"]["note"].as_str().unwrap_or_else(|| panic!("no note while renewals fail: {failing:#}"));
    assert!(
        note.contains("could not be renewed")
            && note.contains(&not_after[..16].replace('T', " "))
            && note.contains("self-signed"),
        "{note}"
    );
    assert!(note.contains("listening on 0.0.0.0"), "the reason: {note}");
    let human = env.agent(&["status"]).expect(0).stdout;
    assert!(human.contains("note: ") && human.contains("could not be renewed"), "{human}");
    let result = std::fs::read_to_string(env.path("result.txt")).unwrap();
    assert!(result.contains("could not be renewed"), "{result}");
    let doctor = doctor_tls(&env);
    assert_eq!(doctor["verdict"], "warn", "{doctor:#}");
    let detail = doctor["detail"].as_str().unwrap();
    assert!(detail.contains("could not be renewed") && detail.contains("self-signed fallback from"), "{detail}");

    // Near expiry: the self-signed fallback, with the reason.
    let fallen = state_until(&env, Duration::from_secs(60), |s| s["tls"]["served"] == "self-signed");
    let error = fallen["tls"]["acme_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("could not be renewed") && error.contains("listening on 0.0.0.0"),
        "the reason, as at first issue: {fallen:#}"
    );
    let fingerprint = wss::sha256_fingerprint(&wss::served_leaf(port));
    assert_eq!(fallen["tls"]["fingerprint"], fingerprint.as_str());
    assert_ne!(fingerprint, trusted);
    let note = fallen["jupyter"]["note"].as_str().unwrap_or_default();
    assert!(note.contains(&fingerprint) && note.contains("could not be renewed"), "{note}");
    assert_eq!(fallen["jupyter"]["url"], url.as_str());
    assert_eq!(curl_status(&env, &url, None), "200");

    // The port free again: the next attempt succeeds, a trusted certificate again.
    drop(squatter);
    let back = state_until(&env, Duration::from_secs(90), |s| s["tls"]["served"] == "acme");
    assert!(back["tls"]["acme_error"].is_null() && back["jupyter"]["note"].is_null(), "{back:#}");
    assert_eq!(back["jupyter"]["url"], url.as_str());
    assert_eq!(wss::sha256_fingerprint(&wss::served_leaf(port)), back["tls"]["fingerprint"].as_str().unwrap());
    assert_eq!(curl_status(&env, &url, Some(&pebble.root_file())), "200");
}
