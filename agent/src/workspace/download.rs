//! "Download my work": the participant's workspace (or a copy a reset moved
//! aside) as a zip, streamed to any writer (docs/configuration.md,
//! `[workspace] download_exclude`; docs/agent.md, `workspace download`).
//!
//! The archive is written front to back and never seeked (the zip format's
//! data descriptors after each file), so a pipe or an HTTP body takes it;
//! each file is read in chunks, so a workspace of any size costs a bounded
//! amount of memory. Zip64's end records are written past 65 535 entries;
//! an archive past 4 GiB is refused ([`MAX_ARCHIVE`]).
//!
//! The walk never follows a symbolic link: every directory and file is
//! opened relative to its parent's descriptor with `O_NOFOLLOW`, so a link
//! the participant made to a host file (`/etc/shadow`), or a directory
//! swapped for such a link during the walk, is never read; a link is
//! archived as a link (its target's text, as `zip -y` does). The env file
//! (`[workspace] env_file`, which holds the access keys) and the top-level
//! `.git` (the agent's clone of the materials, its history the organiser's,
//! often large) are always left out.

use std::cell::Cell;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use serde::Serialize;
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

pub use crate::config::workspace::Exclude;
use crate::config::{Config, WorkspaceConfig};

/// Bytes read from a file at a time.
const CHUNK: usize = 256 * 1024;

/// Files from this size on are stored, not deflated: they are data sets,
/// usually compressed already, and deflating gigabytes would keep the
/// participant waiting minutes for a few percent.
const STORE_FROM: u64 = 64 << 20;

/// File name endings whose content is compressed already: stored as is.
const COMPRESSED: &[&str] = &[
    "7z", "avif", "bz2", "docx", "epub", "flac", "gif", "gz", "h5", "jar", "jpeg", "jpg", "lz4", "mkv", "mov", "mp3",
    "mp4", "npz", "ogg", "parquet", "pdf", "png", "pptx", "rar", "tgz", "webm", "webp", "whl", "xlsx", "xz", "zip",
    "zst",
];

/// The most the archive may hold: a little under the 4 GiB the classic zip
/// records address. zip 7.3 (the last release that builds on Rust 1.85)
/// writes Zip64 records that readers reject for entries past 4 GiB (an
/// extra field listing all three sizes where the spec wants only those the
/// header leaves out, written twice), so a larger archive is refused,
/// before the entry that would pass the limit (docs/configuration.md).
/// The margin leaves room for the central directory.
pub const MAX_ARCHIVE: u64 = u32::MAX as u64 - (64 << 20);

/// Directories deeper than this are left out (and listed as skipped): each
/// level holds one open descriptor.
const MAX_DEPTH: usize = 256;

impl Exclude {
    /// What a download of the configured workspace, or of one of its
    /// backups, leaves out: `[workspace] download_exclude`, `.git`, and the
    /// env files (`[workspace]`'s and `[container]`'s, which hold the access
    /// keys) that lie inside the workspace.
    pub fn for_workspace(cfg: &Config) -> Result<Exclude> {
        let mut exclude = Exclude::new(&cfg.download_exclude)
            .map_err(|why| anyhow::anyhow!("[workspace] download_exclude: {why}"))?;
        if let Some(w) = &cfg.workspace {
            for env_file in [&w.env_file, &cfg.container.env_file].into_iter().flatten() {
                if let Ok(rel) = env_file.strip_prefix(&w.path) {
                    exclude.also(rel.to_string_lossy().into_owned());
                }
            }
        }
        Ok(exclude)
    }
}

/// What [`write_zip`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub files: u64,
    pub directories: u64,
    /// Symbolic links, archived as links (never followed).
    pub links: u64,
    /// The files' content, uncompressed.
    pub bytes: u64,
    /// The archive's size.
    pub archive_bytes: u64,
    /// Entries left out by [`Exclude`] (a directory counts once).
    pub excluded: u64,
    /// Entries that could not be archived, and why (sockets, devices,
    /// names that are not UTF-8, ...).
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Relative to the root (not UTF-8 parts shown as U+FFFD).
    pub path: String,
    pub why: String,
}

