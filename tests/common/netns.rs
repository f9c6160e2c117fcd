//! A stand-in for the ECS metadata service that containers can reach: a
//! test host in a network namespace of the test's own (a veth pair to this
//! host) serving HTTP on port 8080, with a `latest/user-data` that holds a
//! fake secret. No packet goes to the real service's address
//! (docs/metadata.md#development-machines). And a guard that removes the
//! agent's firewall rules for the test host's address when dropped, so that
//! a failing test leaves nothing behind in the host's firewall.

use std::process::Command;
use std::time::{Duration, Instant};

/// What the test host's `latest/user-data` says: a secret that must not
/// reach anyone but root.
pub const USER_DATA: &str = "#!/bin/sh\nACCESS_KEY_SECRET=test-secret-of-the-user-data\n";

/// The test host, removed (namespace, veth pair, server) when dropped.
pub struct NamespaceHost {
    ns: String,
    server: std::process::Child,
    /// The directory it serves.
    _root: tempfile::TempDir,
    /// The test host's address (the host's end is the one below it).
    pub address: String,
}

impl NamespaceHost {
    /// Starts test host number `index` (0 to 60): each index and each test
    /// process has its own /30, `10.254.<pid % 250>.<4 * index>`, so that
    /// tests running at the same time, in this process or another, never
    /// share an address (or a firewall rule).
    pub fn start(index: u32) -> NamespaceHost {
        assert!(index <= 60);
        let id = std::process::id();
        let net = format!("10.254.{}", id % 250);
        let (outer_ip, address) = (format!("{net}.{}", 4 * index + 1), format!("{net}.{}", 4 * index + 2));
        let (ns, outer, inner) =
            (format!("ja-meta-{id}-{index}"), format!("jamh{id}x{index}"), format!("jamn{id}x{index}"));
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("latest")).unwrap();
        std::fs::write(root.path().join("latest/user-data"), USER_DATA).unwrap();
        ip(&["netns", "add", &ns]);
        ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner]);
        ip(&["link", "set", &inner, "netns", &ns]);
        ip(&["addr", "add", &format!("{outer_ip}/30"), "dev", &outer]);
        ip(&["link", "set", &outer, "up"]);
        ip(&["netns", "exec", &ns, "ip", "addr", "add", &format!("{address}/30"), "dev", &inner]);
        ip(&["netns", "exec", &ns, "ip", "link", "set", &inner, "up"]);
        let server = Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-m", "http.server", "8080", "--bind", &address])
            .current_dir(root.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let host = NamespaceHost { ns, server, _root: root, address };
        let deadline = Instant::now() + Duration::from_secs(20);
        let socket = format!("{}:8080", host.address).parse().unwrap();
        while std::net::TcpStream::connect_timeout(&socket, Duration::from_secs(1)).is_err() {
            assert!(Instant::now() < deadline, "the test host never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
        host
    }

    /// `http://<address>:8080`, for `[jupyter] metadata_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}:8080", self.address)
    }
}

impl Drop for NamespaceHost {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        // Removing the namespace removes both ends of the veth pair.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// The agent's two metadata rules for one address, as `iptables -S` prints
/// them (the agent's `network.rs` writes them; docs/threat-model.md#the-metadata-service).
pub struct MetadataRules {
    address: String,
}

impl MetadataRules {
    /// A guard for the rules of `address` (a test address, never the real
    /// service's): they are removed when it is dropped, even on a panic.
    pub fn guard(address: &str) -> MetadataRules {
        assert!(address.starts_with("10.254."), "only test addresses: {address}");
        MetadataRules { address: address.into() }
    }

    /// The containers' rule: `-A DOCKER-USER ...` as listed.
    pub fn containers(&self) -> String {
        format!("-A DOCKER-USER -d {}/32 -i jupyter-agent0", self.address)
    }

    /// The local users' rule: `-A OUTPUT ...` as listed.
    pub fn local_users(&self) -> String {
        format!("-A OUTPUT -d {}/32 -m owner ! --uid-owner 0", self.address)
    }

    /// `iptables -S` of the two chains.
    pub fn listed() -> String {
        ["DOCKER-USER", "OUTPUT"]
            .iter()
            .map(|chain| {
                String::from_utf8_lossy(&Command::new("iptables").args(["-w", "-S", chain]).output().unwrap().stdout)
                    .into_owned()
            })
            .collect()
    }

    /// Removes every rule of either chain that names this address, as a
    /// reboot would flush them.
    pub fn remove(&self) {
        for chain in ["DOCKER-USER", "OUTPUT"] {
            let out = Command::new("iptables").args(["-w", "-S", chain]).output().unwrap();
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if !line.contains(&format!(" -d {}/32 ", self.address)) {
                    continue;
                }
                // `-A CHAIN spec...` -> `iptables -D CHAIN spec...`, the
                // comment's quotes undone by a shell.
                let delete = format!("iptables -w -D {}", line.trim_start_matches("-A "));
                let _ = Command::new("sh").args(["-c", &delete]).status();
            }
        }
    }
}

impl Drop for MetadataRules {
    fn drop(&mut self) {
        self.remove();
    }
}
