//! A real registry: Debian's `docker-registry` (the distribution project's
//! registry server) on a loopback port of the test's own, storing in a
//! temporary directory, optionally with htpasswd logins; stopped when
//! dropped. The engine talks plain HTTP to it: 127.0.0.0/8 is an insecure
//! registry range for dockerd by default.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Open to anyone.
    pub fn start() -> Registry {
        Registry::serve(tempfile::tempdir().unwrap(), "")
    }

    /// Only `user` with `password` may pull or push (basic auth checked
    /// against an htpasswd file of bcrypt hashes, the only kind the registry takes).
    pub fn start_with_login(user: &str, password: &str) -> Registry {
        let hash = bcrypt::hash_with_salt(password, 5, [7u8; 16]).unwrap().format_for_version(bcrypt::Version::TwoY);
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
        let auth = format!("auth:\n  htpasswd:\n    realm: jupyter-agent-tests\n    path: {}\n", htpasswd.display());
        Registry::serve(dir, &auth)
    }

    fn serve(dir: tempfile::TempDir, auth: &str) -> Registry {
        let port = crate::common::free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian's package) runs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the registry never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry { child, port, _dir: dir }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
