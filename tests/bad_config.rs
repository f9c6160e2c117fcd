//! Bad configurations, table-driven, against the real binary and engine:
//! each one exits 2 with one exact message (file, key, value, expectation)
//! before anything changes: no container, no state, no file created,
//! replaced or touched (a snapshot of every directory involved, compared
//! before and after every run).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::common::docker;
use crate::common::env::Env;

/// The valid configuration each case changes: section -> key -> TOML value.
fn base(env: &Env) -> BTreeMap<&'static str, Vec<(String, String)>> {
    let d = env.dir.path().display();
    let q = |s: String| format!("\"{s}\"");
    BTreeMap::from([
        (
            "",
            vec![
                ("state_dir".into(), q(format!("{d}/state"))),
                ("socket".into(), q(format!("{d}/agent.sock"))),
                ("result_file".into(), q(format!("{d}/result.txt"))),
            ],
        ),
        ("image", vec![("name".into(), q(crate::common::test_image())), ("pull".into(), q("never".into()))]),
        ("container", vec![("name".into(), q(env.name.clone())), ("publish".into(), q("127.0.0.1:0".into()))]),
        ("jupyter", vec![("ready_timeout".into(), q("90s".into())), ("url_host".into(), q("127.0.0.1".into()))]),
    ])
}

/// A tarball workspace whose URL is never fetched (loopback's discard port).
const WORKSPACE: &[(&str, &str)] = &[
    ("source", "\"http://127.0.0.1:9/m.tar.gz\""),
    ("sha256", "\"abababababababababababababababababababababababababababababababab\""),
    ("path", "\"{d}/materials\""),
];

/// One case: the changes (`section`, `key`, TOML value or `None` to remove
/// the key; a `WORKSPACE` section is added when a change names it), and the
/// message, with `{f}` for the configuration file and `{d}` for the test's
/// directory.
type Change<'a> = (&'static str, &'static str, Option<&'a str>);

fn render(env: &Env, changes: &[Change<'_>]) -> String {
    let d = env.dir.path().display().to_string();
    let mut sections = base(env);
    if changes.iter().any(|(s, _, _)| s.starts_with("workspace")) {
        sections.insert("workspace", WORKSPACE.iter().map(|(k, v)| (k.to_string(), v.replace("{d}", &d))).collect());
    }
    for (section, key, value) in changes {
        let entries = sections.entry(section).or_default();
        entries.retain(|(k, _)| k != key);
        if let Some(v) = value {
            entries.push((key.to_string(), v.replace("{d}", &d)));
        }
    }
    let mut text = String::new();
    for (k, v) in &sections[""] {
        text.push_str(&format!("{k} = {v}\n"));
    }
    for (name, entries) in sections.iter().filter(|(n, _)| !n.is_empty()) {
        text.push_str(&format!("\n[{name}]\n"));
        for (k, v) in entries {
            text.push_str(&format!("{k} = {v}\n"));
        }
    }
    text
}

/// Every file and directory below `dirs`: path, mode, and for files size, mtime and content.
fn snapshot(dirs: &[&Path]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            out.push(format!("{} absent", p.display()));
            continue;
        };
        // A directory's own times change with the configuration file the test
        // writes; its entries are compared one by one instead.
        let mut line = format!("{} mode {:o}", p.display(), meta.mode());
        if !meta.is_dir() {
            line.push_str(&format!(" size {} mtime {}.{}", meta.size(), meta.mtime(), meta.mtime_nsec()));
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if meta.is_file() {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::fs::read(&p).unwrap().hash(&mut h);
            line.push_str(&format!(" content {:016x}", h.finish()));
        }
        out.push(line);
    }
    out.sort();
    out
}

