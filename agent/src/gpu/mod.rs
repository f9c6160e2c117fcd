//! GPU hands-ons (issue 25, docs/gpu.md): the NVIDIA Container Toolkit
//! installed and registered with Docker ([`toolkit`]).

pub mod toolkit;