/// Streams the tree below `root` as a zip into `out`, never seeking and
/// never holding a file in memory; entries in name order, names relative
/// to `root` in UTF-8. `out` is flushed, not closed. An error (reading a
/// file, writing `out`) leaves a truncated archive behind: the caller
/// throws it away.
pub fn write_zip(root: &Path, exclude: &Exclude, out: impl Write + Send) -> Result<Summary> {
    let dir = File::open(root).with_context(|| format!("opening {}", root.display()))?;
    if !dir.metadata()?.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    let stopped = Rc::new(Cell::new(false));
    let written = Rc::new(Cell::new(0u64));
    let mut walk = Walk {
        zip: zip::ZipWriter::new_stream(Counting { inner: out, written: written.clone(), stopped: stopped.clone() }),
        exclude,
        summary: Summary::default(),
        buf: vec![0; CHUNK],
        written: written.clone(),
    };
    if let Err(e) = walk.dir(OwnedFd::from(dir), "", 0) {
        // The writer finishes the archive when it is dropped: nothing more
        // may reach `out` after the error.
        stopped.set(true);
        return Err(e).with_context(|| format!("archiving {}", root.display()));
    }
    let mut summary = walk.summary;
    let mut counting = walk.zip.finish().context("writing the zip's central directory")?.into_inner();
    counting.flush().context("writing the zip")?;
    summary.archive_bytes = counting.written.get();
    Ok(summary)
}

struct Walk<'a, W: Write> {
    zip: zip::ZipWriter<zip::write::StreamWriter<Counting<W>>>,
    exclude: &'a Exclude,
    summary: Summary,
    buf: Vec<u8>,
    /// What has reached the output so far.
    written: Rc<Cell<u64>>,
}

impl<W: Write> Walk<'_, W> {
    /// Archives the entries of the open directory `dir`, whose path is `rel`
    /// (`""` for the root, else ending in `/`).
    fn dir(&mut self, dir: OwnedFd, rel: &str, depth: usize) -> Result<()> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut listing = nix::dir::Dir::openat(
            dir.as_fd(),
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("listing {}", shown(rel)))?;
        for entry in listing.iter() {
            let entry = entry.with_context(|| format!("listing {}", shown(rel)))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        drop(listing);
        names.sort();
        for raw in names {
            let name = OsStr::from_bytes(&raw);
            let Ok(utf8) = std::str::from_utf8(&raw) else {
                self.skip(format!("{rel}{}", name.to_string_lossy()), "its name is not UTF-8");
                continue;
            };
            let path = format!("{rel}{utf8}");
            if self.exclude.matches(&path) {
                self.summary.excluded += 1;
                continue;
            }
            let stat = match nix::sys::stat::fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(s) => s,
                // Removed since the listing: nothing to archive.
                Err(nix::errno::Errno::ENOENT) => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {path}")),
            };
            let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
            let options = SimpleFileOptions::default()
                .last_modified_time(zip_time(stat.st_mtime))
                .unix_permissions(stat.st_mode & 0o7777);
            match kind {
                SFlag::S_IFDIR if depth + 1 >= MAX_DEPTH => {
                    self.skip(path, &format!("more than {MAX_DEPTH} directories deep"))
                }
                SFlag::S_IFDIR => {
                    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                    let sub = match nix::fcntl::openat(dir.as_fd(), name, flags, Mode::empty()) {
                        Ok(fd) => fd,
                        Err(nix::errno::Errno::ENOENT) => continue,
                        // Replaced by a link or a file since it was looked at.
                        Err(nix::errno::Errno::ELOOP | nix::errno::Errno::ENOTDIR) => {
                            self.skip(path, "changed while it was archived");
                            continue;
                        }
                        Err(e) => return Err(e).with_context(|| format!("opening {path}")),
                    };
                    let path = format!("{path}/");
                    // Not `add_directory`: zip 7.3's streaming writer marks a directory
                    // entry as followed by a data descriptor and writes none (zip2 issue
                    // #971, fixed in releases that need Rust 1.88). An empty entry whose
                    // name ends in `/` is a directory to every reader, with its descriptor.
                    self.zip.start_file(path.as_str(), options.compression_method(CompressionMethod::Stored))?;
                    self.summary.directories += 1;
                    self.dir(sub, &path, depth + 1)?;
                }
                SFlag::S_IFLNK => {
                    let target = match nix::fcntl::readlinkat(dir.as_fd(), name) {
                        Ok(t) => t,
                        Err(nix::errno::Errno::ENOENT) => continue,
                        Err(e) => return Err(e).with_context(|| format!("reading the link {path}")),
                    };
                    let Some(target) = target.to_str() else {
                        self.skip(path, "its target is not UTF-8");
                        continue;
                    };
                    self.zip.add_symlink(path.as_str(), target, options)?;
                    self.summary.links += 1;
                }
                SFlag::S_IFREG => self.file(&dir, name, path, &stat, options)?,
                _ => self.skip(path, "not a file, a directory or a link (a socket, a pipe or a device)"),
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: String,
        stat: &FileStat,
        options: SimpleFileOptions,
    ) -> Result<()> {
        // O_NONBLOCK: a file swapped for a named pipe must not hang the walk.
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = match nix::fcntl::openat(dir.as_fd(), name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(nix::errno::Errno::ELOOP) => {
                self.skip(path, "changed while it was archived");
                return Ok(());
            }
            Err(e) => return Err(e).with_context(|| format!("opening {path}")),
        };
        let now = nix::sys::stat::fstat(fd.as_fd()).with_context(|| format!("reading {path}"))?;
        if SFlag::from_bits_truncate(now.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
            self.skip(path, "changed while it was archived");
            return Ok(());
        }
        let size = u64::try_from(now.st_size.max(stat.st_size)).unwrap_or(0);
        let method = compression(&path, size);
        // Header, content (deflate adds at most a few bytes in a thousand) and descriptor.
        let end = self.written.get() + 128 + path.len() as u64 + size + size / 512;
        if end > MAX_ARCHIVE {
            bail!(
                "{path}: the archive would pass {} MiB, the most a download may hold; leave large data out with [workspace] download_exclude",
                MAX_ARCHIVE >> 20
            );
        }
        self.zip.start_file(path.as_str(), options.compression_method(method))?;
        let mut file = File::from(fd);
        loop {
            let n = match file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {path}")),
            };
            self.zip.write_all(&self.buf[..n]).context("writing the zip")?;
            self.summary.bytes += n as u64;
        }
        self.summary.files += 1;
        Ok(())
    }

    fn skip(&mut self, path: String, why: &str) {
        self.summary.skipped.push(Skipped { path, why: why.to_string() });
    }
}

