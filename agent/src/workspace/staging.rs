//! The staging directory beside the destination, where the materials are assembled,
//! and the no-replace rename that moves them into place.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use tracing::warn;

use super::failure::FetchError;

/// A directory beside the destination where the materials are assembled; removed when dropped,
/// on every path, after its result has been renamed out of it.
pub(super) struct Staging {
    pub(super) dir: PathBuf,
}

impl Staging {
    pub(super) fn create(dest: &Path) -> Result<Self, FetchError> {
        match fs::symlink_metadata(dest) {
            Ok(_) => {
                return Err(anyhow!(
                    "{} already exists; the workspace is fetched once and never overwritten (remove it to fetch again)",
                    dest.display()
                )
                .into())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow!(e).context(format!("looking at {}", dest.display())).into()),
        }
        let name = dest.file_name().ok_or_else(|| anyhow!("{} does not name a directory", dest.display()))?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !parent.is_dir() {
            return Err(anyhow!(
                "the directory {} (where {} goes) does not exist; create it first",
                parent.display(),
                dest.display()
            )
            .into());
        }
        remove_stale(parent, &name.to_string_lossy());
        let prefix = format!(".{}.fetch-{}-", name.to_string_lossy(), std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(parent)
            .with_context(|| format!("creating a staging directory in {}", parent.display()))?
            .keep();
        Ok(Staging { dir })
    }
}

/// Removes the staging directories that a killed fetch left beside the
/// destination: `.<name>.fetch-<pid>-*` whose process is gone.
pub(super) fn remove_stale(parent: &Path, name: &str) {
    let prefix = format!(".{name}.fetch-");
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            warn!(path = %entry.path().display(), "removing a staging directory that an interrupted fetch left");
            remove_tree(&entry.path());
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        remove_tree(&self.dir);
    }
}

/// Removes a directory tree, making its directories writable first if the archive made them read-only.
pub(super) fn remove_tree(path: &Path) {
    let result = match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_writable(path);
            fs::remove_dir_all(path)
        }
        other => other,
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            warn!(path = %path.display(), error = %e, "cannot remove the staging directory; remove it by hand");
        }
        _ => {}
    }
}

fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else { return };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(meta.permissions().mode() | 0o700));
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

/// Renames the assembled materials to `dest`, which must still not exist.
pub(super) fn move_into_place(root: &Path, dest: &Path) -> Result<(), FetchError> {
    rename_no_replace(root, dest).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            anyhow!("{} appeared while the workspace was being fetched; it was left as it is", dest.display())
        } else {
            anyhow!(e).context(format!("moving the fetched workspace into place at {}", dest.display()))
        }
    })?;
    Ok(())
}

/// A rename that fails rather than replace `to` (plain rename(2) replaces an empty directory).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        // A file system without RENAME_NOREPLACE: look, then rename.
        Err(Errno::EINVAL | Errno::ENOSYS) => rename_if_absent(from, to),
        Err(e) => Err(io::Error::from(e)),
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    rename_if_absent(from, to)
}

fn rename_if_absent(from: &Path, to: &Path) -> io::Result<()> {
    if fs::symlink_metadata(to).is_ok() {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    fs::rename(from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_directories_of_a_killed_fetch_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        // A pid that cannot exist (above the kernel's maximum), ours, and another name's.
        let dead = dir.path().join(".w.fetch-4294967295-abc");
        let ours = dir.path().join(format!(".w.fetch-{}-def", std::process::id()));
        let other = dir.path().join(".other.fetch-4294967295-ghi");
        for d in [&dead, &ours, &other] {
            fs::create_dir_all(d.join("sub")).unwrap();
        }
        fs::set_permissions(dead.join("sub"), fs::Permissions::from_mode(0o500)).unwrap();
        remove_stale(dir.path(), "w");
        assert!(!dead.exists(), "the dead fetch's staging directory is removed, read-only parts too");
        assert!(ours.exists() && other.exists());
    }

    use crate::workspace::test_support::{message, names};

    #[test]
    fn a_destination_that_appears_meanwhile_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let (root, dest) = (tmp.path().join("staged"), tmp.path().join("work"));
        fs::create_dir(&root).unwrap();
        fs::create_dir(&dest).unwrap();

        let err = message(move_into_place(&root, &dest).unwrap_err());

        assert_eq!(
            err,
            format!("{} appeared while the workspace was being fetched; it was left as it is", dest.display())
        );
        assert!(root.is_dir());
        assert_eq!(names(&dest), Vec::<String>::new());
    }
}
