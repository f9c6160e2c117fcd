//! Tarball sources: the download over http(s) (retried when the failure is
//! transient), the sha256 check, and the unpacking once the entry guard has
//! passed every entry.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use jupyter_proto::redact::redact_url;

use super::entries::{check_entries, list_entries, open_archive};
use super::failure::{policy, FetchError};
use super::staging::{move_into_place, Staging};
use crate::transfer::{self, Download};

/// A whole download; materials can be a few hundred MB on a slow link.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The most entries a tarball may hold (docs/configuration.md): empty files
/// compress to almost nothing, and each takes an inode and a listing.
pub const MAX_ENTRIES: usize = 100_000;

pub(super) async fn fetch_tarball(
    raw_url: &str,
    sha256: &str,
    max_size: u64,
    staging: &Staging,
    dest: &Path,
    deadline: Instant,
) -> Result<String, FetchError> {
    let url = redact_url(raw_url);
    let expected = sha256.to_ascii_lowercase();
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(anyhow!("the sha256 of {url} must be 64 hexadecimal digits, not {sha256:?}").into());
    }
    let scheme = raw_url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("http" | "https")) {
        return Err(anyhow!("cannot download {url}: a tarball is fetched over http:// or https:// only").into());
    }
    let client = crate::http::download_client(Some(DOWNLOAD_TIMEOUT))?;
    let download = staging.dir.join("download");
    // No retry when it is too large: the same tarball would be as large again.
    let too_large = |verb: &str| {
        anyhow!(
            "the tarball from {url} {verb} more than [workspace] max_size ({max_size} bytes); raise max_size if the materials really are that large"
        )
    };
    let d = Download {
        url: raw_url,
        task: "downloading the tarball",
        prefix: &format!("downloading {url}"),
        path: &download,
        max_size: Some((max_size, &too_large)),
        error_page: true,
    };
    let actual = transfer::download(&client, &d, policy(deadline), |_, _| {}).await?;
    if actual != expected {
        return Err(FetchError::Checksum { url, expected, actual });
    }
    let tree = staging.dir.join("tree");
    let root = tokio::task::spawn_blocking(move || unpack_checked(&download, &tree, &url, max_size, MAX_ENTRIES))
        .await
        .context("unpacking the tarball")??;
    move_into_place(&root, dest)?;
    Ok(actual)
}

/// Checks every entry of the archive (at most `max_entries`), then unpacks it into `tree`; returns the
/// directory to move into place (the single top-level directory of a GitHub-style archive, or `tree`).
fn unpack_checked(
    archive: &Path,
    tree: &Path,
    url: &str,
    max_size: u64,
    max_entries: usize,
) -> Result<PathBuf, FetchError> {
    let listed = list_entries(archive, max_entries).with_context(|| format!("reading the tarball from {url}"))?;
    let Some(listed) = listed else {
        return Err(anyhow!(
            "the tarball from {url} holds more than {max_entries} entries, the most materials may have; nothing was written"
        )
        .into());
    };
    check_entries(&listed)?;
    let unpacked: u64 = listed.iter().map(|e| e.size).fold(0, u64::saturating_add);
    if unpacked > max_size {
        return Err(anyhow!(
            "the tarball from {url} unpacks to {unpacked} bytes, more than [workspace] max_size ({max_size} bytes); raise max_size if the materials really are that large"
        )
        .into());
    }
    fs::create_dir(tree).with_context(|| format!("creating {}", tree.display()))?;
    fs::set_permissions(tree, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("setting the mode of {}", tree.display()))?;
    let mut unpacker =
        tar::Archive::new(open_archive(archive).with_context(|| format!("reading {}", archive.display()))?);
    // Modes are kept without the setuid, setgid and sticky bits; files belong to the agent's user.
    unpacker.set_preserve_permissions(false);
    unpacker.set_preserve_ownerships(false);
    unpacker.set_unpack_xattrs(false);
    unpacker.unpack(tree).with_context(|| format!("unpacking the tarball from {url}"))?;
    Ok(single_top_dir(tree).with_context(|| format!("listing {}", tree.display()))?)
}

