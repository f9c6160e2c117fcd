use super::*;

#[test]
fn comparing_manifests() {
    let m = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<BTreeMap<_, _>>();
    let old = m(&[("a", "1"), ("b", "2"), ("c", "3")]);
    let new = m(&[("a", "1"), ("b", "9"), ("d", "4")]);
    assert_eq!(compare(&old, &new), (vec!["d".into()], vec!["c".into()], vec!["b".into()]));
}

#[test]
fn manifests_skip_git_and_the_env_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join(".git/objects")).unwrap();
    fs::write(dir.path().join(".git/HEAD"), "x").unwrap();
    fs::create_dir(dir.path().join("nb")).unwrap();
    fs::write(dir.path().join("nb/a.ipynb"), "{}").unwrap();
    fs::write(dir.path().join("env"), "SECRET=1").unwrap();
    let m = manifest(dir.path(), Some(Path::new("env"))).unwrap();
    assert_eq!(m.keys().collect::<Vec<_>>(), ["nb/a.ipynb"]);
    assert_eq!(m["nb/a.ipynb"], hex::encode(Sha256::digest(b"{}")));
}

#[test]
fn the_env_file_is_0600_and_rewritten_only_when_it_changes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = WorkspaceConfig {
        source: fetch::Source::Git { url: "/x".into(), reference: "main".into(), max_size: fetch::DEFAULT_MAX_SIZE },
        path: dir.path().to_path_buf(),
        env_file: Some(dir.path().join("env")),
        env: BTreeMap::from([("B".into(), "2".into()), ("A".into(), "1".into())]),
    };
    assert!(write_env_file(&cfg).unwrap());
    let header = crate::config::host::ENV_FILE_HEADER;
    assert_eq!(fs::read_to_string(dir.path().join("env")).unwrap(), format!("{header}\nA=1\nB=2\n"));
    assert_eq!(fs::metadata(dir.path().join("env")).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!write_env_file(&cfg).unwrap());
    cfg.env.insert("A".into(), "changed".into());
    assert!(write_env_file(&cfg).unwrap());
}

/// A run killed between moving a fetched copy into place and saving its
/// record: the next run adopts the copy (before, it stayed "unmanaged"
/// for ever, never updated and never reset).
#[tokio::test]
async fn a_copy_fetched_by_a_killed_run_is_adopted() {
    use test_support::{serve, sha256_hex, tar_bytes, Item};
    let archive = tar_bytes(&[Item::Dir("m/"), Item::File("m/nb.ipynb", b"{}", 0o644)]);
    let server = serve(vec![(200, archive.clone())]);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let sha = sha256_hex(&archive);
    let cfg = WorkspaceConfig {
        source: fetch::Source::Tarball {
            url: format!("{}/m.tar", server.base),
            sha256: sha.clone(),
            max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE,
        },
        path: dir.path().join("w"),
        env_file: None,
        env: BTreeMap::new(),
    };
    let first = ensure(&cfg, &state).await.unwrap();
    // What a kill after the move and before the record leaves behind.
    fs::remove_file(record_path(&state)).unwrap();
    let marker = serde_json::to_vec(&Fetching { source: cfg.source_label(), path: cfg.path.clone() }).unwrap();
    fs::write(fetching_path(&state), marker).unwrap();

    let again = ensure(&cfg, &state).await.unwrap();
    assert_eq!(again.identity.split('@').next(), first.identity.split('@').next(), "{}", again.detail);
    assert!(again.detail.starts_with(&format!("adopted {sha} in ")), "{}", again.detail);
    assert_eq!(load_record(&state).unwrap().unwrap().copy.files.keys().collect::<Vec<_>>(), ["nb.ipynb"]);
    assert!(!fetching_path(&state).exists());
    // Without the marker, a directory the agent did not fetch stays unmanaged.
    fs::remove_file(record_path(&state)).unwrap();
    assert!(ensure(&cfg, &state).await.unwrap().identity.starts_with("unmanaged:"));
}

