//! Whether the agent's socket can be trusted (docs/api.md#the-socket). A
//! local user who can put a socket of their own where the clients look for
//! the agent's can play the agent: feed `jupyter-bootstrap` a ready URL of
//! theirs, which it would signal to ROS as SUCCESS. So the socket, and
//! every directory on the way to it, must be owned by root (or by the user
//! asking, when that is not root) and writable by no one else. A sticky
//! directory (`/tmp`, mode 1777) is writable by all, but only an entry's
//! owner may remove or rename it, and that owner is checked in turn.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Why a path cannot be trusted, or could not be looked at.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The path (or a directory on the way) is missing or cannot be read.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// `path`, on the way to what was asked, is not safe: `why`.
    #[error("{} {why}", path.display())]
    Untrusted { path: PathBuf, why: String },
}

/// The users a socket or directory may belong to: root, and this process's
/// effective user (the same when it runs as root).
pub fn trusted_uids() -> [u32; 2] {
    [0, effective_uid().unwrap_or(0)]
}

/// This process's effective uid, from `/proc/self/status` (`Uid:` real,
/// effective, saved, filesystem), without linking libc's wrappers.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn owners() -> String {
    match trusted_uids() {
        [_, 0] => "root".to_string(),
        [_, me] => format!("root or uid {me} (this user)"),
    }
}

/// Checks one directory or file's owner and, for a directory, that no one
/// else may write into it (unless it is sticky).
fn check_one(path: &Path, meta: &std::fs::Metadata) -> Result<(), TrustError> {
    let untrusted = |why: String| TrustError::Untrusted { path: path.to_path_buf(), why };
    if !trusted_uids().contains(&meta.uid()) {
        return Err(untrusted(format!("is owned by uid {}, not by {}", meta.uid(), owners())));
    }
    if meta.is_dir() {
        let mode = meta.mode();
        let sticky = mode & 0o1000 != 0;
        let others_write = mode & 0o002 != 0 || (mode & 0o020 != 0 && meta.gid() != 0);
        if others_write && !sticky {
            return Err(untrusted(format!(
                "is writable by other users (mode {:04o}): anyone could replace what is in it",
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

/// `dir` with its symlinks resolved, once it and every directory above it
/// passed [`check_one`].
pub fn check_dir_chain(dir: &Path) -> Result<PathBuf, TrustError> {
    let dir = std::fs::canonicalize(dir)?;
    for ancestor in dir.ancestors() {
        check_one(ancestor, &std::fs::metadata(ancestor)?)?;
    }
    Ok(dir)
}

/// The socket at `path`, resolved: the path to connect to, once it is a
/// socket owned by a trusted user in a chain of trusted directories. A
/// missing socket is [`TrustError::Io`] with [`io::ErrorKind::NotFound`].
pub fn check_socket(path: &Path) -> Result<PathBuf, TrustError> {
    let socket = std::fs::canonicalize(path)?;
    let meta = std::fs::metadata(&socket)?;
    if !meta.file_type().is_socket() {
        return Err(TrustError::Untrusted { path: socket, why: "is not a socket".into() });
    }
    check_one(&socket, &meta)?;
    if let Some(dir) = socket.parent() {
        check_dir_chain(dir)?;
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn running_as_root() -> bool {
        effective_uid() == Some(0)
    }

    #[test]
    fn a_socket_in_a_private_directory_is_trusted_and_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::os::unix::fs::symlink(&path, dir.path().join("link.sock")).unwrap();
        let resolved = std::fs::canonicalize(&path).unwrap();
        assert_eq!(check_socket(&path).unwrap(), resolved);
        assert_eq!(check_socket(&dir.path().join("link.sock")).unwrap(), resolved, "symlinks resolved");
        let missing = check_socket(&dir.path().join("none.sock")).unwrap_err();
        assert!(matches!(&missing, TrustError::Io(e) if e.kind() == io::ErrorKind::NotFound), "{missing:?}");
        std::fs::write(dir.path().join("file"), "").unwrap();
        let err = check_socket(&dir.path().join("file")).unwrap_err().to_string();
        assert!(err.ends_with("/file is not a socket"), "{err}");
    }

    #[test]
    fn a_directory_others_may_write_is_refused_unless_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        let path = open.join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        chmod(&open, 0o777);
        let err = check_socket(&path).unwrap_err().to_string();
        let open = std::fs::canonicalize(&open).unwrap();
        assert_eq!(
            err,
            format!("{} is writable by other users (mode 0777): anyone could replace what is in it", open.display())
        );
        // Sticky, as /tmp: others may add entries but not replace this one.
        chmod(&open, 0o1777);
        assert!(check_socket(&path).is_ok());
    }

    #[test]
    fn a_socket_or_directory_of_another_user_is_refused() {
        if !running_as_root() {
            eprintln!("skipped: chown needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let sticky = dir.path().join("tmp");
        std::fs::create_dir(&sticky).unwrap();
        chmod(&sticky, 0o1777);
        let path = sticky.join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
        let err = check_socket(&path).unwrap_err().to_string();
        assert!(err.ends_with("/tmp/agent.sock is owned by uid 65534, not by root"), "{err}");
        std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
        std::os::unix::fs::chown(&sticky, Some(65534), Some(65534)).unwrap();
        let err = check_socket(&path).unwrap_err().to_string();
        assert!(err.ends_with("/tmp is owned by uid 65534, not by root"), "{err}");
    }
}
