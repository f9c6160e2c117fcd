//! Container runtimes on this host that are not Docker: podman's API socket,
//! or containerd running without Docker. Found cheaply (socket files and
//! process names below a root, nothing is connected to), so that a host
//! without a Docker engine says why rather than only that none answers
//! (docs/docker-install.md#other-container-runtimes).

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// Podman's rootful API socket (`podman.socket`, `podman system service`).
pub const PODMAN_SOCKET: &str = "/run/podman/podman.sock";
/// containerd's default socket (Docker's own containerd uses it too).
pub const CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
/// Where an installed Docker engine's socket and daemon are.
const DOCKER_SOCKETS: &[&str] = &["/run/docker.sock", "/var/run/docker.sock"];
const DOCKERD_DIRS: &[&str] = &["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Podman,
    /// containerd with no Docker installed: Kubernetes, nerdctl, k3s.
    Containerd,
}

/// A runtime found, with what gave it away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: Kind,
    /// Its socket as the host names it, when the file is there.
    pub socket: Option<PathBuf>,
    /// Processes of that name.
    pub pids: Vec<u32>,
}

impl Found {
    /// What was found, in a few words: `podman's API socket
    /// /run/podman/podman.sock`, `containerd (pid 812) without Docker`.
    pub fn describe(&self) -> String {
        let pids = match self.pids.as_slice() {
            [] => String::new(),
            [one] => format!("pid {one}"),
            many => format!("pids {}", many.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")),
        };
        match (self.kind, &self.socket) {
            (Kind::Podman, Some(s)) if pids.is_empty() => format!("podman's API socket {}", s.display()),
            (Kind::Podman, Some(s)) => format!("podman's API socket {} (podman {pids})", s.display()),
            (Kind::Podman, None) => format!("podman ({pids})"),
            (Kind::Containerd, Some(s)) if pids.is_empty() => {
                format!("containerd's socket {} without Docker", s.display())
            }
            (Kind::Containerd, Some(s)) => format!("containerd ({pids}, socket {}) without Docker", s.display()),
            (Kind::Containerd, None) => format!("containerd ({pids}) without Docker"),
        }
    }
}

/// The runtimes below `root` (`/`: this host) that are not Docker: podman
/// when its API socket exists or a `podman` process runs; containerd when
/// its socket exists or a `containerd` process runs while nothing of Docker
/// is there (no `dockerd` installed or running, no Docker socket), since
/// Docker runs a containerd of its own.
pub fn detect(root: &Path) -> Vec<Found> {
    let processes = process_names(root);
    let pids = |name: &str| processes.iter().filter(|(_, n)| n == name).map(|(p, _)| *p).collect::<Vec<u32>>();
    let socket = |path: &str| {
        let under = root.join(path.trim_start_matches('/'));
        under.symlink_metadata().is_ok_and(|m| m.file_type().is_socket()).then(|| PathBuf::from(path))
    };
    let mut found = Vec::new();
    let podman = Found { kind: Kind::Podman, socket: socket(PODMAN_SOCKET), pids: pids("podman") };
    if podman.socket.is_some() || !podman.pids.is_empty() {
        found.push(podman);
    }
    // A Docker socket that is a link (podman-docker's to podman's socket) is not Docker's.
    let docker_is_here = !pids("dockerd").is_empty()
        || docker_installed(root)
        || DOCKER_SOCKETS
            .iter()
            .any(|s| root.join(s.trim_start_matches('/')).symlink_metadata().is_ok_and(|m| m.file_type().is_socket()));
    let containerd = Found { kind: Kind::Containerd, socket: socket(CONTAINERD_SOCKET), pids: pids("containerd") };
    if !docker_is_here && (containerd.socket.is_some() || !containerd.pids.is_empty()) {
        found.push(containerd);
    }
    found
}

/// Whether `dockerd` is installed below `root`.
pub fn docker_installed(root: &Path) -> bool {
    DOCKERD_DIRS.iter().any(|d| root.join(d.trim_start_matches('/')).join("dockerd").is_file())
}

/// Whether Docker's socket below `root` is a link to podman's: podman-docker
/// makes `/run/docker.sock` one (its tmpfiles.d entry), so an engine that
/// answers there is podman.
pub fn docker_socket_is_podmans(root: &Path) -> bool {
    DOCKER_SOCKETS.iter().any(|s| {
        std::fs::read_link(root.join(s.trim_start_matches('/')))
            .is_ok_and(|target| target.ends_with("podman/podman.sock"))
    })
}

/// `(pid, name)` of every process below `root/proc`, the name as the
/// kernel keeps it (`comm`, at most 15 bytes).
fn process_names(root: &Path) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir(root.join("proc")) else { return Vec::new() };
    let mut out: Vec<(u32, String)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            Some((pid, comm.trim_end_matches('\n').to_string()))
        })
        .collect();
    out.sort();
    out
}

