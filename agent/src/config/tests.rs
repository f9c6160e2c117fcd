//! The configuration's table-driven tests: exact messages for every refusal.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(Path::new("/etc/jupyter-agent/config.toml"), text).map_err(|e| e.to_string())
}

const MINIMAL: &str = "[image]\nname = \"notebook\"\n";

#[test]
fn defaults_fill_everything_but_the_image() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/jupyter-agent"));
    assert_eq!(c.result_file, None);
    assert_eq!(c.image.reference, "notebook:latest");
    assert_eq!(
        c.image.source,
        ImageSource::Pull(crate::config::Pull { policy: PullPolicy::IfNotPresent, credentials: None })
    );
    assert_eq!(c.container.name, "jupyter");
    assert_eq!(c.container.port, 8888);
    assert_eq!(c.container.publish, Publish { address: "0.0.0.0".parse().unwrap(), port: 8888 });
    assert_eq!(c.container.restart, RestartPolicy::UnlessStopped);
    assert_eq!(c.container.gpus, None);
    assert_eq!(c.jupyter.ready_timeout, Duration::from_secs(600));
    assert_eq!(c.jupyter.url_host, UrlHost::Auto);
    assert_eq!(c.docker.host, None);
    assert!(c.docker.install);
    assert_eq!(c.docker.source, DockerSource::Auto);
    assert_eq!(c.docker.mirror, DEFAULT_DOCKER_MIRROR);
    assert!(c.docker.registry_mirrors.is_empty());
    assert!(c.docker.remove_conflicts);
    assert_eq!(c.docker.nvidia_toolkit_repository, DEFAULT_NVIDIA_TOOLKIT_REPOSITORY);
    let local =
        parse(&format!("[docker]\nnvidia_toolkit_repository = \"file:///srv/mirror/nvidia/\"\n{MINIMAL}")).unwrap();
    assert_eq!(local.docker.nvidia_toolkit_repository, "file:///srv/mirror/nvidia");
    assert_eq!(c.log_dir, PathBuf::from("/var/log/jupyter-agent"));
    assert_eq!(c.tls.mode, TlsMode::Off);
    assert_eq!(c.gpu.driver_timeout, Duration::from_secs(40 * 60));
    assert_eq!(c.jupyter_publish(false), c.container.publish);
    assert_eq!(c.jupyter_publish(true), Publish { address: "127.0.0.1".parse().unwrap(), port: 0 });
}

#[test]
fn tls_defaults_to_lets_encrypt_over_http_01_with_a_self_signed_fallback() {
    let c = parse(&format!("{MINIMAL}[tls]\nmode = \"acme\"\n")).unwrap();
    assert_eq!(c.tls.directory, LETS_ENCRYPT);
    assert_eq!((c.tls.challenge, c.tls.challenge_port), (Challenge::Http01, 80));
    assert_eq!(c.tls.profile, "shortlived");
    assert_eq!(c.tls.fallback, Fallback::SelfSigned);
    let c = parse(&format!("{MINIMAL}[tls]\nmode = \"acme\"\nchallenge = \"tls-alpn-01\"\n")).unwrap();
    assert_eq!(c.tls.challenge_port, 443);
}

#[test]
fn commands_that_do_not_converge_need_no_image_but_still_refuse_bad_keys() {
    let missing = Path::new("/nonexistent/jupyter-agent/config.toml");
    assert_eq!(Config::load_or_default(missing).unwrap().state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "state_dir = \"/srv/state\"\n").unwrap();
    assert_eq!(Config::load_or_default(&path).unwrap().state_dir, PathBuf::from("/srv/state"));
    std::fs::write(&path, "[docker]\nsorce = \"auto\"\n").unwrap();
    assert!(Config::load_or_default(&path).unwrap_err().to_string().contains("[docker] sorce: unknown key"));
    assert!(Config::load(&path).is_err());
}

