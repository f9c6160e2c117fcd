//! Taking the organiser's fixes (`jupyter-agent workspace update`): a newer
//! version of the materials, staged beside the participant's copy
//! (`<path>.new`), merged into the copy file by file the way nbgitpuller
//! documents its automatic merging (docs/workspace-update.md has the table
//! and where each rule comes from).
//!
//! [`plan`] decides from three manifests (the version the copy was fetched
//! at, the copy now, the new version); [`apply`] carries the plan out. Every
//! file is written to a temporary file beside its place and renamed into it;
//! a file is replaced or removed only while its content is still the one
//! the organiser shipped (checked on the bytes the rename took out), so that
//! a participant's work is never overwritten nor deleted, even by a save
//! that lands in the middle of the merge.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::entry_hash;

/// What happens to one file, by the three versions of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// Changed upstream, untouched here: the new version takes its place.
    Update,
    /// New upstream, absent here: it appears.
    Add,
    /// Deleted here, present upstream: it comes back, in the new version.
    Restore,
    /// Changed here and upstream: the participant's version stays, the new
    /// one is written beside it.
    KeepBeside,
    /// Created here, and upstream adds the same name: the participant's file
    /// is renamed, the new one takes the name.
    RenameMine,
    /// Removed upstream, untouched here: removed.
    Remove,
    /// Removed upstream, changed here: kept.
    KeepRemoved,
    /// Changed here only: left as it is.
    Left,
}

/// The case of every file that an update concerns, by path; files nobody
/// changed, and files created here under a name upstream does not use, are
/// not in it.
pub fn plan(
    base: &BTreeMap<String, String>,
    here: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<(String, Case)> {
    let mut names: Vec<&String> = base.keys().chain(here.keys()).chain(new.keys()).collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let (b, h, n) = (base.get(name), here.get(name), new.get(name));
        let case = match (b, h, n) {
            // The same bytes here as upstream: nothing to do (an interrupted
            // update that already wrote it, or the same fix made twice).
            (_, Some(h), Some(n)) if h == n => continue,
            (Some(_), None, Some(_)) => Case::Restore,
            (None, None, Some(_)) => Case::Add,
            (None, Some(_), Some(_)) => Case::RenameMine,
            (Some(b), Some(h), Some(n)) if b == n => {
                if h == b {
                    continue;
                }
                Case::Left
            }
            (Some(b), Some(h), Some(_)) if h == b => Case::Update,
            (Some(_), Some(_), Some(_)) => Case::KeepBeside,
            (Some(b), Some(h), None) if h == b => Case::Remove,
            (Some(_), Some(_), None) => Case::KeepRemoved,
            (_, None, None) | (None, Some(_), None) => continue,
        };
        out.push((name.clone(), case));
    }
    out
}

pub use jupyter_proto::update::{Beside, Renamed, Updated};

/// `dir/stem<tag>.ext`: the name a new version beside `rel` (`tag` =
/// `.new-<date>`) or a renamed file of the participant's (`__<timestamp>`,
/// nbgitpuller's form) takes; the extension kept last so that Jupyter opens
/// it as what it is. The first such name that is free, or that already
/// holds `want` (an interrupted update's).
fn free_name(root: &Path, rel: &str, tag: &str, want: Option<&str>) -> io::Result<String> {
    let path = Path::new(rel);
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    for n in 1.. {
        let counter = if n == 1 { String::new() } else { format!("-{n}") };
        let name = format!("{stem}{tag}{counter}{ext}");
        let candidate = dir.map_or_else(|| name.clone(), |d| d.join(&name).to_string_lossy().into_owned());
        match entry_hash(&root.join(&candidate))? {
            None if fs::symlink_metadata(root.join(&candidate)).is_err() => return Ok(candidate),
            Some(h) if want == Some(h.as_str()) => return Ok(candidate),
            _ => {}
        }
    }
    unreachable!("an unbounded range")
}

fn beside_tag(now: DateTime<Utc>) -> String {
    format!(".new-{}", now.format("%Y-%m-%d"))
}

fn renamed_tag(now: DateTime<Utc>) -> String {
    format!("__{}", now.format("%Y%m%d%H%M%S"))
}

