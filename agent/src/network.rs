//! The container's network: a bridge network of the agent's own (so that a
//! firewall rule can name its interface before any container starts), and,
//! unless `[container] metadata_access = true`, two rules that keep the
//! metadata service for root: one in Docker's `DOCKER-USER` chain that
//! rejects what its containers send there, one in `OUTPUT` that rejects what
//! local users other than root send there
//! (docs/threat-model.md#the-metadata-service).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bollard::models::NetworkCreateRequest;
use bollard::Docker;
use tracing::{info, warn};

use crate::engine::LABEL_MANAGED;

/// The Docker network the agent's containers join.
pub const NETWORK: &str = "jupyter-agent";
/// Its bridge interface on the host (at most 15 bytes, the kernel's limit).
pub const BRIDGE: &str = "jupyter-agent0";
/// Marks the containers' rule, so that the agent finds and removes only its own.
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

/// The agent's two rules for the metadata service (docs/threat-model.md#the-metadata-service).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    /// In Docker's `DOCKER-USER` chain: what the agent's containers send
    /// (forwarded from their bridge).
    Containers,
    /// In `OUTPUT`: what any local process sends whose socket is not root's.
    /// By owner and for the whole address: a match on the request's path
    /// could be split across TCP segments.
    LocalUsers,
}

impl Rule {
    fn chain(self) -> &'static str {
        match self {
            Rule::Containers => USER_CHAIN,
            Rule::LocalUsers => "OUTPUT",
        }
    }

    /// The rule, as `iptables` arguments after the command (`-C`, `-I`, `-D`).
    fn spec(self, address: Ipv4Addr) -> Vec<String> {
        let address = format!("{address}/32");
        let matches: &[&str] = match self {
            Rule::Containers => &["-i", BRIDGE, "-d", &address, "-m", "comment", "--comment", COMMENT],
            Rule::LocalUsers => {
                &["-d", &address, "-m", "owner", "!", "--uid-owner", "0", "-m", "comment", "--comment", COMMENT_LOCAL]
            }
        };
        std::iter::once(self.chain()).chain(matches.iter().copied()).chain(["-j", "REJECT"]).map(String::from).collect()
    }

    /// The rules that keep `address` from everyone but root. A loopback
    /// address is a local stand-in (tests, development), never the ECS
    /// service: a rule there would cut every local user off every service on
    /// that address, so only the containers' rule is made for it.
    fn blocking(address: Ipv4Addr) -> &'static [Rule] {
        if address.is_loopback() {
            &[Rule::Containers]
        } else {
            &[Rule::Containers, Rule::LocalUsers]
        }
    }
}

/// Docker's chain for the administrator's rules, evaluated first in `FORWARD`.
const USER_CHAIN: &str = "DOCKER-USER";
/// Marks the local users' rule.
const COMMENT_LOCAL: &str = "jupyter-agent: only root may reach the metadata service";

/// Runs `iptables -w <args>`; whether it exited 0, and its stderr.
async fn iptables(args: &[String]) -> Result<(bool, String)> {
    let mut c = tokio::process::Command::new("iptables");
    c.arg("-w").args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
    let shown = args.iter().take(2).cloned().collect::<Vec<_>>().join(" ");
    let output = tokio::time::timeout(IPTABLES_TIMEOUT, c.output())
        .await
        .map_err(|_| anyhow!("`iptables {shown} ...` did not finish within 60s"))?
        .map_err(|e| {
            anyhow!(e).context("running iptables (the agent keeps the metadata service from its containers and from local users other than root with it; install iptables, or set [container] metadata_access = true)")
        })?;
    Ok((output.status.success(), String::from_utf8_lossy(&output.stderr).trim().to_string()))
}

