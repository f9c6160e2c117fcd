//! Whose work was collected, per room: `collect` records each participant
//! whose archive it brought back, and `down` refuses to delete a room while
//! someone's work has not been collected (unless `--force`).
//!
//! One JSON file per room, `<state>/jupyter-room/<room>.json`, `<state>`
//! being `$XDG_STATE_HOME` or else `~/.local/state` (the XDG Base Directory
//! specification's place for state that should persist between runs), mode
//! 0600, written atomically:
//!
//! ```json
//! {"room": "lab", "collected": {"alice": {"out": "/home/me/lab-work", "at": 1765101234}}}
//! ```
//!
//! `at` is the Unix time of the record. Records add up: collecting the
//! participants reached now, and the rest later, leaves all of them recorded.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The folder holding the records.
pub fn state_dir() -> io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()).map(PathBuf::from) {
        // The specification says to ignore a relative path.
        if dir.is_absolute() {
            return Ok(dir.join("jupyter-room"));
        }
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/state/jupyter-room")),
        None => Err(io::Error::new(io::ErrorKind::NotFound, "neither XDG_STATE_HOME nor HOME is set")),
    }
}

/// The record file of a room.
pub fn path(room: &str) -> io::Result<PathBuf> {
    if !crate::up::is_room_name(room) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{room:?} is not a room name")));
    }
    Ok(state_dir()?.join(format!("{room}.json")))
}

/// Records `participants` of `room` as collected into `out`.
pub fn record(room: &str, participants: &[String], out: &Path) -> io::Result<()> {
    let path = path(room)?;
    let mut collected = read(&path)?;
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let out = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    for name in participants {
        collected.insert(name.clone(), json!({"out": out.display().to_string(), "at": at}));
    }
    let dir = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(dir)?;
    let mut perms = std::fs::metadata(dir)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
    std::fs::set_permissions(dir, perms)?;
    let text = json!({"room": room, "collected": Value::Object(collected.into_iter().collect::<Map<_, _>>())});
    jupyter_proto::fs::write_atomic(&path, format!("{text:#}\n").as_bytes(), 0o600)
}

/// Those of `participants` whose work is not recorded as collected, in
/// their order; all of them when there is no record (or it cannot be read).
pub fn missing(room: &str, participants: &[String]) -> Vec<String> {
    let collected = path(room).and_then(|p| read(&p)).unwrap_or_default();
    participants.iter().filter(|p| !collected.contains_key(p.as_str())).cloned().collect()
}

fn read(path: &Path) -> io::Result<BTreeMap<String, Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e),
    };
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?;
    Ok(value.get("collected").and_then(Value::as_object).map(|m| m.clone().into_iter().collect()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The one test that sets XDG_STATE_HOME (tests run in parallel threads).
    #[test]
    fn records_add_up_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("XDG_STATE_HOME", dir.path());
        let names: Vec<String> = ["alice", "bob", "carol"].map(String::from).to_vec();
        assert_eq!(missing("lab", &names), names, "no record: nobody collected");
        record("lab", &names[..1], Path::new("/tmp/work")).unwrap();
        assert_eq!(missing("lab", &names), ["bob", "carol"]);
        record("lab", &names[1..], Path::new("/tmp/work")).unwrap();
        assert!(missing("lab", &names).is_empty());
        assert_eq!(missing("other", &names), names, "a record is per room");
        let file = dir.path().join("jupyter-room/lab.json");
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        let text: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(text["collected"]["alice"]["out"], "/tmp/work");
        assert!(record("../x", &names, Path::new("/tmp")).is_err(), "not a room name");
    }
}
