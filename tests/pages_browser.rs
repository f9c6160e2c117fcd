//! The participant's own pages under `/_agent/` (issue 23), end to end in
//! a real headless Chromium, through the front, with a real engine and a
//! real Jupyter: the browser is refused the pages until it has opened the
//! login link (the front's session cookie), then
//!
//! - "Download my work" saves `<dir>-<date>.zip`, which holds the edited
//!   notebook byte for byte and the materials, without what
//!   `[workspace] download_exclude` leaves out nor the clone's `.git`;
//! - "Reset my environment", once confirmed, moves the work aside (the
//!   edited notebook byte for byte in `<path>.bak-*`, listed on the page
//!   and downloadable from it), gives the materials fresh in a new
//!   container, and the same login link opens Jupyter again.
//!
//! Screenshots of every step go to `test-artefacts/pages-*.png` in the
//! target directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::common::agent::{ready_url, ForegroundAgent};
use crate::common::chromium::{self, Chromium};
use crate::common::env::Env;
use crate::common::{self, split_url, MOUNT, NOTEBOOK};

/// Another file of the materials, in a folder.
const INTRO: &str = "# Lesson 1\n\nRead this first.\n";
/// The participant's version of the notebook (not ASCII, to be checked byte for byte).
const EDITED: &str = "{\"cells\": [{\"cell_type\": \"markdown\", \"id\": \"mine\", \"metadata\": {}, \
                      \"source\": [\"My answer: 42 \u{2713} \u{00e9}t\u{00e9}\"]}], \"metadata\": {}, \
                      \"nbformat\": 4, \"nbformat_minor\": 5}\n";
/// A file the participant added beside the materials.
const NOTES: &str = "notes of mine\n";

/// An agent ready with a workspace of materials from a local git repo.
struct Workshop {
    /// Stopped before the engine is cleaned up (fields drop in order).
    _agent: ForegroundAgent,
    env: Env,
    log: PathBuf,
    /// The participant's copy of the materials, on the host.
    handson: PathBuf,
    /// The login URL.
    url: String,
}

impl Workshop {
    fn start(test: &str) -> Workshop {
        let env = Env::new(test);
        let files = [("hello.ipynb", NOTEBOOK), ("lesson/intro.md", INTRO)];
        let (_, handson) = common::materials(&env, &files, "download_exclude = [\"data/**\"]");
        let log = env.path("agent.log");
        let agent = ForegroundAgent::start_logging(&env, &log);
        let url = ready_url(&env, &log);
        Workshop { _agent: agent, env, log, handson, url }
    }

    /// `scheme://host:port` of the login URL.
    fn base(&self) -> String {
        split_url(&self.url).0
    }

    /// The participant's work: the notebook edited, a file of their own, and
    /// (left out of downloads) a data set.
    fn edit(&self) {
        std::fs::write(self.handson.join("hello.ipynb"), EDITED).unwrap();
        std::fs::write(self.handson.join("my-notes.txt"), NOTES).unwrap();
        std::fs::create_dir_all(self.handson.join("data/raw")).unwrap();
        std::fs::write(self.handson.join("data/raw/big.csv"), "a,b\n1,2\n").unwrap();
        // The agent's clone keeps its history: what the archive must leave out.
        assert!(self.handson.join(".git").is_dir(), "the workspace is a git clone");
        // What Jupyter's container sees is what the host wrote.
        let seen = common::docker(&["exec", &self.env.name, "cat", &format!("{MOUNT}/hello.ipynb")]);
        assert_eq!(String::from_utf8_lossy(&seen.stdout), EDITED);
    }

