//! The release as a user gets it: `scripts/release.sh` builds the static
//! binaries and the tarball (minutes: LTO on a small machine), and the tests
//! check what a user would: the checksums, the tarball's contents, that the
//! binaries are static (read with the `object` crate: the one check of
//! it), and that they run in an empty root file system (a directory holding
//! only the binary: no /lib, no /etc).
//!
//! The release checked is `$JA_RELEASE_DIR` when set (scripts/test.sh builds
//! it once for these tests and the boot test; a release to publish is
//! checked the same way: `scripts/release.sh --out dist && JA_RELEASE_DIR=$PWD/dist
//! cargo test -p e2e --test tests -- release::`), else one built here by
//! running `scripts/release.sh`.
//!
//! Needs root (chroot); no Docker engine. `cargo test -p e2e --test tests
//! release:: -- --nocapture` shows the build's summary and the sizes.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use object::elf::{self, FileHeader64};
use object::read::elf::{Dyn, FileHeader, ProgramHeader};
use object::Endianness;

use crate::common::ros;

const BINARIES: [&str; 2] = ["jupyter-agent", "jupyter-bootstrap"];

/// What one run of `scripts/release.sh` produced.
struct Release {
    out: PathBuf,
    /// `jupyter-agent-<version>-x86_64-linux`.
    name: String,
    tarball: PathBuf,
    /// The tarball unpacked: `<unpacked>/<name>/...`.
    unpacked: PathBuf,
}

impl Release {
    /// A binary as unpacked from the tarball.
    fn bin(&self, name: &str) -> PathBuf {
        self.unpacked.join(&self.name).join(name)
    }
}

/// The release, found (or built) by the first test that asks; the others
/// wait for it (`OnceLock` runs one initializer and blocks the rest). A
/// failure is kept, so that every test fails with its message instead of
/// building again.
fn release() -> &'static Release {
    static RELEASE: OnceLock<Result<Release, String>> = OnceLock::new();
    match RELEASE.get_or_init(build) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

fn build() -> Result<Release, String> {
    let out = match std::env::var_os("JA_RELEASE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => run_release_script()?,
    };
    let name = format!("jupyter-agent-{}-x86_64-linux", env!("CARGO_PKG_VERSION"));
    let tarball = out.join(format!("{name}.tar.gz"));
    if !tarball.is_file() {
        return Err(format!("no {} (scripts/release.sh writes it)", tarball.display()));
    }
    let unpacked = Path::new(env!("CARGO_TARGET_TMPDIR")).join("release-unpacked");
    let _ = fs::remove_dir_all(&unpacked);
    fs::create_dir_all(&unpacked).map_err(|e| format!("cannot create {}: {e}", unpacked.display()))?;
    let tar = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&unpacked)
        .output()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !tar.status.success() {
        return Err(format!("tar -xzf {} failed: {}", tarball.display(), String::from_utf8_lossy(&tar.stderr)));
    }
    Ok(Release { out, name, tarball, unpacked })
}

/// `scripts/release.sh --out <target tmp>/release`; the directory it wrote.
fn run_release_script() -> Result<PathBuf, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let script = root.join("scripts/release.sh");
    // Under target/tmp, emptied at each run: nothing left behind in /tmp.
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("release");
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;

    let started = Instant::now();
    let run = Command::new(&script)
        .arg("--out")
        .arg(&out)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let took = started.elapsed();
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    if !run.status.success() {
        return Err(format!(
            "the release build failed: {} --out {} ended with {} after {took:.0?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            script.display(),
            out.display(),
            run.status,
        ));
    }
    eprintln!("scripts/release.sh took {took:.1?}:\n{stdout}");
    Ok(out)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exit code, or the signal that ended the process.
fn how_it_ended(out: &Output) -> String {
    match (out.status.code(), out.status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => format!("{}", out.status),
    }
}

fn describe(what: &str, out: &Output) -> String {
    format!("{what}: {}\n--- stdout\n{}\n--- stderr\n{}", how_it_ended(out), text(&out.stdout), text(&out.stderr))
}

