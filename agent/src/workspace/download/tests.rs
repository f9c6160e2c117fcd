use std::collections::BTreeMap;
use std::fs;
use std::io::Cursor;
use std::os::unix::fs::{symlink, PermissionsExt};

use super::*;

fn workspace(root: &Path, env_file: Option<&str>) -> WorkspaceConfig {
    WorkspaceConfig {
        source: crate::config::workspace::Source::Git {
            url: "/x".into(),
            reference: "main".into(),
            max_size: crate::config::workspace::DEFAULT_MAX_SIZE,
        },
        path: root.to_path_buf(),
        env_file: env_file.map(|f| root.join(f)),
        env: BTreeMap::new(),
    }
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

/// Every entry of the archive: name -> content (a link: `-> target`, a directory: `dir`).
fn read_back(zip: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut out = BTreeMap::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).unwrap();
        let mut content = Vec::new();
        f.read_to_end(&mut content).unwrap();
        let mode = f.unix_mode().unwrap_or(0);
        let value = match () {
            _ if f.is_dir() => b"dir".to_vec(),
            _ if mode & 0o170000 == 0o120000 => [b"-> ".as_slice(), &content].concat(),
            _ => content,
        };
        out.insert(f.name().to_string(), value);
    }
    out
}

fn zip_of(root: &Path, exclude: &Exclude) -> (Summary, Vec<u8>) {
    let mut out = Vec::new();
    // `&mut Vec<u8>` writes and cannot seek: what a pipe or an HTTP body offers.
    let summary = write_zip(root, exclude, &mut out).unwrap();
    assert_eq!(summary.archive_bytes, out.len() as u64);
    assert_entries_follow_each_other(&out);
    (summary, out)
}

/// Each entry's local header, data and data descriptor (16 bytes) end
/// where the next entry starts, the last where the central directory
/// does: what strict readers (Info-ZIP's "overlapped components")
/// check, and what zip 7.3's own directory entries broke.
fn assert_entries_follow_each_other(zip: &[u8]) {
    let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut spans = Vec::new();
    for i in 0..archive.len() {
        let f = archive.by_index_raw(i).unwrap();
        spans.push((f.header_start(), f.data_start().unwrap() + f.compressed_size() + 16, f.name().to_string()));
    }
    spans.sort();
    let central = archive.central_directory_start();
    for (i, (_, end, name)) in spans.iter().enumerate() {
        let next = spans.get(i + 1).map_or(central, |s| s.0);
        assert_eq!(*end, next, "{name} does not end where the next entry starts");
    }
}

