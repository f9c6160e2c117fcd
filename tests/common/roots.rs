//! What the install commands' end-to-end tests (`install-docker`,
//! `install-nvidia-toolkit`) plan against: a directory that looks like a
//! root file system of a published os-release fixture, what is in it (to
//! show nothing changed), and an agent configuration with a `[docker]`
//! section of the test's.

use std::path::{Path, PathBuf};

use super::env::Env;

/// A directory named after the fixture that looks like a root file system
/// of that os-release fixture (`tests/fixtures/os-release/`).
pub fn fake_root(env: &Env, fixture: &str) -> PathBuf {
    let root = env.path(fixture);
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/os-release").join(fixture);
    std::fs::copy(&src, root.join("etc/os-release")).unwrap();
    root
}

/// Every file below `dir` with its content, to show nothing changed.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
                out.push((p, Vec::new()));
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The agent's configuration: the test's own directories and `docker_section` as `[docker]`.
pub fn config(env: &Env, docker_section: &str) {
    env.write_config(&format!(
        "state_dir = \"{}\"\nsocket = \"{}\"\nlog_dir = \"{}\"\n\n[docker]\n{docker_section}\n",
        env.state_dir().display(),
        env.socket().display(),
        env.path("log").display()
    ));
}
