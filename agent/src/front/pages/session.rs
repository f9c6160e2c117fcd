//! Who may use the pages (docs/pages.md#who-may-use-them): the login token, recognised
//! in a login link or an `Authorization` header by an HMAC it keys; the
//! session cookie the front gives for it (a random nonce and its HMAC, no
//! secret); the anti-forgery tokens made from a session's nonce; and the
//! browser's word on where a request came from.

use http::header::{self, HeaderMap, HeaderValue};
use ring::hmac;

use super::{Pages, COOKIE, PREFIX};

pub(super) struct Keys {
    /// HMACs of the sessions' nonces.
    mac: hmac::Key,
    /// An HMAC made with the token as key, to recognise the token in a login
    /// link or a header (checked in constant time by `hmac::verify`).
    check: hmac::Tag,
}

/// Who is asking.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Holder {
    /// The session cookie: a browser, which must send the anti-forgery token.
    Session { nonce: String },
    /// `Authorization: token`: a script, which a cross-site page cannot be.
    Header,
}

impl Pages {
    /// The login token the pages accept from now on (empty: none, the
    /// pages are off); sessions made with another token end.
    pub fn set_token(&self, token: &str) {
        let keys = (!token.is_empty()).then(|| Keys {
            mac: hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes()),
            check: hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes()), LOGIN_CHECK),
        });
        *self.key.write().expect("not poisoned") = keys;
    }

    fn is_token(&self, presented: &str) -> bool {
        let keys = self.key.read().expect("not poisoned");
        let presented = hmac::Key::new(hmac::HMAC_SHA256, presented.as_bytes());
        keys.as_ref().is_some_and(|k| hmac::verify(&presented, LOGIN_CHECK, k.check.as_ref()).is_ok())
    }

    pub(super) fn tag(&self, purpose: &str, nonce: &str) -> Option<String> {
        let keys = self.key.read().expect("not poisoned");
        let keys = keys.as_ref()?;
        Some(hex::encode(hmac::sign(&keys.mac, format!("{purpose}:{nonce}").as_bytes()).as_ref()))
    }

    pub(super) fn verify(&self, purpose: &str, nonce: &str, tag: &str) -> bool {
        let Ok(tag) = hex::decode(tag) else { return false };
        let keys = self.key.read().expect("not poisoned");
        keys.as_ref().is_some_and(|k| hmac::verify(&k.mac, format!("{purpose}:{nonce}").as_bytes(), &tag).is_ok())
    }

    /// A new session's cookie value: `<nonce>.<tag>`.
    fn new_session(&self) -> Option<String> {
        let mut nonce = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).ok()?;
        let nonce = hex::encode(nonce);
        let tag = self.tag("session", &nonce)?;
        Some(format!("{nonce}.{tag}"))
    }

    /// The `Set-Cookie` of a new session, when `uri`'s query holds the
    /// login token: the front adds it to Jupyter's answer to the login link.
    pub fn login_cookie(&self, uri: &http::Uri, secure: bool) -> Option<HeaderValue> {
        let token = query_value(uri.query()?, "token")?;
        if !self.is_token(&token) {
            return None;
        }
        let value = self.new_session()?;
        let secure = if secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!("{COOKIE}={value}; Path={PREFIX}; HttpOnly; SameSite=Strict{secure}")).ok()
    }

    pub(super) fn holder(&self, headers: &HeaderMap) -> Option<Holder> {
        if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|a| a.to_str().ok()) {
            let token = auth.strip_prefix("token ").or_else(|| auth.strip_prefix("Token "))?;
            return self.is_token(token.trim()).then_some(Holder::Header);
        }
        for cookies in headers.get_all(header::COOKIE) {
            let Ok(cookies) = cookies.to_str() else { continue };
            for cookie in cookies.split(';') {
                let Some((name, value)) = cookie.trim().split_once('=') else { continue };
                if name != COOKIE {
                    continue;
                }
                if let Some((nonce, tag)) = value.split_once('.') {
                    if nonce.len() == 32 && self.verify("session", nonce, tag) {
                        return Some(Holder::Session { nonce: nonce.to_string() });
                    }
                }
            }
        }
        None
    }

    pub(super) fn pages_off(&self) -> bool {
        self.key.read().expect("not poisoned").is_none()
    }
}

/// What the token's own HMAC is made of.
const LOGIN_CHECK: &[u8] = b"jupyter-agent pages: the login token";

/// `path` with `query` less its `token`.
pub(super) fn without_token(path: &str, query: Option<&str>) -> String {
    let rest: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k != "token")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    match rest.is_empty() {
        true => path.to_string(),
        false => format!("{path}?{}", form_urlencoded::Serializer::new(String::new()).extend_pairs(rest).finish()),
    }
}

pub(super) fn query_value(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// Whether a browser says the request came from a page of this origin.
/// `Sec-Fetch-Site`, which a browser sets and no page can, decides when it
/// is there (`same-origin`, or `none`: typed by the person); else
/// `Origin`, when it is there, must name this host (`null`, sent for an
/// opaque origin such as a sandboxed frame's, does not). A client that
/// sends neither passes: the anti-forgery token is the check that always
/// holds.
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return matches!(site.to_str(), Ok("same-origin" | "none"));
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin_host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
    origin_host == Some(host) && !host.is_empty()
}
