//! Whose work has been collected, per room, kept on the organiser's
//! machine so that `down` can refuse to delete a room whose work is not
//! collected yet.
//!
//! One file per room under `$XDG_STATE_HOME/jupyter-room/` (else
//! `~/.local/state/jupyter-room/`), mode 0600: one line per participant,
//! `name<TAB>directory`, the later line winning.
//!
//! (Minimal version written alongside `collect`; the room's own may
//! replace it with the same two functions.)

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// The directory of the records.
fn dir() -> Option<PathBuf> {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(state).join("jupyter-room"));
    }
    let home = std::env::var_os("HOME").filter(|s| !s.is_empty())?;
    Some(PathBuf::from(home).join(".local/state/jupyter-room"))
}

/// The record of `room`: its name with anything but letters, digits, `-`
/// and `_` made `_`.
fn file(room: &str) -> Option<PathBuf> {
    let safe: String =
        room.chars().map(|c| if c.is_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let safe = if safe.is_empty() { "_".to_string() } else { safe };
    Some(dir()?.join(format!("{safe}.collected")))
}

fn read(room: &str) -> BTreeMap<String, String> {
    let Some(path) = file(room) else { return BTreeMap::new() };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|l| l.split_once('\t')).map(|(name, out)| (name.to_string(), out.to_string())).collect()
}

/// Notes that `participants`' work of `room` is in `out`.
pub fn record(room: &str, participants: &[String], out: &Path) -> io::Result<()> {
    let path = file(room).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "neither XDG_STATE_HOME nor HOME"))?;
    let mut all = read(room);
    let out = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    for p in participants {
        let name = p.replace(['\t', '\n', '\r'], " ");
        all.insert(name, out.display().to_string().replace(['\t', '\n', '\r'], " "));
    }
    let text: String = all.iter().map(|(n, o)| format!("{n}\t{o}\n")).collect();
    let parent = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(parent)?;
    jupyter_proto::fs::write_atomic(&path, text.as_bytes(), 0o600)
}

/// Those of `participants` whose work of `room` has not been recorded as
/// collected, in their order.
pub fn missing(room: &str, participants: &[String]) -> Vec<String> {
    let all = read(room);
    participants.iter().filter(|p| !all.contains_key(p.as_str())).cloned().collect()
}
