//! The workshop materials end to end: a git repository over file:// and a
//! tarball from a local HTTP server, each holding a Dockerfile whose FROM is
//! the local Jupyter image and a sample notebook; fetched, built, mounted,
//! seen through Jupyter's contents API, and a participant's work never lost.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use crate::common::env::Env;
use crate::common::files::StaticServer;
use crate::common::{docker, git, sh, split_url};

const NOTEBOOK: &str = r#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;
const SECRET: &str = "s3cr3t-access-key-value";

/// The materials: a Dockerfile building on the local image, serving / so
/// that the mounted workspace is visible through the contents API.
fn write_materials(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM {}\nCOPY requirements.txt /opt/requirements.txt\nWORKDIR /\n\
             CMD [\"jupyter-notebook\", \"--ip=0.0.0.0\", \"--port=8888\", \"--allow-root\", \"--no-browser\", \"--notebook-dir=/\"]\n",
            common::test_image()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("requirements.txt"), "numpy\n").unwrap();
    std::fs::write(dir.join("hello.ipynb"), NOTEBOOK).unwrap();
}

fn make_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    write_materials(&repo);
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "materials"]);
    repo
}

fn config(env: &Env, tag: &str, workspace: &str) -> String {
    let base = env.base_config("user = \"root\"\nvolumes = [\"workspace:/home/jupyter/jupyter-working\"]");
    let base = base.replace(
        &format!("[image]\nname = \"{}\"\npull = \"never\"", common::test_image()),
        &format!("[image]\ntag = \"{tag}\"\n\n[image.build]\ncontext = \"workspace\""),
    );
    format!(
        "{base}\n[workspace]\n{workspace}\npath = \"{}\"\nenv_file = \"env\"\n\n[workspace.env]\nACCESS_KEY_SECRET = \"{SECRET}\"\nREGION = \"cn-beijing\"\n",
        env.path("handson").display()
    )
}

