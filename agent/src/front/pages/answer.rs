//! The pages' answers: HTML pages, JSON, redirects, each with the headers
//! every page answer carries (docs/pages.md#who-may-use-them).

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use crate::front::{own_body, OwnBody};

/// What every page answer carries: never cached, never framed, no script,
/// forms to this origin only, no referrer.
pub(super) fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // same-origin, not no-referrer: under no-referrer Chromium sends the
    // pages' own form posts with `Origin: null`; no address leaves for
    // another site either way.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}

pub(super) fn html(status: StatusCode, title: &str, body: &str) -> Response<OwnBody> {
    let page = format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:0;background:#f5f5f5;color:#222}}
main{{background:#fff;margin:2em auto;padding:1.5em 2.5em;border-radius:8px;box-shadow:0 1px 4px #0002;max-width:44em}}
h1{{font-size:1.4em}} h2{{font-size:1.1em;margin-top:1.5em}} code{{background:#eee;padding:0 .3em}}
button{{font-size:1em;padding:.4em 1em}}
</style></head>
<body><main>
<h1>{title}</h1>
{body}</main></body></html>
"#,
        title = escape(title),
    );
    let mut response = Response::new(own_body(Bytes::from(page)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    secure_headers(headers);
    response
}

/// A JSON answer, with the pages' headers.
pub(super) fn json_reply(status: StatusCode, value: &impl serde::Serialize) -> Response<OwnBody> {
    let mut body = serde_json::to_vec(value).expect("serializable");
    body.push(b'\n');
    let mut response = Response::new(own_body(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    secure_headers(response.headers_mut());
    response
}

/// What a page says, as one line of text: its `<main>` without the
/// title, tags dropped and the escapes undone.
pub(super) fn page_text(page: &str) -> String {
    let main = page.split_once("</h1>").map_or(page, |(_, rest)| rest);
    let main = main.split_once("</main>").map_or(main, |(before, _)| before);
    let mut text = String::new();
    let mut in_tag = false;
    for c in main.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(super) fn redirect(to: &str, cookie: Option<HeaderValue>) -> Response<OwnBody> {
    let mut response = Response::new(own_body(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(to) {
        headers.insert(header::LOCATION, location);
    }
    if let Some(cookie) = cookie {
        headers.insert(header::SET_COOKIE, cookie);
    }
    secure_headers(headers);
    response
}

pub(super) fn escape(text: &str) -> String {
    crate::front::progress::escape(text).replace('\'', "&#39;")
}
