//! Fetching the workshop materials onto the instance: a tarball over http(s),
//! verified against its sha256 and checked entry by entry before anything is
//! written, or a git repository checked out at a branch, tag or commit with
//! the `git` command-line tool. Either is assembled in a staging directory
//! beside the destination and renamed into place, so the destination holds
//! all of the materials or does not exist.
//!
//! This file is the entry point alone; the jobs are in files of their own,
//! below it: `staging` (the directory beside the destination, the rename into
//! place), `tarball` (download, sha256, unpack), `entries` (reading the
//! archive, the guard on its entries), `git` (the command line) and `failure`
//! (the errors and the retry every part shares).

use std::path::Path;
use std::time::{Duration, Instant};

use tracing::info;

pub use super::failure::FetchError;
use super::git::{fetch_git, Git};
use super::staging::Staging;
use super::tarball::fetch_tarball;
pub use crate::config::workspace::{Source, DEFAULT_MAX_SIZE};

/// Fetches `source` into `dest`, a directory that must not exist yet (its parent exists).
/// On success `dest` holds the materials; on any error nothing is left at `dest`
/// (and no temporary files beside it). Transient failures (network, 5xx, 408, 429,
/// git's "could not resolve host"/"connection" errors) are retried with exponential
/// backoff within `retry_budget`. Returns the resolved identity: the commit id for git,
/// the verified sha256 for a tarball.
pub async fn fetch(source: &Source, dest: &Path, retry_budget: Duration) -> Result<String, FetchError> {
    fetch_with(GIT, source, dest, retry_budget).await
}

/// The git program; tests name a missing one.
const GIT: &str = "git";

pub(super) async fn fetch_with(
    git: &str,
    source: &Source,
    dest: &Path,
    retry_budget: Duration,
) -> Result<String, FetchError> {
    let url = source.display_url();
    let deadline = Instant::now() + retry_budget;
    let staging = Staging::create(dest)?;
    info!(url = %url, dest = %dest.display(), "fetching the workspace");
    let identity = match source {
        Source::Tarball { url: raw_url, sha256, max_size } => {
            fetch_tarball(raw_url, sha256, *max_size, &staging, dest, deadline).await?
        }
        Source::Git { url: raw_url, reference, max_size } => {
            let (bare, header) = super::git::split_credentials(raw_url);
            let git =
                Git { program: git, raw_url: &bare, url: &url, auth_header: header.as_deref(), max_size: *max_size };
            fetch_git(&git, reference, &staging, dest, deadline).await?
        }
    };
    info!(url = %url, dest = %dest.display(), identity = %identity, "workspace fetched");
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::workspace::test_support::{destination, message, names, serve, tar_bytes, Item, BUDGET};
    use std::fs;

    #[tokio::test]
    async fn bad_arguments_and_an_existing_destination_are_refused() {
        let (tmp, dest) = destination();
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("notes.txt"), "mine").unwrap();
        let tarball = |url: &str, sha: &str| Source::Tarball {
            url: url.into(),
            sha256: sha.into(),
            max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE,
        };
        let git = |url: &str, reference: &str| Source::Git {
            url: url.into(),
            reference: reference.into(),
            max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE,
        };
        let fresh = tmp.path().join("home/fresh");
        let cases = [
            (
                tarball("http://127.0.0.1:9/m.tgz", &"a".repeat(64)),
                dest.clone(),
                format!(
                    "{} already exists; the workspace is fetched once and never overwritten (remove it to fetch again)",
                    dest.display()
                ),
            ),
            (
                tarball("http://127.0.0.1:9/m.tgz", "abc"),
                fresh.clone(),
                "the sha256 of http://127.0.0.1:9/m.tgz must be 64 hexadecimal digits, not \"abc\"".into(),
            ),
            (
                tarball("ftp://u:pw@127.0.0.1/m.tgz", &"a".repeat(64)),
                fresh.clone(),
                "cannot download ftp://***@127.0.0.1/m.tgz: a tarball is fetched over http:// or https:// only".into(),
            ),
            (git("/srv/repo", ""), fresh.clone(), "no branch, tag or commit given for /srv/repo".into()),
            (git("", "main"), fresh.clone(), "no repository URL given".into()),
            (
                git("/srv/repo", "--upload-pack=evil"),
                fresh.clone(),
                "`--upload-pack=evil` is not a branch, tag or commit name (for /srv/repo)".into(),
            ),
            (
                tarball("http://127.0.0.1:9/m.tgz", &"a".repeat(64)),
                tmp.path().join("missing/work"),
                format!(
                    "the directory {} (where {} goes) does not exist; create it first",
                    tmp.path().join("missing").display(),
                    tmp.path().join("missing/work").display()
                ),
            ),
        ];
        for (source, dest, expected) in cases {
            let err = fetch(&source, &dest, BUDGET).await.unwrap_err();
            assert!(matches!(err, FetchError::Other(_)), "{err:?}");
            assert_eq!(message(err), expected);
        }
        assert_eq!(fs::read_to_string(dest.join("notes.txt")).unwrap(), "mine", "left as it was");
        assert_eq!(names(&tmp.path().join("home")), ["work"]);
    }

    #[test]
    fn fetching_is_send() {
        fn assert_send<T: Send>(_: T) {}
        let source = Source::Git {
            url: "/srv/repo".into(),
            reference: "main".into(),
            max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE,
        };
        assert_send(fetch(&source, Path::new("/nonexistent/work"), BUDGET));
    }

    #[tokio::test]
    async fn credentials_never_reach_a_message() {
        let archive = tar_bytes(&[Item::File("a", b"a", 0o644)]);
        let server = serve(vec![(200, archive), (404, b"gone".to_vec())]);
        let (tmp, dest) = destination();
        let port = server.base.rsplit(':').next().unwrap();
        let secret = "s3cret-t0ken";

        let tarball = Source::Tarball {
            url: format!("http://alice:{secret}@127.0.0.1:{port}/m.tar"),
            sha256: "0".repeat(64),
            max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE,
        };
        assert_eq!(tarball.display_url(), format!("http://***@127.0.0.1:{port}/m.tar"));
        let checksum = fetch(&tarball, &dest, BUDGET).await.unwrap_err().to_string();
        let not_found = message(fetch(&tarball, &dest, BUDGET).await.unwrap_err());
        // Nothing listens on port 9 (discard): connection refused, and with no budget, no retry.
        let refused = Source::Tarball {
            url: format!("http://alice:{secret}@127.0.0.1:9/m.tar"),
            sha256: "0".repeat(64),
            max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE,
        };
        let refused = message(fetch(&refused, &dest, Duration::ZERO).await.unwrap_err());
        let git = Source::Git {
            url: format!("http://alice:{secret}@127.0.0.1:9/r.git"),
            reference: "main".into(),
            max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE,
        };
        let cloned = message(fetch(&git, &dest, Duration::ZERO).await.unwrap_err());

        for text in [&checksum, &not_found, &refused, &cloned] {
            assert!(!text.contains(secret), "{text}");
            assert!(text.contains("http://***@127.0.0.1:"), "{text}");
        }
        assert!(checksum.starts_with("the tarball at http://***@127.0.0.1:"), "{checksum}");
        assert!(refused.starts_with("downloading http://***@127.0.0.1:9/m.tar: error sending request"), "{refused}");
        assert!(cloned.starts_with("`git clone http://***@127.0.0.1:9/r.git` failed (exit status: 128): "), "{cloned}");
        assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new());
    }
}
