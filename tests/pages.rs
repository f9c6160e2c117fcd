//! The participant's pages on the front (`/_agent/`, docs/pages.md),
//! through the front with a real engine and a real Jupyter, as a browser
//! and a script reach them: who may use them (the login link's cookie, the
//! token in a header) and what a forged, cross-site, unconfirmed or GET
//! request changes (nothing); and each action (download, the organiser's
//! fixes, a hand, a reset), with the bytes of the participant's edited
//! notebook checked afterwards: in place, beside, or in the backup. The
//! browser's own clicks are `pages_browser`'s.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::common::agent::ready_url;
use crate::common::agent::ForegroundAgent;
use crate::common::env::Env;
use crate::common::{self, git, split_url, MOUNT, NOTEBOOK};

/// A client that shows each answer as it is: no redirect followed, no
/// cookie kept (the tests send the cookie they mean to).
fn client() -> reqwest::blocking::Client {
    let _ = common::http();
    reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// An agent serving materials from a local git repository into `handson`,
/// mounted in the container; `extra` goes into `[workspace]`.
struct Room {
    env: Env,
    repo: PathBuf,
    handson: PathBuf,
    log: PathBuf,
    _agent: ForegroundAgent,
    url: String,
}

impl Room {
    fn start(name: &str, extra: &str) -> Room {
        let env = Env::new(name);
        let files = [("hello.ipynb", NOTEBOOK), ("guide.md", "# Step 1\n"), ("data/big.csv", "a,b\n1,2\n")];
        let (repo, handson) = common::materials(&env, &files, extra);
        let log = env.path("agent.log");
        let agent = ForegroundAgent::start_logging(&env, &log);
        let url = ready_url(&env, &log);
        Room { env, repo, handson, log, _agent: agent, url }
    }

    fn base(&self) -> String {
        split_url(&self.url).0
    }

    fn token(&self) -> String {
        split_url(&self.url).2
    }

    /// The cookie the front sets on the login link's answer (`name=value`).
    fn login(&self) -> String {
        let response = client().get(&self.url).send().expect("the login link answers");
        let set: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .filter(|c| c.starts_with("jupyter-agent-session="))
            .collect();
        assert_eq!(set.len(), 1, "one session cookie on the login link's answer: {:?}", response.headers());
        let cookie = &set[0];
        assert!(cookie.ends_with("; Path=/_agent/; HttpOnly; SameSite=Strict"), "{cookie}");
        assert!(!cookie.contains(&self.token()), "the cookie holds no token: {cookie}");
        cookie.split(';').next().unwrap().to_string()
    }

    fn get(&self, path: &str, cookie: Option<&str>) -> (u16, String) {
        let mut request = client().get(format!("{}{path}", self.base()));
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        let response = request.send().expect("the front answers");
        let status = response.status().as_u16();
        (status, response.text().unwrap())
    }

    fn post(&self, path: &str, cookie: Option<&str>, headers: &[(&str, &str)], form: &[(&str, &str)]) -> (u16, String) {
        let mut request = client()
            .post(format!("{}{path}", self.base()))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(encoded(form));
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().expect("the front answers");
        let status = response.status().as_u16();
        (status, response.text().unwrap())
    }

    fn container(&self) -> String {
        common::inspect(&self.env.name, "{{.Id}}")
    }

    fn backups(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.env.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("handson.bak-"))
            .collect()
    }

    /// The participant edits the notebook in the container.
    fn edit(&self, bytes: &str) {
        let edit = format!("printf '%s' '{bytes}' > {MOUNT}/hello.ipynb");
        assert!(common::docker(&["exec", &self.env.name, "sh", "-c", &edit]).status.success());
        assert_eq!(std::fs::read_to_string(self.handson.join("hello.ipynb")).unwrap(), bytes);
    }

    fn said(&self) -> String {
        format!("--- the agent's log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

/// A form as a browser sends it.
fn encoded(form: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish()
}

/// The form's anti-forgery token on a page.
fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap_or_else(|| panic!("a form with a csrf field: {page}"));
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[test]
fn only_the_login_links_holder_uses_the_pages_and_forged_or_unconfirmed_requests_change_nothing() {
    let room = Room::start("pages-auth", "");
    let token = room.token();
    let id = room.container();

    // Without the login link's cookie, or with a forged one, or a wrong token: refused.
    for cookie in [None, Some("jupyter-agent-session=00112233445566778899aabbccddeeff.00")] {
        let (status, page) = room.get("/_agent/", cookie);
        assert_eq!(status, 403, "{page}");
        assert!(page.contains("Open your login link"), "{page}");
    }
    let wrong =
        client().get(format!("{}/_agent/", room.base())).header("Authorization", "token not-the-token").send().unwrap();
    assert_eq!(wrong.status().as_u16(), 403);

    // The login link: Jupyter answers, with the front's cookie.
    let cookie = room.login();
    let (status, home) = room.get("/_agent/", Some(&cookie));
    assert_eq!(status, 200, "{home}");
    assert!(home.contains("Download my work") && home.contains("Reset my environment"), "{home}");
    assert!(!home.contains(&token), "no token on the page");
    // JupyterLab's own calls with the token in the query make no new session.
    let call = client()
        .get(format!("{}/api/status?token={token}", room.base()))
        .header("Sec-Fetch-Mode", "cors")
        .send()
        .unwrap();
    assert_eq!(call.status().as_u16(), 200);
    let ours =
        call.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("jupyter-agent-session="));
    assert!(!ours, "no session from an API call: {:?}", call.headers());
    // The token typed on the pages' own address: the cookie, then the page without the token.
    let typed = client().get(format!("{}/_agent/?token={token}", room.base())).send().unwrap();
    assert_eq!(typed.status().as_u16(), 303);
    assert_eq!(typed.headers()["location"], "/_agent/");
    assert!(typed.headers()["set-cookie"].to_str().unwrap().starts_with("jupyter-agent-session="));

    // Every refusal below leaves the hand down, the container and the copy as they were.
    let unchanged = |what: &str| {
        assert!(room.env.state()["hand"].is_null(), "{what}: the hand stays down");
        assert_eq!(room.container(), id, "{what}: the container stays");
        assert!(room.backups().is_empty(), "{what}: the copy stays");
    };
    let (status, confirm) = room.get("/_agent/hand", Some(&cookie));
    assert_eq!(status, 200, "{confirm}");
    let tag = csrf(&confirm);
    let raise = |tag: &str| vec![("csrf", tag.to_string()), ("confirm", "yes".into()), ("raise", "yes".into())];
    let post = |cookie: Option<&str>, headers: &[(&str, &str)], form: Vec<(&str, String)>| {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        room.post("/_agent/hand", cookie, headers, &form)
    };

    // A cross-site form: the browser sends no SameSite=Strict cookie, so no session.
    let (status, page) = post(None, &[("Origin", "https://evil.example")], raise(&tag));
    assert_eq!(status, 403, "{page}");
    unchanged("a cross-site form");
    // The cookie, but no anti-forgery token, or a wrong one, or another session's.
    let (status, page) = post(Some(&cookie), &[], vec![("confirm", "yes".into()), ("raise", "yes".into())]);
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("anti-forgery token is missing or wrong") && page.contains("nothing was done"), "{page}");
    unchanged("no anti-forgery token");
    let (status, _) = post(Some(&cookie), &[], raise(&"ab".repeat(32)));
    assert_eq!(status, 403);
    unchanged("a wrong anti-forgery token");
    let other = room.login();
    assert_ne!(other, cookie, "each login is a session of its own");
    let (status, _) = post(Some(&other), &[], raise(&tag));
    assert_eq!(status, 403);
    unchanged("another session's anti-forgery token");
    // The right token, from another site (a browser says so in Origin and Sec-Fetch-Site).
    let (status, page) = post(Some(&cookie), &[("Origin", "http://evil.example")], raise(&tag));
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("another site"), "{page}");
    let (status, _) = post(Some(&cookie), &[("Sec-Fetch-Site", "cross-site")], raise(&tag));
    assert_eq!(status, 403);
    unchanged("a cross-site request");
    // Not confirmed.
    let (status, page) = post(Some(&cookie), &[], vec![("csrf", tag.clone()), ("raise", "yes".into())]);
    assert_eq!(status, 400, "{page}");
    unchanged("an unconfirmed request");
    // A GET of an action only asks.
    let (status, page) = room.get("/_agent/reset", Some(&cookie));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("running kernels and unsaved changes are lost"), "{page}");
    let (status, _) = room.get("/_agent/reset?confirm=yes", Some(&cookie));
    assert_eq!(status, 200);
    unchanged("a GET of the reset");
    // Another method: refused.
    let put = client().put(format!("{}/_agent/reset", room.base())).header("Cookie", &cookie).send().unwrap();
    assert_eq!(put.status().as_u16(), 405);
    unchanged("a PUT");

    // The page's own form, as the browser sends it: taken; the message escaped on the page.
    let mut form = raise(&tag);
    form.push(("message", "<b>stuck</b> on step 3".into()));
    let origin = room.base();
    let (status, page) = post(Some(&cookie), &[("Origin", &origin), ("Sec-Fetch-Site", "same-origin")], form);
    assert_eq!(status, 200, "{page}\n{}", room.said());
    assert!(page.contains("Your hand is raised"), "{page}");
    assert_eq!(room.env.state()["hand"]["message"], "<b>stuck</b> on step 3");
    let (_, home) = room.get("/_agent/", Some(&cookie));
    assert!(home.contains("&lt;b&gt;stuck&lt;/b&gt; on step 3") && !home.contains("<b>stuck"), "{home}");
    // The headers that keep the pages out of frames and caches.
    let headers = client().get(format!("{}/_agent/", room.base())).header("Cookie", &cookie).send().unwrap();
    assert_eq!(headers.headers()["x-frame-options"], "DENY");
    assert!(headers.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(headers.headers()["cache-control"], "no-store");

    // The token in a header (a script): no anti-forgery token needed, the
    // confirmation is; asked for JSON, the answer and a refusal are JSON.
    let script = |form: &[(&str, &str)], token: &str| {
        let response = client()
            .post(format!("{}/_agent/hand", room.base()))
            .header("Authorization", format!("token {token}"))
            .header("Accept", "application/json")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(encoded(form))
            .send()
            .unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = serde_json::from_str(&response.text().unwrap()).expect("JSON");
        (status, body)
    };
    let (status, body) = script(&[("raise", "no")], &token);
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("The action was not confirmed; nothing was done."), "{body}");
    let (status, body) = script(&[("confirm", "yes"), ("raise", "no")], "not-the-token");
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("Open your login link"), "{body}");
    assert!(!room.env.state()["hand"].is_null(), "still raised");
    let (status, body) = script(&[("confirm", "yes"), ("raise", "no")], &token);
    assert_eq!((status, body), (200, serde_json::json!({"hand": null})));
    assert!(room.env.state()["hand"].is_null());

    // The log never holds the token (the login link's query included).
    assert!(!std::fs::read_to_string(&room.log).unwrap().contains(&token), "the token is not logged");
}

