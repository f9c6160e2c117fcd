#!/usr/bin/env bash
# Benchmark: a first boot (the rendered user data, start -> the SUCCESS
# signal) next to the original hands-on's way, in one run. The benchmark is
# the ignored test tests/bench_boot.rs, which reuses the boot tests' fakes;
# docs/benchmarks.md says what it prints.
#
#   scripts/bench-boot.sh [RELEASE_DIR]   (as root, with a Docker engine and the
#       image of scripts/build-test-image.sh; the bundle from RELEASE_DIR, else
#       $JA_RELEASE_DIR, else target/release-bundle (scripts/release.sh --out),
#       else this build's debug binaries)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-${JA_RELEASE_DIR:-$root/target/release-bundle}}
if [ -d "$dir" ]; then
    JA_RELEASE_DIR=$(realpath "$dir"); export JA_RELEASE_DIR
elif [ -n "${1:-}" ]; then
    echo "bench-boot: no directory $1" >&2; exit 2
fi
cd "$root"
exec cargo test -p e2e --test tests -- --ignored bench_boot --nocapture