    fn agent_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A screenshot of the browser's page, `test-artefacts/pages-<name>.png`.
fn shot(browser: &mut Chromium, name: &str) {
    browser.screenshot(&common::artefacts().join(format!("pages-{name}.png")));
}

/// Opens `url` and waits until the page at `path` (no query) has loaded: its title.
fn open(browser: &mut Chromium, url: &str, path: &str) -> String {
    browser.navigate(url);
    let loaded =
        format!("location.pathname === {} && document.readyState === 'complete' && document.title", Value::from(path));
    let title = browser.wait_for_page(&format!("the page {path}"), &loaded, Duration::from_secs(30));
    title.as_str().unwrap_or_default().to_string()
}

/// Waits until Jupyter's own page is shown, drawn by its scripts (the
/// classic Notebook's file list, the test image's UI, or JupyterLab), and
/// the browser is logged in to Jupyter: its contents API answers the
/// page's own request (Jupyter's cookie from the login link), 200 and not
/// 403. The page's title.
fn wait_for_jupyter(browser: &mut Chromium, timeout: Duration) -> String {
    let drawn = "(document.title.includes('Home Page') || document.title.includes('JupyterLab')) \
                 && document.readyState === 'complete' && document.body.innerText.includes('File') \
                 && document.title";
    let title = browser.wait_for_page("Jupyter's page, drawn", drawn, timeout);
    let api = "(() => { const r = new XMLHttpRequest(); r.open('GET', '/api/contents?content=0', false); \
               r.send(); return r.status; })()";
    assert_eq!(browser.eval(api), Value::from(200), "Jupyter's API from its page: {}", browser.describe());
    title.as_str().unwrap_or_default().to_string()
}

/// The participant's browser logs in as a participant does: the pages
/// refuse it first, the login link gives it the front's cookie (and shows
/// Jupyter), then `/_agent/` is the participant's page.
fn log_in(browser: &mut Chromium, workshop: &Workshop, test: &str) {
    let base = workshop.base();
    let title = open(browser, &format!("{base}/_agent/"), "/_agent/");
    assert_eq!(title, "Log in first", "before the login link: {}", browser.describe());
    shot(browser, &format!("{test}-1-before-login"));

    browser.navigate(&workshop.url);
    let shown = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for_jupyter(browser, Duration::from_secs(60));
    }));
    if let Err(panic) = shown {
        shot(browser, &format!("{test}-2-login-link-failed"));
        let why = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        let log = workshop.agent_log();
        let front: Vec<&str> =
            log.lines().filter(|l| l.contains(" request ") || l.contains("WARN") || l.contains("ERROR")).collect();
        panic!("{why}\nwhat the front answered, and the agent's warnings:\n{}", front.join("\n"));
    }
    shot(browser, &format!("{test}-2-login-link"));

    let title = open(browser, &format!("{base}/_agent/"), "/_agent/");
    assert_eq!(title, "Your Jupyter environment", "after the login link: {}", browser.describe());
    let status = browser.eval("document.getElementById('status').textContent");
    assert_eq!(status, "Jupyter is ready.", "{}", browser.describe());
}

/// The entries of the zip at `path`: (name, content) in the archive's order.
fn unzip(path: &Path) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut archive = zip::ZipArchive::new(file).unwrap_or_else(|e| panic!("{} is no zip: {e}", path.display()));
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).unwrap_or_else(|e| panic!("{} entry {i}: {e}", path.display()));
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content)
                .unwrap_or_else(|e| panic!("{}: {}: {e}", path.display(), entry.name()));
            (entry.name().to_string(), content)
        })
        .collect()
}

/// The content of `name` in the archive's `entries`; panics, listing them, when it is not there.
fn entry<'a>(entries: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    entries
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, c)| c.as_slice())
        .unwrap_or_else(|| panic!("no {name} in {names:?}"))
}

fn start_browser(env: &Env) -> Chromium {
    assert!(chromium::binary().is_some(), "these tests need Debian's chromium (apt-get install chromium)");
    let profile = env.path("chromium");
    std::fs::create_dir(&profile).unwrap();
    Chromium::start(&profile)
}