/// Jupyter's contents API: (status, body).
fn contents(env: &Env, method: &str, path: &str, body: Option<serde_json::Value>) -> (u16, String) {
    let url = env.agent(&["url"]).expect(0).stdout;
    let (base, _, token) = split_url(url.trim());
    let client = common::http();
    let req = client
        .request(method.parse().unwrap(), format!("{base}/api/contents/{path}"))
        .header("Authorization", format!("token {token}"));
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let resp = req.send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

const MOUNT: &str = "home/jupyter/jupyter-working";

#[test]
fn a_git_workspace_is_fetched_built_mounted_and_a_participants_work_survives() {
    let mut env = Env::new("ws-git");
    let tag = format!("{}:latest", env.name);
    env.images.push(tag.clone());
    let repo = make_repo(env.dir.path());
    let source = |r: &str| format!("source = \"file://{}\"\nref = \"{r}\"", repo.display());
    env.write_config(&config(&env, &tag, &source("main")));
    let run = env.agent(&["run", "--once"]).expect(0);
    let head = git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    let state = env.state();
    let step = state["steps"].as_array().unwrap().iter().find(|s| s["name"] == "workspace").unwrap().clone();
    assert_eq!(step["phase"], "fetching-workspace");
    assert!(step["detail"].as_str().unwrap().starts_with(&format!("fetched {head} into ")), "{step}");

    // Built from the workspace's Dockerfile, mounted, visible through Jupyter.
    assert_eq!(
        String::from_utf8_lossy(&docker(&["exec", &env.name, "cat", "/opt/requirements.txt"]).stdout),
        "numpy\n"
    );
    let (code, body) = contents(&env, "GET", &format!("{MOUNT}/hello.ipynb"), None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["name"], "hello.ipynb");

    // The env file: 0600, its values in the container and nowhere else.
    let env_file = env.path("handson/env");
    assert_eq!(std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777, 0o600);
    let vars = String::from_utf8_lossy(&docker(&["exec", &env.name, "env"]).stdout).into_owned();
    assert!(vars.contains(&format!("ACCESS_KEY_SECRET={SECRET}")) && vars.contains("REGION=cn-beijing"), "{vars}");
    assert!(!run.stderr.contains(SECRET), "the value leaked into the log");
    assert!(!std::fs::read_to_string(env.state_dir().join("state.json")).unwrap().contains(SECRET));
    assert!(!std::fs::read_to_string(env.state_dir().join("workspace.json")).unwrap().contains(SECRET));
    assert!(!env.agent(&["status", "--json", "--show-token"]).stdout.contains(SECRET));

    // A participant writes a new file and edits the notebook, through Jupyter.
    let (code, body) = contents(
        &env,
        "PUT",
        &format!("{MOUNT}/notes.txt"),
        Some(serde_json::json!({"type": "file", "format": "text", "content": "my notes\n"})),
    );
    assert!(code == 200 || code == 201, "{code} {body}");
    let edited = serde_json::json!({"cells": [{"cell_type": "markdown", "metadata": {}, "source": "mine"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    let (code, body) = contents(
        &env,
        "PUT",
        &format!("{MOUNT}/hello.ipynb"),
        Some(serde_json::json!({"type": "notebook", "content": edited})),
    );
    assert_eq!(code, 200, "{body}");
    let notes = env.path("handson/notes.txt");
    let hello = env.path("handson/hello.ipynb");
    let edited_hello = std::fs::read_to_string(&hello).unwrap();
    assert!(edited_hello.contains("mine"));

    // A re-run and a container restart leave the work alone.
    env.agent(&["run", "--once"]).expect(0);
    assert!(docker(&["restart", "-t", "1", &env.name]).status.success());
    env.agent(&["run", "--once"]).expect(0);
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes\n");
    assert_eq!(std::fs::read_to_string(&hello).unwrap(), edited_hello);

    // The source changes (a new version, tagged v2): fetched beside, reported, nothing replaced.
    std::fs::write(repo.join("hello.ipynb"), NOTEBOOK.replace("\"cells\": []", "\"cells\": [], \"upstream\": 2"))
        .unwrap();
    std::fs::write(repo.join("new.ipynb"), NOTEBOOK).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "v2"]);
    git(&repo, &["tag", "v2"]);
    let v2 = git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    let id = common::inspect(&env.name, "{{.Id}}");
    env.write_config(&config(&env, &tag, &source("v2")));
    env.agent(&["run", "--once"]).expect(0);
    assert_eq!(common::inspect(&env.name, "{{.Id}}"), id, "the copy did not change: neither did the container");
    let detail =
        env.state()["steps"].as_array().unwrap().iter().find(|s| s["name"] == "workspace").unwrap()["detail"].clone();
    let detail = detail.as_str().unwrap();
    assert!(detail.starts_with(&format!("source changed: new version {v2} in ")), "{detail}");
    // Edited here: notes.txt, hello.ipynb, and the checkpoint Jupyter saved beside it.
    assert!(detail.contains("1 added, 0 removed, 1 changed upstream; 3 file(s) edited here"), "{detail}");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes\n");
    assert_eq!(std::fs::read_to_string(&hello).unwrap(), edited_hello);
    assert!(env.path("handson.new/new.ipynb").exists());
    let status = env.agent(&["workspace", "status"]).expect(0).stdout;
    assert!(status.contains("edited here: notes.txt") && status.contains("edited here: hello.ipynb"), "{status}");
    assert!(status.contains("edited here: .ipynb_checkpoints/hello-checkpoint.ipynb"), "{status}");
    assert!(status.contains("added upstream: new.ipynb"), "{status}");

    // Reset: the participant's copy moves aside, never deleted; the new version takes its place.
    let reset = env.agent(&["workspace", "reset"]).expect(0).stdout;
    let aside: Vec<PathBuf> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("handson.bak-"))
        .collect();
    assert_eq!(aside.len(), 1, "{reset}");
    assert_eq!(std::fs::read_to_string(aside[0].join("notes.txt")).unwrap(), "my notes\n");
    assert_eq!(std::fs::read_to_string(aside[0].join("hello.ipynb")).unwrap(), edited_hello);
    assert!(env.path("handson/new.ipynb").exists() && !notes.exists());
    assert!(!env.path("handson.new").exists());
    assert_eq!(
        std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600,
        "the env file is written again"
    );
    // The next converge mounts the new copy.
    env.agent(&["run", "--once"]).expect(0);
    assert_ne!(common::inspect(&env.name, "{{.Id}}"), id, "recreated on the new copy");
    let (code, _) = contents(&env, "GET", &format!("{MOUNT}/new.ipynb"), None);
    assert_eq!(code, 200);
}

#[test]
fn an_unknown_ref_fails_clearly_and_writes_nothing() {
    let mut env = Env::new("ws-ref");
    let tag = format!("{}:latest", env.name);
    env.images.push(tag.clone());
    let repo = make_repo(env.dir.path());
    env.write_config(&config(&env, &tag, &format!("source = \"file://{}\"\nref = \"no-such-branch\"", repo.display())));
    env.agent(&["run", "--once"]).expect(1);
    let state = env.state();
    assert_eq!(state["error"]["step"], "workspace");
    let cause = state["error"]["cause"].as_str().unwrap();
    assert!(cause.contains("no-such-branch"), "{cause}");
    assert!(!env.path("handson").exists(), "nothing written");
}

/// `git clone` had no bound: a repository larger than the disk filled it.
/// The clone is now watched and stopped past `[workspace] max_size`.
#[test]
fn a_git_repository_larger_than_max_size_is_refused_and_writes_nothing() {
    use std::io::Read;
    let mut env = Env::new("ws-git-size");
    let tag = format!("{}:latest", env.name);
    env.images.push(tag.clone());
    let repo = make_repo(env.dir.path());
    // Random bytes, which no pack compresses.
    let mut noise = vec![0u8; 4 << 20];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut noise).unwrap();
    std::fs::write(repo.join("data.bin"), &noise).unwrap();
    git(&repo, &["add", "data.bin"]);
    git(&repo, &["commit", "-q", "-m", "data"]);
    env.write_config(&config(
        &env,
        &tag,
        &format!("source = \"file://{}\"\nref = \"main\"\nmax_size = \"1MiB\"", repo.display()),
    ));
    env.agent(&["run", "--once"]).expect(1);
    let state = env.state();
    assert_eq!(state["error"]["step"], "workspace");
    let cause = state["error"]["cause"].as_str().unwrap();
    assert!(cause.contains("more than [workspace] max_size (1048576 bytes); nothing was written"), "{cause}");
    assert!(!env.path("handson").exists(), "nothing written");
    let beside: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("handson"))
        .collect();
    assert!(beside.is_empty(), "no staging left: {beside:?}");
}

