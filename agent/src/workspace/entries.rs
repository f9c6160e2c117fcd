//! Reading a tarball, and the archive entry guard: lists its entries and
//! refuses the archive, before anything is written, if any entry would land
//! outside the destination (an absolute path, `..`, a link leading out, a
//! device).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use super::failure::FetchError;

/// Symbolic links followed while resolving one path before the kernel gives up (MAXSYMLINKS).
const MAX_SYMLINK_HOPS: u32 = 40;

/// One entry of an archive, as listed before anything is written.
pub(super) struct Listed {
    path: PathBuf,
    kind: EntryType,
    link: Option<PathBuf>,
    /// The content's size as tar writes it: a PAX `size` record's, else the
    /// header's (a sparse file's whole size).
    pub(super) size: u64,
}

/// The archive's reader: gzip by its magic bytes, else plain tar.
pub(super) fn open_archive(path: &Path) -> io::Result<Box<dyn Read>> {
    let mut file = fs::File::open(path)?;
    let mut magic = Vec::with_capacity(2);
    (&mut file).take(2).read_to_end(&mut magic)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(if magic == [0x1f, 0x8b] {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// The archive's entries, or `None` when it holds more than `max`.
pub(super) fn list_entries(archive: &Path, max: usize) -> io::Result<Option<Vec<Listed>>> {
    let mut reader = tar::Archive::new(open_archive(archive)?);
    let mut listed = Vec::new();
    for entry in reader.entries()? {
        if listed.len() == max {
            return Ok(None);
        }
        let entry = entry?;
        listed.push(Listed {
            path: bytes_path(&entry.path_bytes()),
            kind: entry.header().entry_type(),
            link: entry.link_name_bytes().map(|b| bytes_path(&b)),
            // Not the header's size field: a PAX `size` record overrides it,
            // and tar writes what the record says.
            size: entry.size(),
        });
    }
    Ok(Some(listed))
}

fn bytes_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// Refuses the archive unless every entry lands inside the destination: no absolute path, no `..`,
/// no device or fifo, no entry below one of the archive's symbolic links, every symbolic link resolving
/// inside the root (following the archive's other links, as the kernel would), every hard link to a
/// path inside the root that is not itself a symbolic link.
pub(super) fn check_entries(entries: &[Listed]) -> Result<(), FetchError> {
    let refuse = |e: &Listed, reason: String| FetchError::Unsafe { entry: e.path.display().to_string(), reason };
    let mut kept: Vec<(&Listed, PathBuf)> = Vec::new();
    let mut links: HashMap<PathBuf, &Path> = HashMap::new();
    let mut count: HashMap<PathBuf, usize> = HashMap::new();
    for e in entries {
        match e.kind {
            // Metadata for the entries that follow, never written.
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink => continue,
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link => {}
            EntryType::Char => return Err(refuse(e, "is a character device".into())),
            EntryType::Block => return Err(refuse(e, "is a block device".into())),
            EntryType::Fifo => return Err(refuse(e, "is a fifo (named pipe)".into())),
            other => {
                return Err(refuse(e, format!("has an unsupported entry type ({:?})", char::from(other.as_byte()))))
            }
        }
        let path = normal_path(&e.path).map_err(|reason| refuse(e, reason.into()))?;
        if path.as_os_str().is_empty() {
            if e.kind == EntryType::Directory {
                continue; // `./`, the root itself
            }
            return Err(refuse(e, "has an empty path".into()));
        }
        if matches!(e.kind, EntryType::Symlink | EntryType::Link) && e.link.is_none() {
            return Err(refuse(e, "is a link without a target".into()));
        }
        if e.kind == EntryType::Symlink {
            links.insert(path.clone(), e.link.as_deref().unwrap_or(Path::new("")));
        }
        *count.entry(path.clone()).or_default() += 1;
        kept.push((e, path));
    }
    for (e, path) in kept {
        if let Some(link) = path.ancestors().skip(1).find(|a| links.contains_key(*a)) {
            return Err(refuse(e, format!("is below the symbolic link {}", link.display())));
        }
        let target = e.link.as_deref().unwrap_or(Path::new(""));
        match e.kind {
            EntryType::Symlink => {
                if count[&path] > 1 {
                    return Err(refuse(e, "is a symbolic link, and another entry has the same path".into()));
                }
                if target.has_root() {
                    return Err(refuse(e, format!("is a symbolic link to the absolute path {}", target.display())));
                }
                let dir = path.parent().unwrap_or(Path::new(""));
                if !resolves_inside(&links, dir, target) {
                    return Err(refuse(
                        e,
                        format!("is a symbolic link to {}, which leads outside the archive", target.display()),
                    ));
                }
            }
            EntryType::Link => {
                if target.has_root() {
                    return Err(refuse(e, format!("is a hard link to the absolute path {}", target.display())));
                }
                check_hard_link(&links, target).map_err(|reason| refuse(e, reason))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// The path's normal components: `./` dropped, an absolute path or `..` refused.
fn normal_path(path: &Path) -> Result<PathBuf, &'static str> {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => return Err("has an absolute path"),
            Component::ParentDir => return Err("has a `..` component"),
            Component::CurDir => {}
            Component::Normal(name) => normal.push(name),
        }
    }
    Ok(normal)
}

/// A hard link's target is a path from the archive's root; link(2) follows symbolic links on the
/// way but not the last one, which would make the new name a symbolic link resolved from elsewhere.
fn check_hard_link(links: &HashMap<PathBuf, &Path>, target: &Path) -> Result<(), String> {
    let outside = || format!("is a hard link to {}, which leads outside the archive", target.display());
    let mut current = PathBuf::new();
    let mut components = target.components().peekable();
    while let Some(component) = components.next() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !current.pop() {
                    return Err(outside());
                }
            }
            Component::Normal(name) => {
                current.push(name);
                if links.contains_key(&current) {
                    let how = if components.peek().is_some() { "through" } else { "to" };
                    return Err(format!("is a hard link {how} the symbolic link {}", current.display()));
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    Ok(())
}

/// Whether `target`, read from the directory `dir` (both relative to the root), stays inside the root
/// when resolved as the kernel would, following the archive's symbolic links. A chain too long to
/// follow stays inside: the kernel refuses it (ELOOP) rather than go anywhere.
fn resolves_inside(links: &HashMap<PathBuf, &Path>, dir: &Path, target: &Path) -> bool {
    let mut current = dir.to_path_buf();
    let mut pending: Vec<Component> = target.components().rev().collect();
    let mut hops = 0;
    while let Some(component) = pending.pop() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !current.pop() {
                    return false;
                }
            }
            Component::Normal(name) => {
                current.push(name);
                if let Some(next) = links.get(&current) {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return true;
                    }
                    current.pop();
                    pending.extend(next.components().rev());
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::workspace::fetch::{fetch, Source};
    use crate::workspace::test_support::{destination, gzip, names, serve, sha256_hex, tar_bytes, Item, BUDGET};

    #[tokio::test]
    async fn unsafe_archives_are_refused_before_anything_is_written() {
        let cases: &[(&str, &[Item], &str, &str)] = &[
            (
                "parent",
                &[Item::File("ok.txt", b"ok", 0o644), Item::File("../evil", b"x", 0o644)],
                "../evil",
                "has a `..` component",
            ),
            ("parent inside", &[Item::File("a/../../evil", b"x", 0o644)], "a/../../evil", "has a `..` component"),
            (
                "absolute",
                &[Item::File("ok.txt", b"ok", 0o644), Item::File("/etc/evil", b"x", 0o644)],
                "/etc/evil",
                "has an absolute path",
            ),
            (
                "symlink escaping",
                &[Item::Dir("top/"), Item::Symlink("top/link", "../../outside")],
                "top/link",
                "is a symbolic link to ../../outside, which leads outside the archive",
            ),
            (
                "symlink absolute",
                &[Item::Symlink("passwd", "/etc/passwd")],
                "passwd",
                "is a symbolic link to the absolute path /etc/passwd",
            ),
            (
                "symlinks composed",
                &[Item::Symlink("b", "."), Item::Symlink("a", "b/..")],
                "a",
                "is a symbolic link to b/.., which leads outside the archive",
            ),
            (
                "written through a symlink",
                &[Item::Dir("sub/"), Item::Symlink("s", "sub"), Item::File("s/f", b"x", 0o644)],
                "s/f",
                "is below the symbolic link s",
            ),
            (
                "symlink declared twice",
                &[Item::Symlink("d", "sub"), Item::Dir("d/")],
                "d",
                "is a symbolic link, and another entry has the same path",
            ),
            (
                "hard link escaping",
                &[Item::HardLink("x", "../x")],
                "x",
                "is a hard link to ../x, which leads outside the archive",
            ),
            (
                "hard link absolute",
                &[Item::HardLink("shadow", "/etc/shadow")],
                "shadow",
                "is a hard link to the absolute path /etc/shadow",
            ),
            (
                "hard link to a symlink",
                &[Item::Dir("deep/"), Item::Symlink("deep/s", "../x"), Item::HardLink("h", "deep/s")],
                "h",
                "is a hard link to the symbolic link deep/s",
            ),
            (
                "hard link through a symlink",
                &[Item::Symlink("d", "."), Item::HardLink("h", "d/f")],
                "h",
                "is a hard link through the symbolic link d",
            ),
            ("fifo", &[Item::Special("pipe", EntryType::Fifo)], "pipe", "is a fifo (named pipe)"),
            ("char device", &[Item::Special("tty", EntryType::Char)], "tty", "is a character device"),
            ("block device", &[Item::Special("sda", EntryType::Block)], "sda", "is a block device"),
        ];
        for (name, items, entry, reason) in cases {
            let archive = gzip(&tar_bytes(items));
            let server = serve(vec![(200, archive.clone())]);
            let (tmp, dest) = destination();
            let source = Source::Tarball {
                url: format!("{}/m.tgz", server.base),
                sha256: sha256_hex(&archive),
                max_size: crate::workspace::fetch::DEFAULT_MAX_SIZE,
            };

            let err = fetch(&source, &dest, BUDGET).await.unwrap_err();

            match &err {
                FetchError::Unsafe { entry: e, reason: r } => {
                    assert_eq!((e.as_str(), r.as_str()), (*entry, *reason), "{name}")
                }
                other => panic!("{name}: {other:?}"),
            }
            assert_eq!(
                err.to_string(),
                format!("refusing the tarball: entry `{entry}` {reason}; nothing was written"),
                "{name}"
            );
            assert!(!dest.exists(), "{name}");
            assert_eq!(names(tmp.path()), ["home"], "{name}");
            assert_eq!(names(&tmp.path().join("home")), Vec::<String>::new(), "{name}");
        }
    }

    #[test]
    fn symbolic_links_that_stay_inside_are_accepted() {
        let entries = |items: &[(&str, EntryType, Option<&str>)]| -> Vec<Listed> {
            items
                .iter()
                .map(|(p, kind, link)| Listed { path: p.into(), kind: *kind, link: link.map(PathBuf::from), size: 0 })
                .collect()
        };
        let cases: &[&[(&str, EntryType, Option<&str>)]] = &[
            &[("a/b/up", EntryType::Symlink, Some("../../c"))],
            &[("self", EntryType::Symlink, Some("."))],
            &[("loop", EntryType::Symlink, Some("loop"))],
            &[("a", EntryType::Symlink, Some("b")), ("b", EntryType::Symlink, Some("a"))],
            &[("x/y", EntryType::Symlink, Some("./../x/./z")), ("h", EntryType::Link, Some("x/../x/z"))],
        ];
        for items in cases {
            assert!(check_entries(&entries(items)).is_ok(), "{:?}", items.iter().map(|i| i.0).collect::<Vec<_>>());
        }
    }
}
