//! Packages that keep docker-ce from installing on the RPM families, and
//! whether any of them is installed in the target root: `rpm -q` there
//! (`chroot ROOT rpm -q` for another root). Read-only; the plan decides what
//! to do with the answer (docs/docker-install.md#conflicting-packages).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use super::plan::CONFLICTING;

/// How long the query may take: rpm waits for its database lock while a
/// package manager holds it.
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// The rpm databases a root may have (the older and the newer place).
const RPM_DATABASES: &[&str] = &["var/lib/rpm", "usr/lib/sysimage/rpm"];

/// The query could not be made or its answer not read.
#[derive(Debug, thiserror::Error)]
#[error("cannot tell whether packages that conflict with docker-ce are installed: `{command}` {why}")]
pub struct QueryFailed {
    pub command: String,
    pub why: String,
}

/// Which of [`CONFLICTING`] are installed in `root`, in that order. A root
/// without an rpm database has none (nothing was ever installed with rpm).
pub fn installed(root: &Path) -> Result<Vec<String>, QueryFailed> {
    if !RPM_DATABASES.iter().any(|db| root.join(db).is_dir()) {
        return Ok(Vec::new());
    }
    let mut argv: Vec<String> = Vec::new();
    if root != Path::new("/") {
        argv.extend(["chroot".to_string(), root.display().to_string()]);
    }
    argv.extend(["rpm", "-q", "--qf", "%{NAME}\\n"].map(String::from));
    argv.extend(CONFLICTING.iter().map(|p| p.to_string()));
    let command = argv.join(" ");
    let failed = |why: String| QueryFailed { command: command.clone(), why };
    let output = run(&argv, QUERY_TIMEOUT).map_err(failed)?;
    parse_rpm_q(&output, CONFLICTING).map_err(failed)
}

/// Runs `argv` with the plan's PATH and the C locale (rpm's "is not
/// installed" is translated otherwise), bounded by `timeout`; its stdout.
fn run(argv: &[String], timeout: Duration) -> Result<String, String> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env("PATH", super::run::PATH)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not be started: {e}"))?;
    let (mut stdout, mut stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    // Read while it runs: a full pipe would stop it.
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "did not answer within {} (another package manager holding the rpm database?)",
                    humantime::format_duration(timeout)
                ));
            }
            Err(e) => return Err(format!("could not be waited for: {e}")),
        }
    };
    let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    // rpm -q exits with the number of packages it did not find: the answer
    // is in stdout, which parse_rpm_q checks line by line.
    if status.code().is_none() {
        return Err(format!("was ended by a signal: {}", err.trim()));
    }
    if out.trim().is_empty() {
        let err = err.trim();
        return Err(format!(
            "exited with {status} and no answer: {}",
            if err.is_empty() { "(no error output)" } else { err }
        ));
    }
    Ok(out)
}

/// Reads the answer of `rpm -q --qf '%{NAME}\n' NAME...`: a line with the
/// name of each installed package (one per installed version or
/// architecture), `package NAME is not installed` for each other one. Every
/// name asked must be answered for; anything else is an error.
pub fn parse_rpm_q(stdout: &str, asked: &[&str]) -> Result<Vec<String>, String> {
    let mut installed = Vec::new();
    let mut answered = Vec::new();
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(name) = asked.iter().find(|n| **n == line) {
            installed.push(*name);
            answered.push(*name);
        } else if let Some(name) =
            line.strip_prefix("package ").and_then(|l| l.strip_suffix(" is not installed")).map(str::trim)
        {
            match asked.iter().find(|n| **n == name) {
                Some(n) => answered.push(*n),
                None => return Err(format!("answered for a package not asked for: {line:?}")),
            }
        } else {
            return Err(format!("gave an answer that is not rpm's: {:?}", jupyter_proto::redact::bound(line, 200)));
        }
    }
    let missing: Vec<&str> = asked.iter().copied().filter(|n| !answered.contains(n)).collect();
    if !missing.is_empty() {
        return Err(format!("did not answer for {}", missing.join(" ")));
    }
    Ok(asked.iter().filter(|n| installed.contains(n)).map(|n| n.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `rpm -q --qf '%{NAME}\n'` with [`CONFLICTING`] prints on a host
    /// with the given packages installed, in rpm's format.
    fn answer(installed: &[&str]) -> String {
        CONFLICTING
            .iter()
            .map(|p| if installed.contains(p) { format!("{p}\n") } else { format!("package {p} is not installed\n") })
            .collect()
    }

    #[test]
    fn the_answer_names_the_installed_conflicts_in_the_plans_order() {
        let out = answer(&["runc", "podman", "containerd"]);
        assert_eq!(parse_rpm_q(&out, CONFLICTING).unwrap(), ["podman", "runc", "containerd"]);
        assert_eq!(parse_rpm_q(&answer(&[]), CONFLICTING).unwrap(), Vec::<String>::new());
        // Two architectures of one package: one name.
        let twice = format!("runc\n{}", answer(&["runc"]));
        assert_eq!(parse_rpm_q(&twice, CONFLICTING).unwrap(), ["runc"]);
    }

    #[test]
    fn an_answer_that_is_not_rpms_is_an_error_not_an_empty_list() {
        let short: String = answer(&[]).lines().skip(1).map(|l| format!("{l}\n")).collect();
        assert_eq!(parse_rpm_q(&short, CONFLICTING).unwrap_err(), "did not answer for docker");
        let broken = "error: rpmdb: BDB0113 Thread/process 1234/0 failed: Thread died in Berkeley DB library\n";
        assert!(parse_rpm_q(broken, CONFLICTING).unwrap_err().starts_with("gave an answer that is not rpm's"));
        let other = "package buildah is not installed\n";
        assert!(parse_rpm_q(other, &["runc"]).unwrap_err().contains("not asked for"));
    }

    #[test]
    fn a_root_without_an_rpm_database_has_no_conflicts_and_runs_nothing() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(installed(root.path()).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_root_whose_rpm_cannot_answer_is_an_error_naming_the_command() {
        // An rpm database but no rpm (nor anything else) to run inside the root.
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("var/lib/rpm")).unwrap();
        let err = installed(root.path()).unwrap_err().to_string();
        let command = format!("chroot {} rpm -q --qf %{{NAME}}\\n docker docker-client", root.path().display());
        assert!(err.starts_with("cannot tell whether packages that conflict with docker-ce are installed: `"), "{err}");
        assert!(err.contains(&command), "{err}");
    }

    #[test]
    fn a_command_that_does_not_answer_in_time_is_ended() {
        let argv = ["sleep", "5"].map(String::from);
        let started = Instant::now();
        let err = run(&argv, Duration::from_millis(200)).unwrap_err();
        assert!(err.starts_with("did not answer within 200ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        let argv = ["sh", "-c", "echo broken >&2; exit 3"].map(String::from);
        assert_eq!(run(&argv, QUERY_TIMEOUT).unwrap_err(), "exited with exit status: 3 and no answer: broken");
    }
}