/// A gzipped tarball of `dir`'s contents under one top-level directory, as GitHub serves them.
fn tarball(dir: &Path) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-C")
        .arg(dir.parent().unwrap())
        .args(["-czf", "-"])
        .arg(dir.file_name().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

fn sha256(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

#[test]
fn a_tarball_workspace_is_verified_before_anything_is_written() {
    let mut env = Env::new("ws-tar");
    let tag = format!("{}:latest", env.name);
    env.images.push(tag.clone());
    let materials = env.path("imagesearchhandson-0123abc");
    write_materials(&materials);
    let good = tarball(&materials);
    // An archive that would write outside the workspace.
    let evil_dir = env.path("evil");
    std::fs::create_dir_all(&evil_dir).unwrap();
    std::fs::write(evil_dir.join("x"), "x").unwrap();
    let evil = sh(Command::new("python3").args([
        "-c",
        "import io, sys, tarfile\nb = io.BytesIO()\nt = tarfile.open(fileobj=b, mode='w:gz')\n\
         i = tarfile.TarInfo('../escaped.txt'); d = b'pwned'; i.size = len(d); t.addfile(i, io.BytesIO(d))\n\
         t.close(); sys.stdout.write(b.getvalue().hex())",
    ]));
    let evil = hex_decode(&evil);
    let server =
        StaticServer::start(vec![("/good.tar.gz".into(), good.clone()), ("/evil.tar.gz".into(), evil.clone())]);

    // Wrong checksum: a clear error, nothing written.
    let wrong = "0".repeat(64);
    env.write_config(&config(&env, &tag, &format!("source = \"{}/good.tar.gz\"\nsha256 = \"{wrong}\"", server.url)));
    env.agent(&["run", "--once"]).expect(1);
    let state = env.state();
    assert_eq!(state["error"]["step"], "workspace");
    let cause = state["error"]["cause"].as_str().unwrap();
    assert!(cause.contains(&wrong) && cause.contains(&sha256(&good)), "names both checksums: {cause}");
    assert!(!env.path("handson").exists(), "nothing written");

    // An archive escaping the workspace: refused, nothing written.
    env.write_config(&config(
        &env,
        &tag,
        &format!("source = \"{}/evil.tar.gz\"\nsha256 = \"{}\"", server.url, sha256(&evil)),
    ));
    env.agent(&["run", "--once"]).expect(1);
    let cause = env.state()["error"]["cause"].as_str().unwrap().to_string();
    assert!(cause.contains("../escaped.txt"), "{cause}");
    assert!(
        !env.path("handson").exists()
            && !env.path("escaped.txt").exists()
            && !env.dir.path().join("../escaped.txt").exists()
    );

    // The right checksum: fetched (the top directory stripped), built, mounted.
    env.write_config(&config(
        &env,
        &tag,
        &format!("source = \"{}/good.tar.gz\"\nsha256 = \"{}\"", server.url, sha256(&good)),
    ));
    env.agent(&["run", "--once"]).expect(0);
    assert!(env.path("handson/Dockerfile").exists());
    let (code, body) = contents(&env, "GET", &format!("{MOUNT}/hello.ipynb"), None);
    assert_eq!(code, 200, "{body}");
}

/// A tarball whose PAX `size` record says 2 MiB while its ustar header
/// says 0 unpacked the 2 MiB under `max_size = "1MiB"`: the bound summed
/// the header's field, tar wrote what the record said.
#[test]
fn a_pax_size_record_cannot_carry_a_tarball_past_max_size() {
    let mut env = Env::new("ws-pax");
    let tag = format!("{}:latest", env.name);
    env.images.push(tag.clone());
    let bomb = hex_decode(&sh(Command::new("python3").args([
        "-c",
        "import gzip, io, sys, tarfile\nn = 2 << 20\nb = io.BytesIO()\n\
         t = tarfile.open(fileobj=b, mode='w', format=tarfile.PAX_FORMAT)\n\
         i = tarfile.TarInfo('bomb.bin'); i.size = 0; i.pax_headers = {'size': str(n)}\n\
         t.addfile(i); t.fileobj.write(bytes(n)); t.offset += n\n\
         t.close(); sys.stdout.write(gzip.compress(b.getvalue()).hex())",
    ])));
    assert!(bomb.len() < 64 << 10, "a small download: {} bytes", bomb.len());
    let server = StaticServer::start(vec![("/bomb.tar.gz".into(), bomb.clone())]);
    env.write_config(&config(
        &env,
        &tag,
        &format!("source = \"{}/bomb.tar.gz\"\nsha256 = \"{}\"\nmax_size = \"1MiB\"", server.url, sha256(&bomb)),
    ));
    env.agent(&["run", "--once"]).expect(1);
    let state = env.state();
    assert_eq!(state["error"]["step"], "workspace", "{state}");
    let cause = state["error"]["cause"].as_str().unwrap();
    assert!(cause.contains("unpacks to 2097152 bytes, more than [workspace] max_size (1048576 bytes)"), "{cause}");
    assert!(!env.path("handson").exists(), "nothing written");
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The env file (access keys) was written into the workspace, which was the
/// build context: sent to the engine and baked into a layer by any `COPY .`;
/// and a participant's edit changed the image, so the next converge rebuilt
/// it and recreated the container. The image is now built from the
/// materials as fetched, honouring `.dockerignore`, without the env file.
#[test]
fn the_image_is_built_from_the_materials_as_fetched_without_secrets_or_ignored_files() {
    let mut env = Env::new("ws-context");
    let tag = format!("{}:latest", env.name);
    env.images.push(tag.clone());
    let repo = env.path("repo");
    write_materials(&repo);
    std::fs::write(
        repo.join("Dockerfile"),
        format!(
            "FROM {}\nCOPY . /ctx\nWORKDIR /\n\
             CMD [\"jupyter-notebook\", \"--ip=0.0.0.0\", \"--port=8888\", \"--allow-root\", \"--no-browser\", \"--notebook-dir=/\"]\n",
            common::test_image()
        ),
    )
    .unwrap();
    std::fs::write(repo.join(".dockerignore"), "# the organiser's own\nprivate\n!private/keep.txt\n").unwrap();
    std::fs::create_dir_all(repo.join("private")).unwrap();
    std::fs::write(repo.join("private/key.pem"), "not for the image").unwrap();
    std::fs::write(repo.join("private/keep.txt"), "kept").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "materials"]);
    env.write_config(&config(&env, &tag, &format!("source = \"file://{}\"\nref = \"main\"", repo.display())));
    env.agent(&["run", "--once"]).expect(0);

    let files = String::from_utf8_lossy(&docker(&["exec", &env.name, "find", "/ctx", "-type", "f"]).stdout)
        .lines()
        .map(str::to_string)
        .collect::<std::collections::BTreeSet<_>>();
    for present in ["/ctx/Dockerfile", "/ctx/hello.ipynb", "/ctx/requirements.txt", "/ctx/private/keep.txt"] {
        assert!(files.contains(present), "{present} missing from {files:?}");
    }
    for absent in ["/ctx/env", "/ctx/private/key.pem"] {
        assert!(!files.contains(absent), "{absent} is in the image: {files:?}");
    }
    assert!(files.iter().all(|f| !f.starts_with("/ctx/.git/")), "{files:?}");
    let grep = docker(&["exec", &env.name, "grep", "-rl", SECRET, "/ctx"]);
    assert!(grep.stdout.is_empty(), "the secret is in the image: {}", String::from_utf8_lossy(&grep.stdout));
    // The participant's copy holds the env file, for the container.
    assert!(env.path("handson/env").exists());

    // A participant edits their copy: the next converge neither rebuilds
    // nor recreates.
    let image = common::inspect(&tag, "{{.Id}}");
    let container = common::inspect(&env.name, "{{.Id}}");
    std::fs::write(env.path("handson/hello.ipynb"), NOTEBOOK.replace("[]", "[{}]")).unwrap();
    std::fs::write(env.path("handson/mine.py"), "print('mine')\n").unwrap();
    env.agent(&["run", "--once"]).expect(0);
    assert_eq!(common::inspect(&tag, "{{.Id}}"), image, "the image is the same");
    assert_eq!(common::inspect(&env.name, "{{.Id}}"), container, "the container is the same");
    assert_eq!(env.step_detail("container"), "reused");
}

/// Issue 23, item 4, through the real binary: the organiser pushes fixes to
/// the configured branch after the participant edited their copy;
/// `jupyter-agent workspace update` merges them in place as nbgitpuller
/// does (docs/workspace-update.md): the untouched file updated, the new one
/// there, the notebook edited on both sides kept with the organiser's
/// version beside it; Jupyter sees them at once, and the container is the
/// same one, before and after the next converge.
#[test]
fn workspace_update_takes_the_organisers_push_and_keeps_the_container() {
    let mut env = Env::new("ws-update");
    let tag = format!("{}:latest", env.name);
    env.images.push(tag.clone());
    let work = make_repo(env.dir.path());
    let bare = env.path("materials.git");
    sh(Command::new("git").args(["clone", "-q", "--bare"]).arg(&work).arg(&bare));
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    env.write_config(&config(&env, &tag, &format!("source = \"file://{}\"\nref = \"main\"", bare.display())));
    env.agent(&["run", "--once"]).expect(0);
    let container = common::inspect(&env.name, "{{.Id}}");
    let up_to_date = env.agent(&["workspace", "check"]).expect(0).stdout;
    assert!(up_to_date.ends_with("is up to date with its source: nothing to take\n"), "{up_to_date}");

    // The participant edits the notebook and writes notes, through Jupyter.
    let edited = serde_json::json!({"cells": [{"cell_type": "markdown", "metadata": {}, "source": "my answer"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5});
    let (code, body) = contents(
        &env,
        "PUT",
        &format!("{MOUNT}/hello.ipynb"),
        Some(serde_json::json!({"type": "notebook", "content": edited})),
    );
    assert_eq!(code, 200, "{body}");
    let mine = std::fs::read(env.path("handson/hello.ipynb")).unwrap();
    std::fs::write(env.path("handson/notes.txt"), "my notes\n").unwrap();

    // The organiser pushes fixes to main.
    let fixed = NOTEBOOK.replace("\"cells\": []", "\"cells\": [], \"fixed\": true");
    std::fs::write(work.join("hello.ipynb"), &fixed).unwrap();
    std::fs::write(work.join("requirements.txt"), "numpy\npandas\n").unwrap();
    std::fs::write(work.join("part2.ipynb"), NOTEBOOK).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "fixes"]);
    git(&work, &["push", "-q", "origin", "main"]);
    let head = git(&work, &["rev-parse", "HEAD"]).trim().to_string();

    let date = sh(Command::new("date").args(["-u", "+%Y-%m-%d"])).trim().to_string();
    let beside = format!("hello.new-{date}.ipynb");
    let check = env.agent(&["workspace", "check"]).expect(0).stdout;
    assert!(check.contains(&format!("to {head}; jupyter-agent workspace update would do this")), "{check}");
    assert!(check.contains(&format!("yours kept, the new version beside it: hello.ipynb -> {beside}")), "{check}");
    assert_eq!(std::fs::read(env.path("handson/hello.ipynb")).unwrap(), mine, "check touches nothing");

    let run = env.agent(&["workspace", "update", "--json"]).expect(0);
    let updated: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(updated["to"], head.as_str(), "{updated}");
    assert_eq!(updated["updated"], serde_json::json!(["requirements.txt"]), "{updated}");
    assert_eq!(updated["added"], serde_json::json!(["part2.ipynb"]), "{updated}");
    assert_eq!(updated["kept_beside"], serde_json::json!([{"path": "hello.ipynb", "new_version": beside}]));

    // On disk: the participant's bytes in place, the organiser's beside and updated.
    assert_eq!(std::fs::read(env.path("handson/hello.ipynb")).unwrap(), mine);
    assert_eq!(std::fs::read_to_string(env.path("handson").join(&beside)).unwrap(), fixed);
    assert_eq!(std::fs::read_to_string(env.path("handson/requirements.txt")).unwrap(), "numpy\npandas\n");
    assert_eq!(std::fs::read_to_string(env.path("handson/notes.txt")).unwrap(), "my notes\n");
    assert!(!env.path("handson.new").exists(), "the staged version is gone");
    // Seen by the same Jupyter at once, in the same container.
    let (code, body) = contents(&env, "GET", &format!("{MOUNT}/part2.ipynb"), None);
    assert_eq!(code, 200, "{body}");
    let (code, body) = contents(&env, "GET", &format!("{MOUNT}/{beside}"), None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(common::inspect(&env.name, "{{.Id}}"), container);

    // The next converge keeps the container; a second update takes nothing.
    env.agent(&["run", "--once"]).expect(0);
    assert_eq!(common::inspect(&env.name, "{{.Id}}"), container, "not re-created");
    assert_eq!(env.step_detail("container"), "reused");
    let again = env.agent(&["workspace", "update"]).expect(0).stdout;
    assert!(again.contains(&format!("is up to date with file://{} (ref main) ({head})", bare.display())), "{again}");
}

/// `workspace download` (issue 23, "download my work"): the workspace
/// streamed as a zip to a pipe, with a 1 GiB file in it, never held in
/// memory; the organiser's globs, the env file and a link to a host file
/// left out of the archive. It needs no engine: the participant's work is
/// written by hand, as Jupyter would.
#[test]
fn the_workspace_downloads_as_a_zip_streamed_to_a_pipe_without_holding_it_in_memory() {
    use std::io::{Read, Seek, SeekFrom, Write};
    const BIG: u64 = 1 << 30;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("handson");
    let put = |rel: &str, content: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    };
    put("hello.ipynb", NOTEBOOK.as_bytes());
    put("nb/notes.md", b"my notes\n");
    put("data/raw.csv", b"a,b\n1,2\n");
    put("env", format!("ACCESS_KEY_SECRET={SECRET}\n").as_bytes());
    std::fs::write(dir.path().join("host-secret"), SECRET).unwrap();
    std::os::unix::fs::symlink(dir.path().join("host-secret"), root.join("link-out")).unwrap();
    // Sparse: gigabytes to read that cost no disk.
    std::fs::File::create(root.join("big.bin")).unwrap().set_len(BIG).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{d}/state\"\nsocket = \"{d}/agent.sock\"\n\n[workspace]\nsource = \"file://{d}/no-repo\"\nref = \"main\"\n\
             path = \"{root}\"\nenv_file = \"env\"\ndownload_exclude = [\"data/**\"]\n\n[workspace.env]\nACCESS_KEY_SECRET = \"{SECRET}\"\n",
            d = dir.path().display(),
            root = root.display()
        ),
    )
    .unwrap();

    let started = std::time::Instant::now();
    let mut child = Command::new(common::bin("jupyter-agent"))
        .arg("--config")
        .arg(&config)
        .args(["workspace", "download", "--out", "-"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The agent's high-water mark of resident memory, read until it exits.
    let pid = child.id();
    let peak = std::thread::spawn(move || {
        let mut peak_kib = 0u64;
        while let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kib) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
                peak_kib = peak_kib.max(kib.trim().trim_end_matches("kB").trim().parse().unwrap_or(0));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        peak_kib
    });
    // The reader counts what comes through the pipe and keeps it in a
    // sparse file (zero chunks skipped) that unzip and Python can seek in.
    let received = dir.path().join("received.zip");
    let mut file = std::fs::File::create(&received).unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (mut buf, zeros) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    let (mut total, mut not_zero) = (0u64, Vec::new());
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        match buf[..n] == zeros[..n] {
            true => file.seek(SeekFrom::Current(n as i64)).map(drop).unwrap(),
            false => {
                file.write_all(&buf[..n]).unwrap();
                not_zero.extend_from_slice(&buf[..n]);
            }
        }
        total += n as u64;
    }
    file.set_len(total).unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    let peak_kib = peak.join().unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(total > BIG, "{total} bytes through the pipe");
    assert!(
        stderr.contains(&format!(
            "to stdout: 3 files ({} bytes), 1 directories, 1 links",
            BIG + 9 + NOTEBOOK.len() as u64
        )),
        "{stderr}"
    );
    // data/ (download_exclude) and the env file.
    assert!(stderr.contains(&format!("{total} bytes of zip; 2 left out")), "{stderr}");
    // The archive is streamed, not held: the agent's whole resident memory
    // stays a small fraction of the gigabytes it archived.
    assert!(peak_kib > 0 && peak_kib < 64 * 1024, "peak resident memory {peak_kib} KiB");

    let listing = sh(Command::new("unzip").arg("-l").arg(&received));
    let names: Vec<&str> =
        listing.lines().filter_map(|l| l.split_whitespace().nth(3)).filter(|n| *n != "Name" && *n != "----").collect();
    assert_eq!(names, ["big.bin", "hello.ipynb", "link-out", "nb/", "nb/notes.md"], "{listing}");
    // A strict reader: every CRC checked (the gigabytes read back), and
    // each entry's header, data and descriptor where the directory says.
    let test = sh(Command::new("unzip").arg("-t").arg(&received));
    assert!(test.contains("No errors detected"), "{test}");
    // The files' bytes as written, the link a link.
    let check = sh(Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, zipfile\n\
         z = zipfile.ZipFile(sys.argv[1])\n\
         print(z.getinfo('big.bin').file_size)\n\
         print(z.read('hello.ipynb').decode())\n\
         print(z.read('nb/notes.md').decode(), end='')\n\
         print(oct(z.getinfo('link-out').external_attr >> 16), z.read('link-out').decode())\n",
        )
        .arg(&received));
    assert_eq!(check, format!("{BIG}\n{NOTEBOOK}\nmy notes\n0o120777 {}\n", dir.path().join("host-secret").display()));
    assert!(!not_zero.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "a secret reached the archive");
    eprintln!("1 GiB streamed and checked in {:?}, peak resident memory {peak_kib} KiB", started.elapsed());
}

