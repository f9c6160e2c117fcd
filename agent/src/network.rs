//! The container's network: a bridge network of the agent's own (so that a
//! firewall rule can name its interface before any container starts), and,
//! unless `[container] metadata_access = true`, a rule in Docker's
//! `DOCKER-USER` chain that rejects what its containers send to the
//! metadata service (docs/threat-model.md#the-metadata-service).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bollard::models::NetworkCreateRequest;
use bollard::Docker;
use tracing::info;

use crate::engine::LABEL_MANAGED;

/// The Docker network the agent's containers join.
pub const NETWORK: &str = "jupyter-agent";
/// Its bridge interface on the host (at most 15 bytes, the kernel's limit).
pub const BRIDGE: &str = "jupyter-agent0";
/// Marks the agent's rules, so that it finds and removes only its own.
const COMMENT: &str = "jupyter-agent: containers may not reach the metadata service";
/// Bounds one `iptables` command (it waits for the xtables lock itself).
const IPTABLES_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes the agent's network exist. Another agent creating it at the same
/// moment is fine: the engine refuses the second bridge of the same name,
/// and the network is there.
pub async fn ensure(docker: &Docker) -> Result<()> {
    if docker.inspect_network(NETWORK, None).await.is_ok() {
        return Ok(());
    }
    let request = NetworkCreateRequest {
        name: NETWORK.into(),
        driver: Some("bridge".into()),
        options: Some(HashMap::from([("com.docker.network.bridge.name".into(), BRIDGE.into())])),
        labels: Some(HashMap::from([(LABEL_MANAGED.into(), "true".into())])),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => {
            info!(network = NETWORK, bridge = BRIDGE, "created the containers' network");
            Ok(())
        }
        Err(e) => match docker.inspect_network(NETWORK, None).await {
            Ok(_) => Ok(()),
            Err(_) => Err(anyhow!(e).context(format!("creating the Docker network {NETWORK} (bridge {BRIDGE})"))),
        },
    }
}

/// The rule, as `iptables` arguments after the command (`-C`, `-I`, `-D`).
fn rule(address: Ipv4Addr) -> Vec<String> {
    let address = format!("{address}/32");
    ["DOCKER-USER", "-i", BRIDGE, "-d", &address, "-m", "comment", "--comment", COMMENT, "-j", "REJECT"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Runs `iptables -w <command> <rule>`; whether it exited 0, and its stderr.
async fn iptables(command: &str, address: Ipv4Addr) -> Result<(bool, String)> {
    let mut c = tokio::process::Command::new("iptables");
    c.arg("-w").arg(command).args(rule(address)).stdin(std::process::Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(IPTABLES_TIMEOUT, c.output())
        .await
        .map_err(|_| anyhow!("`iptables {command} DOCKER-USER ...` did not finish within 60s"))?
        .map_err(|e| {
            anyhow!(e).context("running iptables (the agent blocks the metadata service from its containers with it; install iptables, or set [container] metadata_access = true)")
        })?;
    Ok((output.status.success(), String::from_utf8_lossy(&output.stderr).trim().to_string()))
}

/// Rejects what the agent's containers send to `address`; says whether the
/// rule was added or already there.
pub async fn block(address: Ipv4Addr) -> Result<&'static str> {
    if iptables("-C", address).await?.0 {
        return Ok("already blocked");
    }
    let (ok, stderr) = iptables("-I", address).await?;
    if !ok {
        bail!(
            "cannot add the firewall rule that keeps the container from the metadata service {address} (iptables -I DOCKER-USER: {stderr}); the engine must run with its iptables rules (the DOCKER-USER chain), or set [container] metadata_access = true to allow the access"
        );
    }
    info!(address = %address, bridge = BRIDGE, "the containers cannot reach the metadata service");
    Ok("blocked")
}

/// Whether an `iptables` command is on the PATH.
fn iptables_present() -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("iptables").is_file()))
}

/// Removes every copy of the rule for `address`; says whether there was one.
/// Without `iptables` there can be no rule: nothing to remove.
pub async fn allow(address: Ipv4Addr) -> Result<&'static str> {
    if !iptables_present() {
        return Ok("allowed");
    }
    let mut removed = false;
    while iptables("-C", address).await.context("checking the metadata rule")?.0 {
        let (ok, stderr) = iptables("-D", address).await?;
        if !ok {
            bail!("cannot remove the firewall rule for the metadata service {address}: {stderr}");
        }
        removed = true;
    }
    if removed {
        info!(address = %address, "the containers may reach the metadata service ([container] metadata_access = true)");
    }
    Ok(if removed { "allowed (rule removed)" } else { "allowed" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_names_the_bridge_the_address_and_the_agent() {
        assert_eq!(
            rule(Ipv4Addr::new(100, 100, 100, 200)).join(" "),
            "DOCKER-USER -i jupyter-agent0 -d 100.100.100.200/32 -m comment --comment jupyter-agent: containers may not reach the metadata service -j REJECT"
        );
        assert!(BRIDGE.len() <= 15);
    }
}