/// The plan as an [`Updated`], with the names the new versions beside and
/// the renamed files would take now: what `check` shows.
pub fn preview(
    root: &Path,
    plan: &[(String, Case)],
    new: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Updated> {
    let mut out = Updated::default();
    for (rel, case) in plan {
        match case {
            Case::Update => out.updated.push(rel.clone()),
            Case::Add => out.added.push(rel.clone()),
            Case::Restore => out.restored.push(rel.clone()),
            Case::KeepBeside => out.kept_beside.push(Beside {
                path: rel.clone(),
                new_version: free_name(root, rel, &beside_tag(now), new.get(rel).map(String::as_str))?,
            }),
            Case::RenameMine => {
                out.renamed.push(Renamed { path: rel.clone(), yours: free_name(root, rel, &renamed_tag(now), None)? })
            }
            Case::Remove => out.removed.push(rel.clone()),
            Case::KeepRemoved => out.kept_removed_upstream.push(rel.clone()),
            Case::Left => out.left.push(rel.clone()),
        }
    }
    Ok(out)
}

/// Carries `plan` out in the participant's copy at `root`, taking the new
/// versions from `new_root`; `base` and `here` are the manifests the plan
/// was made from. Removals first (a directory upstream may take a removed
/// file's name), then the rest in path order. A file whose content changes
/// while the merge runs is treated as the participant's: kept, with the new
/// version beside it.
pub fn apply(
    root: &Path,
    new_root: &Path,
    plan: &[(String, Case)],
    base: &BTreeMap<String, String>,
    here: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Updated> {
    let mut out = Updated::default();
    let (removals, rest): (Vec<_>, Vec<_>) = plan.iter().partition(|(_, c)| *c == Case::Remove);
    for (rel, case) in plan {
        if !matches!(case, Case::Left | Case::KeepRemoved) {
            within(root, rel)?;
        }
    }
    for (rel, _) in removals {
        let base_hash = &base[rel];
        if retire(root, rel, base_hash).with_context(|| format!("removing {rel}, which the new version removes"))? {
            out.removed.push(rel.clone());
        } else {
            out.kept_removed_upstream.push(rel.clone());
        }
    }
    for (rel, case) in rest {
        let (dst, src) = (root.join(rel), new_root.join(rel));
        let beside = |out: &mut Updated| -> Result<()> {
            let name = free_name(root, rel, &beside_tag(now), new.get(rel).map(String::as_str))?;
            if entry_hash(&root.join(&name))?.as_ref() != new.get(rel) {
                install(&src, &root.join(&name), None)
                    .with_context(|| format!("writing the new version of {rel} beside it, as {name}"))?;
            }
            out.kept_beside.push(Beside { path: rel.clone(), new_version: name });
            Ok(())
        };
        match case {
            Case::Update | Case::Add | Case::Restore => {
                let expect = if *case == Case::Update { here.get(rel).map(String::as_str) } else { None };
                if install(&src, &dst, expect).with_context(|| format!("writing the new version of {rel}"))? {
                    match case {
                        Case::Update => out.updated.push(rel.clone()),
                        Case::Add => out.added.push(rel.clone()),
                        _ => out.restored.push(rel.clone()),
                    }
                } else {
                    // Changed (or created) here while the merge ran.
                    beside(&mut out)?;
                }
            }
            Case::KeepBeside => beside(&mut out)?,
            Case::RenameMine => {
                let yours = free_name(root, rel, &renamed_tag(now), None)?;
                rename_no_replace(&dst, &root.join(&yours))
                    .with_context(|| format!("renaming your {rel} to {yours}, as the new version adds a {rel}"))?;
                out.renamed.push(Renamed { path: rel.clone(), yours });
                if !install(&src, &dst, None).with_context(|| format!("writing the new version of {rel}"))? {
                    beside(&mut out)?;
                }
            }
            Case::KeepRemoved => out.kept_removed_upstream.push(rel.clone()),
            Case::Left => out.left.push(rel.clone()),
            Case::Remove => unreachable!("removed above"),
        }
    }
    Ok(out)
}

/// Refuses a file whose directories in the copy are not all directories: a
/// link there (which code in the container can make) would have the merge,
/// run as root, write or remove outside the copy.
fn within(root: &Path, rel: &str) -> Result<()> {
    let mut dir = root.to_path_buf();
    let parents: Vec<_> = Path::new(rel).components().collect();
    for part in &parents[..parents.len().saturating_sub(1)] {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            _ => anyhow::bail!(
                "{} is not a directory (a link?): the new version's {rel} is not written through it; move it away and update again",
                dir.display()
            ),
        }
    }
    Ok(())
}

/// The temporary name beside `dst` that the merge writes to, then renames.
fn temporary(dst: &Path, what: &str) -> PathBuf {
    let name = dst.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dst.with_file_name(format!(".{name}.jupyter-agent-{what}-{}", std::process::id()))
}

/// Puts a copy of `src` (a file, with its mode, or a link) at `dst`, through
/// a temporary file beside it; owned like what it replaces, else like its
/// directory. With `expect`, `dst` is replaced only while its content is
/// that; without, only when `dst` does not exist. `false` when neither held
/// (the participant's file is left as it was).
fn install(src: &Path, dst: &Path, expect: Option<&str>) -> Result<bool> {
    let dir = dst.parent().expect("a file in the workspace");
    create_dirs(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = temporary(dst, "new");
    remove_if_present(&tmp)?;
    let meta = fs::symlink_metadata(src).with_context(|| format!("reading {}", src.display()))?;
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, &tmp)?;
    } else {
        fs::copy(src, &tmp).with_context(|| format!("copying {} to {}", src.display(), tmp.display()))?;
        fs::File::open(&tmp)?.sync_all()?;
    }
    let owner = fs::symlink_metadata(dst).or_else(|_| fs::metadata(dir)).ok();
    if let Some(owner) = owner {
        use std::os::unix::fs::MetadataExt;
        std::os::unix::fs::lchown(&tmp, Some(owner.uid()), Some(owner.gid()))
            .with_context(|| format!("giving {} its owner", tmp.display()))?;
    }
    let Some(expect) = expect else {
        return match rename_no_replace(&tmp, dst) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                remove_if_present(&tmp)?;
                Ok(false)
            }
            Err(e) => Err(e).with_context(|| format!("moving {} to {}", tmp.display(), dst.display())),
        };
    };
    match exchange(&tmp, dst) {
        Ok(()) => {
            // `tmp` now holds what was at `dst`: the organiser's, or a save that came meanwhile.
            if entry_hash(&tmp)?.as_deref() == Some(expect) {
                remove_if_present(&tmp)?;
                return Ok(true);
            }
            exchange(&tmp, dst).with_context(|| {
                format!("putting your {} back: it is at {} meanwhile", dst.display(), tmp.display())
            })?;
            remove_if_present(&tmp)?;
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && fs::symlink_metadata(dst).is_err() => {
            // Deleted meanwhile: the new version is written, as for a deleted file.
            match rename_no_replace(&tmp, dst) {
                Ok(()) => Ok(true),
                Err(_) => remove_if_present(&tmp).map(|()| false),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::Unsupported => {
            // A file system without an atomic exchange: look, then rename.
            if entry_hash(dst)?.as_deref() == Some(expect) {
                fs::rename(&tmp, dst).with_context(|| format!("moving {} to {}", tmp.display(), dst.display()))?;
                Ok(true)
            } else {
                remove_if_present(&tmp).map(|()| false)
            }
        }
        Err(e) => Err(e).with_context(|| format!("moving {} to {}", tmp.display(), dst.display())),
    }
}

/// Creates `dir` and its missing parents, each owned like the directory it
/// is made in (the participant's files and directories may be theirs).
fn create_dirs(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
    create_dirs(parent)?;
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        other => other?,
    }
    let owner = fs::metadata(parent)?;
    std::os::unix::fs::lchown(dir, Some(owner.uid()), Some(owner.gid()))
}

/// Removes `root/rel` when its content is still `base` (it is renamed
/// away first, and checked there, so that a save meanwhile stays), with
/// the directories that leaves empty; `false` when it is the participant's
/// (kept).
fn retire(root: &Path, rel: &str, base: &str) -> Result<bool> {
    let dst = root.join(rel);
    let tmp = temporary(&dst, "removed");
    remove_if_present(&tmp)?;
    match fs::rename(&dst, &tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e).with_context(|| format!("moving {} aside", dst.display())),
    }
    if entry_hash(&tmp)?.as_deref() != Some(base) {
        rename_no_replace(&tmp, &dst)
            .with_context(|| format!("putting your {} back: it is at {} meanwhile", dst.display(), tmp.display()))?;
        return Ok(false);
    }
    remove_if_present(&tmp)?;
    let mut dir = dst.parent();
    while let Some(d) = dir.filter(|d| *d != root && d.starts_with(root)) {
        if fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
    Ok(true)
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).with_context(|| format!("removing {}", path.display())),
        _ => Ok(()),
    }
}