#[test]
fn checksums_pass_and_the_tarball_holds_the_two_binaries() {
    let r = release();
    let sums = fs::read_to_string(r.out.join("SHA256SUMS")).expect("SHA256SUMS in the out dir");

    let check =
        Command::new("sha256sum").args(["-c", "SHA256SUMS"]).current_dir(&r.out).output().expect("sha256sum runs");
    assert!(check.status.success(), "{}", describe("sha256sum -c SHA256SUMS", &check));

    let mut listed: Vec<&str> = sums.lines().filter_map(|l| l.split_once("  ").map(|(_, f)| f)).collect();
    listed.sort();
    let tarball_name = format!("{}.tar.gz", r.name);
    let mut expected = vec![tarball_name.as_str(), BINARIES[0], BINARIES[1]];
    expected.sort();
    assert_eq!(listed, expected, "SHA256SUMS covers the tarball and the two binaries:\n{sums}");

    let list = Command::new("tar").arg("-tvzf").arg(&r.tarball).output().expect("tar runs");
    assert!(list.status.success(), "{}", describe("tar -tvzf", &list));
    let listing = text(&list.stdout);
    let mut entries: Vec<String> =
        listing.lines().filter_map(|l| l.split_whitespace().last()).map(str::to_string).collect();
    entries.sort();
    assert_eq!(
        entries,
        [
            format!("{}/", r.name),
            format!("{}/README.txt", r.name),
            format!("{}/jupyter-agent", r.name),
            format!("{}/jupyter-bootstrap", r.name),
        ],
        "the tarball's entries:\n{listing}"
    );
    for line in listing.lines() {
        assert!(line.contains(" 0/0 "), "entries are owned by 0/0: {line}");
    }

    for bin in BINARIES {
        let unpacked = fs::read(r.bin(bin)).unwrap_or_else(|e| panic!("{bin} unpacked from the tarball: {e}"));
        let loose = fs::read(r.out.join(bin)).unwrap_or_else(|e| panic!("{bin} in the out dir: {e}"));
        assert!(unpacked == loose, "{bin}: the tarball's copy differs from the one next to it");
        let mode = fs::metadata(r.bin(bin)).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o755, "{bin} is executable");
    }
    let readme = fs::read_to_string(r.unpacked.join(&r.name).join("README.txt")).expect("README.txt");
    assert!(readme.contains("jupyter-bootstrap wait"), "README.txt says how user data uses it:\n{readme}");
}

/// Why a file is not a static x86_64 executable, if it is not: not a
/// little-endian ELF64 x86-64 executable, a program interpreter (PT_INTERP:
/// it needs the dynamic loader) or shared libraries its dynamic segment
/// needs (DT_NEEDED). Read from the program headers, which is what the
/// kernel and the loader read. A static-pie keeps a PT_DYNAMIC for its own
/// relocations, without DT_NEEDED: that is static.
fn not_static(data: &[u8]) -> Option<String> {
    let header = match FileHeader64::<Endianness>::parse(data) {
        Ok(header) => header,
        Err(e) => return Some(format!("not an ELF64 file ({e})")),
    };
    let endian = match header.endian() {
        Ok(Endianness::Little) => Endianness::Little,
        _ => return Some("not a little-endian ELF file".into()),
    };
    if header.e_machine(endian) != elf::EM_X86_64 {
        return Some(format!("e_machine {} is not x86-64 ({})", header.e_machine(endian), elf::EM_X86_64));
    }
    if !matches!(header.e_type(endian), elf::ET_EXEC | elf::ET_DYN) {
        return Some(format!("e_type {} is not an executable", header.e_type(endian)));
    }
    let segments = match header.program_headers(endian, data) {
        Ok(segments) => segments,
        Err(e) => return Some(format!("unreadable program headers ({e})")),
    };
    let mut why = Vec::new();
    for segment in segments {
        if let Ok(Some(interpreter)) = segment.interpreter(endian, data) {
            why.push(format!(
                "a program interpreter (PT_INTERP {}): it needs the dynamic loader",
                String::from_utf8_lossy(interpreter)
            ));
        }
        match segment.dynamic(endian, data) {
            Ok(Some(entries)) => {
                let needed = entries
                    .iter()
                    .map(|d| d.tag(endian))
                    .take_while(|&tag| tag != elf::DT_NULL)
                    .filter(|&tag| tag == elf::DT_NEEDED)
                    .count();
                if needed > 0 {
                    why.push(format!("{needed} DT_NEEDED in its dynamic segment: it needs shared libraries"));
                }
            }
            Ok(None) => {}
            Err(e) => why.push(format!("an unreadable dynamic segment ({e})")),
        }
    }
    if why.is_empty() {
        None
    } else {
        Some(why.join("; "))
    }
}

#[test]
fn both_binaries_are_static() {
    let r = release();
    for bin in BINARIES {
        let data = fs::read(r.bin(bin)).unwrap();
        if let Some(why) = not_static(&data) {
            panic!("{bin} is not a static x86_64 executable: {why}");
        }
    }
}

