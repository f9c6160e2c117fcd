use std::io::Write;
use std::path::{Path, PathBuf};

use bollard::models::MountType;

use super::*;
use crate::config::{self, ContainerConfig};

fn cfg() -> ContainerConfig {
    let c = config::Config::parse(Path::new("t.toml"), "[image]\nname = \"nb\"\n").unwrap();
    c.container
}

#[test]
fn the_engines_refusal_of_a_user_or_group_is_named() {
    let spec = |user: &str| Spec::new(&ContainerConfig { user: Some(user.into()), ..cfg() }, "nb:1", "sha256:x", None);
    let user = spec("nosuchuser").unwrap();
    let engine = "Error response from daemon: unable to find user nosuchuser: no matching entries in passwd file";
    assert_eq!(
            missing_user(&user, engine).unwrap(),
            "the image nb:1 has no user nosuchuser ([container] user = \"nosuchuser\"); name a user the image has (or a numeric uid), or leave user unset"
        );
    let group = spec("1000:staff2").unwrap();
    let engine = "unable to find group staff2: no matching entries in group file";
    assert!(missing_user(&group, engine)
        .unwrap()
        .starts_with("the image nb:1 has no group staff2 ([container] user = \"1000:staff2\")"));
    let exec = "failed to create task: exec: \"/.jupyter-agent-user-probe\": stat: no such file or directory";
    assert_eq!(missing_user(&user, exec), None, "the user was found: only the probe's program was not");
    let unset = Spec::new(&cfg(), "nb:1", "sha256:x", None).unwrap();
    assert_eq!(missing_user(&unset, engine), None);
}

#[test]
fn the_hash_follows_every_setting() {
    let base = Spec::new(&cfg(), "nb:latest", "sha256:1", None).unwrap();
    assert_eq!(base.hash(), Spec::new(&cfg(), "nb:latest", "sha256:1", None).unwrap().hash());
    assert_ne!(base.hash(), Spec::new(&cfg(), "nb:latest", "sha256:2", None).unwrap().hash());
    let mut c = cfg();
    c.env.insert("A".into(), "1".into());
    assert_ne!(base.hash(), Spec::new(&c, "nb:latest", "sha256:1", None).unwrap().hash());
    let mut c = cfg();
    c.port = 9999;
    assert_ne!(base.hash(), Spec::new(&c, "nb:latest", "sha256:1", None).unwrap().hash());
    assert_ne!(base.hash(), Spec::new(&cfg(), "nb:latest", "sha256:1", Some("abc@t")).unwrap().hash());
}

/// Bind mounts keep the hash they had as `Binds`, and the engine's
/// refusal of a missing source names the path (issue 22, item 11).
#[test]
fn bind_mounts_keep_their_hash_and_a_missing_source_is_named() {
    let mut c = cfg();
    c.volumes = vec!["/srv/data:/data:ro".parse().unwrap()];
    let spec = Spec::new(&c, "nb", "id", None).unwrap();
    assert_eq!(serde_json::to_value(&spec).unwrap()["binds"], serde_json::json!(["/srv/data:/data:ro"]));
    let body = spec.body();
    let mounts = body.host_config.unwrap().mounts.unwrap();
    assert_eq!(mounts[0].typ, Some(MountType::BIND));
    assert_eq!((mounts[0].source.as_deref(), mounts[0].read_only), (Some("/srv/data"), Some(true)));
    let refusal = "Docker responded with status code 400: invalid mount config for type \"bind\": bind source path does not exist: /srv/data";
    assert_eq!(
            missing_source(&spec, refusal).unwrap(),
            "the host path /srv/data of a bind mount (to /data) does not exist on the Docker engine's host; create it there or change [container] volumes (paths name the engine host's files)"
        );
    assert_eq!(missing_source(&spec, "Docker responded with status code 409: conflict"), None);
}

#[test]
fn env_files_follow_docker_and_hide_values() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "# comment\n\nKEY_ID=abc=def\n  REGION=cn-beijing\nEMPTY=\nJA_TEST_FROM_ENV\nJA_TEST_UNSET").unwrap();
    std::env::set_var("JA_TEST_FROM_ENV", "inherited");
    let vars = read_env_file(f.path()).unwrap();
    assert_eq!(
        vars,
        vec![
            ("KEY_ID".into(), "abc=def".into()),
            ("REGION".into(), "cn-beijing".into()),
            ("EMPTY".into(), "".into()),
            ("JA_TEST_FROM_ENV".into(), "inherited".into()),
        ]
    );
    let mut bad = tempfile::NamedTempFile::new().unwrap();
    writeln!(bad, "OK=1\nBAD KEY=s3cr3t").unwrap();
    let err = format!("{:#}", read_env_file(bad.path()).unwrap_err());
    assert!(
        err.ends_with(
            ":2: expected KEY=VALUE with a variable name without spaces (the value is not shown: it may be a secret)"
        ),
        "{err}"
    );
    assert!(!err.contains("s3cr3t"));
    // Opened, then checked: no link, a regular file of root's that
    // nobody else may write to (issue 22, item 9).
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(f.path(), dir.path().join("link")).unwrap();
    let err = format!("{:#}", read_env_file(&dir.path().join("link")).unwrap_err());
    assert!(err.contains("is a symbolic link"), "{err}");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = format!("{:#}", read_env_file(f.path()).unwrap_err());
    assert!(err.contains("may be written by users other than root"), "{err}");
    std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = cfg();
    c.env_file = Some(PathBuf::from(f.path()));
    let spec = Spec::new(&c, "nb", "id", None).unwrap();
    assert!(!format!("{spec:?}").contains("cn-beijing"));
}
