#!/usr/bin/env bash
# Benchmark: wall time of installing Docker into a fresh Debian root file
# system with `jupyter-agent install-docker --root`, next to the same install
# done the way the original hands-on's user data did it (a full system
# upgrade first, then the package with its recommendations), measured in one
# run on the same machine and mirror. Prints the figures; asserts nothing.
#
#   scripts/bench-install.sh [AGENT]     (as root; default AGENT: target/release/jupyter-agent)
#
# Both roots come from scripts/make-debian-root.sh (this machine's release and
# mirror). The agent goes first, so any cache warmed along the way favours
# the hands-on way, not the agent.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh    # also its timestamps: now, since
AGENT=${1:-target/release/jupyter-agent}
[ -x "$AGENT" ] || { echo "bench-install: no agent at $AGENT (cargo build --release -p jupyter-agent)" >&2; exit 2; }

WORK=$(mktemp -d /var/tmp/bench-install.XXXXXX)
cleanup() {
    for r in "$WORK"/agent "$WORK"/handson; do
        umount -l "$r/proc" 2>/dev/null || true
    done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

echo "== preparing two fresh Debian roots"
scripts/make-debian-root.sh "$WORK/agent" >/dev/null
scripts/make-debian-root.sh "$WORK/handson" >/dev/null
printf 'state_dir = "%s/state"\nlog_dir = "%s/log"\n' "$WORK" "$WORK" >"$WORK/config.toml"

echo "== jupyter-agent install-docker --root (the agent's plan)"
t0=$(now)
"$AGENT" --config "$WORK/config.toml" install-docker --root "$WORK/agent" 2>"$WORK/agent.log" ||
    { tail -n 20 "$WORK/agent.log" >&2; exit 1; }
t_agent=$(since "$t0")

echo "== the hands-on way: full system upgrade, then the package with its recommendations"
printf '#!/bin/sh\nexit 101\n' >"$WORK/handson/usr/sbin/policy-rc.d"
chmod 755 "$WORK/handson/usr/sbin/policy-rc.d"
t0=$(now)
chroot "$WORK/handson" /usr/bin/env DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin sh -c \
    'apt-get update && apt-get -y dist-upgrade && apt-get install -y docker.io' >"$WORK/handson.log" 2>&1 ||
    { tail -n 20 "$WORK/handson.log" >&2; exit 1; }
t_handson=$(since "$t0")

for r in agent handson; do
    [ -x "$WORK/$r/usr/sbin/dockerd" ] || { echo "bench-install: no dockerd in the $r root" >&2; exit 1; }
done
pkgs() { chroot "$WORK/$1" dpkg-query -W -f '.\n' | wc -l; }
printf '\nDocker install into a fresh Debian %s root (dockerd present in both afterwards):\n' "$(debian_suite)"
printf '  jupyter-agent install-docker:  %6.1f s  (%s packages in the root)\n' "$t_agent" "$(pkgs agent)"
printf '  hands-on way (upgrade first):  %6.1f s  (%s packages in the root)\n' "$t_handson" "$(pkgs handson)"
printf '  ratio (hands-on / agent):      %6.2f\n' "$(awk -v a="$t_handson" -v b="$t_agent" 'BEGIN { print a / b }')"