/// GitHub-style archives hold one top-level directory (`repo-<sha>/`): its contents are the materials.
fn single_top_dir(tree: &Path) -> io::Result<PathBuf> {
    let entries = fs::read_dir(tree)?.collect::<io::Result<Vec<_>>>()?;
    match entries.as_slice() {
        [only] if only.file_type()?.is_dir() => Ok(only.path()),
        _ => Ok(tree.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::MetadataExt;
    use std::process::Command;
    use std::sync::atomic::Ordering;

    use crate::workspace::fetch::{fetch, Source};
    use crate::workspace::test_support::{
        destination, gzip, message, names, repository, serve, sha256_hex, tar_bytes, Item, BUDGET,
    };

    /// A tarball source whose download never gets as far as its checksum.
    fn any_sha256(url: &str) -> Source {
        Source::Tarball { url: url.into(), sha256: "a".repeat(64), max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE }
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[tokio::test]
    async fn a_github_style_tarball_is_retried_verified_and_stripped_of_its_top_directory() {
        let archive = gzip(&tar_bytes(&[
            Item::GlobalPax,
            Item::Dir("repo-0123abc/"),
            Item::File("repo-0123abc/README.md", b"hello\n", 0o644),
            Item::Dir("repo-0123abc/bin/"),
            Item::File("repo-0123abc/bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755),
            Item::File("repo-0123abc/bin/setuid", b"x", 0o6755),
            Item::Symlink("repo-0123abc/docs", "README.md"),
            Item::Symlink("repo-0123abc/bin/readme", "../README.md"),
            Item::HardLink("repo-0123abc/copy.md", "repo-0123abc/README.md"),
        ]));
        let sha = sha256_hex(&archive);
        let server = serve(vec![(503, b"busy".to_vec()), (200, archive)]);
        let (tmp, dest) = destination();
        // The expected sha256 is compared without regard to case.
        let source = Source::Tarball {
            url: format!("{}/materials.tgz", server.base),
            sha256: sha.to_uppercase(),
            max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE,
        };

        let identity = fetch(&source, &dest, BUDGET).await.unwrap();

        assert_eq!(identity, sha);
        assert_eq!(server.hits.load(Ordering::SeqCst), 2, "one 503, then the tarball");
        assert_eq!(names(&dest), ["README.md", "bin", "copy.md", "docs"]);
        assert_eq!(fs::read_to_string(dest.join("README.md")).unwrap(), "hello\n");
        assert_eq!(fs::read_to_string(dest.join("copy.md")).unwrap(), "hello\n");
        assert_eq!(fs::read_to_string(dest.join("bin/readme")).unwrap(), "hello\n");
        assert_eq!(fs::read_link(dest.join("docs")).unwrap(), Path::new("README.md"));
        assert_eq!(mode(&dest.join("README.md")), 0o644);
        assert_eq!(mode(&dest.join("bin/run.sh")), 0o755);
        assert_eq!(mode(&dest.join("bin/setuid")), 0o755, "setuid and setgid dropped");
        assert_eq!(names(&tmp.path().join("home")), ["work"], "no staging left beside the destination");
    }

    #[tokio::test]
    async fn archives_without_a_single_top_directory_are_kept_as_they_are() {
        let cases: &[(&str, bool, &[Item], &[&str])] = &[
            (
                "plain tar, two top entries",
                false,
                &[Item::File("a.txt", b"a", 0o644), Item::Dir("b/")],
                &["a.txt", "b"],
            ),
            ("gzip, one top file", true, &[Item::File("only.txt", b"o", 0o600)], &["only.txt"]),
            (
                "gzip, ./ prefixed",
                true,
                &[Item::Dir("./"), Item::File("./x/y.txt", b"y", 0o644), Item::File("./z", b"z", 0o644)],
                &["x", "z"],
            ),
        ];
        for (name, gzipped, items, expected) in cases {
            let tar = tar_bytes(items);
            let archive = if *gzipped { gzip(&tar) } else { tar };
            let sha = sha256_hex(&archive);
            let server = serve(vec![(200, archive)]);
            let (_tmp, dest) = destination();
            let source = Source::Tarball {
                url: format!("{}/m.tar", server.base),
                sha256: sha.clone(),
                max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE,
            };
            assert_eq!(fetch(&source, &dest, BUDGET).await.unwrap(), sha, "{name}");
            assert_eq!(names(&dest), *expected, "{name}");
        }
    }

    #[tokio::test]
    async fn materials_larger_than_max_size_are_refused_without_retry() {
        // 4 KiB of zeros: a small gzip download that unpacks beyond the limit.
        static ZEROS: [u8; 4096] = [0; 4096];
        let zeros = &ZEROS;
        let archive = gzip(&tar_bytes(&[Item::File("big.bin", zeros, 0o644)]));
        let sha = sha256_hex(&archive);
        let (tmp, dest) = destination();
        let server = serve(vec![(200, archive.clone())]);
        let url = format!("{}/m.tgz", server.base);
        let source = Source::Tarball { url: url.clone(), sha256: sha.clone(), max_size: 2048 };
        let err = fetch(&source, &dest, BUDGET).await.unwrap_err().to_string();
        assert!(err.contains("unpacks to 4096 bytes, more than [workspace] max_size (2048 bytes)"), "{err}");
        assert!(!dest.exists());
        assert_eq!(names(tmp.path()), ["home"], "nothing left beside");
        // A download larger than the limit stops at once (one request only).
        let server = serve(vec![(200, archive.clone()), (200, archive.clone())]);
        let url = format!("{}/m.tgz", server.base);
        let source = Source::Tarball { url, sha256: sha, max_size: (archive.len() - 1) as u64 };
        let err = fetch(&source, &dest, BUDGET).await.unwrap_err().to_string();
        assert!(err.contains("more than [workspace] max_size"), "{err}");
        assert_eq!(server.hits.load(std::sync::atomic::Ordering::SeqCst), 1, "not retried");
    }

    /// A tarball whose one file is `size` bytes of zeros by its PAX `size`
    /// record while its ustar header says 0: tar unpacks what the PAX record
    /// says (gzip makes 64 MiB of zeros about 65 kB).
    fn pax_bomb(size: u64) -> Vec<u8> {
        use std::io::Read;
        let mut builder = tar::Builder::new(Vec::new());
        let record = format!("size={size}\n");
        // A PAX record's length counts its own digits.
        let mut len = record.len() + 2;
        while format!("{len} {record}").len() != len {
            len += 1;
        }
        let record = format!("{len} {record}");
        let mut pax = tar::Header::new_ustar();
        pax.set_path("PaxHeaders/bomb.bin").unwrap();
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_size(record.len() as u64);
        pax.set_cksum();
        builder.append(&pax, record.as_bytes()).unwrap();
        let mut file = tar::Header::new_ustar();
        file.set_path("bomb.bin").unwrap();
        file.set_entry_type(tar::EntryType::Regular);
        file.set_mode(0o644);
        file.set_size(0);
        file.set_cksum();
        builder.append(&file, io::repeat(0).take(size)).unwrap();
        gzip(&builder.into_inner().unwrap())
    }

    #[tokio::test]
    async fn a_pax_size_record_counts_toward_max_size() {
        let archive = pax_bomb(2 << 20);
        let sha = sha256_hex(&archive);
        let server = serve(vec![(200, archive)]);
        let (tmp, dest) = destination();
        let source = Source::Tarball { url: format!("{}/m.tgz", server.base), sha256: sha, max_size: 1 << 20 };
        let err = fetch(&source, &dest, BUDGET).await.unwrap_err().to_string();
        assert!(err.contains("unpacks to 2097152 bytes, more than [workspace] max_size (1048576 bytes)"), "{err}");
        assert!(!dest.exists());
        assert_eq!(names(tmp.path()), ["home"], "nothing left beside");
    }

    #[test]
    fn more_entries_than_the_cap_are_refused_before_anything_is_written() {
        let items = [Item::Dir("d/"), Item::File("d/a", b"a", 0o644), Item::File("d/b", b"b", 0o644)];
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("m.tgz");
        fs::write(&archive, gzip(&tar_bytes(&items))).unwrap();
        let tree = tmp.path().join("tree");
        let err = unpack_checked(&archive, &tree, "http://h/m.tgz", 1 << 20, 2).unwrap_err().to_string();
        assert_eq!(
            err,
            "the tarball from http://h/m.tgz holds more than 2 entries, the most materials may have; nothing was written"
        );
        assert!(!tree.exists());
        assert_eq!(unpack_checked(&archive, &tree, "http://h/m.tgz", 1 << 20, 3).unwrap(), tree.join("d"));
    }

    #[tokio::test]
    async fn a_wrong_checksum_writes_nothing() {
        let archive = gzip(&tar_bytes(&[Item::File("a.txt", b"a", 0o644)]));
        let actual = sha256_hex(&archive);
        let server = serve(vec![(200, archive)]);
        let (tmp, dest) = destination();
        let expected = "0".repeat(64);
        let url = format!("{}/m.tgz", server.base);
        let source = Source::Tarball {
            url: url.clone(),
            sha256: expected.clone(),
            max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE,
        };

        let err = fetch(&source, &dest, BUDGET).await.unwrap_err();

        assert!(matches!(err, FetchError::Checksum { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("the tarball at {url} has sha256 {actual}, not the expected {expected}; nothing was written")
        );
        assert!(!dest.exists());
        assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new());
        assert_eq!(server.hits.load(Ordering::SeqCst), 1, "a checksum mismatch is not retried");
    }

    #[tokio::test]
    async fn transient_errors_are_retried_within_the_budget_only() {
        let server = serve(vec![(503, Vec::new())]);
        let (tmp, dest) = destination();
        let url = format!("{}/m.tgz", server.base);
        let source = any_sha256(&url);

        let err = fetch(&source, &dest, Duration::ZERO).await.unwrap_err();

        assert_eq!(message(err), format!("downloading {url}: the server answered 503 Service Unavailable"));
        assert_eq!(server.hits.load(Ordering::SeqCst), 1);
        assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new());

        // The first wait is 1 to 2 s (with jitter), the second 2 to 4 s: only one retry fits in 2.5 s.
        let err = message(fetch(&source, &dest, Duration::from_millis(2500)).await.unwrap_err());
        assert_eq!(server.hits.load(Ordering::SeqCst), 3);
        assert!(err.starts_with("downloading the tarball: gave up after 2 attempts in "), "{err}");
        assert!(
            err.ends_with(&format!(
                " (retry budget spent): downloading {url}: the server answered 503 Service Unavailable"
            )),
            "{err}"
        );
        assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new());
    }

    #[tokio::test]
    async fn http_errors_other_than_transient_ones_fail_at_once() {
        let server = serve(vec![(404, b"<html>\n  no such\n  file\n</html>".to_vec())]);
        let (tmp, dest) = destination();
        let url = format!("{}/m.tgz", server.base);
        let source = any_sha256(&url);

        let err = fetch(&source, &dest, BUDGET).await.unwrap_err();

        assert_eq!(
            message(err),
            format!("downloading {url}: the server answered 404 Not Found: <html> no such file </html>")
        );
        assert_eq!(server.hits.load(Ordering::SeqCst), 1);
        assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_tarball_made_by_git_archive_is_unpacked() {
        let repo = repository();
        let output = Command::new("git")
            .args(["archive", "--format=tar.gz", "--prefix=src-1234567/", "workshop"])
            .current_dir(&repo.path)
            .output()
            .unwrap();
        assert!(output.status.success());
        let sha = sha256_hex(&output.stdout);
        let server = serve(vec![(200, output.stdout)]);
        let (tmp, dest) = destination();
        let source = Source::Tarball {
            url: format!("{}/workshop.tar.gz", server.base),
            sha256: sha.clone(),
            max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE,
        };

        assert_eq!(fetch(&source, &dest, BUDGET).await.unwrap(), sha);
        assert_eq!(names(&dest), ["a.txt", "b.txt"]);
        assert_eq!(fs::read_to_string(dest.join("b.txt")).unwrap(), "workshop\n");
        assert_eq!(names(&tmp.path().join("home")), ["work"]);
    }
}
