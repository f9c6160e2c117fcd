//! The pristine copy: the materials as fetched, kept in
//! `<state_dir>/workspace-pristine` (root-only, never mounted), which the
//! image is built from when `[image.build] context = "workspace"`. A
//! participant's edit in their copy then changes neither the build nor the
//! image id (so no rebuild and no new container at the next boot), and the
//! env file that the agent writes into their copy is never in the context
//! (docs/build-context.md).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tracing::{info, warn};

use super::{env_rel, fetch, RETRY_BUDGET};
use crate::config::WorkspaceConfig;

/// Where the pristine copy is.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("workspace-pristine")
}

/// Names the copy the pristine copy was made from (its identity).
fn marker(state_dir: &Path) -> PathBuf {
    state_dir.join("workspace-pristine.id")
}

/// Makes the pristine copy the materials of `identity`: copied from `from`
/// (a copy just fetched, which nobody has edited yet), or, when there is
/// none or it is another version and `from` is `None` (an agent upgraded
/// from a version without it, a removed copy), fetched again from the source.
pub async fn ensure(cfg: &WorkspaceConfig, state_dir: &Path, identity: &str, from: Option<&Path>) -> Result<PathBuf> {
    let dest = path(state_dir);
    if from.is_none() && dest.is_dir() && fs::read_to_string(marker(state_dir)).is_ok_and(|m| m == identity) {
        return Ok(dest);
    }
    let staged = state_dir.join("workspace-pristine.new");
    remove_if_present(&staged)?;
    match from {
        Some(src) => {
            let skip = env_rel(cfg).map(Path::to_path_buf);
            copy_tree(src, &staged, Path::new(""), skip.as_deref())
                .with_context(|| format!("copying {} to {}", src.display(), staged.display()))?;
        }
        None => {
            info!(path = %dest.display(), "fetching the materials again for the pristine copy the image is built from");
            let fetched = fetch::fetch(&cfg.source, &staged, RETRY_BUDGET).await?;
            if !identity.starts_with(&fetched) {
                warn!(fetched = %fetched, "the source now gives another version than the participant's copy; the image is built from it");
            }
            remove_if_present(&staged.join(".git"))?;
        }
    }
    remove_if_present(&dest)?;
    fs::rename(&staged, &dest).with_context(|| format!("moving {} to {}", staged.display(), dest.display()))?;
    crate::state::write_atomic(&marker(state_dir), identity.as_bytes(), 0o600)
        .context("writing the pristine copy's marker")?;
    Ok(dest)
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display())),
        Ok(_) => fs::remove_file(path).with_context(|| format!("removing {}", path.display())),
        Err(_) => Ok(()),
    }
}

/// Copies `src` to `dst` (files with their modes, links as links), without
/// the top-level `.git` and `skip` (relative to the top).
fn copy_tree(src: &Path, dst: &Path, rel: &Path, skip: Option<&Path>) -> std::io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        let here = rel.join(&name);
        if (rel.as_os_str().is_empty() && name == ".git") || skip == Some(here.as_path()) {
            continue;
        }
        let (from, to) = (entry.path(), dst.join(&name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&from, &to, &here, skip)?;
        } else if kind.is_symlink() {
            symlink(fs::read_link(&from)?, &to)?;
        } else if kind.is_file() {
            fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_leaves_out_git_and_the_env_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join(".git")).unwrap();
        fs::create_dir_all(src.join("sub/.git")).unwrap();
        fs::write(src.join(".git/config"), "x").unwrap();
        fs::write(src.join("sub/.git/keep"), "x").unwrap();
        fs::write(src.join("env"), "SECRET=1").unwrap();
        fs::write(src.join("sub/env"), "not the env file").unwrap();
        symlink("sub/env", src.join("link")).unwrap();
        let dst = dir.path().join("dst");
        copy_tree(&src, &dst, Path::new(""), Some(Path::new("env"))).unwrap();
        assert!(!dst.join(".git").exists() && !dst.join("env").exists());
        assert!(dst.join("sub/.git/keep").exists() && dst.join("sub/env").exists());
        assert_eq!(fs::read_link(dst.join("link")).unwrap(), Path::new("sub/env"));
    }
}
