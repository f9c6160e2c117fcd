use super::*;

async fn get(path: &Path, uri: &str) -> (u16, String) {
    let client = crate::http::client().unix_socket(path).build().unwrap();
    let resp = client.get(format!("http://localhost{uri}")).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn start() -> (tempfile::TempDir, PathBuf, watch::Sender<State>, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let listener = bind(&path).unwrap();
    let (tx, rx) = watch::channel(crate::state::fresh());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shared = Arc::new(Shared { state: rx, docker: crate::config::Config::defaults().docker, actions: None });
    tokio::spawn(serve(listener, shared, async move {
        let _ = stop_rx.await;
    }));
    (dir, path, tx, stop_tx)
}

async fn post(path: &Path, uri: &str, body: &str) -> (u16, String) {
    let client = crate::http::client().unix_socket(path).build().unwrap();
    let resp = client.post(format!("http://localhost{uri}")).body(body.to_string()).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The server with an actions' channel, and a stand-in for the watch
/// loop: a hand is taken as asked, a reset is refused as without
/// `[workspace]`.
fn start_taking_actions() -> (tempfile::TempDir, PathBuf, tokio::sync::oneshot::Sender<()>) {
    use crate::actions::{Action, ActionError, Hand};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let listener = bind(&path).unwrap();
    let (_tx, rx) = watch::channel(crate::state::fresh());
    let (actions, mut taken) = crate::actions::channel();
    tokio::spawn(async move {
        let _tx = _tx;
        while let Some(action) = taken.recv().await {
            match action {
                Action::Hand(HandChange::Raise { message }, reply) => {
                    let raised_at = "2026-12-07T10:02:00Z".parse().unwrap();
                    let _ = reply.send(Ok(Some(Hand { raised_at, message })));
                }
                Action::Hand(HandChange::Lower, reply) => {
                    let _ = reply.send(Ok(None));
                }
                Action::Reset(reply) => {
                    let _ = reply.send(Err(ActionError::Refused("no [workspace]".into())));
                }
                Action::Update(reply) => {
                    let _ = reply.send(Err(ActionError::Refused("no [workspace]".into())));
                }
            }
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shared =
        Arc::new(Shared { state: rx, docker: crate::config::Config::defaults().docker, actions: Some(actions) });
    tokio::spawn(serve(listener, shared, async move {
        let _ = stop_rx.await;
    }));
    (dir, path, stop_tx)
}

/// Actions are POSTs with a checked body; a GET on them, or a POST on
/// what is read, is 405 and changes nothing.
#[tokio::test]
async fn actions_are_posts_with_checked_bodies() {
    let (_dir, path, _stop) = start_taking_actions();
    let (code, body) = post(&path, "/v1/hand", r#"{"raise": true, "message": " stuck on step 3 "}"#).await;
    assert_eq!(
        (code, body.as_str()),
        (200, "{\"hand\":{\"raised_at\":\"2026-12-07T10:02:00Z\",\"message\":\"stuck on step 3\"}}\n")
    );
    assert_eq!(post(&path, "/v1/hand", r#"{"raise": false}"#).await, (200, "{\"hand\":null}\n".into()));
    let (code, body) = get(&path, "/v1/hand").await;
    assert_eq!(
        (code, body.as_str()),
        (405, "{\"error\":\"GET /v1/hand: an action is asked with POST (docs/api.md#actions)\"}\n")
    );
    assert_eq!(get(&path, "/v1/workspace/reset").await.0, 405);
    assert_eq!(post(&path, "/v1/status", "").await.0, 405);
    assert_eq!(post(&path, "/v1/nothing", "").await.0, 404);
    let long = "x".repeat(281);
    let cases = [
        (format!(r#"{{"raise": true, "message": "{long}"}}"#), "the message has 281 characters"),
        (
            r#"{"raise": true, "message": "two\nlines"}"#.into(),
            "the message holds a control character (\\u{a}): write it on one line",
        ),
        (r#"{"raise": false, "message": "x"}"#.into(), "a message goes with a raised hand only"),
        (r#"{"raise": "yes"}"#.into(), "the body: invalid type"),
        (r#"{"raise": true, "colour": "red"}"#.into(), "unknown field `colour`"),
        ("not json".into(), r#"expected {"raise": true, "message": "..."}"#),
        (format!(r#"{{"raise": true, "message": "{}"}}"#, "x".repeat(5000)), "at most 4096 bytes"),
    ];
    for (body, want) in cases {
        let (code, answer) = post(&path, "/v1/hand", &body).await;
        assert_eq!(code, 400, "{answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(want), "{want}: {message}");
    }
    assert_eq!(post(&path, "/v1/workspace/reset", "").await, (409, "{\"error\":\"no [workspace]\"}\n".into()));
}

/// The shared client's actions against this server; an agent without
/// actions (`run --once`) says so.
#[tokio::test]
async fn the_shared_client_asks_for_actions() {
    use jupyter_proto::client::{AgentError, Client};
    let (_dir, path, _stop) = start_taking_actions();
    let client = Client::new(&path, "test");
    let hand = client.hand(true, Some("help")).await.unwrap().hand.unwrap();
    assert_eq!(hand.message.as_deref(), Some("help"));
    assert_eq!(client.hand(false, None).await.unwrap().hand, None);
    assert_eq!(client.reset().await, Err(AgentError::Broken("no [workspace]".into())));
    let (_dir, path, _tx, _stop) = start();
    let err = Client::new(&path, "test").hand(true, None).await.unwrap_err();
    assert!(matches!(&err, AgentError::Unavailable(m) if m.starts_with("this agent takes no actions")), "{err:?}");
}

#[tokio::test]
async fn the_socket_goes_only_where_no_one_else_can_replace_it() {
    let dir = tempfile::tempdir().unwrap();
    // A missing directory is created, root's (the test runs as root or as itself) and 0755.
    let path = dir.path().join("run/sub/agent.sock");
    let _listener = bind(&path).unwrap();
    assert_eq!(std::fs::metadata(dir.path().join("run/sub")).unwrap().permissions().mode() & 0o7777, 0o755);
    // A directory anyone may write: a local user could replace the socket.
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = bind(&open.join("agent.sock")).unwrap_err().to_string();
    let shown = std::fs::canonicalize(&open).unwrap();
    assert_eq!(
            err,
            format!(
                "refusing to serve the API in {}: {} is writable by other users (mode 0777): anyone could \
                 replace what is in it; use a directory that root owns and no one else may write (docs/api.md#the-socket)",
                shown.display(),
                shown.display()
            )
        );
    assert!(!open.join("agent.sock").exists());
    // Sticky (as /tmp) is fine; a directory of another user is not.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let _listener = bind(&open.join("agent.sock")).unwrap();
    if nix::unistd::geteuid().is_root() {
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let err = bind(&theirs.join("agent.sock")).unwrap_err().to_string();
        assert!(err.contains("/theirs is owned by uid 65534, not by root"), "{err}");
    }
}

#[tokio::test]
async fn the_socket_is_0600_and_status_redacts_the_token() {
    let (_dir, path, tx, _stop) = start();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let mut s = crate::state::fresh();
    s.ready(crate::state::JupyterState {
        url: "http://h:8888/?token=s3cret".into(),
        token: "s3cret".into(),
        ..Default::default()
    });
    tx.send_replace(s);
    let (code, body) = get(&path, "/v1/status").await;
    assert_eq!(code, 200);
    assert!(body.contains("\"phase\":\"ready\"") && !body.contains("s3cret"), "{body}");
    let (_, body) = get(&path, "/v1/status?show_token=true").await;
    assert!(body.contains("s3cret"));
}

#[tokio::test]
async fn bad_requests_name_the_parameter() {
    let (_dir, path, _tx, _stop) = start();
    assert_eq!(
        get(&path, "/v1/wait?timeout=abc").await,
        (400, "{\"error\":\"timeout=abc: expected a whole number from 0 to 3600\"}\n".into())
    );
    assert_eq!(
        get(&path, "/v1/wait?until=soon").await,
        (400, "{\"error\":\"until=soon: expected ready or change\"}\n".into())
    );
    assert_eq!(get(&path, "/v1/status?show_token=maybe").await.0, 400);
    assert_eq!(get(&path, "/v2/status").await.0, 404);
    assert_eq!(get(&path, "/v1/logs").await.0, 404, "no container yet");
}

#[tokio::test]
async fn the_long_poll_answers_at_the_change_or_at_the_timeout() {
    let (_dir, path, tx, _stop) = start();
    let (_, body) = get(&path, "/v1/wait?until=ready&timeout=0").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["timed_out"].as_bool(), v["state"]["phase"].as_str()), (Some(true), Some("pending")), "{body}");
    let waiter = tokio::spawn({
        let path = path.clone();
        async move { get(&path, "/v1/wait?until=change&after=0&timeout=30").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut s = crate::state::fresh();
    s.revision = 1;
    s.phase = Phase::PreparingImage;
    tx.send_replace(s);
    let (code, body) = waiter.await.unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("\"timed_out\":false") && body.contains("\"phase\":\"preparing-image\""), "{body}");
}

#[tokio::test]
async fn events_start_with_the_current_state_and_follow_changes() {
    let (_dir, path, tx, _stop) = start();
    let client = jupyter_proto::client::Client::new(&path, "test");
    let mut events = client.events(false).await.unwrap();
    assert_eq!(events.next_state().await.unwrap().unwrap().phase, Phase::Pending);
    let mut s = crate::state::fresh();
    s.revision = 7;
    s.phase = Phase::WaitingForToken;
    tx.send_replace(s);
    let next = events.next_state().await.unwrap().unwrap();
    assert_eq!((next.revision, next.phase), (7, Phase::WaitingForToken));
}

/// The shared client against this server: status (redacted unless
/// asked), the long poll, and a refusal it cannot fix by waiting.
#[tokio::test]
async fn the_shared_client_reads_what_the_server_serves() {
    use jupyter_proto::client::{AgentError, Client, Until};
    let (_dir, path, tx, _stop) = start();
    let client = Client::new(&path, "test");
    let mut s = crate::state::fresh();
    s.revision = 3;
    s.ready(crate::state::JupyterState {
        url: "http://h:8888/?token=s3cret".into(),
        token: "s3cret".into(),
        ..Default::default()
    });
    tx.send_replace(s);
    assert_eq!(client.status(false).await.unwrap().jupyter.unwrap().url, "http://h:8888/?token=<redacted>");
    assert_eq!(client.status(true).await.unwrap().jupyter.unwrap().token, "s3cret");
    let answer = client.wait(Until::Ready, Duration::from_secs(5), false).await.unwrap();
    assert!(!answer.timed_out && answer.state.is_ready());
    let answer = client.wait(Until::Change(3), Duration::from_secs(1), false).await.unwrap();
    assert!(answer.timed_out, "no change after revision 3");
    let err = client.logs(10, false, false).await.err().expect("no container yet");
    assert!(matches!(&err, AgentError::Broken(m) if m.contains("404")), "{err:?}");
}
