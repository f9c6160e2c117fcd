//! The scripts that prepare the host for the tests, where a fault would
//! leave it wrong for every later run.

use std::path::Path;
use std::process::Command;

use crate::common::docker;
use crate::common::env::engine_shared;

/// An image build that is stopped while its tree streams into `docker
/// import` (a run stopped when a stage fails) must not leave a truncated
/// image under the image's name: later runs take an existing image as
/// built and skip it (as happened to the systemd image: no /sbin/init).
/// `import_tree` imports under a temporary name and tags only a whole tree.
#[test]
fn an_interrupted_import_leaves_no_image_under_the_name() {
    let _engine = engine_shared();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("sbin")).unwrap();
    std::fs::write(root.join("sbin/init"), vec![b'x'; 64 * 1024]).unwrap();
    std::fs::write(root.join("marker"), "whole").unwrap();
    // A tar that is stopped mid-stream: what it sent ends between two
    // entries (the engine takes that as a whole archive), and it fails.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake_tar = bin.join("tar");
    std::fs::write(&fake_tar, "#!/bin/sh\n/usr/bin/tar -C \"$3\" -c ./marker\nexit 1\n").unwrap();
    std::fs::set_permissions(&fake_tar, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lib.sh");
    let name = format!("jupyter-agent/import-test:{}", std::process::id());
    let import = |path: &str| {
        Command::new("bash")
            .arg("-c")
            .arg(format!("set -euo pipefail; . {}; import_tree \"$1\" \"$2\"", lib.display()))
            .arg("import_tree")
            .arg(&root)
            .arg(&name)
            .env("PATH", path)
            .output()
            .unwrap()
    };
    let system_path = std::env::var("PATH").unwrap();
    let cut = import(&format!("{}:{system_path}", bin.display()));
    assert!(!cut.status.success(), "a cut tree must fail the import");
    let present = docker(&["image", "inspect", &name]);
    assert!(!present.status.success(), "a truncated image is tagged {name}");

    let whole = import(&system_path);
    assert!(whole.status.success(), "{}", String::from_utf8_lossy(&whole.stderr));
    let files = docker(&["create", &name, "/marker"]);
    assert!(files.status.success(), "{}", String::from_utf8_lossy(&files.stderr));
    let id = String::from_utf8_lossy(&files.stdout).trim().to_string();
    let copied = docker(&["cp", &format!("{id}:/marker"), dir.path().join("marker").to_str().unwrap()]);
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    assert_eq!(std::fs::read_to_string(dir.path().join("marker")).unwrap(), "whole");
    docker(&["rm", "-f", &id]);
    docker(&["rmi", "-f", &name]);
    let leftovers = docker(&["images", "-q", "jupyter-agent-partial"]);
    assert!(String::from_utf8_lossy(&leftovers.stdout).trim().is_empty(), "the temporary name is removed");
}
