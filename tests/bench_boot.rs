//! The first-boot benchmark (docs/benchmarks.md, "A first boot"): in one
//! run on this machine, a first boot as `boot.rs` plays it (its `Boot`,
//! bundle, materials and fakes), timed from the user data's start to the
//! verdict's SUCCESS signal, next to what the original hands-on's user data
//! did, timed from its start to the end of its grep. Prints both, their
//! ratio, and whether the hands-on's way found a token at all.
//!
//! Ignored: a benchmark, not a check. `scripts/bench-boot.sh` runs it
//! (`cargo test -p e2e --test tests -- --ignored bench_boot --nocapture`).
//! It asserts only what the figures need: the boot ended in one SUCCESS, and
//! the hands-on's commands ran through. Like the boot tests it holds the
//! host-paths lock and the engine's read guard (in its `Boot`), uses this
//! host's `/usr/local/bin` and `/etc/jupyter-agent` and removes them after.

use std::process::Command;
use std::time::Instant;

use crate::boot::{bundle, clean_host, materials, sha256, Boot};
use crate::common::debian_root::debian_root;
use crate::common::docker;
use crate::common::files::StaticServer;

/// The hands-on's container and image, as its user data named them.
const HANDS_ON_NAME: &str = "handson-notebook";

/// What the original hands-on's user data did once Docker was installed: a
/// full system upgrade (in `$1`, a fresh Debian root, so that this machine
/// is not upgraded), a clone of the materials (`$2`, into `$3`), build, run,
/// a fixed `sleep 10`, and a grep of the log for the login URL.
const HANDS_ON: &str = r#"
set -e
chroot "$1" /usr/bin/env DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin sh -c 'apt-get update && apt-get -y upgrade' >/dev/null
git clone -q "$2" "$3"
cd "$3"
docker image build -q -t handson-notebook . >/dev/null
docker run --rm -d --name handson-notebook -p 127.0.0.1:18888:8888 -u root handson-notebook >/dev/null
sleep 10
docker logs handson-notebook 2>&1 | grep -o 'http://[^ ]*token=[0-9a-f]*' | tail -1
"#;

/// Removes the hands-on's container and image, however the benchmark ends.
struct HandsOnCleanup;

impl Drop for HandsOnCleanup {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", HANDS_ON_NAME]);
        let _ = docker(&["rmi", "-f", HANDS_ON_NAME]);
    }
}

/// The last `n` bytes of `bytes`, as text.
fn tail(bytes: &[u8], n: usize) -> String {
    String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(n)..]).into_owned()
}

#[test]
#[ignore = "a benchmark: scripts/bench-boot.sh runs it"]
fn a_first_boot_against_the_hands_ons_way() {
    let boot = Boot::new();
    // Declared after the boot, so dropped before it: while the engine's guard is held.
    let _hands_on = HandsOnCleanup;
    let repo = materials(boot.dir.path(), "RUN echo built > /built\n");

    // 1. The user data, as an instance runs it.
    let bundle = bundle(boot.dir.path());
    let server = StaticServer::start(vec![("/bundle.tar.gz".into(), bundle.clone())]);
    let mut user_data = boot.user_data(
        &format!("{}/bundle.tar.gz", server.url),
        &sha256(&bundle),
        &repo,
        "10m",
        &boot.ros.curl_cli(),
        None,
    );
    let start = Instant::now();
    let out = user_data.output().unwrap();
    // The verdict (id "jupyter"), not the milestones (docker, materials, ...) sent before it.
    let verdicts = boot.signals();
    assert!(
        out.status.success() && verdicts.len() == 1 && verdicts[0].field("status") == Some("SUCCESS"),
        "bench-boot: the user data did not succeed ({}): {:?}\n{}",
        out.status,
        boot.ros.requests(),
        tail(&out.stderr, 2000)
    );
    let t_agent = verdicts[0].at.duration_since(start).as_secs_f64();
    clean_host();
    let _ = docker(&["rmi", "-f", &boot.image]);

    // 2. The hands-on's way. Its Debian root is made before the clock starts.
    let root = boot.dir.path().join("debian");
    debian_root(&root);
    let start = Instant::now();
    let out = Command::new("sh")
        .args(["-c", HANDS_ON, "sh"])
        .arg(&root)
        .arg(&repo)
        .arg(boot.dir.path().join("handson-clone"))
        .output()
        .unwrap();
    let t_hands_on = start.elapsed().as_secs_f64();
    // Its last command is the grep's `tail`: a failure before it ends the script early.
    assert!(
        out.status.success(),
        "bench-boot: the hands-on's way failed ({}):\n{}",
        out.status,
        tail(&out.stderr, 2000)
    );
    let found = !String::from_utf8_lossy(&out.stdout).trim().is_empty();

    println!("first boot, user data start -> Jupyter usable and signalled (Docker already installed for both):");
    println!("  jupyter-agent user data (to the SUCCESS signal, token proven): {t_agent:6.1} s");
    println!(
        "  the hands-on's way (upgrade, clone, build, run, sleep 10, grep): {t_hands_on:6.1} s  \
         (token {} in the log; no signal sent)",
        if found { "found" } else { "NOT found" }
    );
    println!("  ratio (hands-on / agent): {:.2}", t_hands_on / t_agent);
}
