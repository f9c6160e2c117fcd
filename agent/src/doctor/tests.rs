use super::runtimes::{Found, Kind, PODMAN_SOCKET};
use super::*;

const ADDRESS: &str = "unix:///var/run/docker.sock";

fn line(check: Check) -> String {
    render(&[check])
}

#[tokio::test]
async fn with_the_urls_host_named_the_metadata_service_is_not_asked() {
    let mut cfg = Config::defaults();
    cfg.jupyter.url_host = "127.0.0.1".parse().unwrap();
    // An endpoint that would fail the test if it were asked: nothing listens there.
    cfg.jupyter.metadata_endpoint = "http://127.0.0.1:9".into();
    let check = metadata_check(&cfg).await;
    assert_eq!(check.verdict, Verdict::Ok);
    assert!(check.detail.starts_with("not asked: [jupyter] url_host = \"127.0.0.1\""), "{}", check.detail);
    cfg.jupyter.url_host = UrlHost::Auto;
    let check = metadata_check(&cfg).await;
    assert_eq!(check.verdict, Verdict::Warn, "asked, and nothing answers: {}", check.detail);
    assert!(check.detail.starts_with("no ECS metadata service at http://127.0.0.1:9"), "{}", check.detail);
}

#[test]
fn the_engine_line_names_the_runtime_that_is_here_instead() {
    assert_eq!(
            line(engine_check(ADDRESS, Err(()), &[], false)),
            "FAIL  engine     no Docker engine answers at unix:///var/run/docker.sock; fix: jupyter-agent install-docker (or systemctl start docker)\n"
        );
    let podman = Found { kind: Kind::Podman, socket: Some(PODMAN_SOCKET.into()), pids: vec![] };
    let text = line(engine_check(ADDRESS, Err(()), &[podman], false));
    assert!(
            text.starts_with("FAIL  engine     no Docker engine answers at unix:///var/run/docker.sock, but podman's API socket /run/podman/podman.sock is here; fix: jupyter-agent install-docker (on the RPM distributions it removes podman and runc first, see [docker] remove_conflicts)"),
            "{text}"
        );
    assert!(text.contains("[docker] host = \"unix:///run/podman/podman.sock\""), "{text}");
    let containerd = Found { kind: Kind::Containerd, socket: None, pids: vec![812] };
    assert_eq!(
            line(engine_check(ADDRESS, Err(()), &[containerd], false)),
            "FAIL  engine     no Docker engine answers at unix:///var/run/docker.sock, but containerd (pid 812) without Docker is here; fix: jupyter-agent install-docker: containerd alone does not serve Docker's API\n"
        );
}

/// Issue 22, item 7: doctor warns when the container's uid is a host account's.
#[test]
fn a_host_account_with_the_containers_uid_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("state_dir = \"{}\"\n[image]\nname = \"nb\"\n", dir.path().display());
    let cfg = Config::parse(std::path::Path::new("c.toml"), &text).unwrap();
    let source = crate::login::mount_source(dir.path());
    std::fs::write(&source, "t").unwrap();
    assert!(container_user_check(&cfg).is_none(), "root's");
    std::os::unix::fs::chown(&source, Some(65534), None).unwrap();
    assert_eq!(
            line(container_user_check(&cfg).unwrap()),
            format!("warn  uid        the container runs as uid 65534, which is the host account nobody: it owns the token file the container mounts ({}) and whatever the container writes in its mounts; fix: set [container] user to a uid no host account has, then jupyter-agent run\n", source.display())
        );
}

#[test]
fn an_engine_that_answers_is_ok_unless_it_is_podman_behind_dockers_socket() {
    assert_eq!(
        line(engine_check(ADDRESS, Ok("1.45".into()), &[], false)),
        "ok    engine     the Docker engine answers at unix:///var/run/docker.sock (API 1.45)\n"
    );
    let text = line(engine_check(ADDRESS, Ok("1.40".into()), &[], true));
    assert!(
        text.starts_with(
            "warn  engine     the engine that answers at unix:///var/run/docker.sock (API 1.40) is podman"
        ),
        "{text}"
    );
}

/// A trusted certificate whose renewals fail: `warn`, with when the
/// self-signed fallback takes over, or that `fallback = "fail"` serves
/// it until it expires (docs/tls.md#when-renewals-fail).
#[test]
fn the_tls_line_says_when_a_certificate_not_renewed_gives_way_or_that_nothing_replaces_it() {
    use crate::config::{Fallback, TlsMode};
    use crate::tls::certs;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::defaults();
    cfg.state_dir = dir.path().to_path_buf();
    cfg.tls.mode = TlsMode::Acme;
    // A certificate of 160 hours, 100 of them gone (as if from an ACME CA: the kind is the file's).
    let mut params = rcgen::CertificateParams::new(vec!["203.0.113.7".into()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(100);
    params.not_after = now + time::Duration::hours(60);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let served = certs::from_acme(&key.serialize_pem(), &cert.pem()).unwrap();
    served.save(dir.path()).unwrap();
    let mut state = crate::state::fresh();
    state.tls = Some(crate::state::TlsState {
        mode: certs::Kind::Acme,
        served: certs::Kind::Acme,
        listen: "0.0.0.0:8888".parse().unwrap(),
        subject: served.info.subject(),
        issuer: served.info.issuer.clone(),
        not_after: served.info.not_after,
        fingerprint: served.info.fingerprint.clone(),
        next_renewal: None,
        acme_error: Some("port 80 closed".into()),
    });
    let check = tls_check(&cfg, Some(&state));
    assert_eq!(check.verdict, Verdict::Warn, "{check:?}");
    let from = served.info.fallback_at().format("%Y-%m-%d %H:%M UTC").to_string();
    assert!(
        check.detail.contains(&format!("it could not be renewed: the self-signed fallback from {from}"))
            && check.detail.ends_with("the last ACME attempt failed: port 80 closed"),
        "{}",
        check.detail
    );
    cfg.tls.fallback = Fallback::Fail;
    let check = tls_check(&cfg, Some(&state));
    assert!(check.detail.contains("[tls] fallback = \"fail\": it is served until it expires"), "{}", check.detail);
}