#[test]
fn download_my_work_in_a_browser_saves_the_edited_notebook_without_the_excluded_files() {
    let workshop = Workshop::start("pages-download");
    workshop.edit();
    let mut browser = start_browser(&workshop.env);
    let downloads = workshop.env.path("downloads");
    std::fs::create_dir(&downloads).unwrap();
    browser.allow_downloads(&downloads);
    log_in(&mut browser, &workshop, "download");

    let link = browser.eval("document.getElementById('download').parentElement.textContent");
    let link = link.as_str().unwrap_or_default();
    assert!(link.starts_with("Download my work (a .zip of "), "{link}");
    assert!(link.contains(&workshop.handson.display().to_string()) && link.contains("without data/**"), "{link}");
    let before = chrono::Local::now().date_naive();
    browser.click("#download");
    let zip = chromium::downloaded(&downloads, Duration::from_secs(60));
    let after = chrono::Local::now().date_naive();
    shot(&mut browser, "download-3-downloaded");
    // A download opens no page: the browser is still on the participant's page.
    let title = browser.eval("location.pathname + ' ' + document.title");
    assert_eq!(title, "/_agent/ Your Jupyter environment", "{}", browser.describe());

    let name = zip.file_name().unwrap().to_string_lossy().into_owned();
    let named = |date: chrono::NaiveDate| format!("handson-{}.zip", date.format("%Y-%m-%d"));
    assert!(name == named(before) || name == named(after), "the download's name: {name}");
    let entries = unzip(&zip);
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(entry(&entries, "hello.ipynb"), EDITED.as_bytes(), "the edited notebook, byte for byte");
    assert_eq!(entry(&entries, "lesson/intro.md"), INTRO.as_bytes(), "the materials: {names:?}");
    assert_eq!(entry(&entries, "my-notes.txt"), NOTES.as_bytes(), "the participant's own file: {names:?}");
    assert!(names.contains(&"lesson/"), "{names:?}");
    assert!(!names.iter().any(|n| *n == "data" || n.starts_with("data/")), "data/ is left out: {names:?}");
    assert!(!names.iter().any(|n| *n == ".git" || n.starts_with(".git/")), ".git is left out: {names:?}");

    // Nothing moved on the host.
    assert_eq!(std::fs::read_to_string(workshop.handson.join("hello.ipynb")).unwrap(), EDITED);
    let log = workshop.agent_log();
    assert!(log.contains("the participant downloaded the workspace from the pages"), "{log}");
    assert!(log.contains("method=GET path=/_agent/download status=200"), "{log}");
}

