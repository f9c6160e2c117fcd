//! The starter of Alibaba's GPU driver auto-install, for the user data
//! (docs/gpu.md#the-templates-gpu-option).

/// The script the user data runs (`jupyter-agent gpu-auto-install | sh -s ...`)
/// to start Alibaba's GPU driver auto-install and to run the user data again
/// after its reboot (docs/gpu.md#the-templates-gpu-option).
pub const SCRIPT: &str = include_str!("auto_install.sh");

#[cfg(test)]
mod tests {
    //! The auto-install starter run with `sh`, its paths below a temporary
    //! directory, the metadata service and the mirror as `file://` URLs, and
    //! a test double in place of Alibaba's script (which records its
    //! arguments). Not tested: Alibaba's real script, a real reboot.

    use std::path::Path;
    use std::process::Command;
    use std::time::{Duration, Instant};

    fn start(root: &Path, versions: &str) -> std::process::Output {
        start_from(root, versions, &root.join("userdata.sh"))
    }

    /// `user_data`: the script the user data runs as (`$0`).
    fn start_from(root: &Path, versions: &str, user_data: &Path) -> std::process::Output {
        Command::new("sh")
            .arg("-c")
            .arg(super::SCRIPT)
            .arg("sh")
            .arg(versions)
            .arg(user_data)
            .arg(format!("file://{}/metadata", root.display()))
            .env("JA_GPU_ROOT", root)
            .output()
            .unwrap()
    }

    #[test]
    fn the_install_starts_once_with_the_versions_and_the_user_data_runs_again_at_boot_until_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("userdata.sh"), "#!/bin/sh\necho the user data\n").unwrap();
        let meta = root.join("metadata/latest/meta-data");
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(meta.join("source-address"), format!("file://{}/mirror\n", root.display())).unwrap();
        let scripts = root.join("mirror/opsx/ecs/linux/binary/script");
        std::fs::create_dir_all(&scripts).unwrap();
        let record = root.join("started");
        std::fs::write(
            scripts.join("auto_install_v4.0.sh"),
            format!("# test double for Alibaba's auto_install_v4.0.sh\necho \"$@\" >>{}\n", record.display()),
        )
        .unwrap();

        let out = start(root, "550.127.08 12.4.1 9.2.0.82");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("auto_install.log"));
        // Detached: it records its arguments shortly after.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !record.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(std::fs::read_to_string(&record).unwrap(), "550.127.08 12.4.1 9.2.0.82 FALSE FALSE\n");

        // At boot: the user data again, until the signalled mark exists.
        let per_boot = root.join("var/lib/cloud/scripts/per-boot/jupyter.sh");
        let run = || Command::new("sh").arg(&per_boot).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&run().stdout), "the user data\n");
        std::fs::write(root.join("root/.jupyter-signalled"), "").unwrap();
        assert_eq!(String::from_utf8_lossy(&run().stdout), "");

        // The user data's run after the reboot, from its kept copy: the
        // install is not started again, the copy stays.
        let out = start_from(root, "550.127.08 12.4.1 9.2.0.82", &root.join("root/.jupyter-userdata.sh"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let kept = std::fs::read_to_string(root.join("root/.jupyter-userdata.sh")).unwrap();
        assert_eq!(kept, "#!/bin/sh\necho the user data\n");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(std::fs::read_to_string(&record).unwrap().lines().count(), 1);
    }

    #[test]
    fn a_mirror_without_the_script_fails_and_a_later_run_tries_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("userdata.sh"), "#!/bin/sh\n").unwrap();
        let meta = root.join("metadata/latest/meta-data");
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(meta.join("source-address"), format!("file://{}/empty-mirror\n", root.display())).unwrap();
        let out = start(root, "550.127.08 12.4.1 9.2.0.82");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot download Alibaba's GPU driver install script"));
        assert!(!root.join("root/auto_install").exists(), "a failed start leaves no install directory behind");
    }
}
