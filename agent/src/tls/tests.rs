use super::*;

#[test]
fn lets_encrypt_is_not_asked_for_an_address_it_cannot_reach() {
    let le = TlsConfig { directory: LETS_ENCRYPT.into(), ..Config::defaults().tls };
    for private in ["10.0.3.4", "172.16.0.1", "192.168.1.1", "127.0.0.1", "100.64.0.7", "169.254.1.1", "[fd00::1]"] {
        assert!(private_address_refused(&le, &private.parse().unwrap()).is_some(), "{private}");
    }
    for public in ["47.98.1.2", "203.0.113.7", "100.128.0.1", "example.org"] {
        assert_eq!(private_address_refused(&le, &public.parse().unwrap()), None, "{public}");
    }
    // A private or test CA may validate what it can reach.
    let pebble = TlsConfig { directory: "https://127.0.0.1:14000/dir".into(), ..le };
    assert_eq!(private_address_refused(&pebble, &"127.0.0.1".parse().unwrap()), None);
}

#[test]
fn failed_attempts_back_off_as_lets_encrypt_says_then_every_fortieth_of_the_lifetime_within_100_min_and_a_day() {
    let hours = |h: u64| Duration::from_secs(h * 3600);
    let waits = |lifetime| (1..=6).map(|n| retry_delay(n, lifetime).as_secs()).collect::<Vec<_>>();
    // 160 hours (shortlived): every 4 hours, some 15 attempts between
    // half-life and the fallback 16 hours before expiry.
    assert_eq!(waits(hours(160)), [60, 600, 6000, 14400, 14400, 14400]);
    // 90 days: daily, the integration guide's schedule.
    assert_eq!(waits(hours(90 * 24)), [60, 600, 6000, 86400, 86400, 86400]);
    // A test CA's 60-second certificates: never more often than 100 min.
    assert_eq!(waits(Duration::from_secs(60)), [60, 600, 6000, 6000, 6000, 6000]);
    assert_eq!(retry_delay(0, hours(160)).as_secs(), 60);
}

#[test]
fn the_renewal_time_is_picked_in_aris_window_and_kept_until_the_window_moves() {
    let t = |s: i64| DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
    assert_eq!(pick_in((t(0), t(100)), 0), t(0));
    assert_eq!(pick_in((t(0), t(100)), 100_000), t(100));
    assert_eq!(pick_in((t(0), t(100)), 100_001), t(0));
    assert_eq!(pick_in((t(0), t(100)), 42_500), t(0) + chrono::Duration::milliseconds(42_500));
    // An empty or inverted window: its start.
    assert_eq!(pick_in((t(50), t(10)), 7), t(50));
    let window = |start, end, retry_after| acme::Window {
        start: t(start),
        end: t(end),
        retry_after: Duration::from_secs(retry_after),
        explanation: None,
    };
    let first = Ari::from_window(&window(1000, 2000, 6 * 3600), None, t(0));
    assert!(first.at >= t(1000) && first.at <= t(2000), "{first:?}");
    assert_eq!(first.poll_at, t(6 * 3600));
    let same = Ari::from_window(&window(1000, 2000, 1), Some(&first), t(10));
    assert_eq!((same.at, same.poll_at), (first.at, t(70)), "the same pick; Retry-After at least a minute");
    let moved = Ari::from_window(&window(5000, 5000, 7 * 86400), Some(&first), t(10));
    assert_eq!((moved.at, moved.poll_at), (t(5000), t(10 + 12 * 3600)), "a new pick; asked again within 12 h");
}

#[test]
fn the_note_gives_the_fingerprint_and_why_acme_failed_and_warns_of_a_trusted_certificate_not_renewed() {
    let mut state = TlsState {
        mode: Kind::Acme,
        served: Kind::SelfSigned,
        listen: "0.0.0.0:443".parse().unwrap(),
        subject: "IP 203.0.113.7".into(),
        issuer: "jupyter-agent self-signed".into(),
        not_after: Utc::now(),
        fingerprint: "AB:CD".into(),
        next_renewal: None,
        acme_error: None,
    };
    assert!(note(&state).unwrap().ends_with("the SHA-256 fingerprint they show is AB:CD"));
    state.acme_error = Some("port 80 closed".into());
    assert!(note(&state).unwrap().contains("the ACME CA failed: port 80 closed"));
    state.served = Kind::Acme;
    state.not_after = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    state.next_renewal = Some(DateTime::from_timestamp(1_699_990_000, 0).unwrap());
    assert_eq!(
        note(&state).unwrap(),
        "the trusted certificate (valid until 2023-11-14 22:13:20 UTC) could not be renewed: port 80 closed; \
             the agent retries at 2023-11-14 19:26:40 UTC; unless a renewal succeeds first, a self-signed \
             certificate replaces it before it expires ([tls] fallback)"
    );
    state.acme_error = None;
    assert_eq!(note(&state), None);
}
