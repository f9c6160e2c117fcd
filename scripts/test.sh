#!/usr/bin/env bash
# The whole check, as CI runs it: build the agent, prepare the host with it
# (Docker installed and started by the agent's own installer, the test
# images), then formatting, lints, the release bundle, and every test
# against the real engine. Stops the engine if it started it. One test stops
# the engine and checks that the agent starts it again: the end-to-end tests
# are one test binary (tests/tests.rs) whose tests run in parallel threads,
# and that test waits for, and holds off, every other test that uses the
# engine (the engine lock in tests/common/env.rs).
#
# The host's preparation is mostly network and disk (debootstrap, apt in a
# chroot, pip, docker import) and cargo is CPU, so they overlap: the images
# are built in the background from the start (their import waits for the
# engine), Docker is installed and the release bundle built in the
# background once the agent is built, and the tests start when all are
# done. Every stage's time is printed as it ends, and all of them in a
# table at the end.
#
#   scripts/test.sh            (as root on Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

trap 'stage_bg_stop; stop_engine_if_started; stage_times' EXIT
note_engine
# All apt work first: the background jobs below must not wait on apt's lock.
stage "Debian packages" ensure_test_packages
# The test images and rostran (for the template tests); up to 30 minutes for
# the engine, which install-docker starts once the agent is built.
stage_bg "test images and rostran" prepare_test_images 1800

stage "cargo build" cargo build --workspace --locked
stage_bg "Docker (jupyter-agent install-docker)" install_docker "${CARGO_TARGET_DIR:-target}/debug/jupyter-agent"
# The static bundle that tests/release.rs checks and the boot test serves:
# the release profile (fat LTO, one codegen unit) as a real release builds
# it, so that the sizes the release tests print are the release's. Its long
# single-threaded LTO steps leave a core free, which clippy and the test
# build below use (release and debug builds do not lock each other out).
stage_bg "scripts/release.sh" scripts/release.sh --out target/release-bundle

stage "shellcheck (the user data must stay POSIX sh)" shellcheck -s sh userdata/userdata.sh
stage "shellcheck scripts" shellcheck -x scripts/lib.sh scripts/test.sh scripts/run-local.sh scripts/build-test-image.sh \
    scripts/build-server2-image.sh scripts/build-systemd-image.sh scripts/make-debian-root.sh scripts/bench-install.sh \
    scripts/bench-boot.sh scripts/bench-front.sh scripts/release.sh scripts/capture-fixtures.sh scripts/fuzz.sh .ci/run
stage "scripts/render-userdata.py template --check" scripts/render-userdata.py template --check
stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
stage "cargo test --no-run (the test binaries)" cargo test --workspace --locked --no-run

stage_wait "scripts/release.sh"
export JA_RELEASE_DIR="$PWD/target/release-bundle"
stage_wait "Docker (jupyter-agent install-docker)"
stage_wait "test images and rostran"
# The tests that stop the engine (engine_start::) first, alone: each holds
# the engine lock's write side (tests/common/env.rs), which in the full run
# waited for the slowest test using the engine while every other test
# waited for it, leaving threads idle for a minute or more.
# (--workspace, as below and as the test binaries were built: with -p e2e
# alone cargo unifies features otherwise and builds half the crates again.)
stage "cargo test: the tests that stop the engine (engine_start::, alone)" \
    cargo test --workspace --locked -- engine_start::
# Then everything else with four test threads on two cores: most
# end-to-end tests wait (on Jupyter's start, the engine, timers), so two
# threads left the cores idle. Each test's own bounds are generous enough
# for the load.
stage "cargo test (unit tests, then the e2e crate's one binary, tests/tests.rs)" \
    env RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}" cargo test --workspace --locked -- --skip engine_start::
