#!/usr/bin/env bash
# Fuzzes the three parsers that read outside text (docs/fuzzing.md) with
# their property tests (proptest), CASES inputs per property, in an optimised
# build with overflow checks and debug assertions on (profile "fuzz", built
# into target/fuzz; target/release is left alone). Prints each property's
# count and time and, per target, the total; fails on a panic or a broken
# property, with proptest's minimal failing input.
#
#   token   jupyter-agent  src/token.rs: Jupyter's log lines, server list
#   config  jupyter-agent  src/config: the TOML configuration
#   curl    jupyter-bootstrap  src/curl_cli.rs: the wait condition's CurlCli
#
#   scripts/fuzz.sh [--cases N] [TARGET...]   (default: 1000000 cases, all targets;
#                                           PROPTEST_CASES sets the default)
set -euo pipefail
PROG=$(basename "$0")
die() { echo "$PROG: error: $*" >&2; exit 2; }
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

CASES=${PROPTEST_CASES:-1000000}
TARGETS=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --cases) [ $# -ge 2 ] || die "--cases needs a number"; CASES=$2; shift 2 ;;
        --cases=*) CASES=${1#--cases=}; shift ;;
        token|config|curl) TARGETS+=("$1"); shift ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
case "$CASES" in
    ''|*[!0-9]*|0) die "--cases must be a positive whole number, not '$CASES'" ;;
esac
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(token config curl)
cd "$(dirname "$0")/.."

# The release profile (size-optimised, fat LTO, no overflow checks) made
# faster to build and stricter to run.
PROFILE=(
    --config 'profile.fuzz.inherits="release"'
    --config 'profile.fuzz.opt-level=3'
    --config 'profile.fuzz.lto=false'
    --config 'profile.fuzz.codegen-units=16'
    --config 'profile.fuzz.debug-assertions=true'
    --config 'profile.fuzz.overflow-checks=true'
)

LOG=$(mktemp "/tmp/$PROG.XXXXXX.log")
trap 'rm -f "$LOG"' EXIT
SUMMARY=()
for target in "${TARGETS[@]}"; do
    case "$target" in
        token) pkg=jupyter-agent; filter=fuzz_tests::token:: ;;
        config) pkg=jupyter-agent; filter=fuzz_tests::config:: ;;
        curl) pkg=jupyter-bootstrap; filter=fuzz_tests::curl_cli_ ;;
    esac
    echo "== $target: $CASES cases per property ($pkg, $filter*)"
    cargo "${PROFILE[@]}" test --profile fuzz --locked -q -p "$pkg" --lib --no-run
    start=$SECONDS
    if ! PROPTEST_CASES=$CASES cargo "${PROFILE[@]}" test --profile fuzz --locked -q -p "$pkg" --lib "$filter" \
        -- --nocapture 2>&1 | tee "$LOG"; then
        echo "$PROG: $target: a property failed or the parser panicked (minimal input above)" >&2
        exit 1
    fi
    secs=$((SECONDS - start))
    # Lines the tests print: "fuzz NAME: N inputs, M accepted, no panic, T s".
    read -r props inputs < <(sed -n 's/^.*fuzz [^:]*: \([0-9]*\) inputs, .*no panic.*$/\1/p' "$LOG" |
        awk '{ n++; sum += $1 } END { printf "%d %d\n", n, sum }')
    [ "$props" -gt 0 ] || die "$target: no property ran (filter $filter)"
    SUMMARY+=("$target: $props properties, $inputs inputs, no panic, ${secs} s")
done

echo "== summary ($CASES cases per property)"
printf '%s\n' "${SUMMARY[@]}"
