//! `collect`: every ready participant's work through their own "download my
//! work" (`GET <front>/_agent/download` with their token in the header),
//! one archive per participant, and an index.
//!
//! The index, `DIR/index.csv` (RFC 4180, LF line ends):
//! `participant,file,size,sha256,time,error`: the archive's name in DIR,
//! its size in bytes and SHA-256 (hex), when it was written (UTC,
//! RFC 3339); or, for a participant not collected, an empty file, size and
//! sha256, when it was tried, and why not. A participant listed with an
//! archive whose size and SHA-256 still match the file in DIR is complete:
//! a later run skips them (resumable), unless asked to collect again.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use sha2::{Digest, Sha256};

use crate::fronts::{self, authorization, reason};
use crate::input::State;
use crate::show::csv_field;
use crate::snapshot::Seat;
use crate::text::{self, one_line, pad, scrub};

/// The index's name in DIR.
pub const INDEX: &str = "index.csv";
/// The index's header.
pub const HEADER: &str = "participant,file,size,sha256,time,error";

/// A connection to a front is given this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A download that sends nothing for this long fails.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// One line of the index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    pub participant: String,
    /// The archive's name in DIR; empty when not collected.
    pub file: String,
    pub size: Option<u64>,
    pub sha256: String,
    pub time: String,
    /// Why not collected; empty when collected.
    pub error: String,
}

impl Entry {
    fn collected(&self) -> bool {
        self.error.is_empty() && !self.file.is_empty() && self.size.is_some() && self.sha256.len() == 64
    }
}

/// The index as text: the header, then a line per entry.
pub fn index_csv(entries: &[Entry]) -> String {
    let mut out = format!("{HEADER}\n");
    for e in entries {
        let size = e.size.map(|s| s.to_string()).unwrap_or_default();
        let fields = [e.participant.as_str(), &e.file, &size, &e.sha256, &e.time, &e.error];
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// The fields of one CSV text (RFC 4180: quoted fields, doubled quotes,
/// line breaks inside quotes).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

/// Reads an index; lines that do not read as one are dropped (their
/// participants are then collected again).
pub fn parse_index(text: &str) -> Vec<Entry> {
    let mut records = csv_records(text).into_iter();
    if records.next().map(|h| h.join(",")) != Some(HEADER.to_string()) {
        return Vec::new();
    }
    records
        .filter(|r| r.len() == 6)
        .map(|r| {
            // A field csv_field guarded against spreadsheets lost nothing
            // but gained a leading quote: the names are compared as written.
            Entry {
                participant: r[0].clone(),
                file: r[1].clone(),
                size: r[2].parse().ok(),
                sha256: r[3].clone(),
                time: r[4].clone(),
                error: r[5].clone(),
            }
        })
        .collect()
}

/// How a participant's name is written in the index (as [`csv_field`]
/// guards it, read back).
fn as_indexed(name: &str) -> String {
    parse_index(&index_csv(&[Entry { participant: name.to_string(), ..Entry::default() }]))
        .pop()
        .map(|e| e.participant)
        .unwrap_or_default()
}

/// The archive's name for a participant: `<name>.zip` when the name is
/// safe as a file name (letters, digits, `-`, `_`, `.`, not starting with
/// a dot, at most 64 bytes), else the name with every other character
/// made `_` and a short hash of it added, so that two names never share a
/// file.
pub fn file_name(participant: &str) -> String {
    let safe = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
    let fine = !participant.is_empty()
        && participant.len() <= 64
        && participant.chars().all(safe)
        && participant.chars().next().is_some_and(char::is_alphanumeric)
        && !participant.contains("..");
    if fine {
        return format!("{participant}.zip");
    }
    let mut cleaned: String = participant
        .chars()
        .take(40)
        .map(|c| if c.is_alphanumeric() || matches!(c, '-' | '_') { c } else { '_' })
        .collect();
    if !cleaned.chars().next().is_some_and(char::is_alphanumeric) {
        cleaned.insert(0, 'p');
    }
    let hash = hex::encode(&Sha256::digest(participant.as_bytes())[..4]);
    format!("{cleaned}-{hash}.zip")
}

/// The SHA-256 (hex) and size of a file.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// The entry of `participant` in `index` whose archive is complete in
/// `dir` (listed as collected, the file there with that size and
/// SHA-256), if any.
pub fn complete<'a>(dir: &Path, index: &'a [Entry], participant: &str) -> Option<&'a Entry> {
    let indexed = as_indexed(participant);
    let entry = index.iter().rev().find(|e| e.participant == indexed)?;
    if !entry.collected() || entry.file != file_name(participant) {
        return None;
    }
    let (sha, size) = hash_file(&dir.join(&entry.file)).ok()?;
    (sha == entry.sha256 && Some(size) == entry.size).then_some(entry)
}