/// `workspace download --out DIR`: the dated name in it, mode 0600, no
/// temporary file left; a backup by name; `workspace backups` lists it.
#[test]
fn a_download_to_a_directory_is_dated_private_and_complete_and_backups_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("handson");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.ipynb"), NOTEBOOK).unwrap();
    let backup = dir.path().join("handson.bak-20261207T101010Z");
    std::fs::create_dir_all(&backup).unwrap();
    std::fs::write(backup.join("old.ipynb"), NOTEBOOK).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{d}/state\"\nsocket = \"{d}/agent.sock\"\n\n[workspace]\nsource = \"file://{d}/no-repo\"\nref = \"main\"\npath = \"{root}\"\n",
            d = dir.path().display(),
            root = root.display()
        ),
    )
    .unwrap();
    let agent = |args: &[&str]| {
        let o = Command::new(common::bin("jupyter-agent")).arg("--config").arg(&config).args(args).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = agent(&["workspace", "download", "--out", out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let entries: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let date = String::from_utf8(sh(Command::new("date").arg("+%F")).into_bytes()).unwrap();
    assert_eq!(entries, [format!("handson-{}.zip", date.trim())]);
    let zip = out.join(&entries[0]);
    assert_eq!(std::fs::metadata(&zip).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(sh(Command::new("unzip").arg("-l").arg(&zip)).contains("hello.ipynb"));

    let (code, stdout, _) = agent(&["workspace", "backups"]);
    assert_eq!(
        (code, stdout.as_str()),
        (
            Some(0),
            format!("handson.bak-20261207T101010Z  2026-12-07 10:10:10 UTC  {} bytes\n", NOTEBOOK.len()).as_str()
        )
    );
    let named = out.join("old.zip");
    let (code, _, stderr) =
        agent(&["workspace", "download", "--out", named.to_str().unwrap(), "--backup", "20261207T101010Z"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(sh(Command::new("unzip").arg("-l").arg(&named)).contains("old.ipynb"));

    // Refused, nothing written: an unknown backup, and an archive inside the tree it archives.
    let (code, _, stderr) = agent(&["workspace", "download", "--out", out.to_str().unwrap(), "--backup", "nope"]);
    assert_eq!(
        (code, stderr.trim()),
        (
            Some(2),
            format!(
                "jupyter-agent: --backup nope: no such copy beside {}; jupyter-agent workspace backups lists them",
                root.display()
            )
            .as_str()
        )
    );
    let inside = root.join("mine.zip");
    let (code, _, stderr) = agent(&["workspace", "download", "--out", inside.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1, "nothing written into the workspace");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 2, "no temporary file left");
}