/// The entries of a zip: name -> bytes.
fn unzip(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    let mut entries = std::collections::BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let mut content = Vec::new();
        file.read_to_end(&mut content).unwrap();
        entries.insert(file.name().to_string(), content);
    }
    entries
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[test]
fn download_the_organisers_fixes_and_a_reset_through_the_pages_keep_the_participants_notebook() {
    let room = Room::start("pages-actions", "download_exclude = [\"data/**\"]");
    let token = room.token();
    let auth = format!("token {token}");
    let mine = r#"{"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["mine"]}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;
    room.edit(mine);

    // Download: the edited notebook's bytes, the materials, not data/ nor .git.
    let response =
        client().get(format!("{}/_agent/download", room.base())).header("Authorization", &auth).send().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    let disposition = response.headers()["content-disposition"].to_str().unwrap().to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"handson-") && disposition.ends_with(".zip\""),
        "{disposition}"
    );
    let entries = unzip(&response.bytes().unwrap());
    assert_eq!(entries["hello.ipynb"], mine.as_bytes());
    assert_eq!(entries["guide.md"], b"# Step 1\n");
    assert!(entries.keys().all(|k| !k.starts_with("data/") && !k.starts_with(".git")), "{:?}", entries.keys());

    // The organiser fixes the materials: the guide, and the notebook the participant edited.
    write(&room.repo.join("guide.md"), "# Step 1, fixed\n");
    write(
        &room.repo.join("hello.ipynb"),
        &NOTEBOOK.replace(
            "\"cells\": []",
            "\"cells\": [{\"cell_type\": \"markdown\", \"metadata\": {}, \"source\": [\"new\"]}]",
        ),
    );
    git(&room.repo, &["commit", "-q", "-am", "fixes"]);
    let cookie = room.login();
    let (status, page) = room.get("/_agent/update", Some(&cookie));
    assert_eq!(status, 200, "{page}\n{}", room.said());
    assert!(page.contains("updated: <code>guide.md</code>"), "{page}");
    assert!(page.contains("yours kept, the new version beside it"), "{page}");
    assert_eq!(std::fs::read_to_string(room.handson.join("guide.md")).unwrap(), "# Step 1\n", "a GET changes nothing");
    let tag = csrf(&page);
    let (status, page) = room.post("/_agent/update", Some(&cookie), &[], &[("csrf", &tag), ("confirm", "yes")]);
    assert_eq!(status, 200, "{page}\n{}", room.said());
    assert!(page.contains("id=\"done\""), "{page}");
    assert_eq!(std::fs::read_to_string(room.handson.join("guide.md")).unwrap(), "# Step 1, fixed\n");
    assert_eq!(std::fs::read_to_string(room.handson.join("hello.ipynb")).unwrap(), mine, "the participant's, in place");
    let beside: Vec<String> = std::fs::read_dir(&room.handson)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("hello.new-") && n.ends_with(".ipynb"))
        .collect();
    assert_eq!(beside.len(), 1, "the new version beside it");
    assert!(std::fs::read_to_string(room.handson.join(&beside[0])).unwrap().contains("\"new\""));

    // Reset: the copy with the edited notebook goes aside; the same URL logs in to a new container.
    let id = room.container();
    let (status, page) = room.get("/_agent/reset", Some(&cookie));
    assert_eq!(status, 200);
    let tag = csrf(&page);
    let (status, page) = room.post("/_agent/reset", Some(&cookie), &[], &[("csrf", &tag), ("confirm", "yes")]);
    assert_eq!(status, 200, "{page}\n{}", room.said());
    let backups = room.backups();
    assert_eq!(backups.len(), 1, "{page}");
    assert!(page.contains(&backups[0].display().to_string()), "the page names the backup: {page}");
    assert_eq!(
        std::fs::read_to_string(backups[0].join("hello.ipynb")).unwrap(),
        mine,
        "the participant's, in the backup"
    );
    let url = ready_url(&room.env, &room.log);
    assert_eq!(url, room.url, "the same URL");
    assert_ne!(room.container(), id, "a new container");
    assert!(std::fs::read_to_string(room.handson.join("hello.ipynb")).unwrap().contains("\"new\""), "fresh materials");
    assert_eq!(common::get_status(&format!("{}/api/status", room.base()), &token), 200, "the same token logs in");
    // The session survived the reset (same token); the backup is listed and downloads.
    let (status, home) = room.get("/_agent/", Some(&cookie));
    assert_eq!(status, 200, "{home}");
    let name = backups[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(home.contains(&format!("/_agent/download?backup={name}")), "{home}");
    let response = client()
        .get(format!("{}/_agent/download?backup={name}", room.base()))
        .header("Cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(unzip(&response.bytes().unwrap())["hello.ipynb"], mine.as_bytes());
    let (status, _) = room.get("/_agent/download?backup=..%2F..%2Fetc", Some(&cookie));
    assert_eq!(status, 404, "only a listed backup");
}