/// What became of one participant in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Collected(Entry),
    /// Already complete in DIR.
    Skipped(Entry),
    /// Not collected: why.
    Missed(Entry),
}

impl Outcome {
    pub fn entry(&self) -> &Entry {
        match self {
            Outcome::Collected(e) | Outcome::Skipped(e) | Outcome::Missed(e) => e,
        }
    }
}

/// Now, UTC, RFC 3339 to the second.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Does the tail of a file end a zip (its end-of-central-directory record)?
fn ends_a_zip(tail: &[u8]) -> bool {
    tail.windows(4).any(|w| w == b"PK\x05\x06")
}

/// Downloads `seat`'s work into `dir/<file>` (through `<file>.part`).
async fn download(client: &reqwest::Client, seat: &Seat, dir: &Path) -> Result<Entry, String> {
    let token = seat.token().ok_or("no token in the login URL")?;
    let front = seat.front.as_deref().ok_or("no address known for the instance")?;
    let auth = authorization(token).ok_or("the login URL's token is not a valid header value")?;
    let url = format!("{}{}", front.trim_end_matches('/'), fronts::DOWNLOAD_PATH);
    let mut response = client.get(&url).header("Authorization", auth).send().await.map_err(|e| reason(&e))?;
    let status = response.status().as_u16();
    match status {
        200 => {}
        401 | 403 => return Err(format!("the front refused the token (HTTP {status})")),
        404 => {
            return Err("the front has no download page (HTTP 404: an agent without the pages, or its token \
                           is not known yet)"
                .into())
        }
        503 => return Err("the instance is not ready (HTTP 503)".into()),
        _ => return Err(format!("HTTP {status} instead of the archive")),
    }
    let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if !kind.starts_with("application/zip") {
        return Err(format!("answered {} instead of a zip", one_line(&kind)));
    }
    let file = file_name(&seat.name);
    let target = dir.join(&file);
    let part = dir.join(format!("{file}.part"));
    let written = async {
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&part)
            .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut tail: Vec<u8> = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                    tail.extend_from_slice(&chunk);
                    if tail.len() > 4096 {
                        tail.drain(..tail.len() - 1024);
                    }
                    out.write_all(&chunk).map_err(|e| format!("cannot write {}: {e}", part.display()))?;
                }
                Ok(None) => break,
                Err(e) => return Err(format!("the download broke off after {size} bytes: {}", reason(&e))),
            }
        }
        if !ends_a_zip(&tail[tail.len().saturating_sub(1024)..]) {
            return Err(format!("the archive is cut short ({size} bytes, no end of a zip)"));
        }
        out.sync_all().map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        Ok((hex::encode(hasher.finalize()), size))
    }
    .await;
    let (sha256, size) = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    std::fs::rename(&part, &target).map_err(|e| format!("cannot rename {}: {e}", part.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Entry { participant: seat.name.clone(), file, size: Some(size), sha256, time: now(), error: String::new() })
}

/// Why a seat is not collected before anything is asked, if so.
fn not_ready(seat: &Seat) -> Option<String> {
    match &seat.state {
        State::Ready { .. } if seat.front.is_none() => Some("no address known for the instance".into()),
        State::Ready { .. } => None,
        State::Waiting => Some("not ready: no signal yet".into()),
        State::Failed { step, reason } => Some(one_line(&scrub(&match step {
            Some(step) => format!("not ready: the setup failed at {step}: {reason}"),
            None => format!("not ready: the setup failed: {reason}"),
        }))),
    }
}

/// The run's settings.
pub struct Options<'a> {
    pub dir: &'a Path,
    pub parallel: usize,
    /// Collect even those already complete in DIR.
    pub again: bool,
    /// Told of each participant as they are done.
    pub progress: &'a (dyn Fn(&Outcome) + Sync),
}

