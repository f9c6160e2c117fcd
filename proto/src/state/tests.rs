use super::*;

fn new() -> State {
    State::new("0.1.0")
}

#[test]
fn transitions_record_each_step() {
    let mut s = new();
    assert_eq!(s.phase, Phase::Pending);
    s.begin("engine", Phase::InstallingDocker);
    assert_eq!(s.running_step().unwrap().name, "engine");
    s.end("engine", StepStatus::Done, Some("answered".into()));
    s.begin("image", Phase::PreparingImage);
    assert_eq!(s.phase, Phase::PreparingImage);
    s.fail(Failure { step: "image".into(), cause: "no such image".into(), ..Default::default() });
    assert_eq!(s.phase, Phase::Failed);
    let mut stopped = s.clone();
    stopped.begin("token", Phase::WaitingForToken);
    stopped.stop("stopped by SIGTERM");
    assert_eq!((stopped.phase.as_str(), stopped.error.as_ref().unwrap().step.as_str()), ("stopped", "token"));
    assert!(stopped.running_step().is_none());
    assert_eq!(s.steps[0].status, StepStatus::Done);
    assert_eq!(s.steps[0].detail.as_deref(), Some("answered"));
    assert_eq!(s.steps[1].status, StepStatus::Failed);
    assert!(s.steps[1].ended_at.is_some());
    assert!(s.running_step().is_none());
}

#[test]
fn ready_clears_an_old_error_and_redaction_hides_the_token() {
    let mut s = new();
    s.fail(Failure {
        step: "token".into(),
        cause: "x".into(),
        log_tail: vec!["http://h/?token=abc".into()],
        ..Default::default()
    });
    assert_eq!(s.redacted().error.unwrap().log_tail, vec!["http://h/?token=<redacted>".to_string()]);
    s.ready(JupyterState {
        url: "http://h:8888/tree?token=s3cret".into(),
        token: "s3cret".into(),
        token_source: TokenSource::Log,
        token_seen_at: Utc::now(),
        proven_at: Utc::now(),
        note: None,
        gpus: Vec::new(),
    });
    assert_eq!(s.phase, Phase::Ready);
    assert!(s.error.is_none());
    let shown = serde_json::to_string(&s.redacted()).unwrap();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("http://h:8888/tree?token=<redacted>"));
}

#[test]
fn reads_the_documented_example_and_ignores_unknown_fields() {
    let doc = r#"{
      "version": 1, "revision": 12, "phase": "ready", "agent_version": "0.1.0",
      "started_at": "2026-11-27T04:17:37.406Z", "updated_at": "2026-11-27T04:17:38.658Z",
      "steps": [
        {"name": "image", "phase": "preparing-image", "status": "done",
         "started_at": "2026-11-27T04:17:37.5Z", "ended_at": "2026-11-27T04:17:37.6Z", "detail": "present"},
        {"name": "token", "phase": "waiting-for-token", "status": "done",
         "started_at": "2026-11-27T04:17:37.7Z", "ended_at": "2026-11-27T04:17:38.6Z"}
      ],
      "jupyter": {"url": "http://203.0.113.7:8888/tree?token=<redacted>", "token": "<redacted>",
                  "token_source": "log"},
      "error": null,
      "some_future_field": [1, 2]
    }"#;
    let s = State::from_json(doc.as_bytes(), "test").unwrap();
    assert_eq!(s.revision, 12);
    assert!(s.is_ready());
    assert_eq!(s.steps.len(), 2);
    assert_eq!(s.current_step().unwrap().name, "token");
    assert_eq!(s.jupyter.unwrap().url, "http://203.0.113.7:8888/tree?token=<redacted>");
}