/// What to say when no Docker engine answers and `found` is not empty: what
/// is here, and what to do. `None` when nothing was found.
pub fn advice(found: &[Found]) -> Option<String> {
    if found.is_empty() {
        return None;
    }
    let what: Vec<String> = found.iter().map(Found::describe).collect();
    let mut out = format!(
        "this host runs a container runtime that is not Docker ({}); the agent needs a Docker engine: \
         install Docker beside it (jupyter-agent install-docker; on the RPM distributions docker-ce replaces \
         podman and runc, see [docker] remove_conflicts)",
        what.join("; ")
    );
    if found.iter().any(|f| f.kind == Kind::Podman && f.socket.is_some()) {
        out.push_str(&format!(
            ", or try podman's Docker-compatible API (it implements Docker's API 1.40, in part; \
             the agent is not tested with it) with [docker] host = \"unix://{PODMAN_SOCKET}\""
        ));
    }
    Some(out)
}

/// [`advice`] for this host; `None` also when Docker is installed here (then
/// Docker itself does not answer, whatever else runs).
pub fn advice_here() -> Option<String> {
    let root = Path::new("/");
    if docker_installed(root) {
        return None;
    }
    advice(&detect(root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A socket file at `path` below `root`, as the runtime would leave it.
    fn socket(root: &Path, path: &str) -> UnixListener {
        let p = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        UnixListener::bind(&p).unwrap()
    }

    fn process(root: &Path, pid: u32, name: &str) {
        let dir = root.join("proc").join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("comm"), format!("{name}\n")).unwrap();
    }

    #[test]
    fn a_bare_root_has_no_other_runtime() {
        let root = tempfile::tempdir().unwrap();
        process(root.path(), 1, "systemd");
        process(root.path(), 77, "sshd");
        assert_eq!(detect(root.path()), []);
        assert_eq!(advice(&[]), None);
    }

    #[test]
    fn podmans_socket_is_found_and_named_in_the_advice() {
        let root = tempfile::tempdir().unwrap();
        let _s = socket(root.path(), PODMAN_SOCKET);
        let found = detect(root.path());
        assert_eq!(found, [Found { kind: Kind::Podman, socket: Some(PathBuf::from(PODMAN_SOCKET)), pids: vec![] }]);
        let advice = advice(&found).unwrap();
        assert!(advice.starts_with("this host runs a container runtime that is not Docker (podman's API socket /run/podman/podman.sock); the agent needs a Docker engine: install Docker beside it"), "{advice}");
        assert!(advice.ends_with("with [docker] host = \"unix:///run/podman/podman.sock\""), "{advice}");
    }

    #[test]
    fn a_plain_file_where_a_socket_belongs_is_not_a_runtime() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path().join("run/podman/podman.sock");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "").unwrap();
        assert_eq!(detect(root.path()), []);
    }

    #[test]
    fn containerd_counts_only_without_docker() {
        let root = tempfile::tempdir().unwrap();
        let _s = socket(root.path(), CONTAINERD_SOCKET);
        process(root.path(), 812, "containerd");
        process(root.path(), 900, "containerd-shim");
        let found = detect(root.path());
        assert_eq!(
            found,
            [Found { kind: Kind::Containerd, socket: Some(PathBuf::from(CONTAINERD_SOCKET)), pids: vec![812] }]
        );
        let advice = advice(&found).unwrap();
        assert!(
            advice.contains("(containerd (pid 812, socket /run/containerd/containerd.sock) without Docker)"),
            "{advice}"
        );
        assert!(!advice.contains("[docker] host"), "containerd's API is not Docker's: {advice}");

        // Docker installed (stopped): its containerd is its own.
        std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        std::fs::write(root.path().join("usr/bin/dockerd"), "").unwrap();
        assert_eq!(detect(root.path()), []);
    }

    #[test]
    fn podman_dockers_link_is_told_from_dockers_own_socket() {
        let root = tempfile::tempdir().unwrap();
        let _podman = socket(root.path(), PODMAN_SOCKET);
        let _containerd = socket(root.path(), CONTAINERD_SOCKET);
        // podman-docker's link: not Docker, so containerd is still without it.
        std::os::unix::fs::symlink("/run/podman/podman.sock", root.path().join("run/docker.sock")).unwrap();
        assert!(docker_socket_is_podmans(root.path()));
        let kinds: Vec<Kind> = detect(root.path()).iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [Kind::Podman, Kind::Containerd]);
        // Docker's own socket: containerd is Docker's.
        std::fs::remove_file(root.path().join("run/docker.sock")).unwrap();
        let _docker = socket(root.path(), "/run/docker.sock");
        assert!(!docker_socket_is_podmans(root.path()));
        let kinds: Vec<Kind> = detect(root.path()).iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [Kind::Podman]);
    }

    #[test]
    fn a_podman_process_without_its_socket_is_found_too() {
        let root = tempfile::tempdir().unwrap();
        process(root.path(), 4242, "podman");
        process(root.path(), 4243, "podman");
        let found = detect(root.path());
        assert_eq!(found, [Found { kind: Kind::Podman, socket: None, pids: vec![4242, 4243] }]);
        assert_eq!(found[0].describe(), "podman (pids 4242, 4243)");
        // No socket: no [docker] host to point at.
        assert!(!advice(&found).unwrap().contains("[docker] host"));
    }
}