/// The check itself: this test executable is dynamically linked (an
/// interpreter, libc and more needed); a script, a truncated ELF header and
/// an empty file are not executables at all.
#[test]
fn the_static_check_catches_a_dynamic_executable_and_non_executables() {
    let data = fs::read(std::env::current_exe().unwrap()).unwrap();
    let why = not_static(&data).expect("the test executable is not static");
    assert!(why.starts_with("a program interpreter (PT_INTERP /"), "{why}");
    assert!(why.contains("DT_NEEDED in its dynamic segment: it needs shared libraries"), "{why}");

    for (file, expected) in
        [(&b"#!/bin/sh\n"[..], "not an ELF64 file"), (&data[..40], "not an ELF64 file"), (&[], "not an ELF64 file")]
    {
        let why = not_static(file).expect("not an executable");
        assert!(why.starts_with(expected), "{why}");
    }
}

#[test]
fn sizes() {
    let r = release();
    // Benchmark figures, not assertions: the targets are < 6 MB (agent) and < 3 MB (bootstrap).
    for path in [r.bin(BINARIES[0]), r.bin(BINARIES[1]), r.tarball.clone()] {
        let size = fs::metadata(&path).unwrap().len();
        eprintln!(
            "size: {:<45} {size:>9} bytes  {:.2} MB  {:.2} MiB",
            path.file_name().unwrap().to_string_lossy(),
            size as f64 / 1e6,
            size as f64 / 1_048_576.0
        );
    }
}

/// A root file system holding only `/<bin>`, a hard link to the unpacked
/// binary. Not a copy: a file just written is "Text file busy" to exec while
/// a child forked meanwhile by a parallel test still holds the writing fd.
fn empty_root(bin: &str) -> tempfile::TempDir {
    // Next to the unpacked tarball: the same file system, so it can be linked.
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    fs::hard_link(release().bin(bin), root.path().join(bin)).expect("link the binary into the empty root");
    let entries: Vec<_> = fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, [bin], "the root holds the binary alone");
    root
}

/// `chroot ROOT /<bin> ARGS` with an empty environment (so chroot itself is
/// looked up here, on this PATH).
fn chroot(root: &Path, bin: &str, args: &[&str]) -> Output {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    let chroot = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join("chroot"))
        .find(|p| p.is_file())
        .expect("chroot (coreutils) is installed");
    Command::new(chroot)
        .arg(root)
        .arg(format!("/{bin}"))
        .args(args)
        .env_clear()
        .output()
        .expect("chroot runs (as root)")
}

#[test]
fn agent_version_runs_in_an_empty_root() {
    let root = empty_root("jupyter-agent");
    let out = chroot(root.path(), "jupyter-agent", &["--version"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe("chroot ROOT /jupyter-agent --version", &out));
    assert_eq!(text(&out.stdout).trim(), format!("jupyter-agent {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn agent_status_without_agent_or_state_exits_4_in_an_empty_root() {
    let root = empty_root("jupyter-agent");
    let out = chroot(root.path(), "jupyter-agent", &["--config", "/nonexistent.toml", "status"]);
    // 4: the agent is not reachable and there is no state (agent/src/cli.rs).
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        describe("chroot ROOT /jupyter-agent --config /nonexistent.toml status", &out)
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("/run/jupyter-agent.sock"), "it says where it looked:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bootstrap_help_runs_in_an_empty_root() {
    let root = empty_root("jupyter-bootstrap");
    let out = chroot(root.path(), "jupyter-bootstrap", &["--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe("chroot ROOT /jupyter-bootstrap --help", &out));
    let help = text(&out.stdout);
    assert!(help.contains("Usage: jupyter-bootstrap") && help.contains("wait"), "{help}");

    let out = chroot(root.path(), "jupyter-bootstrap", &["--version"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe("chroot ROOT /jupyter-bootstrap --version", &out));
    assert_eq!(text(&out.stdout).trim(), format!("jupyter-bootstrap {}", env!("CARGO_PKG_VERSION")));
}

/// The bootstrap's real work in an empty root: no agent appears within the
/// timeout, so it signals FAILURE to the ROS endpoint (an IP address, as
/// ROS hands out: no name resolution) and exits 3.
#[test]
fn bootstrap_signals_ros_from_an_empty_root() {
    let root = empty_root("jupyter-bootstrap");
    let fake = ros::FakeRos::start();
    let out = chroot(root.path(), "jupyter-bootstrap", &["wait", "--timeout", "2", "--ros-notify", &fake.curl_cli()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        describe("chroot ROOT /jupyter-bootstrap wait --timeout 2 --ros-notify ...", &out)
    );
    let requests = fake.wait_for(1, Duration::from_secs(5));
    assert_eq!(requests.len(), 1, "one signal: {requests:?}");
    let r = &requests[0];
    assert_eq!(r.problem, None, "the signal follows the protocol: {r:?}");
    assert_eq!(r.field("status"), Some("FAILURE"), "{r:?}");
    let reason = r.field("reason").unwrap_or_default();
    assert!(reason.contains("never appeared"), "{reason}");
}
