#!/usr/bin/env bash
# Build the image in which systemd boots as PID 1 (docs/systemd.md): a
# Debian root of this machine's release (scripts/make-debian-root.sh) with
# systemd and systemd-sysv (and what user data needs on an instance: curl,
# git, iptables) installed from the machine's own mirror, turned
# into an image with `docker import` and `CMD ["/sbin/init"]`. The service
# tests install the agent in it as a real unit.
#
# Idempotent: exits 0 at once when the image exists (unless --force). With
# --wait-engine SECONDS no engine is needed until the import, which waits
# that long for one (scripts/test.sh installs Docker meanwhile).
#
#   scripts/build-systemd-image.sh [--name NAME] [--force] [--wait-engine SECONDS]
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)
NAME=${JUPYTER_SYSTEMD_IMAGE:-jupyter-agent/systemd:local}
DOCKER=${DOCKER:-/usr/bin/docker}
FORCE=0
WAIT_ENGINE=0

while [ $# -gt 0 ]; do
    case "$1" in
        --name) NAME=$2; shift 2 ;;
        --force) FORCE=1; shift ;;
        --wait-engine) [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "$PROG: --wait-engine needs a number of seconds" >&2; exit 2; }
                WAIT_ENGINE=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "$PROG: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
die() { echo "$PROG: error: $*" >&2; exit 1; }

# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"
exists() { [ "$FORCE" -eq 0 ] && "$DOCKER" image inspect "$NAME" >/dev/null 2>&1; }
if exists; then
    echo "$PROG: $NAME exists"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and chroot need it)"

WORK=$(mktemp -d /var/tmp/build-systemd-image.XXXXXX)
trap 'rm -rf --one-file-system "$WORK"' EXIT
ROOT=$WORK/root
"$HERE/make-debian-root.sh" "$ROOT" >/dev/null
# Package scripts must not start services in the chroot (invoke-rc.d's policy layer).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$WORK/apt.log" 2>&1 ||
    { tail -n 20 "$WORK/apt.log" >&2; die "apt-get update in the root failed"; }
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    systemd systemd-sysv ca-certificates iptables curl git >>"$WORK/apt.log" 2>&1 ||
    { tail -n 20 "$WORK/apt.log" >&2; die "installing systemd in the root failed"; }
rm -f "$ROOT/usr/sbin/policy-rc.d"
chroot "$ROOT" apt-get clean
# A container has no consoles to log in on, nor a network to wait for (host networking).
chroot "$ROOT" systemctl mask getty@tty1.service console-getty.service systemd-networkd-wait-online.service >/dev/null 2>&1 || true
if ! "$DOCKER" info >/dev/null 2>&1; then
    wait_for_engine "$WAIT_ENGINE" || die "no Docker engine answered within ${WAIT_ENGINE}s"
    if exists; then
        echo "$PROG: $NAME appeared meanwhile: not importing this root"
        exit 0
    fi
fi
import_tree "$ROOT" "$NAME" -c 'CMD ["/sbin/init"]' >/dev/null || die "docker import failed"
echo "$PROG: built $NAME (systemd as PID 1)"