/// Collects every seat into `options.dir`, rewriting the index after each
/// (an interrupted run keeps what it did). The outcomes in the seats' order.
/// `Err` only when the index cannot be written.
pub async fn collect(client: &reqwest::Client, seats: &[Seat], options: &Options<'_>) -> Result<Vec<Outcome>, String> {
    let dir = options.dir;
    let index_path = dir.join(INDEX);
    let old = std::fs::read_to_string(&index_path).map(|t| parse_index(&t)).unwrap_or_default();
    // This run's entries by participant, over the old ones (kept for
    // participants not in this run).
    let index: Mutex<(Vec<Entry>, BTreeMap<String, Entry>)> = Mutex::new((old.clone(), BTreeMap::new()));
    let write_index = |state: &(Vec<Entry>, BTreeMap<String, Entry>)| -> Result<(), String> {
        let (old, now) = state;
        let names: std::collections::HashSet<String> = now.keys().map(|n| as_indexed(n)).collect();
        let mut entries: Vec<Entry> = old.iter().filter(|e| !names.contains(&e.participant)).cloned().collect();
        entries.extend(now.values().cloned());
        jupyter_proto::fs::write_atomic(&index_path, index_csv(&entries).as_bytes(), 0o600)
            .map_err(|e| format!("cannot write {}: {e}", index_path.display()))
    };
    let outcomes: Vec<(usize, Result<Outcome, String>)> = stream::iter(seats.iter().enumerate())
        .map(|(i, seat)| {
            let (old, index, write_index) = (&old, &index, &write_index);
            async move {
                let outcome = if let Some(e) = complete(dir, old, &seat.name).filter(|_| !options.again) {
                    Outcome::Skipped(e.clone())
                } else if let Some(why) = not_ready(seat) {
                    Outcome::Missed(Entry {
                        participant: seat.name.clone(),
                        time: now(),
                        error: why,
                        ..Entry::default()
                    })
                } else {
                    match download(client, seat, dir).await {
                        Ok(e) => Outcome::Collected(e),
                        Err(why) => Outcome::Missed(Entry {
                            participant: seat.name.clone(),
                            time: now(),
                            error: one_line(&scrub(&why)),
                            ..Entry::default()
                        }),
                    }
                };
                let written = {
                    let mut state = index.lock().expect("not poisoned");
                    state.1.insert(seat.name.clone(), outcome.entry().clone());
                    write_index(&state)
                };
                (options.progress)(&outcome);
                (i, written.map(|()| outcome))
            }
        })
        .buffer_unordered(options.parallel.max(1))
        .collect()
        .await;
    let mut sorted: Vec<Option<Outcome>> = vec![None; seats.len()];
    for (i, o) in outcomes {
        sorted[i] = Some(o?);
    }
    Ok(sorted.into_iter().map(|o| o.expect("every seat has an outcome")).collect())
}

/// The outcome for the organiser: a line per participant (`new`, `had`,
/// or `MISSED` and why), then the counts.
pub fn table(outcomes: &[Outcome], dir: &Path) -> String {
    let names: Vec<String> = outcomes.iter().map(|o| one_line(&o.entry().participant)).collect();
    let width = names.iter().map(|n| text::width(n)).chain(["PARTICIPANT".len()]).max().unwrap_or(0);
    let mut out = String::new();
    let mut line = |cells: [&str; 3]| {
        out.push_str(format!("{}  {}  {}", pad(cells[0], width), pad(cells[1], 6), cells[2]).trim_end());
        out.push('\n');
    };
    line(["PARTICIPANT", "RESULT", "FILE OR REASON"]);
    let (mut new, mut had, mut missed) = (0, 0, 0);
    for (name, o) in names.iter().zip(outcomes) {
        let e = o.entry();
        let archive = format!("{} ({} bytes)", one_line(&e.file), e.size.unwrap_or(0));
        match o {
            Outcome::Collected(_) => {
                new += 1;
                line([name, "new", &archive])
            }
            Outcome::Skipped(_) => {
                had += 1;
                line([name, "had", &archive])
            }
            Outcome::Missed(_) => {
                missed += 1;
                line([name, "MISSED", &one_line(&e.error)])
            }
        }
    }
    out.push_str(&format!(
        "{new} collected now, {had} already in {}, {missed} not collected; the index: {}\n",
        dir.display(),
        dir.join(INDEX).display()
    ));
    out
}

