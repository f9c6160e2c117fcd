//! `jupyter-agent install`: the agent as a systemd service, so that every
//! boot converges again without anyone logging in, and the metadata
//! service's firewall rules as a unit that Docker requires, so that at boot
//! they are in place before the engine starts any container
//! (docs/metadata.md#at-boot). Without systemd it explains how to run the
//! agent in the foreground and changes nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

pub const BINARY: &str = "/usr/local/bin/jupyter-agent";
pub const UNIT_PATH: &str = "/etc/systemd/system/jupyter-agent.service";
pub const UNIT_NAME: &str = "jupyter-agent.service";
pub const FIREWALL_UNIT_PATH: &str = "/etc/systemd/system/jupyter-agent-firewall.service";
pub const FIREWALL_UNIT_NAME: &str = "jupyter-agent-firewall.service";
/// How long systemd waits for the agent to stop: it stops within 10 s of
/// SIGTERM in every phase (daemon.rs), and is killed after this.
pub const STOP_TIMEOUT_SECS: u64 = 15;

/// The unit: ordered after the network is online and after Docker (when
/// Docker is a unit at all), restarted when it fails; with room for the
/// front's connections (docs/front.md#limits).
pub fn unit(config: &Path) -> String {
    format!(
        "[Unit]\n\
         Description=jupyter-agent: converge this host to a working Jupyter container\n\
         Wants=network-online.target\n\
         After=network-online.target docker.service\n\
         \n\
         [Service]\n\
         Type=notify\n\
         ExecStart={BINARY} --config {} run\n\
         Restart=on-failure\n\
         LimitNOFILE={nofile}\n\
         RestartSec=10\n\
         TimeoutStopSec={STOP_TIMEOUT_SECS}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        config.display(),
        nofile = crate::front::limits::NOFILE,
    )
}

/// The firewall unit: `jupyter-agent firewall` once per boot, before
/// `docker.service` (which requires it: if the rules cannot be applied,
/// Docker does not start, rather than start the container with the metadata
/// service open) and before the network is up (the local users' rule). No
/// default dependencies, as firewall units have, so that nothing but the
/// local file systems comes first.
pub fn firewall_unit(config: &Path) -> String {
    format!(
        "[Unit]\n\
         Description=jupyter-agent: only root reaches the metadata service, before Docker starts any container\n\
         DefaultDependencies=no\n\
         Wants=network-pre.target\n\
         After=local-fs.target\n\
         Before=network-pre.target docker.service {UNIT_NAME} shutdown.target\n\
         Conflicts=shutdown.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={BINARY} --config {} firewall\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n\
         RequiredBy=docker.service\n",
        config.display(),
    )
}

/// What `install` did, for the person who ran it.
pub enum Installed {
    /// Binary, unit, enabled and started.
    Service { binary: PathBuf, unit: PathBuf },
    /// No systemd: nothing changed; run it like this instead.
    Foreground(String),
}

/// Installs the running binary and the unit, enables and starts the service.
pub fn install(config: &Path) -> Result<Installed> {
    let config = std::path::absolute(config).context("making the configuration path absolute")?;
    if !crate::docker_install::has_systemd() {
        return Ok(Installed::Foreground(format!(
            "this host does not run systemd (no /run/systemd/system), so no service was installed and nothing was changed.\n\
             Run the agent in the foreground instead, under whatever keeps processes running here:\n\n    \
             {0} --config {1} run\n\n\
             It converges, stays running and serves its socket; run it again after a reboot.\n\
             Nothing of the agent's runs at boot here: the metadata service's firewall rules do not survive a reboot, \
             and the engine starts the container (restart policy) without them. Run\n\n    \
             {0} --config {1} firewall\n\n\
             from this host's init before Docker starts, or set [container] restart = \"no\" \
             (docs/metadata.md#at-boot).",
            std::env::current_exe().map_or_else(|_| "jupyter-agent".into(), |p| p.display().to_string()),
            config.display()
        )));
    }
    if !config.is_file() {
        bail!("{}: no such configuration file; the service would have nothing to converge", config.display());
    }
    let exe = std::env::current_exe().context("finding this binary")?;
    let binary = PathBuf::from(BINARY);
    if exe.canonicalize().ok() != binary.canonicalize().ok() {
        let tmp = binary.with_file_name(".jupyter-agent.new");
        std::fs::copy(&exe, &tmp).with_context(|| format!("copying {} to {}", exe.display(), tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &binary).with_context(|| format!("installing {}", binary.display()))?;
    }
    let unit_path = PathBuf::from(UNIT_PATH);
    crate::state::write_atomic(&unit_path, unit(&config).as_bytes(), 0o644)
        .with_context(|| format!("writing {}", unit_path.display()))?;
    let firewall_path = PathBuf::from(FIREWALL_UNIT_PATH);
    crate::state::write_atomic(&firewall_path, firewall_unit(&config).as_bytes(), 0o644)
        .with_context(|| format!("writing {}", firewall_path.display()))?;
    systemctl(&["daemon-reload"])?;
    // Enabled, not started: the converge applies the rules on this boot, and
    // restarting a unit Docker requires would restart Docker.
    systemctl(&["enable", FIREWALL_UNIT_NAME])?;
    systemctl(&["enable", UNIT_NAME])?;
    // A running agent restarts to pick up the new binary and unit.
    systemctl(&["restart", UNIT_NAME])?;
    Ok(Installed::Service { binary, unit: unit_path })
}

fn systemctl(args: &[&str]) -> Result<()> {
    let out = Command::new("systemctl").args(args).output().context("running systemctl")?;
    if !out.status.success() {
        bail!(
            "`systemctl {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_restarts_on_failure_after_the_network() {
        let u = unit(Path::new("/etc/jupyter-agent/config.toml"));
        for line in [
            "Wants=network-online.target",
            "After=network-online.target docker.service",
            "ExecStart=/usr/local/bin/jupyter-agent --config /etc/jupyter-agent/config.toml run",
            "Restart=on-failure",
            "WantedBy=multi-user.target",
        ] {
            assert!(u.lines().any(|l| l == line), "{line} missing:\n{u}");
        }
    }

    #[test]
    fn the_firewall_unit_runs_before_docker_which_requires_it() {
        let u = firewall_unit(Path::new("/etc/jupyter-agent/config.toml"));
        for line in [
            "DefaultDependencies=no",
            "Before=network-pre.target docker.service jupyter-agent.service shutdown.target",
            "Type=oneshot",
            "ExecStart=/usr/local/bin/jupyter-agent --config /etc/jupyter-agent/config.toml firewall",
            "RequiredBy=docker.service",
            "WantedBy=multi-user.target",
        ] {
            assert!(u.lines().any(|l| l == line), "{line} missing:\n{u}");
        }
    }
}
