//! `[gpu]`: how the GPU steps wait (docs/gpu.md).

use std::time::Duration;

use super::section::Section;
use super::ConfigError;
use crate::gpu::driver::DEFAULT_DRIVER_TIMEOUT;

/// The shortest `driver_timeout`: one `nvidia-smi` alone may take 30 s.
const MIN_DRIVER_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
pub struct GpuConfig {
    /// How long the driver step waits for the host's NVIDIA driver,
    /// Alibaba's auto-install and its reboot included.
    pub driver_timeout: Duration,
}

pub(super) fn gpu_config(mut s: Section) -> Result<GpuConfig, ConfigError> {
    let driver_timeout = s
        .duration_at_least(
            "driver_timeout",
            MIN_DRIVER_TIMEOUT,
            "expected at least \"1m\" (one nvidia-smi alone may take 30s; Alibaba's auto-install takes 10 to 20 minutes and reboots, e.g. \"40m\")",
        )?
        .unwrap_or(DEFAULT_DRIVER_TIMEOUT);
    s.finish()?;
    Ok(GpuConfig { driver_timeout })
}
