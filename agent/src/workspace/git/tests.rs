use super::*;

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::workspace::fetch::{fetch, fetch_with, Source};
use crate::workspace::test_support::{destination, git, message, names, repository, response, serve_with, BUDGET};

/// A git server over the dumb HTTP protocol (static files of a bare
/// repository after `git update-server-info`) that answers 401 unless
/// the request carries `expected` as its Authorization; counts the
/// authorized requests.
fn serve_with_basic_auth(bare: PathBuf, expected: String) -> (u16, Arc<AtomicUsize>) {
    let authorized = Arc::new(AtomicUsize::new(0));
    let count = authorized.clone();
    let addr = serve_with(move |request| {
        if request.headers().get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            let mut refused = response(401, Vec::new());
            refused.headers_mut().insert("www-authenticate", "Basic realm=\"t\"".parse().unwrap());
            return refused;
        }
        count.fetch_add(1, Ordering::SeqCst);
        match fs::read(bare.join(request.uri().path().trim_start_matches("/r.git/"))) {
            Ok(bytes) => response(200, bytes),
            Err(_) => response(404, Vec::new()),
        }
    });
    (addr.port(), authorized)
}

/// `repo` as a bare clone served over HTTP behind alice's password
/// (`p@ss-7f3e`, percent-encoded in `url`), and a git wrapper that logs
/// its arguments: what the credential tests look at.
struct Guarded {
    _tmp: tempfile::TempDir,
    bare: PathBuf,
    port: u16,
    authorized: Arc<AtomicUsize>,
    /// The wrapper's log of git's arguments.
    log: PathBuf,
    /// The git wrapper to run instead of git.
    program: String,
    /// The repository's URL, with the credentials in it.
    url: String,
}

fn guarded(repo: &crate::workspace::test_support::Repo) -> Guarded {
    use base64::Engine;
    let tmp = tempfile::tempdir().unwrap();
    let bare = tmp.path().join("r.git");
    git(tmp.path(), &["clone", "--quiet", "--bare", repo.path.to_str().unwrap(), bare.to_str().unwrap()]);
    git(&bare, &["update-server-info"]);
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("alice:p@ss-7f3e"));
    let (port, authorized) = serve_with_basic_auth(bare.clone(), expected);
    let log = tmp.path().join("args.log");
    let wrapper = tmp.path().join("git-wrapper");
    fs::write(&wrapper, format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> {}\nexec git \"$@\"\n", log.display())).unwrap();
    fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let url = format!("http://alice:p%40ss-7f3e@127.0.0.1:{port}/r.git");
    Guarded { program: wrapper.to_str().unwrap().to_string(), _tmp: tmp, bare, port, authorized, log, url }
}

/// Credentials in a git URL were an argument of `git` (visible to any
/// local user in the process list) and stayed in the clone's
/// `.git/config`, inside the mounted workspace. They now travel as a
/// header from git's environment; the clone keeps the URL without them.
#[tokio::test]
async fn credentials_in_a_git_url_travel_as_a_header_and_stay_out_of_the_clone() {
    let repo = repository();
    let Guarded { port, authorized, log, program, url, .. } = &guarded(&repo);
    let (_dest_tmp, dest) = destination();
    let source =
        Source::Git { url: url.clone(), reference: "main".into(), max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE };
    let identity = fetch_with(program, &source, &dest, BUDGET).await.unwrap();

    assert_eq!(identity, repo.two);
    assert_eq!(fs::read_to_string(dest.join("a.txt")).unwrap(), "two\n");
    assert!(authorized.load(Ordering::SeqCst) > 0, "the server saw the credentials");
    let config = fs::read_to_string(dest.join(".git/config")).unwrap();
    assert!(config.contains(&format!("url = http://127.0.0.1:{port}/r.git")), "{config}");
    let args = fs::read_to_string(log).unwrap();
    for leak in ["p%40ss", "p@ss", "alice", "Basic"] {
        assert!(!config.contains(leak), "{leak} in .git/config:\n{config}");
        assert!(!args.contains(leak), "{leak} in git's arguments:\n{args}");
    }
}