#[test]
fn the_handson_example_parses() {
    let text = include_str!("../../../examples/handson.toml");
    let c = parse(text).unwrap();
    assert_eq!(c.container.user.as_deref(), Some("root"));
    assert_eq!(c.container.volumes[0].container, "/home/jupyter/jupyter-working");
    let w = c.workspace.as_ref().unwrap();
    assert_eq!(w.path, PathBuf::from("/root/imagesearchhandson"));
    assert_eq!(c.container.volumes[0].host, w.path, "the repository is mounted");
    assert_eq!(c.tls.mode, TlsMode::Acme);
    assert!(matches!(&c.image.source, ImageSource::Build(b) if b.context == w.path), "built from its Dockerfile");
    assert_eq!(c.container.env_file.as_deref(), Some(Path::new("/root/imagesearchhandson/env")));
    assert!(w.env.contains_key("IMAGESEARCH_INSTANCE_NAME"), "the name the notebooks read");
}

#[test]
fn every_example_parses() {
    for text in [include_str!("../../../examples/local.toml"), include_str!("../../../examples/pull.toml")] {
        parse(text).unwrap();
    }
}

#[test]
fn gpus_are_all_or_a_count() {
    let gpus = |v: &str| parse(&format!("{MINIMAL}[container]\ngpus = {v}\n")).map(|c| c.container.gpus);
    assert_eq!(gpus("\"all\""), Ok(Some(super::Gpus::All)));
    assert_eq!(gpus("2"), Ok(Some(super::Gpus::Count(2))));
    let f = "/etc/jupyter-agent/config.toml";
    let expected = "expected \"all\" or a number of GPUs from 1 to 64 (written without quotes), or no gpus key for a container without GPUs";
    for bad in ["0", "-1", "65", "\"2\"", "\"ALL\"", "true", "1.5"] {
        assert_eq!(gpus(bad), Err(format!("{f}: [container] gpus = {bad}: {expected}")), "{bad}");
    }
}

#[test]
fn gpu_driver_paths_default_to_the_hosts_and_take_absolute_paths() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.gpu.auto_install_log, std::path::Path::new("/root/auto_install/auto_install.log"));
    assert_eq!(c.gpu.nvidia_smi, std::path::Path::new("nvidia-smi"));
    assert_eq!(c.gpu.devices, std::path::Path::new("/dev"));
    let c = parse(&format!("{MINIMAL}[gpu]\nnvidia_smi = \"/opt/nv/nvidia-smi\"\ndevices = \"/srv/dev\"\nauto_install_log = \"/var/log/ai.log\"\n")).unwrap();
    assert_eq!(c.gpu.nvidia_smi, std::path::Path::new("/opt/nv/nvidia-smi"));
    assert_eq!(c.gpu.devices, std::path::Path::new("/srv/dev"));
    assert_eq!(c.gpu.auto_install_log, std::path::Path::new("/var/log/ai.log"));
    let err = parse(&format!("{MINIMAL}[gpu]\nnvidia_smi = \"nvidia-smi\"\n")).unwrap_err().to_string();
    assert!(err.ends_with("[gpu] nvidia_smi = \"nvidia-smi\": expected an absolute path (starting with /)"), "{err}");
}

#[test]
fn gpu_driver_timeout_takes_a_duration_of_a_minute_or_more() {
    let c = parse(&format!("{MINIMAL}[gpu]\ndriver_timeout = \"1h\"\n")).unwrap();
    assert_eq!(c.gpu.driver_timeout, Duration::from_secs(3600));
    let c = parse(&format!("{MINIMAL}[gpu]\ndriver_timeout = \"1m\"\n")).unwrap();
    assert_eq!(c.gpu.driver_timeout, Duration::from_secs(60));
}

