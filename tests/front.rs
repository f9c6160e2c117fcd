//! The agent's front of Jupyter, end to end against the real engine and the
//! real Jupyter server, in both modes (`[tls] mode = "self-signed"`:
//! HTTPS; `"off"`: plain HTTP on the same publish port): a flood of quiet
//! connections from other addresses neither locks a participant out nor
//! runs the agent out of descriptors, and every one of them is dropped at
//! the pre-request deadline; a client dripping a byte at a time is dropped
//! at that one deadline too; a connection above the per-address cap gets
//! the busy answer; kernels (also one idle longer than the idle timeout)
//! and terminals work through it; Jupyter itself stays on loopback; and a
//! participant's browser opened during a slow setup sees the progress page
//! and then Jupyter, with no reload by hand. And the ACME HTTP-01 responder,
//! out of descriptors, waits instead of spinning.
//!
//! The attackers connect from other loopback addresses (all of 127/8 is
//! loopback): the per-address cap counts per source address, and the
//! participant's own requests come from 127.0.0.1.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::client::IntoClientRequest as _;
use tungstenite::Message;

use crate::common::agent::ForegroundAgent;
use crate::common::env::Env;
use crate::common::free_port;
use crate::common::http_fake::{response, FakeServer, Request};
use crate::common::wss::{self, KernelSocket, ReadTimeout};
use crate::common::{self, docker, inspect, sh, test_image};

/// The front's limits, as the agent documents them.
const PRE_REQUEST: Duration = Duration::from_secs(10);
const IDLE: Duration = Duration::from_secs(60);
const MAX_PER_CLIENT: usize = 64;
const MAX_CONNECTIONS: usize = 1024;

/// A configuration for the test image published on 127.0.0.1:`port`, with
/// `[tls] mode = tls_mode`.
fn config(env: &Env, port: u16, tls_mode: &str, meta: &common::metadata::FakeMetadata) -> String {
    let base =
        env.base_config("").replace("publish = \"127.0.0.1:0\"", &format!("publish = \"127.0.0.1:{port}\"")).replace(
            "url_host = \"127.0.0.1\"",
            &format!("url_host = \"127.0.0.1\"\nmetadata_endpoint = \"{}\"", meta.url),
        );
    format!("{base}\n[tls]\nmode = \"{tls_mode}\"\n")
}

/// `status --json --show-token` once the agent is ready.
fn ready(env: &Env) -> Value {
    env.agent(&["wait", "--timeout", "180s"]).expect(0);
    env.state()
}

/// Splits a login URL (`http://` or `https://`) into its base
/// (`scheme://host:port`), its path and its token.
fn split(url: &str) -> (String, String, String) {
    let (before, token) = url.split_once("?token=").unwrap_or_else(|| panic!("no token in {url}"));
    let (scheme, rest) = before.split_once("://").unwrap_or_else(|| panic!("no scheme in {url}"));
    let slash = rest.find('/').unwrap_or(rest.len());
    (format!("{scheme}://{}", &rest[..slash]), rest[slash..].to_string(), token.to_string())
}

/// The server's base path (ends with `/`) from the URL's path (`/tree`, `/lab`, `/`).
fn base_path(path: &str) -> String {
    format!("{}/", path.trim_end_matches('/').trim_end_matches("/tree").trim_end_matches("/lab"))
}

/// A blocking HTTP(S) client with no proxy that accepts the self-signed
/// certificate.
fn client(timeout: Duration) -> reqwest::blocking::Client {
    // Installs ring as rustls' provider, once.
    let _ = common::http();
    reqwest::blocking::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .timeout(timeout)
        .build()
        .expect("an HTTP client")
}

/// Raises this process's soft limit of open files to its hard limit: the
/// flood holds about 1,800 sockets at once.
fn raise_nofile() {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    let line = limits.lines().find(|l| l.starts_with("Max open files")).expect("a Max open files line");
    let hard = line.split_whitespace().nth(4).expect("the hard limit");
    sh(Command::new("prlimit").arg("--pid").arg(std::process::id().to_string()).arg(format!("--nofile={hard}:{hard}")));
}