#[test]
fn at_least_sixty_bad_configurations_exit_2_with_their_message_and_change_nothing() {
    let env = Env::new("bad-config");
    let d = env.dir.path().display().to_string();
    // What the cases point at: a plain file, a directory, a file the agent
    // did not write.
    std::fs::write(env.path("plain-file"), "mine\n").unwrap();
    std::fs::create_dir(env.path("a-dir")).unwrap();
    std::fs::write(env.path("foreign.env"), "KEY=the user's own\n").unwrap();
    // A state directory of someone else's, one below a directory everyone
    // may write to, and a link (dangling: nothing made it yet) to the state.
    std::fs::create_dir(env.path("theirs")).unwrap();
    std::os::unix::fs::chown(env.path("theirs"), Some(65534), Some(65534)).unwrap();
    std::fs::create_dir_all(env.path("open/sub")).unwrap();
    std::fs::set_permissions(env.path("open"), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::os::unix::fs::symlink(env.path("state"), env.path("link")).unwrap();
    let long_name = "n".repeat(1_000_000);
    let long_name_toml = format!("\"{long_name}\"");
    let long_socket = format!("\"{d}/{}.sock\"", "s".repeat(120));

    let mut cases: Vec<(Vec<Change>, String)> = vec![
        // The top level.
        (vec![("", "colour", Some("1"))], "{f}: colour: unknown key; expected one of: state_dir, log_dir, socket, result_file, docker, workspace, image, container, jupyter, tls, gpu".into()),
        (vec![("gpu", "driver_timeout", Some("\"30s\""))], "{f}: [gpu] driver_timeout = \"30s\": expected at least \"1m\" (one nvidia-smi alone may take 30s; Alibaba's auto-install takes 10 to 20 minutes and reboots, e.g. \"40m\")".into()),
        (vec![("", "state_dir", Some("\"relative/dir\""))], "{f}: state_dir = \"relative/dir\": expected an absolute path (starting with /)".into()),
        (vec![("", "state_dir", Some("\"/tmp/ja-bad-state\""))], "{f}: state_dir = \"/tmp/ja-bad-state\": is in /tmp, which every user may write to; expected a directory below one only root writes (e.g. /var/lib)".into()),
        (vec![("", "log_dir", Some("\"/tmp/ja-bad-log\""))], "{f}: log_dir = \"/tmp/ja-bad-log\": is in /tmp, which every user may write to; expected a directory below one only root writes (e.g. /var/lib)".into()),
        (vec![("", "socket", Some("\"agent.sock\""))], "{f}: socket = \"agent.sock\": expected an absolute path (starting with /)".into()),
        (vec![("", "socket", Some("\"{d}/plain-file\""))], "{f}: socket = \"{d}/plain-file\": exists and is not a socket; expected a path for the agent's socket (what is there would be replaced)".into()),
        (vec![("", "result_file", Some("\"{d}/a-dir\""))], "{f}: result_file = \"{d}/a-dir\": is a directory; expected the path of a file".into()),
        (vec![("", "result_file", Some("\"{d}/plain-file/result.txt\""))], "{f}: result_file = \"{d}/plain-file/result.txt\": is below something that is not a directory".into()),
        (vec![("", "result_file", Some("\"result.txt\""))], "{f}: result_file = \"result.txt\": expected an absolute path (starting with /)".into()),
        (vec![("", "state_dir", Some("42"))], "{f}: state_dir = 42: expected a string".into()),
        // The state directory and the directories above it are root's alone (issue 22, items 7 and 10).
        (vec![("", "state_dir", Some("\"/tmp\""))], "{f}: state_dir = \"/tmp\": may be written by users other than root (mode 1777); expected a directory only root may write to, e.g. /var/lib/jupyter-agent".into()),
        (vec![("", "state_dir", Some("\"{d}/theirs\""))], "{f}: state_dir = \"{d}/theirs\": belongs to uid 65534 (nobody); expected a directory of root's, e.g. /var/lib/jupyter-agent".into()),
        (vec![("", "state_dir", Some("\"{d}/open/sub/state\""))], "{f}: state_dir = \"{d}/open/sub/state\": is below {d}/open, which users other than root may write to (mode 777); expected a directory whose every parent only root may write to, e.g. /var/lib/jupyter-agent".into()),
        // [image]
        (vec![("image", "name", Some("\"Notebook\""))], "{f}: [image] name = \"Notebook\": expected a repository name in lowercase (Docker refuses capitals), e.g. \"notebook:latest\"".into()),
        (vec![("image", "name", Some("\"a b\""))], "{f}: [image] name = \"a b\": expected an image reference of at most 255 characters such as \"notebook:latest\" or \"registry.example:5000/team/notebook:1.0\"".into()),
        (vec![("image", "name", Some("\"\""))], "{f}: [image] name = \"\": expected an image reference of at most 255 characters such as \"notebook:latest\" or \"registry.example:5000/team/notebook:1.0\"".into()),
        (vec![("image", "pull", Some("\"sometimes\""))], "{f}: [image] pull = \"sometimes\": expected one of \"always\", \"if-not-present\", \"never\"".into()),
        (vec![("image", "name", None), ("image", "pull", None)], "{f}: [image]: found none; expected exactly one image source: name (pull), archive (docker load, a path or an http(s) URL) or build".into()),
        (vec![("image", "archive", Some("\"/srv/nb.tar\""))], "{f}: [image]: found name and archive; expected exactly one image source: name (pull), archive (docker load, a path or an http(s) URL) or build".into()),
        (vec![("image", "name", None), ("image", "pull", None), ("image", "archive", Some("\"nb.tar\""))], "{f}: [image] archive = \"nb.tar\": expected an absolute path (starting with /) or an http:// or https:// URL with a host".into()),
        (vec![("image", "name", None), ("image", "pull", None), ("image", "archive", Some("\"https://b.example/nb.tar.gz?Signature=SIG\"")), ("image", "tag", Some("\"nb:1\""))], "{f}: [image] sha256: missing; an archive from a URL is verified before it is loaded: set sha256 to its sha256sum (jupyter-agent image export prints it)".into()),
        (vec![("image", "credentials", Some("\"registry.toml\""))], "{f}: [image] credentials = \"registry.toml\": expected an absolute path (starting with /)".into()),
        (vec![("image", "sha256", Some("\"abc\""))], "{f}: [image] sha256: only goes with archive: it is the archive's sha256sum".into()),
        (vec![("image", "colour", Some("\"red\""))], "{f}: [image] colour: unknown key; expected one of: name, pull, credentials, archive, sha256, max_size, download_timeout, tag, build".into()),
        (vec![("image", "name", None), ("image", "pull", None), ("image", "tag", Some("\"nb:1\"")), ("image.build", "context", Some("\"relative\""))], "{f}: [image.build] context = \"relative\": expected an absolute path (starting with /) or \"workspace\"".into()),
        (vec![("image", "name", None), ("image", "pull", None), ("image", "tag", Some("\"nb:1\"")), ("image.build", "context", Some("\"workspace\""))], "{f}: [image.build] context = \"workspace\": names the workspace, but there is no [workspace] section".into()),
        (vec![("image", "name", None), ("image", "pull", None), ("image", "tag", Some("\"nb:1\"")), ("image.build", "context", Some("\"/srv\"")), ("image.build", "dockerfile", Some("\"../Dockerfile\""))], "{f}: [image.build] dockerfile = \"../Dockerfile\": expected a path relative to the build context, inside it".into()),
        // [container]
        (vec![("container", "name", Some("\"bad name!\""))], "{f}: [container] name = \"bad name!\": expected a container name of at most 128 characters: letters, digits, '_', '.' and '-', starting with a letter or digit".into()),
        (vec![("container", "name", Some(long_name_toml.as_str()))], format!("{{f}}: [container] name = \"{}…: expected a container name of at most 128 characters: letters, digits, '_', '.' and '-', starting with a letter or digit", "n".repeat(198))),
        (vec![("container", "port", Some("70000"))], "{f}: [container] port = 70000: expected an integer from 1 to 65535".into()),
        (vec![("container", "port", Some("0"))], "{f}: [container] port = 0: expected an integer from 1 to 65535".into()),
        (vec![("container", "port", Some("\"8888\""))], "{f}: [container] port = \"8888\": expected an integer from 1 to 65535".into()),
        (vec![("container", "publish", Some("\"0.0.0.0:99999\""))], "{f}: [container] publish = \"0.0.0.0:99999\": expected \"ADDRESS:PORT\" or \"PORT\" with an IP address and a port from 0 to 65535 (0: Docker picks one), e.g. \"0.0.0.0:8888\"".into()),
        (vec![("container", "publish", Some("\"example.com:80\""))], "{f}: [container] publish = \"example.com:80\": expected \"ADDRESS:PORT\" or \"PORT\" with an IP address and a port from 0 to 65535 (0: Docker picks one), e.g. \"0.0.0.0:8888\"".into()),
        (vec![("container", "restart", Some("\"sometimes\""))], "{f}: [container] restart = \"sometimes\": expected one of \"no\", \"always\", \"unless-stopped\", \"on-failure\"".into()),
        (vec![("container", "volumes", Some("[\"/:/host\"]"))], "{f}: [container] volumes = \"/:/host\": expected a host path that is neither /, nor holds or is inside the agent's state ({d}/state): a container must not own the host".into()),
        (vec![("container", "volumes", Some("[\"{d}/state:/x\"]"))], "{f}: [container] volumes = \"{d}/state:/x\": expected a host path that is neither /, nor holds or is inside the agent's state ({d}/state): a container must not own the host".into()),
        // Compared resolved, not by name (issue 22, item 9).
        (vec![("container", "volumes", Some("[\"{d}/materials/../state:/x\"]"))], "{f}: [container] volumes = \"{d}/materials/../state:/x\": expected a host path that is neither /, nor holds or is inside the agent's state ({d}/state): a container must not own the host".into()),
        (vec![("container", "volumes", Some("[\"{d}/link/tls:/x:ro\"]"))], "{f}: [container] volumes = \"{d}/link/tls:/x:ro\": is inside the agent's state directory {d}/state (resolved: {d}/state/tls); expected a host path that exposes none of the agent's secrets (the state directory, the configuration file, registry credentials, the token file, an env file outside the workspace)".into()),
        (vec![("image", "name", None), ("image", "pull", None), ("image", "tag", Some("\"nb:1\"")), ("image.build", "context", Some("\"{d}/a-dir/..\""))], "{f}: [image.build] context = \"{d}/a-dir/..\": holds the agent's state directory {d}/state; expected a directory that holds none of the agent's secrets (the state directory, the configuration file, registry credentials, the token file)".into()),
        (vec![("container", "volumes", Some("[\"data:/data\"]"))], "{f}: [container] volumes = \"data:/data\": expected \"/host/path:/container/path\" or \"/host/path:/container/path:ro\" (the host path may be \"workspace\")".into()),
        (vec![("container", "volumes", Some("[\"/srv:relative\"]"))], "{f}: [container] volumes = \"/srv:relative\": expected \"/host/path:/container/path\" or \"/host/path:/container/path:ro\" (the host path may be \"workspace\")".into()),
        (vec![("container", "volumes", Some("\"/srv:/srv\""))], "{f}: [container] volumes = \"/srv:/srv\": expected a non-empty array of strings, e.g. [\"/srv/data:/data\"]".into()),
        (vec![("container", "env", Some("{ \"A B\" = \"1\" }"))], "{f}: [container] env.\"A B\": expected a variable name: letters, digits and '_', not starting with a digit".into()),
        (vec![("container", "env", Some("{ \"A\\nB\" = \"1\" }"))], "{f}: [container] env.\"A\\nB\": expected a variable name: letters, digits and '_', not starting with a digit".into()),
        (vec![("container", "env", Some("{ \"1A\" = \"1\" }"))], "{f}: [container] env.\"1A\": expected a variable name: letters, digits and '_', not starting with a digit".into()),
        (vec![("container", "env", Some("{ A = \"x\\u0000y\" }"))], "{f}: [container] env.A: expected a value without NUL characters (the value is not shown: it may be a secret)".into()),
        (vec![("container", "env", Some("{ SECRET = 42 }"))], "{f}: [container] env.SECRET: expected a string value (the value is not shown: it may be a secret)".into()),
        (vec![("container", "env_file", Some("\"env\""))], "{f}: [container] env_file = \"env\": expected an absolute path (starting with /)".into()),
        (vec![("container", "command", Some("\"jupyter notebook\""))], "{f}: [container] command = \"jupyter notebook\": expected a non-empty array of strings, e.g. [\"jupyter\", \"notebook\"]".into()),
        (vec![("container", "user", Some("0"))], "{f}: [container] user = 0: expected a string".into()),
        (vec![("container", "metadata_access", Some("\"no\""))], "{f}: [container] metadata_access = \"no\": expected true or false".into()),
        (vec![("container", "prot", Some("1"))], "{f}: [container] prot: unknown key; expected one of: name, command, user, env, env_file, volumes, port, publish, restart, metadata_access, gpus".into()),
        // [jupyter]
        (vec![("jupyter", "ready_timeout", Some("\"soon\""))], "{f}: [jupyter] ready_timeout = \"soon\": expected a duration such as \"90s\", \"10m\" or \"1h\"".into()),
        (vec![("jupyter", "ready_timeout", Some("600"))], "{f}: [jupyter] ready_timeout = 600: expected a duration such as \"90s\", \"10m\" or \"1h\"".into()),
        (vec![("jupyter", "ready_timeout", Some("\"500ms\""))], "{f}: [jupyter] ready_timeout = \"500ms\": expected at least 1s".into()),
        (vec![("jupyter", "ready_timeout", Some("\"9223372036854775807s\""))], "{f}: [jupyter] ready_timeout = \"9223372036854775807s\": expected at most 30 days".into()),
        (vec![("jupyter", "url_host", Some("\"1.2.3.4:9999\""))], "{f}: [jupyter] url_host = \"1.2.3.4:9999\": expected \"auto\", a host name or an IP address, without a port (the port is [container] publish's)".into()),
        (vec![("jupyter", "url_host", Some("\"\""))], "{f}: [jupyter] url_host = \"\": expected \"auto\", a host name or an IP address, without a port (the port is [container] publish's)".into()),
        (vec![("jupyter", "metadata_endpoint", Some("\"http://x y\""))], "{f}: [jupyter] metadata_endpoint = \"http://x y\": expected an http:// URL with a host and no spaces".into()),
        (vec![("jupyter", "metadata_endpoint", Some("\"https://100.100.100.200\""))], "{f}: [jupyter] metadata_endpoint = \"https://100.100.100.200\": expected an http:// URL with a host and no spaces".into()),
        (vec![("jupyter", "metadata_endpoint", Some("\"http://metadata.example\""))], "{f}: [jupyter] metadata_endpoint = \"http://metadata.example\": expected an IPv4 address as the host (the agent keeps the container from reaching it), unless [container] metadata_access = true".into()),
        // [docker]
        (vec![("tls", "mode", Some("\"https\""))], "{f}: [tls] mode = \"https\": expected \"off\", \"acme\" or \"self-signed\"".into()),
        (vec![("tls", "mode", Some("\"acme\"")), ("tls", "directory", Some("\"http://127.0.0.1:14000/dir\""))], "{f}: [tls] directory = \"http://127.0.0.1:14000/dir\": expected an https:// URL (ACME runs over HTTPS only)".into()),
        (vec![("tls", "mode", Some("\"acme\"")), ("tls", "ca_file", Some("\"ca.pem\""))], "{f}: [tls] ca_file = \"ca.pem\": expected an absolute path (starting with /)".into()),
        (vec![("docker", "host", Some("\"docker.sock\""))], "{f}: [docker] host = \"docker.sock\": expected unix:///path/to/docker.sock, tcp://HOST:PORT or http://HOST:PORT".into()),
        (vec![("docker", "source", Some("\"snap\""))], "{f}: [docker] source = \"snap\": expected one of \"auto\", \"distro\", \"docker-ce\"".into()),
        (vec![("docker", "install", Some("\"yes\""))], "{f}: [docker] install = \"yes\": expected true or false".into()),
        (vec![("docker", "registry_mirrors", Some("[\"mirror.example\"]"))], "{f}: [docker] registry_mirrors = \"mirror.example\": expected https:// (or http://) URLs of registry mirrors".into()),
        (vec![("docker", "ping_timeout", Some("\"forever\""))], "{f}: [docker] ping_timeout = \"forever\": expected a duration such as \"90s\", \"10m\" or \"1h\"".into()),
        (vec![("docker", "ping_timeout", Some("\"9223372036854775807s\""))], "{f}: [docker] ping_timeout = \"9223372036854775807s\": expected at most 30 days".into()),
        (vec![("docker", "mirror", Some("\"ftp://mirror.example\""))], "{f}: [docker] mirror = \"ftp://mirror.example\": expected an https:// (or http://) URL".into()),
        // [workspace]
        (vec![("workspace", "ref", Some("\"main\""))], "{f}: [workspace]: has both sha256 and ref; expected sha256 for a tarball or ref for a git repository".into()),
        (vec![("workspace", "sha256", None), ("workspace", "ref", Some("\"main\""))], "{f}: [workspace] source = \"http://127.0.0.1:9/m.tar.gz\": names a tarball, which takes sha256 (its sha256sum), not ref (a git branch, tag or commit)".into()),
        (vec![("workspace", "sha256", Some("\"xyz\""))], "{f}: [workspace] sha256 = \"xyz\": expected 64 hexadecimal digits (sha256sum of the tarball)".into()),
        (vec![("workspace", "sha256", None)], "{f}: [workspace]: expected sha256 (the source is a tarball) or ref (the source is a git repository)".into()),
        (vec![("workspace", "path", Some("\"materials\""))], "{f}: [workspace] path = \"materials\": expected an absolute path (starting with /)".into()),
        (vec![("workspace", "path", Some("\"/\""))], "{f}: [workspace] path = \"/\": expected a directory below /, without ..".into()),
        (vec![("workspace", "max_size", Some("\"10TB\""))], "{f}: [workspace] max_size = \"10TB\": expected a size with its unit, such as \"500MB\" or \"2GiB\" (B, kB, MB, GB, KiB, MiB, GiB), from 1 byte to 1 TiB".into()),
        (vec![("workspace", "max_size", Some("\"100\""))], "{f}: [workspace] max_size = \"100\": expected a size with its unit, such as \"500MB\" or \"2GiB\" (B, kB, MB, GB, KiB, MiB, GiB), from 1 byte to 1 TiB".into()),
        (vec![("workspace", "download_exclude", Some("[\"data/**\", \"/srv/data/**\"]"))], "{f}: [workspace] download_exclude = \"/srv/data/**\": expected a glob relative to the workspace, e.g. \"data/**\", not an absolute path".into()),
        (vec![("image", "max_size", Some("\"1GiB\""))], "{f}: [image] max_size: only goes with an archive URL: it bounds the download".into()),
        (vec![("workspace.env", "A", Some("\"1\""))], "{f}: [workspace] env_file: missing; [workspace.env] needs a file to be written to, e.g. env_file = \"env\"".into()),
        (vec![("workspace", "env_file", Some("\"{d}/foreign.env\"")), ("workspace.env", "A", Some("\"1\""))], "{f}: [workspace] env_file = \"{d}/foreign.env\": exists and was not written by jupyter-agent; expected a new file (it would be replaced)".into()),
        (vec![("workspace", "env_file", Some("\"../env\""))], "{f}: [workspace] env_file = \"../env\": expected a file name inside the workspace (env) or an absolute path".into()),
    ];
    // A socket path beyond the kernel's limit.
    cases.push((
        vec![("", "socket", Some(long_socket.as_str()))],
        format!("{{f}}: socket = {long_socket}: expected a path of at most 107 bytes (the kernel's limit for a Unix socket address)"),
    ));
    // Not TOML at all, and a section that does not exist.
    let raw: Vec<(String, String)> = vec![
        ("[container\nname = 1\n".into(), "{f}: not valid TOML at line 1, column 11: unclosed table, expected `]`".into()),
        ("[jupyterr]\nready_timeout = \"1m\"\n[image]\nname = \"nb\"\n".into(), "{f}: jupyterr: unknown key; expected one of: state_dir, log_dir, socket, result_file, docker, workspace, image, container, jupyter, tls, gpu".into()),
    ];
    assert!(cases.len() + raw.len() >= 60, "{} cases", cases.len() + raw.len());

    let involved = [
        env.dir.path(),
        Path::new("/tmp/ja-bad-state"),
        Path::new("/tmp/ja-bad-log"),
        Path::new("/tmp/agent.lock"),
        Path::new("/tmp/state.json"),
    ];
    let before = snapshot(&involved);
    let tmp_mode = std::fs::metadata("/tmp").unwrap().mode();
    let f = env.config_path().display().to_string();
    let texts =
        cases.iter().map(|(changes, want)| (render(&env, changes), want.clone())).chain(raw).collect::<Vec<_>>();
    let mut failures = Vec::new();
    for (text, want) in &texts {
        env.write_config(text);
        let before_run = snapshot(&involved);
        let run = env.agent(&["run", "--once"]);
        let want = want.replace("{f}", &f).replace("{d}", &d);
        let message = run.stderr.trim_end();
        let shown = &text[..text.len().min(300)];
        if run.code != 2 {
            failures.push(format!("exit {} instead of 2 for:\n{shown}\n{message}", run.code));
        } else if message != format!("jupyter-agent: {want}") {
            failures.push(format!(
                "for:\n{shown}\nwanted: jupyter-agent: {want}\n   got: {}",
                &message[..message.len().min(500)]
            ));
        } else if message.len() > 2000 {
            failures.push(format!("a message of {} bytes for:\n{shown}", message.len()));
        }
        if snapshot(&involved) != before_run {
            failures.push(format!("something changed on the host for:\n{shown}"));
        }
        let ps = docker(&["ps", "-aq", "--filter", &format!("name=^{}$", env.name)]);
        if !ps.stdout.is_empty() {
            failures.push(format!("a container was created for:\n{shown}"));
        }
    }
    std::fs::remove_file(env.config_path()).unwrap();
    assert!(failures.is_empty(), "{} of {} cases failed:\n\n{}", failures.len(), texts.len(), failures.join("\n\n"));
    assert_eq!(snapshot(&involved), before, "the host changed");
    assert_eq!(std::fs::metadata("/tmp").unwrap().mode(), tmp_mode, "/tmp changed");
}