#[test]
fn rejections_name_file_key_value_and_expectation() {
    let f = "/etc/jupyter-agent/config.toml";
    let cases: &[(&str, String)] = &[
        ("[container]\nport = 70000\n", format!("{f}: [container] port = 70000: expected an integer from 1 to 65535")),
        ("[container]\nport = \"8888\"\n", format!("{f}: [container] port = \"8888\": expected an integer from 1 to 65535")),
        ("[container]\nprot = 1\n", format!("{f}: [container] prot: unknown key; expected one of: name, command, user, env, env_file, volumes, port, publish, restart, metadata_access, gpus")),
        ("colour = 1\n", format!("{f}: colour: unknown key; expected one of: state_dir, log_dir, socket, result_file, docker, workspace, image, container, jupyter, tls, gpu")),
        ("[gpu]\ndriver_timeout = \"30s\"\n", format!("{f}: [gpu] driver_timeout = \"30s\": expected at least \"1m\" (one nvidia-smi alone may take 30s; Alibaba's auto-install takes 10 to 20 minutes and reboots, e.g. \"40m\")")),
        ("[gpu]\ndriver_timeout = 2400\n", format!("{f}: [gpu] driver_timeout = 2400: expected a duration such as \"90s\", \"10m\" or \"1h\"")),
        ("[gpu]\ndriver_timout = \"40m\"\n", format!("{f}: [gpu] driver_timout: unknown key; expected one of: driver_timeout, auto_install_log, nvidia_smi, devices")),
        ("[jupyter]\nready_timeout = \"soon\"\n", format!("{f}: [jupyter] ready_timeout = \"soon\": expected a duration such as \"90s\", \"10m\" or \"1h\"")),
        ("[jupyter]\nready_timeout = 600\n", format!("{f}: [jupyter] ready_timeout = 600: expected a duration such as \"90s\", \"10m\" or \"1h\"")),
        ("state_dir = \"relative/dir\"\n", format!("{f}: state_dir = \"relative/dir\": expected an absolute path (starting with /)")),
        ("[container]\nrestart = \"sometimes\"\n", format!("{f}: [container] restart = \"sometimes\": expected one of \"no\", \"always\", \"unless-stopped\", \"on-failure\"")),
        ("[container]\npublish = \"0.0.0.0:99999\"\n", format!("{f}: [container] publish = \"0.0.0.0:99999\": expected \"ADDRESS:PORT\" or \"PORT\" with an IP address and a port from 0 to 65535 (0: Docker picks one), e.g. \"0.0.0.0:8888\"")),
        ("[container]\nvolumes = [\"data:/data\"]\n", format!("{f}: [container] volumes = \"data:/data\": expected \"/host/path:/container/path\" or \"/host/path:/container/path:ro\" (the host path may be \"workspace\")")),
        ("[container]\nenv = { SECRET = 42 }\n", format!("{f}: [container] env.SECRET: expected a string value (the value is not shown: it may be a secret)")),
        ("[docker]\nhost = \"docker.sock\"\n", format!("{f}: [docker] host = \"docker.sock\": expected unix:///path/to/docker.sock, tcp://HOST:PORT or http://HOST:PORT")),
        ("[docker]\nsource = \"snap\"\n", format!("{f}: [docker] source = \"snap\": expected one of \"auto\", \"distro\", \"docker-ce\"")),
        ("[docker]\ninstall = \"yes\"\n", format!("{f}: [docker] install = \"yes\": expected true or false")),
        ("[docker]\nremove_conflicts = \"no\"\n", format!("{f}: [docker] remove_conflicts = \"no\": expected true or false")),
        ("[docker]\nregistry_mirrors = [\"mirror.example\"]\n", format!("{f}: [docker] registry_mirrors = \"mirror.example\": expected https:// (or http://) URLs of registry mirrors")),
        ("[docker]\nnvidia_toolkit_repository = \"mirror.example/nvidia\"\n", format!("{f}: [docker] nvidia_toolkit_repository = \"mirror.example/nvidia\": expected an https:// (or http://) URL, or file:///DIR, of a repository in NVIDIA's layout")),
        ("[docker]\nnvidia_toolkit_repository = \"https://u:s3cr3t@mirror.example/nv\"\n", format!("{f}: [docker] nvidia_toolkit_repository: a URL with credentials (user:password@) would show them in the plan, the state, the logs and the commands' arguments; give the mirror's URL without them (apt reads credentials from /etc/apt/auth.conf.d/)")),
        ("[docker]\nnvidia_toolkit_repository = \"file://relative\"\n", format!("{f}: [docker] nvidia_toolkit_repository = \"file://relative\": expected an https:// (or http://) URL, or file:///DIR, of a repository in NVIDIA's layout")),
        ("[image]\npull = \"sometimes\"\nname = \"x\"\n", format!("{f}: [image] pull = \"sometimes\": expected one of \"always\", \"if-not-present\", \"never\"")),
        ("[tls]\nmode = \"on\"\n", format!("{f}: [tls] mode = \"on\": expected \"off\", \"acme\" or \"self-signed\"")),
        ("[tls]\nmode = \"acme\"\nchallenge = \"dns-01\"\n", format!("{f}: [tls] challenge = \"dns-01\": expected \"http-01\" (port 80) or \"tls-alpn-01\" (port 443)")),
        ("[tls]\nmode = \"acme\"\ndirectory = \"http://ca.example/dir\"\n", format!("{f}: [tls] directory = \"http://ca.example/dir\": expected an https:// URL (ACME runs over HTTPS only)")),
        ("[tls]\nmode = \"acme\"\nfallback = \"http\"\n", format!("{f}: [tls] fallback = \"http\": expected \"self-signed\" (serve one while ACME fails) or \"fail\"")),
        ("[tls]\nmode = \"acme\"\nchallenge_port = 8888\n", format!("{f}: [tls] challenge_port = 8888: is also [container] publish's port, where the agent serves HTTPS; http-01 needs a port of its own (80), or set challenge = \"tls-alpn-01\"")),
        ("[tls]\nmode = \"acme\"\nprofile = \"short lived\"\n", format!("{f}: [tls] profile = \"short lived\": expected a profile name such as \"shortlived\"")),
        ("[tls]\nmode = \"acme\"\nemail = \"a@b.c\"\n", format!("{f}: [tls] email: unknown key; expected one of: mode, directory, challenge, challenge_port, profile, fallback, ca_file")),
        // Found by the fuzzer (docs/fuzzing.md): a URL without a host, a
        // section written as an array of tables (its env values not echoed),
        // a syntax error on a line holding a secret (the line not quoted).
        ("[docker]\nmirror = \"http:///\"\n", format!("{f}: [docker] mirror = \"http:///\": expected an https:// (or http://) URL")),
        ("[image]\nname = \"n\"\n[[container]]\nenv = { TOKEN = \"s3cr3t\" }\n", format!("{f}: [container]: expected a table (a [section]), not a value or an array of tables")),
        ("[image]\nname = \"n\"\n[container.env]\nTOKEN = \"s3cr3t\" x\n", format!("{f}: not valid TOML at line 4, column 18: unexpected key or value, expected newline, `#`")),
    ];
    for (body, want) in cases {
        let text = if body.contains("[image]") { body.to_string() } else { format!("{body}{MINIMAL}") };
        assert_eq!(parse(&text).unwrap_err(), *want, "config:\n{text}");
    }
}

