use super::*;
use http::header::HeaderMap;

fn pages(token: &str) -> Pages {
    let cfg = Config::defaults();
    let pages = Pages::new(&cfg, None);
    pages.set_token(token);
    pages
}

fn cookie_of(set_cookie: &HeaderValue) -> String {
    set_cookie.to_str().unwrap().split(';').next().unwrap().to_string()
}

#[test]
fn the_login_link_gives_a_cookie_that_holds_no_secret_and_ends_with_the_token() {
    let p = pages("s3cret-token");
    let uri: http::Uri = "/lab?token=s3cret-token".parse().unwrap();
    let set = p.login_cookie(&uri, true).expect("a cookie for the login link");
    let text = set.to_str().unwrap();
    assert!(text.contains("; Path=/_agent/; HttpOnly; SameSite=Strict; Secure"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!p.login_cookie(&uri, false).unwrap().to_str().unwrap().contains("Secure"));
    assert!(p.login_cookie(&"/lab?token=wrong".parse().unwrap(), true).is_none());
    assert!(p.login_cookie(&"/lab".parse().unwrap(), true).is_none());

    let mut headers = HeaderMap::new();
    headers.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; {}", cookie_of(&set))).unwrap());
    assert!(matches!(p.holder(&headers), Some(Holder::Session { .. })));
    // A forged or altered cookie is no session.
    let mut forged = HeaderMap::new();
    forged.insert(
        header::COOKIE,
        HeaderValue::from_static("jupyter-agent-session=00000000000000000000000000000000.abcd"),
    );
    assert_eq!(p.holder(&forged), None);
    // A new token ends the session.
    p.set_token("another");
    assert_eq!(p.holder(&headers), None);
    p.set_token("");
    assert!(p.pages_off());
}

#[test]
fn the_token_leaves_the_address_and_the_rest_of_the_query_stays() {
    assert_eq!(without_token("/_agent/", Some("token=abc")), "/_agent/");
    assert_eq!(without_token("/_agent/download", Some("backup=w.bak-1&token=abc")), "/_agent/download?backup=w.bak-1");
    assert_eq!(without_token("/_agent/", None), "/_agent/");
}

#[tokio::test]
async fn a_refusal_reads_as_one_line_of_text() {
    let page =
        html(StatusCode::FORBIDDEN, "Refused", "<p>the form&#39;s token &amp; <code>x</code>;\n nothing was done.</p>");
    let body = page.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(page_text(&String::from_utf8_lossy(&body)), "the form's token & x; nothing was done.");
}

#[test]
fn a_script_holds_the_token_in_a_header() {
    let p = pages("tok");
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, HeaderValue::from_static("token tok"));
    assert_eq!(p.holder(&headers), Some(Holder::Header));
    headers.insert(header::AUTHORIZATION, HeaderValue::from_static("token nope"));
    assert_eq!(p.holder(&headers), None);
}

#[test]
fn the_anti_forgery_token_is_the_sessions_own() {
    let p = pages("tok");
    let a = p.tag("csrf", "a".repeat(32).as_str()).unwrap();
    assert!(p.verify("csrf", &"a".repeat(32), &a));
    assert!(!p.verify("csrf", &"b".repeat(32), &a), "another session's");
    assert!(!p.verify("session", &"a".repeat(32), &a), "a session tag is no anti-forgery token");
    assert!(!p.verify("csrf", &"a".repeat(32), "zz"));
}

#[test]
fn a_cross_site_request_is_told_apart_from_the_pages_own() {
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    };
    assert!(same_origin(&headers(&[
        ("host", "1.2.3.4:8888"),
        ("origin", "https://1.2.3.4:8888"),
        ("sec-fetch-site", "same-origin")
    ])));
    assert!(same_origin(&headers(&[("host", "1.2.3.4:8888")])), "a client that sends neither");
    assert!(!same_origin(&headers(&[("host", "1.2.3.4:8888"), ("origin", "https://evil.example")])));
    assert!(!same_origin(&headers(&[("host", "1.2.3.4:8888"), ("sec-fetch-site", "cross-site")])));
    assert!(!same_origin(&headers(&[("host", "1.2.3.4:8888"), ("origin", "null")])));
    // Chromium's own form post under a no-referrer policy: Origin null, the site said.
    assert!(same_origin(&headers(&[("host", "h:1"), ("origin", "null"), ("sec-fetch-site", "same-origin")])));
    assert!(!same_origin(&headers(&[("host", "h:1"), ("origin", "https://h:1"), ("sec-fetch-site", "same-site")])));
}

#[test]
fn a_message_is_escaped_on_the_page() {
    let mut state = crate::state::fresh();
    state.hand = Some(crate::state::Hand {
        raised_at: "2026-12-07T10:02:00Z".parse().unwrap(),
        message: Some("<script>x</script>".into()),
    });
    let line = escape(&hand_line(Some(&state)));
    assert_eq!(line, "You asked for help at 10:02 UTC: &lt;script&gt;x&lt;/script&gt;");
}
