//! The container's specification (docs/jupyter.md): what the
//! configuration, the image, the login token and the workspace make of it,
//! the hash that decides reuse or recreate, the engine's create body, and
//! the env file it reads.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{port_key, LABEL_HASH, LABEL_MANAGED};
use crate::config::{self, ContainerConfig, Publish};

/// Everything that defines the container. Its hash decides reuse or recreate.
/// `env` holds secrets: it is hashed, never logged, and `Debug` hides it.
#[derive(Clone, Serialize)]
pub struct Spec {
    pub name: String,
    pub image: String,
    /// The image id, so that a rebuilt or re-pulled image recreates the container.
    pub image_id: String,
    pub command: Option<Vec<String>>,
    pub user: Option<String>,
    pub env: Vec<String>,
    pub port: u16,
    pub publish: Publish,
    pub binds: Vec<Bind>,
    pub restart: config::RestartPolicy,
    /// The Docker network it joins (the agent's own, crate::network).
    pub network: String,
    /// A fingerprint of the login token the agent gives the server, and how
    /// it is given (crate::login): a new token recreates the container.
    pub login: Option<(String, crate::login::Delivery)>,
    /// The workspace copy the container mounts: a reset replaces the
    /// directory, and a bind mount would keep the old one.
    pub workspace: Option<String>,
    /// The host's GPUs, as a device request (crate::gpu). Left out of the
    /// hash when unset, so that containers made before keep theirs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<crate::gpu::Gpus>,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("env", &format_args!("<{} variables, values hidden>", self.env.len()))
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Spec {
    /// Builds the specification; reads `env_file`.
    pub fn new(cfg: &ContainerConfig, image: &str, image_id: &str, workspace: Option<&str>) -> Result<Spec> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        if let Some(path) = &cfg.env_file {
            env.extend(read_env_file(path)?);
        }
        // Keys in the configuration win over the env file.
        env.extend(cfg.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(Spec {
            name: cfg.name.clone(),
            image: image.to_string(),
            image_id: image_id.to_string(),
            command: cfg.command.clone(),
            user: cfg.user.clone(),
            env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            port: cfg.port,
            publish: cfg.publish,
            binds: cfg.volumes.iter().map(Bind::from).collect(),
            restart: cfg.restart,
            network: crate::network::NETWORK.to_string(),
            login: None,
            workspace: workspace.map(str::to_string),
            gpus: cfg.gpus,
        })
    }

    /// The same specification, with the login token given to the server:
    /// `JUPYTER_TOKEN_FILE` and a read-only mount of `mount_source`, or
    /// `JUPYTER_TOKEN` (docs/jupyter.md#a-stable-login-token).
    pub fn with_login(mut self, login: &crate::login::Login, mount_source: &Path) -> Spec {
        self.env.retain(|kv| !kv.starts_with("JUPYTER_TOKEN=") && !kv.starts_with("JUPYTER_TOKEN_FILE="));
        match login.delivery {
            crate::login::Delivery::File { .. } => {
                self.env.push(format!("JUPYTER_TOKEN_FILE={}", crate::login::MOUNTED_AT));
                self.binds.push(Bind {
                    source: mount_source.to_path_buf(),
                    target: crate::login::MOUNTED_AT.into(),
                    read_only: true,
                });
            }
            crate::login::Delivery::Env => self.env.push(format!("JUPYTER_TOKEN={}", login.token)),
        }
        self.login = Some((login.fingerprint(), login.delivery));
        self
    }

    /// A stable hash of the whole specification (sha256, hex).
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("a spec serializes");
        hex::encode(Sha256::digest(json))
    }

    /// The values of its environment: secrets, for the redactor.
    pub fn env_values(&self) -> impl Iterator<Item = &str> {
        self.env.iter().filter_map(|kv| kv.split_once('=').map(|(_, v)| v))
    }

    fn port_key(&self) -> String {
        port_key(self.port)
    }

    pub(super) fn body(&self) -> ContainerCreateBody {
        let restart = match self.restart {
            config::RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
            config::RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
            config::RestartPolicy::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
            config::RestartPolicy::No => RestartPolicyNameEnum::NO,
        };
        let binding = PortBinding {
            host_ip: Some(self.publish.address.to_string()),
            host_port: Some(if self.publish.port == 0 { String::new() } else { self.publish.port.to_string() }),
        };
        let labels =
            HashMap::from([(LABEL_MANAGED.to_string(), "true".to_string()), (LABEL_HASH.to_string(), self.hash())]);
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: self.command.clone(),
            user: self.user.clone(),
            env: Some(self.env.clone()),
            exposed_ports: Some(vec![self.port_key()]),
            labels: Some(labels),
            host_config: Some(HostConfig {
                mounts: if self.binds.is_empty() { None } else { Some(self.binds.iter().map(Bind::mount).collect()) },
                port_bindings: Some(HashMap::from([(self.port_key(), Some(vec![binding]))])),
                restart_policy: Some(RestartPolicy { name: Some(restart), maximum_retry_count: None }),
                network_mode: Some(self.network.clone()),
                device_requests: self.gpus.map(|g| vec![g.device_request()]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// A bind mount. It is created as a `Mount` of type bind, which the engine
/// refuses when the source is missing on its host (`Binds` made an empty
/// directory there instead: a token file mounted that way became a
/// directory), and hashed in the `Binds` form it always had
/// (`/host:/container[:ro]`), so that containers made before keep their hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: std::path::PathBuf,
    pub target: String,
    pub read_only: bool,
}

impl From<&config::Volume> for Bind {
    fn from(v: &config::Volume) -> Bind {
        Bind { source: v.host.clone(), target: v.container.clone(), read_only: v.read_only }
    }
}

impl std::fmt::Display for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = if self.read_only { ":ro" } else { "" };
        write!(f, "{}:{}{mode}", self.source.display(), self.target)
    }
}

impl Serialize for Bind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Bind {
    fn mount(&self) -> Mount {
        Mount {
            target: Some(self.target.clone()),
            source: Some(self.source.display().to_string()),
            typ: Some(MountType::BIND),
            read_only: Some(self.read_only),
            ..Default::default()
        }
    }
}

/// Reads a Docker env file (`KEY=VALUE` lines, `#` comments, a bare `KEY`
/// takes the agent's own value). It is opened, then checked through the
/// descriptor: a regular file (no symbolic link) of root's that nobody
/// else may write to (config::paths). Errors name the file and line, never
/// a value.
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>> {
    use crate::config::paths::{read_private, FileRefused, Private};
    let text = match read_private(path, Private::RootWritten) {
        Ok(text) => text,
        Err(FileRefused::Io(e)) => {
            return Err(e).with_context(|| format!("reading the env file {} ([container] env_file)", path.display()))
        }
        Err(e) => bail!(
            "the env file {} ([container] env_file) {e}; expected a regular file of root's that only root may write to (chmod 600 {})",
            path.display(),
            path.display()
        ),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line.trim_end(), None),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            bail!(
                "{}:{}: expected KEY=VALUE with a variable name without spaces (the value is not shown: it may be a secret)",
                path.display(),
                i + 1
            );
        }
        match value {
            Some(v) => out.push((key.to_string(), v.to_string())),
            None => {
                if let Ok(v) = std::env::var(key) {
                    out.push((key.to_string(), v));
                }
            }
        }
    }
    Ok(out)
}
