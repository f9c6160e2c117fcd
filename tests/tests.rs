//! Every end-to-end test, in one test binary (as ripgrep does): one module
//! per area, and the helpers in `common/` compiled once, so that a helper no
//! test uses is a warning instead of something each binary must allow.
//!
//! All tests of this binary run in parallel threads. Most use the machine's
//! Docker engine, and `engine_start` stops it, so they coordinate through a
//! process-wide read-write lock (`common::env` explains it): a test that uses the
//! engine holds a read guard for its whole duration (`common::env::Env` and the
//! boot tests take it), and `engine_start` holds the write guard, so it runs
//! while no other test uses the engine and no such test starts meanwhile.
//! Likewise the tests that touch the host's own install paths (the boot
//! tests, `service`'s install test) take turns through `common::env::host_paths`.
//! Tests that use neither (template, release, bootstrap_fake_agent) need no
//! Docker engine at all.
//!
//! `cargo test -p e2e --test tests` runs them all; a module alone, e.g.
//! `cargo test -p e2e --test tests template::`. The one ignored test is a
//! benchmark (`bench_boot`, run by `scripts/bench-boot.sh`).

mod common;

mod agent;
mod bad_config;
mod bench_boot;
mod boot;
mod bootstrap;
mod bootstrap_fake_agent;
mod docker_install;
mod engine_start;
mod front;
mod git_install;
mod gpu;
mod hardening;
mod images;
mod login;
mod nvidia_toolkit;
mod pages;
mod pages_browser;
mod paths;
mod pebble_harness;
mod progress;
mod release;
mod room;
mod room_cloud;
mod room_fronts;
mod room_template;
mod scripts;
mod selfservice;
mod service;
mod systemd;
mod template;
mod tls;
mod workspace;