/// Where the archives go: DIR made (0700) if missing; refused when it is
/// not a directory.
pub fn prepare(dir: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(dir.to_path_buf()),
        Ok(_) => Err(format!("--out {}: not a directory; give a directory for the archives", dir.display())),
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map(|()| dir.to_path_buf())
            .map_err(|e| format!("--out {}: cannot create it: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, file: &str, sha: &str, size: Option<u64>, error: &str) -> Entry {
        Entry {
            participant: name.into(),
            file: file.into(),
            size,
            sha256: sha.into(),
            time: "2026-12-07T10:00:00Z".into(),
            error: error.into(),
        }
    }

    #[test]
    fn the_index_round_trips_and_quotes_what_needs_it() {
        let sha = "a".repeat(64);
        let entries = vec![
            entry("alice", "alice.zip", &sha, Some(1234), ""),
            entry("bob", "", "", None, "cannot connect: Connection refused, twice \"really\""),
            entry("=cmd", "", "", None, "not ready: no signal yet"),
        ];
        let text = index_csv(&entries);
        assert_eq!(
            text,
            format!(
                "participant,file,size,sha256,time,error\n\
                 alice,alice.zip,1234,{sha},2026-12-07T10:00:00Z,\n\
                 bob,,,,2026-12-07T10:00:00Z,\"cannot connect: Connection refused, twice \"\"really\"\"\"\n\
                 '=cmd,,,,2026-12-07T10:00:00Z,not ready: no signal yet\n"
            )
        );
        let back = parse_index(&text);
        assert_eq!(back[..2], entries[..2]);
        assert_eq!(back[2].participant, "'=cmd", "the guard stays: names are compared as indexed");
        assert_eq!(as_indexed("=cmd"), "'=cmd");
        assert!(parse_index("something,else\nalice,alice.zip,1,x,t,\n").is_empty(), "not an index");
    }

    #[test]
    fn archive_names_are_safe_and_distinct() {
        assert_eq!(file_name("alice"), "alice.zip");
        assert_eq!(file_name("张伟"), "张伟.zip");
        let evil = file_name("../etc/passwd");
        assert!(!evil.contains('/') && evil.starts_with("p___etc_passwd-") && evil.ends_with(".zip"), "{evil}");
        assert_ne!(file_name("a/b"), file_name("a_b"));
        assert_ne!(file_name("a b"), file_name("a/b"));
        assert!(!file_name(".hidden").starts_with('.'));
        assert!(file_name(&"x".repeat(300)).len() < 64);
    }

    #[test]
    fn a_complete_archive_is_skipped_and_anything_else_collected_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alice.zip"), b"PK\x05\x06 alice").unwrap();
        std::fs::write(dir.path().join("bob.zip"), b"bob, changed since").unwrap();
        let (sha, size) = hash_file(&dir.path().join("alice.zip")).unwrap();
        let index = vec![
            entry("alice", "alice.zip", &sha, Some(size), ""),
            entry("bob", "bob.zip", &sha, Some(size), ""),
            entry("carol", "carol.zip", &sha, Some(size), ""),
            entry("dave", "", "", None, "cannot connect"),
        ];
        assert!(complete(dir.path(), &index, "alice").is_some(), "listed, present, same sha256");
        assert!(complete(dir.path(), &index, "bob").is_none(), "the file's sha256 differs");
        assert!(complete(dir.path(), &index, "carol").is_none(), "the file is missing");
        assert!(complete(dir.path(), &index, "dave").is_none(), "not collected last time");
        assert!(complete(dir.path(), &index, "erin").is_none(), "not listed");
        // A later line for the same participant wins.
        let mut later = index.clone();
        later.push(entry("alice", "", "", None, "cannot connect"));
        assert!(complete(dir.path(), &later, "alice").is_none());
    }

    #[test]
    fn the_outcome_table_says_what_is_new_what_was_had_and_why_not() {
        let sha = "b".repeat(64);
        let out = table(
            &[
                Outcome::Collected(entry("alice", "alice.zip", &sha, Some(2048), "")),
                Outcome::Skipped(entry("张伟", "张伟.zip", &sha, Some(10), "")),
                Outcome::Missed(entry("bob", "", "", None, "cannot connect: Connection refused")),
            ],
            Path::new("work"),
        );
        assert_eq!(
            out,
            "\
PARTICIPANT  RESULT  FILE OR REASON
alice        new     alice.zip (2048 bytes)
张伟         had     张伟.zip (10 bytes)
bob          MISSED  cannot connect: Connection refused
1 collected now, 1 already in work, 1 not collected; the index: work/index.csv
"
        );
    }

    #[test]
    fn a_zip_is_recognised_by_its_end() {
        assert!(ends_a_zip(b"....PK\x05\x06\0\0\0\0"));
        assert!(!ends_a_zip(b"<html>"));
    }
}