/// `workspace update` asks where the branch points with `git ls-remote`,
/// the credentials handled as the clone's: a header from git's
/// environment, never an argument.
#[tokio::test]
async fn ls_remote_sees_a_push_with_the_clones_credential_handling() {
    let repo = repository();
    let Guarded { bare, port, authorized, log, program, url, .. } = &guarded(&repo);
    let ask = |reference: String| {
        let (program, url) = (program.clone(), url.clone());
        async move { remote_commit(&program, &url, &reference, crate::workspace::fetch::DEFAULT_MAX_SIZE, BUDGET).await }
    };

    assert_eq!(ask("main".into()).await.unwrap().as_deref(), Some(repo.two.as_str()));
    assert_eq!(ask("v1".into()).await.unwrap().as_deref(), Some(repo.one.as_str()), "an annotated tag's commit");
    assert_eq!(ask(repo.two[..7].into()).await.unwrap(), None, "a commit never moves");
    let err = ask("gone".into()).await.unwrap_err().to_string();
    assert_eq!(err, format!("the repository http://***@127.0.0.1:{port}/r.git has no branch, tag or commit `gone`"));
    // The organiser pushes to main.
    git(bare, &["update-ref", "refs/heads/main", &repo.workshop]);
    git(bare, &["update-server-info"]);
    assert_eq!(ask("main".into()).await.unwrap().as_deref(), Some(repo.workshop.as_str()));

    assert!(authorized.load(Ordering::SeqCst) > 0, "the server saw the credentials");
    let args = fs::read_to_string(log).unwrap();
    assert!(args.contains("ls-remote"), "{args}");
    for leak in ["p%40ss", "p@ss", "alice", "Basic"] {
        assert!(!args.contains(leak), "{leak} in git's arguments:\n{args}");
    }
}

#[test]
fn only_http_credentials_are_moved() {
    assert_eq!(split_credentials("https://example.com/r.git"), ("https://example.com/r.git".to_string(), None));
    assert_eq!(split_credentials("git@example.com:r.git"), ("git@example.com:r.git".to_string(), None));
    assert_eq!(split_credentials("ssh://git@example.com/r.git"), ("ssh://git@example.com/r.git".to_string(), None));
    let (url, header) = split_credentials("https://token@example.com/r.git");
    assert_eq!(url, "https://example.com/r.git");
    assert_eq!(header.unwrap(), "Authorization: Basic dG9rZW46");
}

#[tokio::test]
async fn git_checks_out_branches_tags_and_commits() {
    let repo = repository();
    let file_url = format!("file://{}", repo.path.display());
    let path_url = repo.path.display().to_string();
    // (reference, url, commit, a.txt, b.txt present, the branch checked out)
    let cases = [
        ("workshop", &file_url, &repo.workshop, "one\n", true, Some("workshop")),
        ("main", &path_url, &repo.two, "two\n", false, Some("main")),
        ("v1", &file_url, &repo.one, "one\n", false, None),
        (repo.two.as_str(), &file_url, &repo.two, "two\n", false, None),
        (&repo.two[..7], &path_url, &repo.two, "two\n", false, None),
        (&repo.workshop[..10], &file_url, &repo.workshop, "one\n", true, None),
    ];
    for (reference, url, commit, a, has_b, branch) in cases {
        let (tmp, dest) = destination();
        let source = Source::Git {
            url: url.clone(),
            reference: reference.to_string(),
            max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE,
        };

        let identity = fetch(&source, &dest, BUDGET).await.unwrap();

        assert_eq!(&identity, commit, "{reference}");
        assert_eq!(fs::read_to_string(dest.join("a.txt")).unwrap(), a, "{reference}");
        assert_eq!(dest.join("b.txt").exists(), has_b, "{reference}");
        assert!(dest.join(".git").is_dir(), "{reference}: .git kept");
        assert_eq!(git(&dest, &["rev-parse", "HEAD"]), *commit, "{reference}");
        assert_eq!(git(&dest, &["status", "--porcelain"]), "", "{reference}: a clean checkout");
        let head = git(&dest, &["rev-parse", "--symbolic-full-name", "HEAD"]);
        assert_eq!(head, branch.map_or("HEAD".to_string(), |b| format!("refs/heads/{b}")), "{reference}");
        assert_eq!(names(&tmp.path().join("home")), ["work"], "{reference}");
    }
}