/// Issue 23, item 4: the organiser pushes to the configured branch; the
/// update merges it into the participant's copy file by file, one case
/// of nbgitpuller's automatic merging per file (docs/workspace-update.md),
/// against a real git repository, and the container's identity stays.
#[tokio::test]
async fn an_update_merges_the_organisers_push_file_by_file() {
    use test_support::git;
    let tmp = tempfile::tempdir().unwrap();
    let (work, bare) = (tmp.path().join("organiser"), tmp.path().join("materials.git"));
    let notebook =
        |cells: &str| format!("{{\"cells\": [{cells}], \"metadata\": {{}}, \"nbformat\": 4, \"nbformat_minor\": 5}}\n");
    let cell = |text: &str| format!("{{\"cell_type\": \"markdown\", \"metadata\": {{}}, \"source\": \"{text}\"}}");
    let write = |root: &Path, rel: &str, content: &str| {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    };
    fs::create_dir(&work).unwrap();
    git(&work, &["init", "--quiet", "--initial-branch=main"]);
    for (rel, content) in [
        ("untouched.txt", "v1\n"),
        ("deleted-here.txt", "v1\n"),
        ("edited-here.txt", "v1\n"),
        ("edited-both.txt", "v1\n"),
        ("removed/upstream.txt", "v1\n"),
        ("removed-upstream-edited-here.txt", "v1\n"),
        ("nobody.txt", "v1\n"),
    ] {
        write(&work, rel, content);
    }
    write(&work, "lesson.ipynb", &notebook(&cell("organiser v1")));
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "v1"]);
    git(tmp.path(), &["clone", "--quiet", "--bare", work.to_str().unwrap(), bare.to_str().unwrap()]);
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    let cfg = WorkspaceConfig {
        source: fetch::Source::Git {
            url: format!("file://{}", bare.display()),
            reference: "main".into(),
            max_size: fetch::DEFAULT_MAX_SIZE,
        },
        path: tmp.path().join("home/handson"),
        env_file: None,
        env: BTreeMap::new(),
    };
    let state = tmp.path().join("state");
    let first = ensure(&cfg, &state).await.unwrap();
    let v1 = git(&bare, &["rev-parse", "main"]);
    assert!(check(&cfg, &state).await.unwrap().is_none(), "nothing pushed yet");
    let up_to_date = update(&cfg, &state).await.unwrap();
    assert!(up_to_date.up_to_date && !up_to_date.changes_files(), "{up_to_date:?}");

    // The participant works.
    let here = &cfg.path;
    fs::remove_file(here.join("deleted-here.txt")).unwrap();
    write(here, "edited-here.txt", "mine\n");
    write(here, "edited-both.txt", "mine\n");
    write(here, "removed-upstream-edited-here.txt", "mine\n");
    let mine_nb = notebook(&format!("{}, {}", cell("organiser v1"), cell("my answer")));
    write(here, "lesson.ipynb", &mine_nb);
    write(here, "created-here.txt", "mine\n");
    write(here, "exercise.ipynb", &notebook(&cell("my own exercise")));

    // The organiser pushes fixes to the branch.
    write(&work, "untouched.txt", "v2\n");
    write(&work, "deleted-here.txt", "v2\n");
    write(&work, "edited-both.txt", "v2\n");
    write(&work, "new/added.txt", "v2\n");
    write(&work, "exercise.ipynb", &notebook(&cell("organiser's exercise")));
    let upstream_nb = notebook(&cell("organiser v2"));
    write(&work, "lesson.ipynb", &upstream_nb);
    git(&work, &["rm", "--quiet", "removed/upstream.txt", "removed-upstream-edited-here.txt"]);
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "v2"]);
    git(&work, &["push", "--quiet", "origin", "main"]);
    let v2 = git(&bare, &["rev-parse", "main"]);

    let now = Utc::now();
    let new_name = |stem: &str, ext: &str| format!("{stem}.new-{}{ext}", now.format("%Y-%m-%d"));
    let checked = check(&cfg, &state).await.unwrap().expect("the branch moved");
    assert_eq!((checked.from.as_str(), checked.to.as_str()), (v1.as_str(), v2.as_str()));
    let files = manifest(here, None).unwrap();
    assert!(beside(&cfg.path, ".new").is_dir(), "staged beside");

    let updated = update(&cfg, &state).await.unwrap();
    assert_eq!(updated.kept_beside, checked.kept_beside, "check shows what update does");
    assert_eq!(updated.updated, ["untouched.txt"]);
    assert_eq!(updated.added, ["new/added.txt"]);
    assert_eq!(updated.restored, ["deleted-here.txt"]);
    assert_eq!(updated.left, ["edited-here.txt"]);
    assert_eq!(
        updated.kept_beside,
        [
            Beside { path: "edited-both.txt".into(), new_version: new_name("edited-both", ".txt") },
            Beside { path: "lesson.ipynb".into(), new_version: new_name("lesson", ".ipynb") },
        ]
    );
    assert_eq!(updated.renamed.len(), 1);
    let renamed = &updated.renamed[0];
    assert_eq!(renamed.path, "exercise.ipynb");
    assert!(renamed.yours.starts_with("exercise__") && renamed.yours.ends_with(".ipynb"), "{renamed:?}");
    assert_eq!(updated.removed, ["removed/upstream.txt"]);
    assert_eq!(updated.kept_removed_upstream, ["removed-upstream-edited-here.txt"]);

    // The bytes, file by file.
    let read = |rel: &str| fs::read_to_string(here.join(rel)).unwrap();
    assert_eq!(read("untouched.txt"), "v2\n");
    assert_eq!(read("new/added.txt"), "v2\n");
    assert_eq!(read("deleted-here.txt"), "v2\n");
    assert_eq!(read("edited-here.txt"), "mine\n");
    assert_eq!(read("edited-both.txt"), "mine\n");
    assert_eq!(read(&new_name("edited-both", ".txt")), "v2\n");
    assert_eq!(read("lesson.ipynb"), mine_nb, "the notebook edited on both sides is the participant's");
    assert_eq!(read(&new_name("lesson", ".ipynb")), upstream_nb, "and the organiser's is beside it");
    serde_json::from_str::<serde_json::Value>(&read(&new_name("lesson", ".ipynb"))).expect("a whole notebook");
    assert_eq!(read("exercise.ipynb"), notebook(&cell("organiser's exercise")));
    assert_eq!(read(&renamed.yours), notebook(&cell("my own exercise")));
    assert!(!here.join("removed/upstream.txt").exists() && !here.join("removed").exists());
    assert_eq!(read("removed-upstream-edited-here.txt"), "mine\n");
    assert_eq!(read("created-here.txt"), "mine\n");
    assert_eq!(read("nobody.txt"), "v1\n");
    assert!(files.contains_key("created-here.txt"));

    // The base is the new version, the staging gone, the container's identity the same.
    let record = load_record(&state).unwrap().unwrap();
    assert_eq!(record.copy.identity, v2);
    assert!(record.pending.is_none());
    let work_files = manifest(&work, None).unwrap();
    assert_eq!(record.copy.files, work_files);
    assert!(!beside(&cfg.path, ".new").exists());
    let again = ensure(&cfg, &state).await.unwrap();
    assert_eq!(again.identity, first.identity, "{}", again.detail);
    assert!(again.detail.starts_with(&format!("present ({v2})")), "{}", again.detail);

    // A second update takes nothing.
    let before = manifest(here, None).unwrap();
    let second = update(&cfg, &state).await.unwrap();
    assert!(second.up_to_date && !second.changes_files(), "{second:?}");
    assert_eq!((second.from.as_str(), second.to.as_str()), (v2.as_str(), v2.as_str()));
    assert_eq!(manifest(here, None).unwrap(), before);

    // A reset still gives the container a new identity.
    reset(&cfg, &state).await.unwrap();
    assert_ne!(ensure(&cfg, &state).await.unwrap().identity, first.identity);
}