#[test]
fn a_workspace_is_a_tarball_or_a_git_repository_and_can_be_named() {
    use crate::config::workspace::Source;
    let sha = "ab".repeat(32);
    let c = parse(&format!(
        "[workspace]\nsource = \"https://example.com/h.tar.gz\"\nsha256 = \"{}\"\npath = \"/root/handson\"\nenv_file = \"env\"\n\
         [workspace.env]\nREGION = \"cn-beijing\"\n\
         [image]\ntag = \"notebook:latest\"\n[image.build]\ncontext = \"workspace\"\n\
         [container]\nvolumes = [\"workspace:/home/jupyter/jupyter-working\"]\n",
        sha.to_uppercase()
    ))
    .unwrap();
    let w = c.workspace.as_ref().unwrap();
    assert_eq!(
        w.source,
        Source::Tarball {
            url: "https://example.com/h.tar.gz".into(),
            sha256: sha.clone(),
            max_size: crate::config::workspace::DEFAULT_MAX_SIZE
        }
    );
    assert_eq!(w.env_file.as_deref(), Some(Path::new("/root/handson/env")));
    assert_eq!(c.container.env_file.as_deref(), Some(Path::new("/root/handson/env")), "the container gets it");
    assert_eq!(c.container.volumes[0].host, PathBuf::from("/root/handson"));
    assert!(matches!(&c.image.source, ImageSource::Build(b) if b.context == Path::new("/root/handson")));
    let g = parse(
        "[workspace]\nsource = \"file:///srv/repo.git\"\nref = \"main\"\npath = \"/root/w\"\n[image]\nname = \"x\"\n",
    )
    .unwrap();
    assert_eq!(
        g.workspace.unwrap().source,
        Source::Git {
            url: "file:///srv/repo.git".into(),
            reference: "main".into(),
            max_size: crate::config::workspace::DEFAULT_MAX_SIZE
        }
    );

    let f = "/etc/jupyter-agent/config.toml";
    let cases = [
        ("source = \"https://x/a.tgz\"\npath = \"/w\"", format!("{f}: [workspace]: expected sha256 (the source is a tarball) or ref (the source is a git repository)")),
        ("source = \"https://x/a.tgz\"\nsha256 = \"abc\"\npath = \"/w\"", format!("{f}: [workspace] sha256 = \"abc\": expected 64 hexadecimal digits (sha256sum of the tarball)")),
        ("source = \"https://u:pw@x/a.git\"\nref = \"main\"\nsha256 = \"abc\"\npath = \"/w\"", format!("{f}: [workspace]: has both sha256 and ref; expected sha256 for a tarball or ref for a git repository")),
        ("source = \"ftp://u:pw@x/a.tgz\"\nsha256 = \"{sha}\"\npath = \"/w\"", format!("{f}: [workspace] source = \"ftp://***@x/a.tgz\": expected an http:// or https:// URL of a tarball")),
        ("source = \"/srv/repo\"\nref = \"main\"", format!("{f}: [workspace] path: missing; expected the host directory, e.g. path = \"/root/imagesearchhandson\"")),
        ("source = \"/srv/repo\"\nref = \"main\"\npath = \"/w\"\nenv = { A = \"1\" }", format!("{f}: [workspace] env_file: missing; [workspace.env] needs a file to be written to, e.g. env_file = \"env\"")),
        ("source = \"/srv/repo\"\nref = \"main\"\npath = \"/w\"\nenv_file = \"../env\"", format!("{f}: [workspace] env_file = \"../env\": expected a file name inside the workspace (env) or an absolute path")),
    ];
    for (body, want) in cases {
        let body = body.replace("{sha}", &sha);
        assert_eq!(parse(&format!("[workspace]\n{body}\n[image]\nname = \"x\"\n")).unwrap_err(), want, "{body}");
    }
    assert_eq!(
        parse("[image]\ntag = \"nb\"\n[image.build]\ncontext = \"workspace\"\n").unwrap_err(),
        format!("{f}: [image.build] context = \"workspace\": names the workspace, but there is no [workspace] section")
    );
}

