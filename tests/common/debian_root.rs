//! Fresh Debian roots for the tests that install packages with the real apt
//! (`docker_install`, `git_install`). `scripts/make-debian-root.sh` (debootstrap
//! of this machine's release from the mirror of its own apt configuration)
//! runs once per week and release, into a template under cargo's target
//! directory (`CARGO_TARGET_TMPDIR`); each test gets a copy of it (`cp -a`),
//! so that the tests of one run, and the runs of a week, share one
//! debootstrap while none sees another's packages. The template is never
//! written to after it is built; templates of earlier weeks are removed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// How long one template is used: a week, so that a root is never much older than the mirror.
const WEEK: u64 = 7 * 24 * 3600;

/// This machine's Debian codename, from its os-release.
fn suite() -> String {
    let text = std::fs::read_to_string("/etc/os-release").expect("/etc/os-release");
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .expect("this machine's os-release names its VERSION_CODENAME")
}

/// The template for this week, built when missing; `Err` says why it could not be.
fn template() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let week = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() / WEEK;
    let prefix = format!("debian-root-{}-", suite());
    let name = format!("{prefix}w{week}");
    let template = dir.join(&name);
    let done = dir.join(format!("{name}.done"));
    // Earlier weeks' templates (and builds that never finished) go.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let other = entry.file_name().to_string_lossy().into_owned();
            if other.starts_with(&prefix) && !other.starts_with(&name) {
                let path = entry.path();
                let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            }
        }
    }
    if done.exists() {
        return Ok(template);
    }
    let building = dir.join(format!("{name}.building-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-debian-root.sh");
    let out = Command::new(&script).arg(&building).output().map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&building);
        return Err(format!("make-debian-root: {}", String::from_utf8_lossy(&out.stderr)));
    }
    // Another test process may have finished first: then its template is used.
    if std::fs::rename(&building, &template).is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    std::fs::write(&done, "").map_err(|e| format!("{}: {e}", done.display()))?;
    Ok(template)
}

/// Makes `dest` (which must not exist) a fresh Debian root of this
/// machine's release, without Docker and without git, for `chroot`.
pub fn debian_root(dest: &Path) {
    static TEMPLATE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let template = TEMPLATE.get_or_init(template).as_ref().unwrap_or_else(|e| panic!("{e}"));
    assert!(!dest.exists(), "{} exists", dest.display());
    let out = Command::new("cp").arg("-a").arg("--reflink=auto").arg(template).arg(dest).output().unwrap();
    assert!(out.status.success(), "copying the Debian root: {}", String::from_utf8_lossy(&out.stderr));
}