/// A new tarball comes with a new configuration (a stack update): the
/// update fetches it beside the copy when no converge has yet, and
/// merges it the same way; the container's identity stays.
#[tokio::test]
async fn an_update_takes_a_new_tarball_from_a_changed_configuration() {
    use test_support::{serve, sha256_hex, tar_bytes, Item};
    let v1 =
        tar_bytes(&[Item::Dir("m/"), Item::File("m/a.txt", b"v1\n", 0o644), Item::File("m/b.txt", b"v1\n", 0o644)]);
    let v2 = tar_bytes(&[
        Item::Dir("m/"),
        Item::File("m/a.txt", b"v2\n", 0o644),
        Item::File("m/b.txt", b"v2\n", 0o644),
        Item::File("m/c.txt", b"v2\n", 0o644),
    ]);
    let (one, two) = (serve(vec![(200, v1.clone())]), serve(vec![(200, v2.clone())]));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let tarball = |base: &str, archive: &[u8]| fetch::Source::Tarball {
        url: format!("{base}/m.tar"),
        sha256: sha256_hex(archive),
        max_size: fetch::DEFAULT_MAX_SIZE,
    };
    let mut cfg = WorkspaceConfig {
        source: tarball(&one.base, &v1),
        path: dir.path().join("w"),
        env_file: None,
        env: BTreeMap::new(),
    };
    let first = ensure(&cfg, &state).await.unwrap();
    fs::write(cfg.path.join("b.txt"), "mine\n").unwrap();
    assert!(update(&cfg, &state).await.unwrap().up_to_date);

    cfg.source = tarball(&two.base, &v2);
    let checked = check(&cfg, &state).await.unwrap().expect("a new source");
    assert_eq!(checked.updated, ["a.txt"]);
    // An update killed after writing a.txt and b.txt's new version beside
    // it: taken up again, nothing written twice.
    let staged = beside(&cfg.path, ".new");
    fs::copy(staged.join("a.txt"), cfg.path.join("a.txt")).unwrap();
    fs::copy(staged.join("b.txt"), cfg.path.join(&checked.kept_beside[0].new_version)).unwrap();
    let updated = update(&cfg, &state).await.unwrap();
    assert_eq!((updated.from.as_str(), updated.to.as_str()), (sha256_hex(&v1).as_str(), sha256_hex(&v2).as_str()));
    assert_eq!(updated.kept_beside, checked.kept_beside, "the same name, not a second copy");
    assert!(updated.updated.is_empty(), "already written: {updated:?}");
    assert_eq!(updated.added, ["c.txt"]);
    assert_eq!(fs::read_to_string(cfg.path.join("a.txt")).unwrap(), "v2\n");
    assert_eq!(fs::read_to_string(cfg.path.join("b.txt")).unwrap(), "mine\n");
    assert_eq!(fs::read_to_string(cfg.path.join(&updated.kept_beside[0].new_version)).unwrap(), "v2\n");
    assert_eq!(fs::read_to_string(cfg.path.join("c.txt")).unwrap(), "v2\n");
    assert_eq!(fs::read_dir(&cfg.path).unwrap().count(), 4, "a, b, b's new version beside, c");
    let again = ensure(&cfg, &state).await.unwrap();
    assert_eq!(again.identity, first.identity, "{}", again.detail);
    assert!(update(&cfg, &state).await.unwrap().up_to_date);
    assert_eq!(two.hits.load(std::sync::atomic::Ordering::SeqCst), 1, "fetched once");
}
