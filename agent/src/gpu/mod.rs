//! GPU hands-ons (docs/gpu.md): the host's NVIDIA driver waited for ([`driver`]).

pub mod driver;