/// `iptables -w <command> <spec>`.
async fn rule_command(command: &str, spec: &[String]) -> Result<(bool, String)> {
    let args: Vec<String> = std::iter::once(command.to_string()).chain(spec.iter().cloned()).collect();
    iptables(&args).await
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Makes Docker's `DOCKER-USER` chain and its jump at the top of `FORWARD`
/// when they are missing: at boot the agent's rules go in before the engine
/// starts, and the engine keeps a chain it finds, rules and all
/// (docs/metadata.md#at-boot). Another process making the chain at the same
/// moment is fine.
async fn ensure_user_chain() -> Result<()> {
    if !iptables(&strings(&["-n", "-L", USER_CHAIN])).await?.0 {
        let (ok, stderr) = iptables(&strings(&["-N", USER_CHAIN])).await?;
        if !ok && !iptables(&strings(&["-n", "-L", USER_CHAIN])).await?.0 {
            bail!("cannot create the firewall chain {USER_CHAIN} (iptables -N: {stderr}); set [container] metadata_access = true to allow the access to the metadata service");
        }
    }
    if !iptables(&strings(&["-C", "FORWARD", "-j", USER_CHAIN])).await?.0 {
        let (ok, stderr) = iptables(&strings(&["-I", "FORWARD", "-j", USER_CHAIN])).await?;
        if !ok {
            bail!("cannot add the jump to {USER_CHAIN} at the top of FORWARD (iptables -I: {stderr}); set [container] metadata_access = true to allow the access to the metadata service");
        }
    }
    Ok(())
}

/// Rejects what the agent's containers, and local users other than root,
/// send to `address`; says whether a rule was added or all were there.
pub async fn block(address: Ipv4Addr) -> Result<&'static str> {
    ensure_user_chain().await?;
    let mut added = false;
    for rule in Rule::blocking(address) {
        let spec = rule.spec(address);
        if rule_command("-C", &spec).await?.0 {
            continue;
        }
        let (ok, stderr) = rule_command("-I", &spec).await?;
        if !ok {
            bail!(
                "cannot add the firewall rule that keeps {} from the metadata service {address} (iptables -I {}: {stderr}); set [container] metadata_access = true to allow the access",
                match rule {
                    Rule::Containers => "the container",
                    Rule::LocalUsers => "local users other than root",
                },
                rule.chain()
            );
        }
        added = true;
    }
    if !added {
        return Ok("already blocked");
    }
    info!(address = %address, bridge = BRIDGE, "only root reaches the metadata service: not the containers, not other local users");
    Ok("blocked")
}

/// Whether an `iptables` command is on the PATH.
fn iptables_present() -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("iptables").is_file()))
}

/// Removes every copy of the agent's rules for `address`; says whether there
/// was one. Without `iptables` there can be no rule: nothing to remove.
pub async fn allow(address: Ipv4Addr) -> Result<&'static str> {
    if !iptables_present() {
        return Ok("allowed");
    }
    let mut removed = false;
    for rule in [Rule::Containers, Rule::LocalUsers] {
        let spec = rule.spec(address);
        while rule_command("-C", &spec).await.context("checking the metadata rule")?.0 {
            let (ok, stderr) = rule_command("-D", &spec).await?;
            if !ok {
                bail!(
                    "cannot remove the firewall rule for the metadata service {address} from {}: {stderr}",
                    rule.chain()
                );
            }
            removed = true;
        }
    }
    if removed {
        info!(address = %address, "the containers and local users may reach the metadata service ([container] metadata_access = true)");
    }
    Ok(if removed { "allowed (rules removed)" } else { "allowed" })
}

/// The metadata rules applied first thing in a converge, when `iptables`
/// is already here: before the engine starts (it starts the container by
/// its restart policy) and before the minutes an install or a pull can take
/// (docs/metadata.md#at-boot). A failure is only logged: the `network` step
/// applies them again and fails there, naming the rule.
pub async fn apply_early(metadata_access: bool, address: Option<Ipv4Addr>) {
    if !iptables_present() {
        return;
    }
    if let Err(e) = apply(metadata_access, address).await {
        warn!(error = %format!("{e:#}"), "the metadata rules could not be applied yet; the network step tries again");
    }
}

/// The metadata rules as the configuration says: blocked by default, allowed
/// with `[container] metadata_access = true`. The converge's `network` step
/// and `jupyter-agent firewall` (at boot, before Docker) both apply them.
pub async fn apply(metadata_access: bool, address: Option<Ipv4Addr>) -> Result<&'static str> {
    Ok(match (metadata_access, address) {
        (false, Some(address)) => block(address).await?,
        (true, Some(address)) => allow(address).await?,
        // Refused by the configuration's check; nothing to allow by address.
        (_, None) => "allowed",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_name_the_address_the_bridge_or_the_owner_and_the_agent() {
        let address = Ipv4Addr::new(100, 100, 100, 200);
        assert_eq!(
            Rule::Containers.spec(address).join(" "),
            "DOCKER-USER -i jupyter-agent0 -d 100.100.100.200/32 -m comment --comment jupyter-agent: containers may not reach the metadata service -j REJECT"
        );
        assert_eq!(
            Rule::LocalUsers.spec(address).join(" "),
            "OUTPUT -d 100.100.100.200/32 -m owner ! --uid-owner 0 -m comment --comment jupyter-agent: only root may reach the metadata service -j REJECT"
        );
        assert!(BRIDGE.len() <= 15);
    }

    #[test]
    fn a_loopback_stand_in_gets_no_rule_for_local_users() {
        assert_eq!(Rule::blocking(Ipv4Addr::new(100, 100, 100, 200)), [Rule::Containers, Rule::LocalUsers]);
        assert_eq!(Rule::blocking(Ipv4Addr::new(10, 254, 1, 2)), [Rule::Containers, Rule::LocalUsers]);
        assert_eq!(Rule::blocking(Ipv4Addr::new(127, 0, 0, 1)), [Rule::Containers]);
    }
}