/// A rename that fails (`AlreadyExists`) rather than replace `to`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    renameat2(from, to, nix::fcntl::RenameFlags::RENAME_NOREPLACE).or_else(|e| match e.kind() {
        io::ErrorKind::Unsupported => match fs::symlink_metadata(to) {
            Ok(_) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
            Err(_) => fs::rename(from, to),
        },
        _ => Err(e),
    })
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    match fs::symlink_metadata(to) {
        Ok(_) => Err(io::Error::from(io::ErrorKind::AlreadyExists)),
        Err(_) => fs::rename(from, to),
    }
}

/// Swaps `a` and `b` in one step (both must exist); `Unsupported` where the
/// file system cannot.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    renameat2(a, b, nix::fcntl::RenameFlags::RENAME_EXCHANGE)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(_: &Path, _: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn renameat2(from: &Path, to: &Path, flags: nix::fcntl::RenameFlags) -> io::Result<()> {
    use nix::errno::Errno;
    use nix::fcntl::AT_FDCWD;
    match nix::fcntl::renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL | Errno::ENOSYS) => Err(io::Error::from(io::ErrorKind::Unsupported)),
        Err(e) => Err(io::Error::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: &[(&str, &str)]) -> BTreeMap<String, String> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    /// The table, one row per case of nbgitpuller's documented automatic
    /// merging (docs/workspace-update.md), from three manifests.
    #[test]
    fn each_file_gets_its_case() {
        // (name, base, here, new, case; None: nothing to do)
        type Row = (&'static str, Option<&'static str>, Option<&'static str>, Option<&'static str>, Option<Case>);
        let rows: &[Row] = &[
            // nbgitpuller case 1: changed upstream, not here: updated.
            ("untouched-updated", Some("1"), Some("1"), Some("2"), Some(Case::Update)),
            // Case 1 too: a new upstream file appears.
            ("new-upstream", None, None, Some("1"), Some(Case::Add)),
            // Case 4: deleted here, present upstream: back (changed upstream or not).
            ("deleted-here", Some("1"), None, Some("2"), Some(Case::Restore)),
            ("deleted-here-same-upstream", Some("1"), None, Some("1"), Some(Case::Restore)),
            // Changed here only: left.
            ("edited-here", Some("1"), Some("9"), Some("1"), Some(Case::Left)),
            // Case 3 (2 too: no line merge here): both changed: yours kept, the new beside.
            ("edited-both", Some("1"), Some("9"), Some("2"), Some(Case::KeepBeside)),
            // Case 5: created here, upstream adds the same name: yours renamed.
            ("created-both", None, Some("9"), Some("2"), Some(Case::RenameMine)),
            // Removed upstream, untouched here: removed, as git's merge does.
            ("removed-upstream", Some("1"), Some("1"), None, Some(Case::Remove)),
            // Removed upstream, changed here: kept (nbgitpuller's modify/delete rule).
            ("removed-upstream-edited-here", Some("1"), Some("9"), None, Some(Case::KeepRemoved)),
            // Nothing to do.
            ("nobody-changed", Some("1"), Some("1"), Some("1"), None),
            ("same-fix-both", Some("1"), Some("2"), Some("2"), None),
            ("created-here", None, Some("9"), None, None),
            ("gone-both", Some("1"), None, None, None),
            ("created-both-same", None, Some("2"), Some("2"), None),
        ];
        let pick = |col: fn(&Row) -> Option<&'static str>| {
            m(&rows.iter().filter_map(|r| col(r).map(|v| (r.0, v))).collect::<Vec<_>>())
        };
        let (base, here, new) = (pick(|r| r.1), pick(|r| r.2), pick(|r| r.3));
        let got: BTreeMap<String, Case> = plan(&base, &here, &new).into_iter().collect();
        for (name, .., want) in rows {
            assert_eq!(got.get(*name).copied(), *want, "{name}");
        }
    }

    /// The participant's container user owns their copy: what the merge
    /// writes is theirs too (a file like the one it replaces, a new one and
    /// its new directories like the directory they are made in).
    #[test]
    fn new_files_and_directories_are_owned_like_their_place() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let (root, new_root) = (dir.path().join("w"), dir.path().join("n"));
        fs::create_dir_all(new_root.join("sub/deeper")).unwrap();
        fs::write(new_root.join("sub/deeper/x.txt"), "new").unwrap();
        fs::write(new_root.join("a.txt"), "new").unwrap();
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("a.txt"), "old").unwrap();
        std::os::unix::fs::chown(&root, Some(4242), Some(4343)).unwrap();
        std::os::unix::fs::chown(root.join("a.txt"), Some(4444), Some(4545)).unwrap();
        let hash = |s: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()));
        assert!(install(&new_root.join("sub/deeper/x.txt"), &root.join("sub/deeper/x.txt"), None).unwrap());
        assert!(install(&new_root.join("a.txt"), &root.join("a.txt"), Some(&hash("old"))).unwrap());
        for (rel, owner) in [
            ("sub", (4242, 4343)),
            ("sub/deeper", (4242, 4343)),
            ("sub/deeper/x.txt", (4242, 4343)),
            ("a.txt", (4444, 4545)),
        ] {
            let meta = fs::metadata(root.join(rel)).unwrap();
            assert_eq!((meta.uid(), meta.gid()), owner, "{rel}");
        }
    }

    /// Code in the container can replace a directory of the copy with a
    /// link to anywhere on the host: the merge, run as root, does not write
    /// through it.
    #[test]
    fn nothing_is_written_through_a_link_in_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (root, new_root, outside) = (dir.path().join("w"), dir.path().join("n"), dir.path().join("outside"));
        fs::create_dir_all(new_root.join("sub")).unwrap();
        fs::write(new_root.join("sub/x.txt"), "new").unwrap();
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("sub")).unwrap();
        let new = m(&[("sub/x.txt", "h")]);
        let plan = plan(&BTreeMap::new(), &BTreeMap::new(), &new);
        assert_eq!(plan, [("sub/x.txt".to_string(), Case::Add)]);
        let err = apply(&root, &new_root, &plan, &BTreeMap::new(), &BTreeMap::new(), &new, Utc::now()).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!("{} is not a directory (a link?): the new version's sub/x.txt is not written through it; move it away and update again", root.join("sub").display())
        );
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn names_beside_keep_the_extension() {
        let dir = tempfile::tempdir().unwrap();
        let now = DateTime::parse_from_rfc3339("2026-12-07T09:30:05Z").unwrap().with_timezone(&Utc);
        let tag = beside_tag(now);
        assert_eq!(free_name(dir.path(), "nb/intro.ipynb", &tag, None).unwrap(), "nb/intro.new-2026-12-07.ipynb");
        assert_eq!(free_name(dir.path(), "Makefile", &tag, None).unwrap(), "Makefile.new-2026-12-07");
        assert_eq!(free_name(dir.path(), "a.ipynb", &renamed_tag(now), None).unwrap(), "a__20261207093005.ipynb");
        fs::write(dir.path().join("a.new-2026-12-07.ipynb"), "other").unwrap();
        assert_eq!(free_name(dir.path(), "a.ipynb", &tag, None).unwrap(), "a.new-2026-12-07-2.ipynb");
        let same = super::super::entry_hash(&dir.path().join("a.new-2026-12-07.ipynb")).unwrap().unwrap();
        assert_eq!(free_name(dir.path(), "a.ipynb", &tag, Some(&same)).unwrap(), "a.new-2026-12-07.ipynb");
    }

    /// A save that lands between the look and the write is the
    /// participant's: kept, never replaced.
    #[test]
    fn a_file_changed_meanwhile_is_not_replaced_nor_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (root, new_root) = (dir.path().join("w"), dir.path().join("n"));
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&new_root).unwrap();
        fs::write(root.join("a.txt"), "saved meanwhile").unwrap();
        fs::write(new_root.join("a.txt"), "new").unwrap();
        fs::write(root.join("b.txt"), "saved meanwhile").unwrap();
        let hash = |s: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(s.as_bytes()));
        assert!(!install(&new_root.join("a.txt"), &root.join("a.txt"), Some(&hash("old"))).unwrap());
        assert_eq!(fs::read_to_string(root.join("a.txt")).unwrap(), "saved meanwhile");
        assert!(!retire(&root, "b.txt", &hash("old")).unwrap());
        assert_eq!(fs::read_to_string(root.join("b.txt")).unwrap(), "saved meanwhile");
        assert!(install(&new_root.join("a.txt"), &root.join("a.txt"), Some(&hash("saved meanwhile"))).unwrap());
        assert_eq!(fs::read_to_string(root.join("a.txt")).unwrap(), "new");
        let mut left: Vec<_> = fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, ["a.txt", "b.txt"], "no temporary file left");
    }
}