#[test]
fn reset_in_a_browser_keeps_the_work_aside_and_the_same_login_link_opens_jupyter_again() {
    let workshop = Workshop::start("pages-reset");
    let container = workshop.env.state()["container"]["id"].as_str().expect("a container id").to_string();
    assert_eq!(common::inspect(&workshop.env.name, "{{.Id}}"), container);
    workshop.edit();
    let mut browser = start_browser(&workshop.env);
    log_in(&mut browser, &workshop, "reset");
    assert_eq!(browser.eval("document.getElementById('backups') === null"), Value::Bool(true), "no backup yet");

    // The confirmation: what is lost, and that nothing is done yet.
    browser.click("#reset-link");
    let confirm = "location.pathname === '/_agent/reset' && document.readyState === 'complete' && document.title";
    let title = browser.wait_for_page("the reset's confirmation page", confirm, Duration::from_secs(30));
    assert_eq!(title, "Reset my environment?", "{}", browser.describe());
    let text = browser.describe();
    assert!(text.contains("running kernels and unsaved changes are lost"), "{text}");
    assert!(text.contains(&format!("{}.bak-", workshop.handson.display())), "{text}");
    assert!(text.contains("Your login link stays the same."), "{text}");
    shot(&mut browser, "reset-3-confirm");
    assert_eq!(std::fs::read_to_string(workshop.handson.join("hello.ipynb")).unwrap(), EDITED, "not reset yet");

    // Confirmed: the answer names where the work went.
    browser.click("#confirm");
    // The form's page stays until the answer comes (the move and the fetch take a moment).
    let answered = "location.pathname === '/_agent/reset' && document.readyState === 'complete' && \
                    document.getElementById('confirm') === null && document.title";
    let title = browser.wait_until("the reset's answer", answered, Duration::from_secs(240));
    shot(&mut browser, "reset-4-done");
    let page = browser.describe();
    assert_eq!(title, "Reset", "{page}\n--- the agent's log:\n{}", workshop.agent_log());
    let done = browser.eval("document.getElementById('done').textContent");
    let done = done.as_str().unwrap_or_default().to_string();
    let backups: Vec<PathBuf> = std::fs::read_dir(workshop.env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("handson.bak-"))
        .collect();
    assert_eq!(backups.len(), 1, "one copy moved aside: {backups:?}; {page}");
    let backup = &backups[0];
    assert_eq!(done, format!("Your work was moved aside to {}, and the materials are fresh.", backup.display()));

    // Jupyter again, in a new container, behind the same URL.
    let url = ready_url(&workshop.env, &workshop.log);
    assert_eq!(url, workshop.url, "the same login URL");
    let state = workshop.env.state();
    let now = state["container"]["id"].as_str().expect("a container id").to_string();
    assert_ne!(now, container, "a new container: {state}");
    assert_eq!(common::inspect(&workshop.env.name, "{{.Id}}"), now);

    // The work in the backup, byte for byte; the materials as committed in the workspace.
    assert_eq!(std::fs::read_to_string(backup.join("hello.ipynb")).unwrap(), EDITED);
    assert_eq!(std::fs::read_to_string(backup.join("my-notes.txt")).unwrap(), NOTES);
    assert_eq!(std::fs::read_to_string(workshop.handson.join("hello.ipynb")).unwrap(), NOTEBOOK);
    assert_eq!(std::fs::read_to_string(workshop.handson.join("lesson/intro.md")).unwrap(), INTRO);
    assert!(!workshop.handson.join("my-notes.txt").exists());
    let seen = common::docker(&["exec", &workshop.env.name, "cat", &format!("{MOUNT}/hello.ipynb")]);
    assert_eq!(String::from_utf8_lossy(&seen.stdout), NOTEBOOK, "the new container sees the fresh copy");

    // The participant's page lists the copy, and downloads it.
    let title = open(&mut browser, &format!("{}/_agent/", workshop.base()), "/_agent/");
    assert_eq!(title, "Your Jupyter environment", "{}", browser.describe());
    let name = backup.file_name().unwrap().to_string_lossy().into_owned();
    let listed = browser.eval("(document.getElementById('backups') || {}).innerText");
    assert_eq!(listed.as_str().map(str::trim), Some(name.as_str()), "{}", browser.describe());
    shot(&mut browser, "reset-5-backup-listed");
    let downloads = workshop.env.path("downloads");
    std::fs::create_dir(&downloads).unwrap();
    browser.allow_downloads(&downloads);
    browser.click("#backups a");
    let zip = chromium::downloaded(&downloads, Duration::from_secs(60));
    let zip_name = zip.file_name().unwrap().to_string_lossy().into_owned();
    assert!(zip_name.starts_with(&format!("{name}-")) && zip_name.ends_with(".zip"), "{zip_name}");
    let entries = unzip(&zip);
    assert_eq!(entry(&entries, "hello.ipynb"), EDITED.as_bytes(), "the backup's notebook, downloaded");
    assert_eq!(entry(&entries, "my-notes.txt"), NOTES.as_bytes());

    // The same login link as before opens Jupyter.
    browser.navigate(&workshop.url);
    let title = wait_for_jupyter(&mut browser, Duration::from_secs(60));
    shot(&mut browser, "reset-6-jupyter-again");
    assert!(!title.is_empty());
    let log = workshop.agent_log();
    assert!(log.contains("the participant reset the workspace from the pages"), "{log}");
    assert!(!log.contains(&split_url(&workshop.url).2), "the token in the agent's log");
}
