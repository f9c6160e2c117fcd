//! `[gpu]`: how the GPU steps wait, and `[container] gpus`'s value (docs/gpu.md).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::section::Section;
use super::ConfigError;

/// `[gpu] driver_timeout` when not set: twice the documented 10 to 20
/// minutes of Alibaba's driver install, for its reboot and a slow download.
pub const DEFAULT_DRIVER_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// The most GPUs `[container] gpus` may ask for by number (ECS GPU
/// instances have at most 8; the bound only keeps typos out).
pub const MAX_GPUS: u32 = 64;

/// `[container] gpus`: every GPU of the host, or that many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gpus {
    All,
    Count(u32),
}

impl Gpus {
    /// The configuration's value as written: `"all"` or `2`.
    pub fn as_toml(self) -> String {
        match self {
            Gpus::All => "\"all\"".into(),
            Gpus::Count(n) => n.to_string(),
        }
    }
}

impl fmt::Display for Gpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gpus::All => f.write_str("all"),
            Gpus::Count(n) => write!(f, "{n}"),
        }
    }
}

/// The container's hash takes `"all"` or the number.
impl serde::Serialize for Gpus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Gpus::All => s.serialize_str("all"),
            Gpus::Count(n) => s.serialize_u32(*n),
        }
    }
}

/// The shortest `driver_timeout`: one `nvidia-smi` alone may take 30 s.
const MIN_DRIVER_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub struct GpuConfig {
    /// How long the driver step waits for the host's NVIDIA driver,
    /// Alibaba's auto-install and its reboot included.
    pub driver_timeout: Duration,
    /// Alibaba's driver auto-install log, followed while it is there.
    pub auto_install_log: PathBuf,
    /// The host's `nvidia-smi`: `nvidia-smi` looked up in `PATH`, or a path.
    pub nvidia_smi: PathBuf,
    /// Where the driver's device nodes appear (`nvidiactl`, `nvidia<N>`).
    pub devices: PathBuf,
}

/// Where Alibaba's auto-install script logs (its documentation and the
/// script's `log=` line; docs/gpu.md#what-alibaba-documents).
pub const AUTO_INSTALL_LOG: &str = "/root/auto_install/auto_install.log";

impl Default for GpuConfig {
    fn default() -> GpuConfig {
        GpuConfig {
            driver_timeout: DEFAULT_DRIVER_TIMEOUT,
            auto_install_log: PathBuf::from(AUTO_INSTALL_LOG),
            nvidia_smi: PathBuf::from("nvidia-smi"),
            devices: PathBuf::from("/dev"),
        }
    }
}

pub(super) fn gpu_config(mut s: Section) -> Result<GpuConfig, ConfigError> {
    let driver_timeout = s
        .duration_at_least(
            "driver_timeout",
            MIN_DRIVER_TIMEOUT,
            "expected at least \"1m\" (one nvidia-smi alone may take 30s; Alibaba's auto-install takes 10 to 20 minutes and reboots, e.g. \"40m\")",
        )?
        .unwrap_or(DEFAULT_DRIVER_TIMEOUT);
    let defaults = GpuConfig::default();
    let auto_install_log = s.abs_path("auto_install_log")?.unwrap_or(defaults.auto_install_log);
    let nvidia_smi = s.abs_path("nvidia_smi")?.unwrap_or(defaults.nvidia_smi);
    let devices = s.abs_path("devices")?.unwrap_or(defaults.devices);
    s.finish()?;
    Ok(GpuConfig { driver_timeout, auto_install_log, nvidia_smi, devices })
}