/// git has no bound of its own on what a clone fetches: a repository
/// larger than the disk filled it. The clone's size is now watched.
#[tokio::test]
async fn a_clone_larger_than_max_size_is_stopped_and_leaves_nothing() {
    use std::io::Read;
    let repo = repository();
    // Random bytes, which no pack compresses: 4 MiB of history.
    let mut noise = vec![0u8; 4 << 20];
    fs::File::open("/dev/urandom").unwrap().read_exact(&mut noise).unwrap();
    fs::write(repo.path.join("noise.bin"), &noise).unwrap();
    git(&repo.path, &["add", "noise.bin"]);
    git(&repo.path, &["commit", "--quiet", "-m", "noise"]);
    let url = format!("file://{}", repo.path.display());
    let (tmp, dest) = destination();
    let source = Source::Git { url: url.clone(), reference: "main".into(), max_size: 1 << 20 };

    let err = message(fetch(&source, &dest, BUDGET).await.unwrap_err());

    let prefix = format!("`git clone {url}` was stopped: the clone of {url} took ");
    assert!(err.starts_with(&prefix), "{err}");
    assert!(
            err.ends_with(" bytes, more than [workspace] max_size (1048576 bytes); nothing was written (raise max_size if the materials really are that large)"),
            "{err}"
        );
    assert!(!dest.exists());
    assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new(), "no staging left");

    // Within the bound, the same repository is fetched.
    let source = Source::Git { url, reference: "main".into(), max_size: 16 << 20 };
    fetch(&source, &dest, BUDGET).await.unwrap();
    assert_eq!(fs::read(dest.join("noise.bin")).unwrap(), noise);
}

#[tokio::test]
async fn an_unknown_git_reference_leaves_nothing() {
    let repo = repository();
    let url = format!("file://{}", repo.path.display());
    for reference in ["no-such-branch", "0123456789abcdef0123456789abcdef01234567", "v2"] {
        let (tmp, dest) = destination();
        let source = Source::Git {
            url: url.clone(),
            reference: reference.into(),
            max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE,
        };

        let err = fetch(&source, &dest, BUDGET).await.unwrap_err();

        assert!(matches!(err, FetchError::UnknownRef { .. }), "{err:?}");
        assert_eq!(err.to_string(), format!("the repository {url} has no branch, tag or commit `{reference}`"));
        assert!(!dest.exists());
        assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new());
    }
}

#[tokio::test]
async fn git_failures_are_explained() {
    let (tmp, dest) = destination();
    let missing = tmp.path().join("no-repo");
    let source = Source::Git {
        url: missing.display().to_string(),
        reference: "main".into(),
        max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE,
    };

    let err = message(fetch(&source, &dest, BUDGET).await.unwrap_err());
    assert_eq!(
        err,
        format!("`git clone {0}` failed (exit status: 128): fatal: repository '{0}' does not exist", missing.display())
    );

    let err = message(fetch_with("/nonexistent/bin/git", &source, &dest, BUDGET).await.unwrap_err());
    assert_eq!(
        err,
        format!(
            "the `git` command was not found; install git (`apt-get install git`) to fetch the workspace from {}",
            missing.display()
        )
    );
    assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new());
}

#[test]
fn transient_git_failures() {
    let cases = [
        ("fatal: unable to access 'https://h/r/': Could not resolve host: h", true),
        ("fatal: unable to access 'https://h/r/': Failed to connect to h port 443: Connection refused", true),
        ("error: RPC failed; curl 56 GnuTLS recv error (-9)", true),
        ("fatal: unable to access 'https://h/r/': The requested URL returned error: 503", true),
        ("remote: Repository not found.\nfatal: repository 'https://h/r/' not found", false),
        ("fatal: Authentication failed for 'https://h/r/'", false),
        ("fatal: could not read Username for 'https://h': terminal prompts disabled", false),
    ];
    for (stderr, transient) in cases {
        assert_eq!(is_transient_git(stderr), transient, "{stderr}");
    }
}
