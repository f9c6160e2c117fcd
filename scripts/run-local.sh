#!/usr/bin/env bash
# The main job on its built-in local default, no cloud account or registry:
# build the agent, let it install and start Docker if needed, build the
# local Jupyter image from Debian's packages, run the agent with
# examples/local.toml, and print the login URL. Jupyter keeps running
# afterwards on 127.0.0.1:8888.
#
# Only what the main job needs: not the images only the tests use (scripts/test.sh
# builds those). The image's Debian tree is made in the background while cargo
# builds the agent (network and disk beside CPU); its import waits for the
# engine the agent installs. Prints how long each part took.
#
#   scripts/run-local.sh       (as root on Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

trap 'stage_bg_stop; stage_times' EXIT
stage "Debian packages (debootstrap, curl)" ensure_host_packages
stage_bg "the local Jupyter image (scripts/build-test-image.sh)" scripts/build-test-image.sh --wait-engine 1800
stage "building jupyter-agent (release)" cargo build --release --locked -p jupyter-agent
agent=${CARGO_TARGET_DIR:-target}/release/jupyter-agent
stage "Docker (jupyter-agent install-docker)" install_docker "$agent"
stage_wait "the local Jupyter image (scripts/build-test-image.sh)"
stage "jupyter-agent run --config examples/local.toml --once" "$agent" --config examples/local.toml run --once
echo
echo "Jupyter is ready. Open:"
"$agent" --config examples/local.toml url