fn shown(rel: &str) -> &str {
    match rel {
        "" => "the root",
        r => r,
    }
}

/// Deflate, except for content compressed already and large files.
fn compression(path: &str, size: u64) -> CompressionMethod {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    if size >= STORE_FROM || COMPRESSED.contains(&ext.as_str()) || size == 0 {
        CompressionMethod::Stored
    } else {
        CompressionMethod::Deflated
    }
}

/// A modification time as zip records it (UTC; 1980 to 2107, else the
/// format's earliest).
fn zip_time(secs: i64) -> zip::DateTime {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .and_then(|t| {
            let year = u16::try_from(t.year()).ok()?;
            zip::DateTime::from_date_and_time(
                year,
                t.month() as u8,
                t.day() as u8,
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
            )
            .ok()
        })
        .unwrap_or_default()
}

/// Counts what goes through, for [`Summary::archive_bytes`]; once
/// `stopped`, swallows it.
struct Counting<W> {
    inner: W,
    written: Rc<Cell<u64>>,
    stopped: Rc<Cell<bool>>,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stopped.get() {
            return Ok(buf.len());
        }
        let n = self.inner.write(buf)?;
        self.written.set(self.written.get() + n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The archive's file name: `<directory name>-<YYYY-MM-DD>.zip`, the name
/// reduced to letters, digits, `.`, `-` and `_` (it goes into a
/// `Content-Disposition` header and onto any file system).
pub fn file_name(root: &Path, date: NaiveDate) -> String {
    let dir = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut safe: String =
        dir.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if safe.trim_matches(['.', '_']).is_empty() {
        safe = "workspace".into();
    }
    format!("{safe}-{}.zip", date.format("%Y-%m-%d"))
}

/// A copy of the workspace that `workspace reset` moved aside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backup {
    /// Its directory name, `<workspace>.bak-<UTC timestamp>[-n]`: what `--backup` takes.
    pub name: String,
    pub path: PathBuf,
    /// When the reset moved it aside (from its name).
    pub taken_at: Option<DateTime<Utc>>,
    /// Its files' bytes (links not followed).
    pub size: u64,
}

/// The copies `workspace reset` moved aside beside `cfg.path`
/// (`<path>.bak-<timestamp>`), newest first.
pub fn backups(cfg: &WorkspaceConfig) -> Result<Vec<Backup>> {
    let (Some(parent), Some(base)) = (cfg.path.parent(), cfg.path.file_name()) else { return Ok(Vec::new()) };
    let prefix = format!("{}.bak-", base.to_string_lossy());
    let entries = match std::fs::read_dir(parent) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", parent.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", parent.display()))?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        let Some(stamp) = name.strip_prefix(&prefix) else { continue };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let stamp = stamp.split('-').next().unwrap_or_default();
        let taken_at = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").ok().map(|t| t.and_utc());
        out.push(Backup { size: tree_size(&entry.path()), name, path: entry.path(), taken_at });
    }
    out.sort_by(|a, b| (b.taken_at, &b.name).cmp(&(a.taken_at, &a.name)));
    Ok(out)
}

/// The bytes of the regular files below `dir`, links not followed.
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

/// The backup called `name` (its directory name, or only the part after
/// `.bak-`), among [`backups`].
pub fn find_backup(cfg: &WorkspaceConfig, name: &str) -> Result<Option<Backup>> {
    Ok(backups(cfg)?
        .into_iter()
        .find(|b| b.name == name || b.name.rsplit_once(".bak-").is_some_and(|(_, s)| s == name)))
}

#[cfg(test)]
mod tests;