#[test]
fn image_needs_exactly_one_source() {
    let f = "/etc/jupyter-agent/config.toml";
    assert_eq!(
        parse("[container]\nport = 8888\n").unwrap_err(),
        format!("{f}: [image]: missing; expected a section with one of name, archive or build")
    );
    assert_eq!(
        parse("[image]\nname = \"a\"\narchive = \"/a.tar\"\n").unwrap_err(),
        format!("{f}: [image]: found name and archive; expected exactly one image source: name (pull), archive (docker load, a path or an http(s) URL) or build")
    );
    assert_eq!(
        parse("[image]\narchive = \"/a.tar\"\n").unwrap_err(),
        format!("{f}: [image] tag: missing; expected the name:tag the loaded or built image gets, e.g. tag = \"notebook:latest\"")
    );
    assert_eq!(
        parse("[image]\nname = \"a\"\ntag = \"b\"\n").unwrap_err(),
        format!("{f}: [image] tag: only goes with archive or build; with name, the tag is part of the name (name = \"repo:tag\")")
    );
    assert_eq!(
        parse("[image]\ntag = \"nb\"\n[image.build]\ncontext = \"/ctx\"\ndockerfile = \"../Dockerfile\"\n").unwrap_err(),
        format!("{f}: [image.build] dockerfile = \"../Dockerfile\": expected a path relative to the build context, inside it")
    );
}

#[test]
fn secrets_never_reach_a_message() {
    let err = parse("[image]\nname = \"a\"\n[container]\nenv = { KEY = [\"s3cr3t\"] }\n").unwrap_err();
    assert!(!err.contains("s3cr3t"), "{err}");
}

#[test]
fn invalid_toml_is_reported_with_the_file() {
    let err = parse("[image\nname = 1").unwrap_err();
    assert!(err.starts_with("/etc/jupyter-agent/config.toml: not valid TOML at line "), "{err}");
}

