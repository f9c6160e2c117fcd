//! Paths against the real binary and engine (issue 22, items 7 and 11): a
//! state directory the agent makes is 0700 whichever command makes it, and
//! a bind mount whose source the engine's host lacks is named, not made.

use std::os::unix::fs::PermissionsExt;

use crate::common::env::Env;
use crate::common::{docker, inspect};

/// `token --rotate` on a host where the agent never ran makes the state
/// directory as the agent does: 0700.
#[test]
fn token_rotate_makes_the_state_directory_0700() {
    let env = Env::new("rotate-0700");
    env.write_config(&env.base_config(""));
    env.agent(&["token", "--rotate"]).expect(0);
    let mode = std::fs::metadata(env.state_dir()).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "{mode:o}");
}

/// Volumes are `Mounts` of type bind: an existing source is mounted as
/// asked, and a missing one is refused by the engine and named by the agent
/// (with `Binds` the engine made an empty directory in its place, and a
/// token file mounted that way became a directory Jupyter died on).
#[test]
fn a_bind_mount_source_the_host_lacks_is_named_and_not_made() {
    let env = Env::new("missing-source");
    let data = env.path("data");
    std::fs::create_dir(&data).unwrap();
    env.write_config(&env.base_config(&format!("volumes = [\"{}:/data:ro\"]", data.display())));
    env.agent(&["run", "--once"]).expect(0);
    let mounts = inspect(&env.name, "{{range .Mounts}}{{.Type}} {{.Source}} {{.Destination}} {{.RW}};{{end}}");
    assert!(mounts.contains(&format!("bind {} /data false;", data.display())), "{mounts}");
    assert!(mounts.contains("bind ") && mounts.contains("/run/jupyter-agent/token false;"), "{mounts}");

    let missing = env.path("not-there");
    env.write_config(&env.base_config(&format!("volumes = [\"{}:/data\"]", missing.display())));
    let run = env.agent(&["run", "--once"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let named = format!(
        "the host path {} of a bind mount (to /data) does not exist on the Docker engine's host",
        missing.display()
    );
    assert!(run.stderr.contains(&named), "{}", run.stderr);
    assert!(!missing.exists(), "the engine made the missing source");
    let ps = docker(&["ps", "-aq", "--filter", &format!("name=^{}$", env.name)]);
    assert!(ps.stdout.is_empty(), "a container was left behind");
}