#[test]
fn every_file_comes_back_byte_for_byte_and_the_secrets_stay_out() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("handson");
    // What a participant must not get through the archive: a host file.
    write(dir.path(), "shadow", b"root:$6$secret");
    let text: Vec<u8> = (0..200_000u32).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
    let random: Vec<u8> = (0..3 * CHUNK as u32 + 17).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    write(&root, "nb/Analysis.ipynb", br#"{"cells": []}"#);
    write(&root, "nb/big.txt", &text);
    write(&root, "images/photo.png", &random);
    write(&root, "run.sh", b"#!/bin/sh\necho hi\n");
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    write(&root, "empty.txt", b"");
    write(&root, "caf\u{e9} \u{6570}\u{636e}.md", "d\u{e9}j\u{e0}".as_bytes());
    fs::create_dir_all(root.join("scratch/empty")).unwrap();
    write(&root, "env", b"ALIBABA_CLOUD_ACCESS_KEY_SECRET=s3cr3t\n");
    write(&root, ".git/config", b"[core]\n");
    write(&root, "sub/.git/HEAD", b"ref: refs/heads/main\n");
    symlink(dir.path().join("shadow"), root.join("shadow-link")).unwrap();
    symlink("../../shadow", root.join("nb/relative-out")).unwrap();
    symlink(dir.path(), root.join("outside-dir")).unwrap();
    symlink("Analysis.ipynb", root.join("nb/latest.ipynb")).unwrap();
    nix::unistd::mkfifo(&root.join("pipe"), Mode::from_bits_truncate(0o600)).unwrap();

    let mut cfg = Config::defaults();
    cfg.workspace = Some(workspace(&root, Some("env")));
    cfg.container.env_file = Some(root.join("nb/container.env"));
    write(&root, "nb/container.env", b"OSS_SECRET=0ss-s3cr3t\n");
    let exclude = Exclude::for_workspace(&cfg).unwrap();
    let (summary, zip) = zip_of(&root, &exclude);
    let got = read_back(&zip);
    let want: BTreeMap<String, Vec<u8>> = [
        ("caf\u{e9} \u{6570}\u{636e}.md", "d\u{e9}j\u{e0}".as_bytes().to_vec()),
        ("empty.txt", vec![]),
        ("images/", b"dir".to_vec()),
        ("images/photo.png", random.clone()),
        ("nb/", b"dir".to_vec()),
        ("nb/Analysis.ipynb", br#"{"cells": []}"#.to_vec()),
        ("nb/big.txt", text.clone()),
        ("nb/latest.ipynb", b"-> Analysis.ipynb".to_vec()),
        ("nb/relative-out", b"-> ../../shadow".to_vec()),
        ("outside-dir", format!("-> {}", dir.path().display()).into_bytes()),
        ("run.sh", b"#!/bin/sh\necho hi\n".to_vec()),
        ("scratch/", b"dir".to_vec()),
        ("scratch/empty/", b"dir".to_vec()),
        ("shadow-link", format!("-> {}", dir.path().join("shadow").display()).into_bytes()),
        // A .git below the top is the participant's own repository.
        ("sub/", b"dir".to_vec()),
        ("sub/.git/", b"dir".to_vec()),
        ("sub/.git/HEAD", b"ref: refs/heads/main\n".to_vec()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    assert_eq!(got, want);
    // Not in any entry, compressed or not: the keys and the host's file.
    for secret in [b"s3cr3t".as_slice(), b"0ss-s3cr3t", b"$6$secret"] {
        assert!(!zip.windows(secret.len()).any(|w| w == secret));
    }
    let mut archive = zip::ZipArchive::new(Cursor::new(&zip)).unwrap();
    assert_eq!(archive.by_name("run.sh").unwrap().unix_mode().unwrap() & 0o777, 0o755);
    assert_eq!(archive.by_name("nb/big.txt").unwrap().compression(), CompressionMethod::Deflated);
    assert_eq!(archive.by_name("images/photo.png").unwrap().compression(), CompressionMethod::Stored);
    assert_eq!((summary.files, summary.directories, summary.links, summary.excluded), (7, 6, 4, 3), "{summary:?}");
    assert_eq!(
        summary.bytes,
        want.iter()
            .filter(|(k, v)| !k.ends_with('/') && !v.starts_with(b"-> ") && *v != b"dir")
            .map(|(_, v)| v.len() as u64)
            .sum::<u64>()
    );
    assert_eq!(
        summary.skipped,
        vec![Skipped {
            path: "pipe".into(),
            why: "not a file, a directory or a link (a socket, a pipe or a device)".into()
        }]
    );
}

#[test]
fn the_organisers_globs_leave_out_files_and_whole_directories() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for f in [
        "data/raw/a.csv",
        "data/b.csv",
        "nb/data/keep.csv",
        "x.parquet",
        "nb/deep/y.PARQUET",
        "nb/deep/y.parquet",
        "cache/c.bin",
        "notes/a.tmp",
        "notes/sub/b.tmp",
        "notes/keep.md",
        "nb/Analysis.ipynb",
    ] {
        write(root, f, b"x");
    }
    let globs = ["data/**", "*.parquet", "cache/", "notes/*.tmp"].map(String::from);
    let (summary, zip) = zip_of(root, &Exclude::new(&globs).unwrap());
    let files: Vec<String> = read_back(&zip).into_keys().filter(|k| !k.ends_with('/')).collect();
    assert_eq!(
        files,
        ["nb/Analysis.ipynb", "nb/data/keep.csv", "nb/deep/y.PARQUET", "notes/keep.md", "notes/sub/b.tmp"]
    );
    // data and cache (once each, directories), x.parquet, nb/deep/y.parquet, notes/a.tmp.
    assert_eq!(summary.excluded, 5, "{summary:?}");
    let dirs: Vec<String> = read_back(&zip).into_keys().filter(|k| k.ends_with('/')).collect();
    assert_eq!(dirs, ["nb/", "nb/data/", "nb/deep/", "notes/", "notes/sub/"]);
}

#[test]
fn bad_globs_are_refused_saying_why() {
    for (glob, why) in [
            ("", "expected a glob such as \"data/**\" or \"*.parquet\", not an empty string"),
            ("/etc/**", "expected a glob relative to the workspace, e.g. \"data/**\", not an absolute path"),
            ("../x", "expected a glob inside the workspace, without .."),
            ("data/[a", "is not a glob (unclosed character class; missing ']'); expected e.g. \"data/**\" or \"*.parquet\""),
            ("{a,b", "is not a glob (unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)); expected e.g. \"data/**\" or \"*.parquet\""),
        ] {
            assert_eq!(Exclude::new(&[glob.to_string()]).unwrap_err(), why, "{glob}");
        }
    assert!(Exclude::new(&["./data/".into(), "**/*.csv".into(), "a\\*b".into()]).is_ok());
}

#[test]
fn a_workspace_of_an_empty_directory_is_an_empty_archive() {
    let dir = tempfile::tempdir().unwrap();
    let (summary, zip) = zip_of(dir.path(), &Exclude::new(&[]).unwrap());
    assert!(read_back(&zip).is_empty());
    assert_eq!(summary, Summary { archive_bytes: zip.len() as u64, ..Summary::default() });
    let missing = write_zip(&dir.path().join("gone"), &Exclude::new(&[]).unwrap(), io::sink()).unwrap_err();
    assert!(format!("{missing:#}").starts_with("opening "), "{missing:#}");
}

#[test]
fn a_writer_that_fails_stops_the_archive_with_its_error() {
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "the reader went away"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", b"hello");
    let err = write_zip(dir.path(), &Exclude::new(&[]).unwrap(), Broken).unwrap_err();
    assert!(format!("{err:#}").contains("the reader went away"), "{err:#}");
}

/// Past 65 535 entries the classic end record cannot count them: Zip64's does.
#[test]
fn an_archive_of_more_than_65535_entries_reads_back_whole() {
    // In memory where there is a tmpfs: 70 000 files on a disk under load take a minute.
    let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap();
    for d in 0..70 {
        let sub = dir.path().join(format!("d{d:02}"));
        fs::create_dir(&sub).unwrap();
        for f in 0..1000 {
            File::create(sub.join(format!("{f:03}"))).unwrap();
        }
    }
    let (summary, zip) = zip_of(dir.path(), &Exclude::new(&[]).unwrap());
    assert_eq!((summary.files, summary.directories), (70_000, 70));
    let mut archive = zip::ZipArchive::new(Cursor::new(&zip)).unwrap();
    assert_eq!(archive.len(), 70_070);
    assert_eq!(archive.by_index(70_069).unwrap().name(), "d69/999");
}

/// Past 4 GiB zip 7.3's records are wrong (see MAX_ARCHIVE): refused
/// before the file that would pass the limit is read.
#[test]
fn a_workspace_past_4_gib_is_refused_before_the_file_that_would_pass_it() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.txt", b"small");
    File::create(dir.path().join("b.bin")).unwrap().set_len(MAX_ARCHIVE).unwrap();
    let mut out = Vec::new();
    let err = write_zip(dir.path(), &Exclude::new(&[]).unwrap(), &mut out).unwrap_err();
    assert_eq!(
            format!("{err:#}"),
            format!(
                "archiving {}: b.bin: the archive would pass 4031 MiB, the most a download may hold; leave large data out with [workspace] download_exclude",
                dir.path().display()
            )
        );
    assert!(out.len() < 1000, "{} bytes written", out.len());
    let (summary, _) = zip_of(dir.path(), &Exclude::new(&["*.bin".into()]).unwrap());
    assert_eq!(summary.files, 1);
}

#[test]
fn the_file_name_is_the_directory_and_the_date() {
    let date = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
    for (root, want) in [
        ("/root/imagesearchhandson", "imagesearchhandson-2026-12-07.zip"),
        ("/root/ws.bak-20261207T101010Z", "ws.bak-20261207T101010Z-2026-12-07.zip"),
        ("/root/my work \"1\"", "my_work__1_-2026-12-07.zip"),
        ("/", "workspace-2026-12-07.zip"),
        ("/root/..", "workspace-2026-12-07.zip"),
    ] {
        assert_eq!(file_name(Path::new(root), date), want, "{root}");
    }
}

#[test]
fn backups_are_listed_newest_first_with_their_size() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ws");
    write(&root, "now.txt", b"now");
    write(dir.path(), "ws.bak-20261207T101010Z/a.txt", b"12345");
    write(dir.path(), "ws.bak-20261207T101010Z/sub/b.txt", b"67");
    write(dir.path(), "ws.bak-20261207T101010Z-1/a.txt", b"1");
    write(dir.path(), "ws.bak-20261208T090000Z/a.txt", b"");
    write(dir.path(), "ws.bak-notes.txt", b"a file, not a backup");
    write(dir.path(), "other.bak-20261209T000000Z/a.txt", b"not ours");
    symlink(dir.path().join("ws.bak-20261207T101010Z/a.txt"), dir.path().join("ws.bak-20261207T101010Z-1/l")).unwrap();
    let cfg = workspace(&root, None);
    let list = backups(&cfg).unwrap();
    let t = |s: &str| Some(chrono::NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ").unwrap().and_utc());
    assert_eq!(
        list.iter().map(|b| (b.name.as_str(), b.taken_at, b.size)).collect::<Vec<_>>(),
        [
            ("ws.bak-20261208T090000Z", t("20261208T090000Z"), 0),
            ("ws.bak-20261207T101010Z-1", t("20261207T101010Z"), 1),
            ("ws.bak-20261207T101010Z", t("20261207T101010Z"), 7),
        ]
    );
    assert_eq!(
        find_backup(&cfg, "20261207T101010Z-1").unwrap().unwrap().path,
        dir.path().join("ws.bak-20261207T101010Z-1")
    );
    assert_eq!(find_backup(&cfg, "ws.bak-20261208T090000Z").unwrap().unwrap().size, 0);
    assert!(find_backup(&cfg, "../ws").unwrap().is_none());
    assert!(backups(&workspace(&dir.path().join("none/ws"), None)).unwrap().is_empty());
}