/// `jupyter.gpus` (docs/api.md): absent without GPUs, so that documents
/// stay as they were; read when present; older documents read without it.
#[test]
fn gpus_are_named_when_the_container_has_them() {
    let mut j = JupyterState { url: "u".into(), ..Default::default() };
    assert!(!serde_json::to_string(&j).unwrap().contains("gpus"));
    j.gpus = vec!["Tesla T4".into()];
    let json = serde_json::to_value(&j).unwrap();
    assert_eq!(json["gpus"], serde_json::json!(["Tesla T4"]));
    let back: JupyterState = serde_json::from_value(json).unwrap();
    assert_eq!(back.gpus, ["Tesla T4"]);
    let older: JupyterState = serde_json::from_str(r#"{"url": "u"}"#).unwrap();
    assert!(older.gpus.is_empty());
}

#[test]
fn unknown_phases_and_statuses_read_as_such_and_round_trip() {
    let s: State =
        serde_json::from_str(r#"{"version":1,"phase":"verifying-tls","steps":[{"name":"tls","status":"waiting"}]}"#)
            .unwrap();
    assert_eq!(s.phase, Phase::Other("verifying-tls".into()));
    assert_eq!(s.phase.to_string(), "verifying-tls");
    assert_eq!(s.steps[0].status.as_str(), "waiting");
    assert!(!s.is_ready() && !s.is_failed() && !s.phase.is_final());
    let again: State = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(again, s);
    let phases = [
        (Phase::Pending, "pending"),
        (Phase::InstallingDocker, "installing-docker"),
        (Phase::PreparingGpu, "preparing-gpu"),
        (Phase::FetchingWorkspace, "fetching-workspace"),
        (Phase::PreparingImage, "preparing-image"),
        (Phase::StartingContainer, "starting-container"),
        (Phase::WaitingForToken, "waiting-for-token"),
        (Phase::Ready, "ready"),
        (Phase::Failed, "failed"),
        (Phase::Stopped, "stopped"),
    ];
    for (phase, name) in phases {
        assert_eq!(Phase::from(name.to_string()), phase);
        assert_eq!(phase.as_str(), name);
        assert_eq!(serde_json::to_string(&phase).unwrap(), format!("\"{name}\""));
    }
    for (status, name) in [(StepStatus::Running, "running"), (StepStatus::Done, "done"), (StepStatus::Failed, "failed")]
    {
        assert_eq!(StepStatus::from(name.to_string()), status);
        assert_eq!(status.as_str(), name);
    }
}

/// Addresses and keywords are typed in Rust and keep the documented
/// JSON shape (docs/api.md); a keyword a newer agent adds reads as `Other`.
#[test]
fn typed_fields_keep_the_documented_json() {
    let doc = r#"{"version":1,"phase":"ready",
      "image": {"reference": "nb:1", "source": "archive"},
      "container": {"id": "c", "name": "n", "host_address": "::1", "host_port": 8888},
      "jupyter": {"url": "u", "token_source": "server-list"},
      "tls": {"mode": "acme", "served": "self-signed", "listen": "[::]:443", "subject": "IP ::1",
              "issuer": "i", "not_after": "2026-11-27T04:17:37Z", "fingerprint": "AB"}}"#;
    let s = State::from_json(doc.as_bytes(), "test").unwrap();
    assert_eq!(s.image.as_ref().unwrap().source, ImageSourceKind::Archive);
    assert_eq!(s.container.as_ref().unwrap().host_address, "::1".parse::<IpAddr>().unwrap());
    assert_eq!(s.jupyter.as_ref().unwrap().token_source, TokenSource::ServerList);
    let tls = s.tls.as_ref().unwrap();
    assert_eq!((tls.mode, tls.served), (CertKind::Acme, CertKind::SelfSigned));
    assert_eq!(tls.listen, "[::]:443".parse::<SocketAddr>().unwrap());
    let json: serde_json::Value = serde_json::to_value(&s).unwrap();
    assert_eq!(json["container"]["host_address"], "::1");
    assert_eq!(json["tls"]["listen"], "[::]:443");
    assert_eq!(json["tls"]["served"], "self-signed");
    assert_eq!(json["jupyter"]["token_source"], "server-list");
    assert_eq!(json["image"]["source"], "archive");
    assert_eq!(TokenSource::ServerList.to_string(), "server-list");
    assert_eq!(CertKind::SelfSigned.to_string(), "self-signed");
    let newer: JupyterState = serde_json::from_str(r#"{"url": "u", "token_source": "oracle"}"#).unwrap();
    assert_eq!(newer.token_source, TokenSource::Other);
}

#[test]
fn a_failure_without_details_names_the_failed_step() {
    let s: State = serde_json::from_str(
        r#"{"version":1,"revision":3,"phase":"failed","steps":[{"name":"image","status":"failed"}]}"#,
    )
    .unwrap();
    assert_eq!(s.failure().step, "image");
    assert!(s.failure().cause.contains("without details"));
}

#[test]
fn newer_versions_and_garbage_are_refused() {
    assert!(check_version(1, "x").is_ok());
    let err = State::from_json(br#"{"version": 99}"#, "jupyter-bootstrap").unwrap_err();
    assert_eq!(
        err,
        "the state document has version 99, newer than this jupyter-bootstrap understands (1): \
         use the jupyter-bootstrap that came with the agent"
    );
    assert!(State::from_json(b"not json", "x").unwrap_err().starts_with("not a jupyter-agent state document"));
}

/// The hand is additive: absent when none is raised (older readers see
/// nothing new), its message left out when there is none.
#[test]
fn a_hand_is_present_only_when_raised() {
    let s = new();
    assert!(!serde_json::to_string(&s).unwrap().contains("hand"));
    let doc =
        r#"{"version":1,"phase":"ready","hand":{"raised_at":"2026-12-07T10:02:00Z","message":"stuck on step 3"}}"#;
    let s = State::from_json(doc.as_bytes(), "test").unwrap();
    let hand = s.hand.clone().unwrap();
    assert_eq!(hand.message.as_deref(), Some("stuck on step 3"));
    assert_eq!(hand.raised_at.to_rfc3339(), "2026-12-07T10:02:00+00:00");
    let json = serde_json::to_value(Hand { message: None, ..hand }).unwrap();
    assert_eq!(json, serde_json::json!({"raised_at": "2026-12-07T10:02:00Z"}));
}