#[test]
fn publish_forms() {
    let c = parse(&format!("{MINIMAL}[container]\npublish = \"127.0.0.1:0\"\n")).unwrap();
    assert_eq!(c.container.publish, Publish { address: "127.0.0.1".parse().unwrap(), port: 0 });
}

/// Bad input an operator tried (issue: hardening) that was accepted or
/// failed late: each is refused when the file is read, naming file, key,
/// value and expectation, and a long value is cut in the message.
#[test]
fn dangerous_or_malformed_values_are_refused_when_read() {
    let f = "/etc/jupyter-agent/config.toml";
    let long = "n".repeat(10_000);
    let cases: Vec<(String, String)> = vec![
        (
            "[container]\nenv = { \"A B\" = \"1\" }\n".into(),
            format!("{f}: [container] env.\"A B\": expected a variable name: letters, digits and '_', not starting with a digit"),
        ),
        (
            "[container]\nenv = { \"A\\nB\" = \"1\" }\n".into(),
            format!("{f}: [container] env.\"A\\nB\": expected a variable name: letters, digits and '_', not starting with a digit"),
        ),
        (
            "[container]\nenv = { \"1A\" = \"1\" }\n".into(),
            format!("{f}: [container] env.\"1A\": expected a variable name: letters, digits and '_', not starting with a digit"),
        ),
        (
            "[container]\nenv = { A = \"x\\u0000y\" }\n".into(),
            format!("{f}: [container] env.A: expected a value without NUL characters (the value is not shown: it may be a secret)"),
        ),
        (
            "[jupyter]\nurl_host = \"1.2.3.4:9999\"\n".into(),
            format!("{f}: [jupyter] url_host = \"1.2.3.4:9999\": expected \"auto\", a host name or an IP address, without a port (the port is [container] publish's)"),
        ),
        (
            "[jupyter]\nmetadata_endpoint = \"http://x y\"\n".into(),
            format!("{f}: [jupyter] metadata_endpoint = \"http://x y\": expected an http:// URL with a host and no spaces"),
        ),
        (
            "[jupyter]\nmetadata_endpoint = \"http://metadata.example\"\n".into(),
            format!("{f}: [jupyter] metadata_endpoint = \"http://metadata.example\": expected an IPv4 address as the host (the agent keeps the container from reaching it), unless [container] metadata_access = true"),
        ),
        (
            "[container]\nvolumes = [\"/:/host\"]\n".into(),
            format!("{f}: [container] volumes = \"/:/host\": expected a host path that is neither /, nor holds or is inside the agent's state (/var/lib/jupyter-agent): a container must not own the host"),
        ),
        (
            "[container]\nvolumes = [\"/var/lib:/x\"]\n".into(),
            format!("{f}: [container] volumes = \"/var/lib:/x\": expected a host path that is neither /, nor holds or is inside the agent's state (/var/lib/jupyter-agent): a container must not own the host"),
        ),
        (
            "[image]\nname = \"Notebook:latest\"\n".into(),
            format!("{f}: [image] name = \"Notebook:latest\": expected a repository name in lowercase (Docker refuses capitals), e.g. \"notebook:latest\""),
        ),
        (
            "[jupyter]\nready_timeout = \"500ms\"\n".into(),
            format!("{f}: [jupyter] ready_timeout = \"500ms\": expected at least 1s"),
        ),
        (
            "[workspace]\nsource = \"https://x/materials.tar.gz\"\nref = \"main\"\npath = \"/w\"\n".into(),
            format!("{f}: [workspace] source = \"https://x/materials.tar.gz\": names a tarball, which takes sha256 (its sha256sum), not ref (a git branch, tag or commit)"),
        ),
        (
            format!("[container]\nname = \"{long}!\"\n"),
            format!(
                "{f}: [container] name = \"{}…: expected a container name of at most 128 characters: letters, digits, '_', '.' and '-', starting with a letter or digit",
                "n".repeat(198)
            ),
        ),
    ];
    for (body, want) in cases {
        let text = if body.contains("[image]") { body.clone() } else { format!("{body}{MINIMAL}") };
        assert_eq!(parse(&text).unwrap_err(), want, "config:\n{}", jupyter_proto::redact::bound(&text, 300));
    }
    // Legal neighbours stay legal.
    for ok in [
        "[jupyter]\nurl_host = \"[2001:db8::1]\"\n",
        "[jupyter]\nurl_host = \"2001:db8::1\"\n",
        "[image]\nname = \"registry.example:5000/team/nb:Tag1\"\n",
        "[image]\nname = \"localhost:5000/nb\"\n",
        "[container]\nenv = { _A1 = \"1\" }\nvolumes = [\"/srv/data:/data\"]\n",
        "[jupyter]\nready_timeout = \"1s\"\n",
    ] {
        let text = if ok.contains("[image]") { ok.to_string() } else { format!("{ok}{MINIMAL}") };
        parse(&text).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

/// Paths are compared resolved, not by name: `..` and symbolic links do not
/// get the agent's secrets into a container or a build context (issue 22,
/// item 9).
#[test]
fn volumes_and_build_contexts_that_reach_a_secret_are_refused_however_written() {
    let f = "/etc/jupyter-agent/config.toml";
    let secrets = "expected a host path that exposes none of the agent's secrets (the state directory, the configuration file, registry credentials, the token file, an env file outside the workspace)";
    let context_secrets = "expected a directory that holds none of the agent's secrets (the state directory, the configuration file, registry credentials, the token file)";
    let state = "expected a host path that is neither /, nor holds or is inside the agent's state (/var/lib/jupyter-agent): a container must not own the host";
    let cases = [
        (
            "[container]\nvolumes = [\"/var/lib/jupyter-agent/../jupyter-agent:/x\"]\n".to_string(),
            format!("{f}: [container] volumes = \"/var/lib/jupyter-agent/../jupyter-agent:/x\": {state}"),
        ),
        (
            "[container]\nvolumes = [\"/var/lib/jupyter-agent/tls:/x\"]\n".into(),
            format!("{f}: [container] volumes = \"/var/lib/jupyter-agent/tls:/x\": {state}"),
        ),
        (
            "[container]\nvolumes = [\"/var/./lib/:/x:ro\"]\n".into(),
            format!("{f}: [container] volumes = \"/var/./lib/:/x:ro\": {state}"),
        ),
        (
            "[container]\nvolumes = [\"/etc/jupyter-agent:/x\"]\n".into(),
            format!("{f}: [container] volumes = \"/etc/jupyter-agent:/x\": holds the configuration file {f}; {secrets}"),
        ),
        (
            "[container]\nvolumes = [\"/srv/keys:/x\"]\n[jupyter]\ntoken = \"/srv/keys/token\"\n".into(),
            format!("{f}: [container] volumes = \"/srv/keys:/x\": holds the token file /srv/keys/token; {secrets}"),
        ),
        (
            "[container]\nvolumes = [\"/srv/../etc/docker:/x\"]\nenv_file = \"/etc/docker/env\"\n".into(),
            format!("{f}: [container] volumes = \"/srv/../etc/docker:/x\": holds the env file /etc/docker/env; {secrets}"),
        ),
        (
            "[image]\nname = \"nb\"\ncredentials = \"/srv/r/registry.toml\"\n[container]\nvolumes = [\"/srv/r/registry.toml:/x:ro\"]\n".into(),
            format!("{f}: [container] volumes = \"/srv/r/registry.toml:/x:ro\": is the registry credentials /srv/r/registry.toml; {secrets}"),
        ),
        (
            "[image]\ntag = \"nb:1\"\n[image.build]\ncontext = \"/var/lib\"\n".into(),
            format!("{f}: [image.build] context = \"/var/lib\": holds the agent's state directory /var/lib/jupyter-agent; {context_secrets}"),
        ),
        (
            "[image]\ntag = \"nb:1\"\n[image.build]\ncontext = \"/var/lib/jupyter-agent/../jupyter-agent/tls\"\n".into(),
            format!("{f}: [image.build] context = \"/var/lib/jupyter-agent/../jupyter-agent/tls\": is inside the agent's state directory /var/lib/jupyter-agent; {context_secrets}"),
        ),
        (
            "[image]\ntag = \"nb:1\"\n[image.build]\ncontext = \"/etc\"\n".into(),
            format!("{f}: [image.build] context = \"/etc\": holds the configuration file {f}; {context_secrets}"),
        ),
    ];
    for (body, want) in cases {
        let text = if body.contains("[image]") { body.clone() } else { format!("{body}{MINIMAL}") };
        assert_eq!(parse(&text).unwrap_err(), want, "config:\n{text}");
    }
    // Neighbours stay legal: a sibling of the state directory, an env file
    // inside the mounted workspace (the container has its values anyway), a
    // context beside the configuration.
    for ok in [
        "[container]\nvolumes = [\"/var/lib/jupyter-agent-data:/x\"]\n".to_string(),
        "[workspace]\nsource = \"/srv/repo\"\nref = \"main\"\npath = \"/root/w\"\nenv_file = \"env\"\n[workspace.env]\nA = \"1\"\n[container]\nvolumes = [\"workspace:/home/jupyter/w\"]\n".into(),
        "[image]\ntag = \"nb:1\"\n[image.build]\ncontext = \"/etc/jupyter-agent/image\"\n".into(),
    ] {
        let text = if ok.contains("[image]") { ok.clone() } else { format!("{ok}{MINIMAL}") };
        parse(&text).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

/// What only the host can tell: a symbolic link that leads into the state
/// directory, and a state directory anyone may write to or that belongs to
/// someone else (issue 22, items 9 and 10).
#[test]
fn links_into_the_state_and_unsafe_state_directories_are_refused_on_the_host() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = d.join("c.toml");
    std::fs::create_dir(d.join("state")).unwrap();
    std::os::unix::fs::symlink(d.join("state"), d.join("link")).unwrap();
    std::os::unix::fs::symlink(d, d.join("up")).unwrap();
    let check = |text: &str| {
        let text = format!("{text}\n{MINIMAL}");
        Config::parse(&f, &text).unwrap().check_paths(&f).map_err(|e| e.to_string())
    };
    let state = format!("state_dir = \"{}/state\"\n", d.display());
    assert_eq!(check(&state), Ok(()));
    let secrets = "expected a host path that exposes none of the agent's secrets (the state directory, the configuration file, registry credentials, the token file, an env file outside the workspace)";
    assert_eq!(
        check(&format!("{state}[container]\nvolumes = [\"{}/link:/x\"]", d.display())),
        Err(format!(
            "{}: [container] volumes = \"{}/link:/x\": is the agent's state directory {}/state (resolved: {}/state); {secrets}",
            f.display(),
            d.display(),
            d.display(),
            d.display()
        ))
    );
    assert_eq!(
        check(&format!("{state}[container]\nvolumes = [\"{}/up/link/tls:/x\"]", d.display())),
        Err(format!(
            "{}: [container] volumes = \"{}/up/link/tls:/x\": is inside the agent's state directory {}/state (resolved: {}/state/tls); {secrets}",
            f.display(),
            d.display(),
            d.display(),
            d.display()
        ))
    );

    // The world-writable directory itself, and one of someone else's.
    assert_eq!(
        check("state_dir = \"/tmp\""),
        Err(format!("{}: state_dir = \"/tmp\": may be written by users other than root (mode 1777); expected a directory only root may write to, e.g. /var/lib/jupyter-agent", f.display()))
    );
    let theirs = d.join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    assert_eq!(
        check(&format!("state_dir = \"{}\"", theirs.display())),
        Err(format!("{}: state_dir = \"{}\": belongs to uid 65534 (nobody); expected a directory of root's, e.g. /var/lib/jupyter-agent", f.display(), theirs.display()))
    );
    // A directory above it that others may write to (without the sticky bit).
    let open = d.join("open");
    std::fs::create_dir_all(open.join("sub")).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(
        check(&format!("state_dir = \"{}/sub/state\"", open.display())),
        Err(format!("{}: state_dir = \"{}/sub/state\": is below {}, which users other than root may write to (mode 777); expected a directory whose every parent only root may write to, e.g. /var/lib/jupyter-agent", f.display(), open.display(), open.display()))
    );
    // Below a link whose target is such a directory.
    std::os::unix::fs::symlink(open.join("sub"), d.join("sublink")).unwrap();
    assert!(check(&format!("state_dir = \"{}/sublink/state\"", d.display()))
        .unwrap_err()
        .contains("which users other than root may write to (mode 777)"));
}