/// A TCP connection from `source` (a loopback address) to 127.0.0.1:`port`.
fn connect_from(source: Ipv4Addr, port: u16) -> io::Result<TcpStream> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a Tokio runtime")
    });
    // A full accept queue drops SYNs, and connect would wait out their retries.
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        let connect = socket.connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        tokio::time::timeout(Duration::from_secs(2), connect).await.map_err(|_| io::ErrorKind::TimedOut)?
    })?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Whether the server has closed `sock` (EOF or reset), reading away
/// whatever it sent before (a TLS alert, a session ticket).
fn closed(sock: &TcpStream) -> bool {
    sock.set_nonblocking(true).expect("a non-blocking socket");
    let mut buf = [0u8; 4096];
    loop {
        match (&*sock).read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// The number of descriptors process `pid` holds open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// One of the flood's connections: when it was connected, and when it was
/// seen closed by the server.
struct Held {
    sock: TcpStream,
    what: &'static str,
    connected: Instant,
    closed: Option<Instant>,
}

/// `count` connections from each of `sources`, each left silent before
/// any byte (pre-handshake).
fn silent_connections(port: u16, sources: &[Ipv4Addr], count: usize) -> Vec<Held> {
    let mut held = Vec::new();
    for _ in 0..count {
        for &source in sources {
            let sock = connect_from(source, port).unwrap_or_else(|e| panic!("connect from {source}: {e}"));
            held.push(Held { sock, what: "pre-handshake", connected: Instant::now(), closed: None });
        }
    }
    held
}

/// `count` connections from each of `sources` that complete a TLS
/// handshake and then say nothing (one thread per source).
fn quiet_tls_connections(port: u16, sources: &[Ipv4Addr], count: usize) -> Vec<Held> {
    let threads: Vec<_> = sources
        .iter()
        .map(|&source| {
            std::thread::spawn(move || {
                (0..count)
                    .map(|_| {
                        let sock = connect_from(source, port).unwrap_or_else(|e| panic!("connect from {source}: {e}"));
                        let connected = Instant::now();
                        let tls = wss::tls_over(sock).unwrap_or_else(|e| panic!("TLS from {source}: {e}"));
                        Held { sock: tls.sock, what: "quiet TLS", connected, closed: None }
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads.into_iter().flat_map(|t| t.join().expect("the TLS thread")).collect()
}

/// `n` addresses `a.b.c.1` up to `a.b.c.n`.
fn addresses(a: u8, b: u8, c: u8, n: u8) -> Vec<Ipv4Addr> {
    (1..=n).map(|d| Ipv4Addr::new(a, b, c, d)).collect()
}

/// The answer to one request from 127.0.0.2 while that address already
/// holds [`MAX_PER_CLIENT`] silent connections: (status, headers and body).
fn busy_answer(scheme: &str, port: u16) -> (u16, String) {
    let source = Ipv4Addr::new(127, 0, 0, 2);
    let held = silent_connections(port, &[source], MAX_PER_CLIENT);
    // curl's own client, as a participant's would be; no token in its arguments.
    let out = Command::new("curl")
        .args(["-sS", "-k", "-i", "--max-time", "10", "--interface", "127.0.0.2"])
        .arg(format!("{scheme}://127.0.0.1:{port}/tree"))
        .output()
        .expect("curl runs");
    drop(held);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
}

fn assert_busy(scheme: &str, port: u16) {
    let (status, answer) = busy_answer(scheme, port);
    assert_eq!(status, 503, "the 65th connection from one address: {answer}");
    assert!(answer.lines().any(|l| l.to_ascii_lowercase().trim() == "retry-after: 5"), "{answer}");
    assert!(answer.contains("busy"), "the body says busy: {answer}");
}

/// Connects to 127.0.0.1:`port`, sends `bytes` one every 9 s (over TLS
/// when `tls`: the handshake first, then the bytes as application data),
/// and returns how long after the connection the server dropped it (EOF,
/// reset or a failed write); panics if it is still open after 40 s.
fn drip(port: u16, tls: bool, bytes: Vec<u8>) -> Duration {
    let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let connected = Instant::now();
    let mut tls_conn = if tls {
        let stream = wss::tls_over(sock.try_clone().expect("a second handle")).expect("the TLS handshake");
        Some(stream.conn)
    } else {
        None
    };
    let mut sock = sock;
    let mut next = Instant::now();
    let mut sent = 0;
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        assert!(now < connected + Duration::from_secs(40), "still open after 40 s, {sent} bytes sent");
        if now >= next && sent < bytes.len() {
            let byte = &bytes[sent..=sent];
            let written = match tls_conn.as_mut() {
                Some(conn) => {
                    conn.writer().write_all(byte).expect("rustls buffers the byte");
                    conn.write_tls(&mut sock).map(|_| ())
                }
                None => sock.write_all(byte),
            };
            if written.is_err() {
                return connected.elapsed();
            }
            sent += 1;
            next += Duration::from_secs(9);
        }
        let wait =
            next.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(50), Duration::from_secs(1));
        sock.set_read_timeout(Some(wait)).expect("a read timeout");
        match sock.read(&mut buf) {
            // Whatever the server sends before it closes (a session ticket, an alert, a 408).
            Ok(n) if n > 0 => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Ok(_) | Err(_) => return connected.elapsed(),
        }
    }
}

/// The first bytes a TLS client sends: a whole ClientHello.
fn client_hello() -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring's TLS versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("a client connection");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("the ClientHello");
    hello
}

fn assert_dropped_at_the_deadline(what: &str, after: Duration) {
    assert!(
        after >= Duration::from_secs(9) && after <= PRE_REQUEST + Duration::from_secs(5),
        "{what}: dropped {after:?} after it connected; expected at the pre-request deadline ({PRE_REQUEST:?})"
    );
}

/// A kernel's channels over `stream` (connected to 127.0.0.1:`port`).
fn kernel_socket<S: Read + Write + ReadTimeout>(
    stream: S,
    port: u16,
    base_path: &str,
    kernel: &str,
    token: &str,
) -> KernelSocket<S> {
    KernelSocket::open(stream, &format!("127.0.0.1:{port}"), base_path, kernel, token, &[])
        .unwrap_or_else(|status| panic!("the kernel's WebSocket through the front: {status}"))
}

/// A kernel socket left idle longer than the front's idle timeout, in a
/// thread: it runs code, waits [`IDLE`] + 10 s reading only what the server
/// sends, and runs code again. The thread's result: the pings seen.
fn idle_kernel<S: Read + Write + ReadTimeout + Send + 'static>(
    mut socket: KernelSocket<S>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        assert_eq!(socket.execute("x = 41\nx + 1", Duration::from_secs(60)), "42");
        let pings = socket.idle(IDLE + Duration::from_secs(10));
        assert_eq!(socket.execute("x + 1", Duration::from_secs(60)), "42", "after {pings} pings");
        pings
    })
}

/// A terminal through the front: `POST api/terminals`, its WebSocket over
/// `stream`, a command typed on stdin and its output seen on stdout.
fn terminal_runs_a_command<S: Read + Write + ReadTimeout>(
    http: &reqwest::blocking::Client,
    base: &str,
    base_path: &str,
    stream: S,
    port: u16,
    token: &str,
) {
    let url = format!("{base}{base_path}api/terminals");
    let answer = http.post(&url).header("Authorization", format!("token {token}")).send().expect("POST api/terminals");
    assert!(answer.status().is_success(), "POST {url}: {}", answer.status());
    let terminal: Value = answer.json().expect("a terminal as JSON");
    let name = terminal["name"].as_str().unwrap_or_else(|| panic!("a terminal's name: {terminal}"));
    let request = format!("ws://127.0.0.1:{port}{base_path}terminals/websocket/{name}?token={token}")
        .into_client_request()
        .expect("a WebSocket request");
    let (mut ws, _) = tungstenite::client::client(request, stream)
        .unwrap_or_else(|e| panic!("the terminal's WebSocket through the front: {e}"));
    // The typed line is echoed back; its output (42-ok) is not in it.
    ws.send(Message::text(r#"["stdin", "echo $((6*7))-ok\r"]"#)).expect("send stdin");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut output = String::new();
    while !output.contains("42-ok") {
        assert!(Instant::now() < deadline, "no output from the terminal within 30 s: {output:?}");
        ws.get_ref().set_read_timeout(Some(Duration::from_secs(1))).expect("a read timeout");
        match ws.read() {
            Ok(Message::Text(text)) => {
                let message: Value = serde_json::from_str(&text).unwrap_or_default();
                if message[0] == "stdout" {
                    output.push_str(message[1].as_str().unwrap_or_default());
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("the terminal's WebSocket: {e}; output so far: {output:?}"),
        }
    }
}

/// HTTPS (self-signed): a flood of 1,100 silent and 600 quiet TLS
/// connections from other addresses, a login through it, descriptors
/// under the cap, every flood connection dropped at the pre-request
/// deadline; the busy answer; byte-dripping clients dropped at that one
/// deadline; a kernel (also idle for longer than the idle timeout) and a
/// terminal over wss://.
#[test]
fn over_tls_floods_and_slow_clients_are_dropped_and_kernels_and_terminals_work() {
    raise_nofile();
    let env = Env::new("front-tls");
    let meta = common::metadata::FakeMetadata::start(&[]);
    let port = free_port();
    env.write_config(&config(&env, port, "self-signed", &meta));
    let agent = ForegroundAgent::start(&env);
    let state = ready(&env);
    let url = state["jupyter"]["url"].as_str().expect("a URL").to_string();
    assert!(url.starts_with(&format!("https://127.0.0.1:{port}/")), "{url}");
    let (base, path, token) = split(&url);
    let base_path = base_path(&path);
    let http = client(Duration::from_secs(30));

    // A kernel, left idle in the background while the rest runs.
    let kernel = wss::start_kernel(&http, &format!("{base}{base_path}"), &token);
    let stream = wss::tls_over(TcpStream::connect(("127.0.0.1", port)).unwrap()).expect("TLS");
    let idle = idle_kernel(kernel_socket(stream, port, &base_path, &kernel, &token));

    let stream = wss::tls_over(TcpStream::connect(("127.0.0.1", port)).unwrap()).expect("TLS");
    terminal_runs_a_command(&http, &base, &base_path, stream, port, &token);

    assert_busy("https", port);

    // The flood: silent connections (no ClientHello) from 20 addresses,
    // then quiet TLS ones (handshake, no request) from 10 others, each
    // address under the per-address cap, together over the global one.
    let started = Instant::now();
    let mut flood = silent_connections(port, &addresses(127, 0, 3, 20), 55);
    flood.extend(quiet_tls_connections(port, &addresses(127, 0, 2, 10), 60));
    let flooded = started.elapsed();
    let mut most_fds = open_fds(agent.id());
    let login = Instant::now();
    let login_client = client(Duration::from_secs(2));
    let status = login_client
        .get(format!("{base}{base_path}api/status"))
        .header("Authorization", format!("token {token}"))
        .send()
        .map(|r| r.status().as_u16());
    let login = login.elapsed();
    assert_eq!(status.as_ref().ok(), Some(&200), "a login during the flood: {status:?} after {login:?}");
    assert!(login < Duration::from_secs(2), "the login took {login:?}");

    // Every flood connection is dropped by the pre-request deadline.
    let give_up = Instant::now() + PRE_REQUEST + Duration::from_secs(8);
    while flood.iter().any(|h| h.closed.is_none()) && Instant::now() < give_up {
        for held in flood.iter_mut().filter(|h| h.closed.is_none()) {
            if closed(&held.sock) {
                held.closed = Some(Instant::now());
            }
        }
        most_fds = most_fds.max(open_fds(agent.id()));
        std::thread::sleep(Duration::from_millis(200));
    }
    // The connections' cap, and room for the busy answers in flight and the
    // agent's own descriptors (the engine, the listeners, its files): far
    // below the ~2,300 a front that held every connection (and a second
    // descriptor to Jupyter for each handshaken one) would take.
    let cap = MAX_CONNECTIONS + 2 * MAX_PER_CLIENT;
    assert!(most_fds < cap, "the agent held {most_fds} descriptors during the flood (cap {cap})");
    let late: Vec<String> = flood
        .iter()
        .filter(|h| h.closed.is_none_or(|at| at - h.connected > PRE_REQUEST + Duration::from_millis(2500)))
        .map(|h| format!("{} open {:?}", h.what, h.closed.map(|at| at - h.connected)))
        .collect();
    assert!(
        late.is_empty(),
        "{} of {} flood connections outlived the pre-request deadline (flood opened in {flooded:?}), e.g. {:?}",
        late.len(),
        flood.len(),
        &late[..late.len().min(5)]
    );
    drop(flood);

    // One deadline from accept to the request head, however the bytes come.
    let hello = std::thread::spawn(move || drip(port, false, client_hello()));
    let head = std::thread::spawn(move || drip(port, true, b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()));
    assert_dropped_at_the_deadline("a ClientHello a byte every 9 s", hello.join().unwrap());
    assert_dropped_at_the_deadline("a request head a byte every 9 s over TLS", head.join().unwrap());

    let pings = idle.join().expect("the idle kernel");
    assert!(pings >= 1, "Jupyter's pings kept the idle kernel socket alive: {pings} pings seen");
}

/// The participant's login where `url` points; whether it opens Jupyter.
fn opens(url: &str) -> bool {
    let (base, _, token) = split(url);
    common::get_status(&format!("{base}/api/status"), &token) == 200
}

/// Plain HTTP (`[tls] mode = "off"`): the URL, its token and its stability
/// as before; Jupyter on loopback only; kernels (also idle) and terminals
/// over ws://; the busy answer; a request head dripped a byte at a time
/// dropped at the deadline.
#[test]
fn over_plain_http_the_url_is_unchanged_and_jupyter_stays_on_loopback() {
    let env = Env::new("front-plain");
    let meta = common::metadata::FakeMetadata::start(&[]);
    let port = free_port();
    env.write_config(&config(&env, port, "off", &meta));
    let _agent = ForegroundAgent::start(&env);
    let state = ready(&env);
    let url = state["jupyter"]["url"].as_str().expect("a URL").to_string();
    assert!(url.starts_with(&format!("http://127.0.0.1:{port}/")), "the URL's port is the publish port: {url}");
    let (base, path, token) = split(&url);
    assert_eq!(std::fs::read_to_string(env.state_dir().join("login-token")).unwrap(), token);
    assert_eq!(state["jupyter"]["token_source"], "agent", "{state:#}");
    assert!(opens(&url), "{url}");

    // Jupyter's own port: published on loopback only, not at the URL's port.
    let ports: Value = serde_json::from_str(&inspect(&env.name, "{{json .NetworkSettings.Ports}}")).unwrap();
    let bindings: Vec<&Value> = ports.as_object().unwrap().values().filter_map(Value::as_array).flatten().collect();
    assert!(!bindings.is_empty(), "{ports}");
    for binding in &bindings {
        assert_eq!(binding["HostIp"], "127.0.0.1", "{ports}");
        assert_ne!(binding["HostPort"], port.to_string().as_str(), "Jupyter itself at the URL's port: {ports}");
    }
    assert_eq!(state["container"]["host_address"], "127.0.0.1", "{state:#}");

    let base_path = base_path(&path);
    let http = client(Duration::from_secs(30));
    let kernel = wss::start_kernel(&http, &format!("{base}{base_path}"), &token);
    let idle =
        idle_kernel(kernel_socket(TcpStream::connect(("127.0.0.1", port)).unwrap(), port, &base_path, &kernel, &token));
    terminal_runs_a_command(&http, &base, &base_path, TcpStream::connect(("127.0.0.1", port)).unwrap(), port, &token);
    assert_busy("http", port);
    let head = drip(port, false, b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
    assert_dropped_at_the_deadline("a request head a byte every 9 s", head);
    let pings = idle.join().expect("the idle kernel");
    assert!(pings >= 1, "Jupyter's pings kept the idle kernel socket alive: {pings} pings seen");

    // The container restarted: the same URL opens Jupyter again.
    assert!(docker(&["restart", "-t", "1", &env.name]).status.success());
    let deadline = Instant::now() + Duration::from_secs(90);
    // Ready again (the token proven anew), and the same URL opens Jupyter.
    loop {
        let state = env.state();
        if state["phase"] == "ready" && opens(&url) {
            assert_eq!(state["jupyter"]["url"], url.as_str(), "the URL after docker restart");
            break;
        }
        assert!(Instant::now() < deadline, "the URL never opened again after docker restart: {state:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `path` served at `/nb.tar`, slowly: about `seconds` for the whole file.
fn slow_archive_server(path: PathBuf, seconds: u64) -> FakeServer {
    FakeServer::tcp(move |request: Request| {
        if request.path() != "/nb.tar" {
            return Some(response(404, None, ""));
        }
        let len = std::fs::metadata(&path).unwrap().len();
        let file = tokio::fs::File::from_std(std::fs::File::open(&path).unwrap());
        let steps = seconds * 10;
        let chunk = usize::try_from(len / steps + 1).unwrap();
        let body = futures_util::stream::unfold(file, move |mut file| async move {
            use tokio::io::AsyncReadExt as _;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut buf = vec![0u8; chunk];
            let mut filled = 0;
            while filled < chunk {
                match file.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => return Some((Err(e), file)),
                }
            }
            if filled == 0 {
                return None;
            }
            buf.truncate(filled);
            Some((Ok(hyper::body::Frame::data(bytes::Bytes::from(buf))), file))
        });
        let body = http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(body));
        Some(hyper::Response::builder().header(hyper::header::CONTENT_LENGTH, len).body(body).unwrap())
    })
}

/// `GET /_agent/progress` on the front: (status, Content-Type,
/// Cache-Control, body).
fn progress(port: u16) -> Option<(u16, String, String, String)> {
    let answer = client(Duration::from_secs(5)).get(format!("http://127.0.0.1:{port}/_agent/progress")).send().ok()?;
    let header = |name: &str| answer.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (content_type, cache) = (header("content-type"), header("cache-control"));
    Some((answer.status().as_u16(), content_type, cache, answer.text().unwrap_or_default()))
}

/// A re-converge whose image step takes a while (an archive served
/// slowly): `/_agent/progress` tells the step and its percentage, never the
/// token; a participant's browser opening the login URL meanwhile sees the
/// progress page with the step, and then Jupyter, with no reload by hand.
#[test]
fn a_browser_opened_during_a_slow_setup_sees_the_step_then_jupyter() {
    assert!(common::chromium::binary().is_some(), "this test needs Debian's chromium (apt-get install chromium)");
    let mut env = Env::new("front-progress");
    let meta = common::metadata::FakeMetadata::start(&[]);
    let port = free_port();

    // The organiser's archive of the test image, written meanwhile.
    let archive = env.path("nb.tar");
    let saving = {
        let archive = archive.clone();
        std::thread::spawn(move || {
            sh(Command::new("docker").args(["save", "-o"]).arg(&archive).arg(test_image()));
            sh(Command::new("sha256sum").arg(&archive)).split_whitespace().next().unwrap().to_string()
        })
    };
    // The first converge, by the agent as a service runs it: the participant's URL.
    env.write_config(&config(&env, port, "off", &meta));
    let log = env.path("agent.log");
    let mut first = ForegroundAgent::start_logging(&env, &log);
    let url = ready(&env)["jupyter"]["url"].as_str().expect("a URL").to_string();
    let (_, path, token) = split(&url);
    first.stop();
    let sha256 = saving.join().expect("docker save");

    // A re-converge from the archive, downloaded in about 15 s.
    let server = slow_archive_server(archive, 15);
    let tag = format!("{}-slow:1", env.name);
    env.images.push(tag.clone());
    let image = format!("[image]\narchive = \"{}/nb.tar\"\nsha256 = \"{sha256}\"\ntag = \"{tag}\"\n", server.url());
    let slow = config(&env, port, "off", &meta)
        .replace(&format!("[image]\nname = \"{}\"\npull = \"never\"\n", test_image()), &image);
    assert!(slow.contains(&image));
    env.write_config(&slow);
    let profile = env.path("chromium");
    std::fs::create_dir(&profile).unwrap();
    let mut browser = common::chromium::Chromium::start(&profile);
    let _agent = ForegroundAgent::start_logging(&env, &log);

    // The front answers while the image step runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    let during = loop {
        if let Some((status, content_type, cache, body)) = progress(port) {
            let json: Value = serde_json::from_str(&body).unwrap_or_default();
            if json["step"] == "image" && json["progress"].as_str().is_some_and(|p| p.contains('%')) {
                assert_eq!(status, 200, "{body}");
                assert!(content_type.starts_with("application/json"), "{content_type}");
                assert_eq!(cache, "no-store");
                break json;
            }
            assert!(!body.contains(&token), "the token in /_agent/progress: {body}");
        }
        if Instant::now() >= deadline {
            let last = progress(port).map(|(status, _, _, body)| (status, body.chars().take(300).collect::<String>()));
            panic!(
                "/_agent/progress never showed the image step's progress: {last:?}\n--- listening on {port}:\n{}--- the agents' log:\n{}",
                sh(Command::new("ss").args(["-ltnp", &format!("sport = :{port}")])),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(["preparing-image", "preparing_image"].contains(&during["phase"].as_str().unwrap_or_default()), "{during}");
    assert_eq!(during["ready"], false, "{during}");
    assert!(during["failed_step"].is_null(), "{during}");
    assert!(!during.to_string().contains(&token));

    // What a browser's request for the login URL gets meanwhile.
    let page = client(Duration::from_secs(5)).get(&url).header("Accept", "text/html").send().expect("the page");
    assert_eq!(page.status().as_u16(), 503);
    let html = page.text().unwrap();
    assert!(html.contains("Preparing Jupyter") && !html.contains(&token), "{html}");

    // The participant's browser.
    browser.navigate(&url);
    let shots = common::artefacts();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = browser.eval(
            "document.title + '|' + ((document.getElementById('step') || {}).textContent || '') + '|' + \
             ((document.getElementById('progress') || {}).textContent || '')",
        );
        let seen = seen.as_str().unwrap_or_default().to_string();
        if seen.starts_with("Preparing Jupyter|") && seen.contains("image") {
            assert!(!seen.contains(&token), "{seen}");
            break;
        }
        assert!(Instant::now() < deadline, "the browser never showed the running step: {seen:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    browser.screenshot(&shots.join("front-progress-page.png"));

    // Jupyter, once ready, with no reload by hand.
    let deadline = Instant::now() + Duration::from_secs(180);
    let title = loop {
        let title = browser.eval("document.title").as_str().unwrap_or_default().to_string();
        if !title.is_empty() && title != "Preparing Jupyter" && title != "about:blank" {
            break title;
        }
        assert!(Instant::now() < deadline, "the browser never left the progress page: {title:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    // The classic Notebook's file list (the test image's UI), or JupyterLab,
    // once drawn (its scripts show the page): "Files", or Lab's "File" menu.
    assert!(title.contains("Home Page") || title.contains("JupyterLab"), "the browser shows {title:?}");
    browser.wait_for_page("Jupyter's page, drawn", "document.body.innerText.includes('File')", Duration::from_secs(60));
    browser.screenshot(&shots.join("front-progress-jupyter.png"));
    let (_, _, _, body) = progress(port).expect("/_agent/progress once ready");
    let after: Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(after["ready"], true, "{body}");
    assert!(!body.contains(&token));
    assert_eq!(env.agent(&["url"]).expect(0).stdout.trim(), url, "the same URL after the re-converge");

    // One access line per request, with the path and never its query.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("request client=127.0.0.1 method=GET path=/_agent/progress status=200 ms="), "{logged}");
    let first_page = format!("method=GET path={path} status=503 ms=");
    assert!(logged.contains(&first_page), "the browser's first request ({first_page}): {logged}");
    assert!(!logged.contains(&token), "the token in the agent's log");
}

/// CPU time (user and system) process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the agent's /proc stat");
    // After the command name (in parentheses): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')').expect("a stat line").1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second: u64 = sh(Command::new("getconf").arg("CLK_TCK")).trim().parse().expect("CLK_TCK");
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Stands between pebble and the agent's HTTP-01 responder: holds each of
/// pebble's validation connections until released, then relays it to
/// 127.0.0.1:`to`. `arrived` hears of the first connection.
fn held_relay(
    listener: std::net::TcpListener,
    to: u16,
    release: Arc<std::sync::atomic::AtomicBool>,
    arrived: std::sync::mpsc::Sender<()>,
) {
    std::thread::spawn(move || {
        for pebble in listener.incoming().flatten() {
            let _ = arrived.send(());
            let release = release.clone();
            std::thread::spawn(move || {
                while !release.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let Ok(agent) = TcpStream::connect(("127.0.0.1", to)) else { return };
                let (mut a, mut b) = (pebble.try_clone().unwrap(), agent.try_clone().unwrap());
                let (mut c, mut d) = (agent, pebble);
                let up = std::thread::spawn(move || io::copy(&mut a, &mut b));
                let _ = io::copy(&mut c, &mut d);
                let _ = up.join();
            });
        }
    });
}

/// The port-80 (HTTP-01) responder out of descriptors: the agent runs with
/// a low open-files limit, a flood of connections to the responder takes
/// them all while the CA's validation is held back, and the agent must not
/// spin on the failing accept (under 1 s of CPU in 5 s); once the flood
/// goes, the CA's validation gets through and the certificate is issued.
#[test]
fn an_http_01_responder_out_of_descriptors_does_not_burn_a_core() {
    let env = Env::new("front-emfile");
    let meta = common::metadata::FakeMetadata::start(&[]);
    // Pebble validates at `relay`, which the test holds; the agent answers at `challenge`.
    let relay = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let challenge = free_port();
    let pebble = common::pebble::Pebble::start(
        env.dir.path(),
        &common::pebble::PebbleOptions {
            http_port: relay.local_addr().unwrap().port(),
            tls_port: free_port(),
            validity_secs: 3600,
            refuse_accounts: false,
        },
    );
    let release = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (arrived_tx, arrived) = std::sync::mpsc::channel();
    held_relay(relay, challenge, release.clone(), arrived_tx);
    let port = free_port();
    let acme = format!(
        "mode = \"acme\"\ndirectory = \"{}\"\nchallenge = \"http-01\"\nchallenge_port = {challenge}\nca_file = \"{}\"\n",
        pebble.directory,
        pebble.ca_file.display()
    );
    let cfg = config(&env, port, "acme", &meta).replace("[tls]\nmode = \"acme\"\n", &format!("[tls]\n{acme}"));
    env.write_config(&cfg);
    // A low limit the agent cannot raise: soft and hard.
    const NOFILE: usize = 200;
    let log = env.path("agent.log");
    let agent = ForegroundAgent::start_with_nofile(&env, &log, NOFILE);
    let pid = agent.id();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // The CA asks: the responder listens, its answer is held back.
    assert!(arrived.recv_timeout(Duration::from_secs(120)).is_ok(), "pebble never came to validate: {}", log_text());
    // Enough to take every descriptor and leave some in the accept queue,
    // not so many that the queue overflows: pebble waits about 15 s.
    let mut flood = Vec::new();
    for source in addresses(127, 0, 4, 8) {
        for _ in 0..30 {
            if let Ok(sock) = connect_from(source, challenge) {
                flood.push(sock);
            }
        }
    }
    let fds = open_fds(pid);
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(5));
    let burnt = cpu_time(pid) - before;
    drop(flood);
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(fds >= NOFILE - 10, "the flood never took the agent's descriptors: {fds} open of {NOFILE}");
    assert!(
        burnt < Duration::from_secs(1),
        "the agent used {burnt:?} of CPU in 5 s out of descriptors ({fds} open of {NOFILE})"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = env.state();
        if state["tls"]["served"] == "acme" {
            break;
        }
        assert!(Instant::now() < deadline, "no certificate after the flood: {state:#}\n{}", log_text());
        std::thread::sleep(Duration::from_millis(500));
    }
}
