#!/usr/bin/env bash
# Build the local Jupyter test image from Debian's own packages.
#
# There is no container registry reachable from the build machines, so the
# image is bootstrapped with debootstrap from the same Debian mirror and
# release that the host's apt is configured for, then `python3-notebook`
# (Jupyter Notebook 6.4.x on bookworm) is installed into it and the tree is
# turned into an image with `docker import`.
#
# Idempotent: if the image already exists it exits 0 without doing anything
# (unless --force), so CI can call it on every run.
#
# With --wait-engine SECONDS it may start before Docker is installed: the
# Debian tree needs no engine, and the import waits for one (scripts/test.sh and
# scripts/run-local.sh build the agent and install Docker meanwhile).
set -euo pipefail

PROG=$(basename "$0")
DEFAULT_NAME=jupyter-agent/notebook:local
NAME=${JUPYTER_TEST_IMAGE:-$DEFAULT_NAME}
FORCE=0
CHECK=1
WAIT_ENGINE=0
DOCKER=${DOCKER:-/usr/bin/docker}
PORT=8888

usage() {
    cat <<EOF
Usage: $PROG [--name NAME] [--force] [--no-check] [--wait-engine SECONDS]

Build the local Jupyter test image (Debian minbase + python3-notebook) with
debootstrap and 'docker import'. Needs root, debootstrap and a running Docker
engine; fetches packages only from the Debian mirror in the host's apt config.

Options:
  --name NAME   image name (default: \$JUPYTER_TEST_IMAGE or $DEFAULT_NAME)
  --force       rebuild even if the image already exists
  --no-check    skip the check that the built server starts and answers
  --wait-engine SECONDS
                no engine answering yet is fine: build the tree, then wait
                this long for one before the import (default 0: fail at once)
  -h, --help    show this help

Environment:
  JUPYTER_TEST_IMAGE  default image name
  DOCKER              docker client (default: /usr/bin/docker)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --name) [ $# -ge 2 ] || { echo "$PROG: --name needs a value" >&2; exit 2; }
                NAME=$2; shift 2 ;;
        --name=*) NAME=${1#--name=}; shift ;;
        --force) FORCE=1; shift ;;
        --no-check) CHECK=0; shift ;;
        --wait-engine) [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "$PROG: --wait-engine needs a number of seconds" >&2; exit 2; }
                WAIT_ENGINE=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "$PROG: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { printf '[%s +%3ds] %s\n' "$PROG" "$SECONDS" "$*"; }

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

[ -n "$NAME" ] || die "empty image name"
engine_up() { [ -x "$DOCKER" ] && "$DOCKER" info >/dev/null 2>&1; }
exists() { [ "$FORCE" -eq 0 ] && "$DOCKER" image inspect "$NAME" >/dev/null 2>&1; }

if engine_up; then
    if exists; then
        echo "$PROG: image $NAME already exists (use --force to rebuild)"
        exit 0
    fi
elif [ "$WAIT_ENGINE" -eq 0 ]; then
    command -v "$DOCKER" >/dev/null 2>&1 || die "docker client not found: $DOCKER"
    die "cannot talk to the Docker engine (is dockerd running?)"
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap and chroot need it)"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install debootstrap)"

# --- which Debian release and mirror (the machine's own apt configuration) --
SUITE=$(debian_suite) || die "no VERSION_CODENAME in /etc/os-release: cannot tell the Debian suite"
MIRROR=$(debian_mirror "$SUITE") ||
    die "no 'deb' source for suite '$SUITE' found in /etc/apt/sources.list{,.d/*.sources,.d/*.list}"

# --- temp dir and cleanup ---------------------------------------------------
WORK=$(mktemp -d /var/tmp/jupyter-test-image.XXXXXX)
ROOTFS=$WORK/rootfs
LOGFILE=$WORK/build.log
CHECK_CTR=

cleanup() {
    local rc=$?
    set +e
    if [ -n "${CHILD:-}" ]; then
        kill -TERM "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    if [ -n "$CHECK_CTR" ]; then
        "$DOCKER" rm -f "$CHECK_CTR" >/dev/null 2>&1
    fi
    # Unmount everything below the rootfs, deepest first.
    if [ -d "$ROOTFS" ]; then
        findmnt -rn -o TARGET | awk -v p="$ROOTFS/" 'index($0, p) == 1' | sort -r |
            while read -r m; do umount -l "$m" 2>/dev/null; done
    fi
    if [ "$rc" -ne 0 ] && [ -s "$LOGFILE" ]; then
        echo "$PROG: failed; last lines of the build log:" >&2
        tail -n 40 "$LOGFILE" >&2
    fi
    if findmnt -rn -o TARGET | awk -v p="$ROOTFS/" 'index($0, p) == 1' | grep -q .; then
        echo "$PROG: something is still mounted below $ROOTFS; leaving $WORK in place" >&2
    else
        rm -rf --one-file-system "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Run a command with its output in the log; on failure the trap shows the tail.
# It runs in the background so that a TERM/INT to this script is handled at
# once (the trap stops the child before unmounting and removing its tree).
CHILD=
run_logged() {
    local rc=0
    echo "+ $*" >>"$LOGFILE"
    "$@" >>"$LOGFILE" 2>&1 </dev/null &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=
    return "$rc"
}

log "building $NAME from Debian $SUITE ($MIRROR); log: $LOGFILE"

# --- 1. debootstrap ---------------------------------------------------------
t=$SECONDS
run_logged debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" ||
    die "debootstrap failed"
log "debootstrap done in $((SECONDS - t))s"

# --- 2. python3-notebook ----------------------------------------------------
# python3-notebook is the module; Debian ships the `jupyter-notebook` and
# `jupyter` commands in the packages jupyter-notebook and jupyter-core.
t=$SECONDS
# Keep the host's relaxed Release date checks (snapshot mirrors), never start
# services inside the chroot, and keep the image small.
cat >"$ROOTFS/etc/apt/apt.conf.d/99jupyter-test-image" <<'EOF'
Acquire::Check-Valid-Until "false";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
EOF
printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
chmod 755 "$ROOTFS/usr/sbin/policy-rc.d"
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
mount -t proc proc "$ROOTFS/proc"

in_chroot() {
    run_logged env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive chroot "$ROOTFS" "$@"
}
in_chroot apt-get update || die "apt-get update in the chroot failed"
in_chroot apt-get install -y --no-install-recommends python3-notebook jupyter-notebook ||
    die "apt-get install python3-notebook jupyter-notebook failed"
[ -x "$ROOTFS/usr/bin/jupyter-notebook" ] || die "no /usr/bin/jupyter-notebook after the install"
# shellcheck disable=SC2016  # ${Version} is dpkg-query's, not the shell's
NB_VERSION=$(chroot "$ROOTFS" dpkg-query -W -f '${Version}' python3-notebook)
# shellcheck disable=SC2016
PY_VERSION=$(chroot "$ROOTFS" dpkg-query -W -f '${Version}' python3)
in_chroot apt-get clean
umount "$ROOTFS/proc"
rm -f "$ROOTFS/usr/sbin/policy-rc.d"
# The resolver config is the host's; Docker provides its own at run time.
: >"$ROOTFS/etc/resolv.conf"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/log/apt/* "$ROOTFS"/var/log/dpkg.log "$ROOTFS"/tmp/* \
    "$ROOTFS"/root/.cache
log "python3-notebook $NB_VERSION (python3 $PY_VERSION) installed in $((SECONDS - t))s"

# --- 3. docker import -------------------------------------------------------
if ! engine_up; then
    t=$SECONDS
    wait_for_engine "$WAIT_ENGINE" || die "no Docker engine answered within ${WAIT_ENGINE}s"
    engine_up || die "cannot talk to the Docker engine with $DOCKER"
    log "waited $((SECONDS - t))s for the Docker engine"
    if exists; then
        log "image $NAME appeared meanwhile: not importing this tree"
        exit 0
    fi
fi
t=$SECONDS
OLD_ID=$("$DOCKER" image inspect -f '{{.Id}}' "$NAME" 2>/dev/null || true)
import_tree "$ROOTFS" "$NAME" \
    -c 'CMD ["jupyter-notebook","--ip=0.0.0.0","--port=8888","--allow-root","--no-browser"]' \
    -c "EXPOSE $PORT" \
    -c 'ENV LANG=C.UTF-8' \
    -c 'WORKDIR /root' \
    -m "Debian $SUITE minbase + python3-notebook $NB_VERSION (scripts/build-test-image.sh)" \
    >>"$LOGFILE" 2>&1 || die "docker import failed"
NEW_ID=$("$DOCKER" image inspect -f '{{.Id}}' "$NAME")
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$NEW_ID" ]; then
    # --force: drop the previous, now untagged build (kept if a container uses it).
    "$DOCKER" rmi "$OLD_ID" >/dev/null 2>&1 || true
fi
log "imported $NAME ($("$DOCKER" image inspect -f '{{.Size}}' "$NAME" | awk '{printf "%d MB", $1/1e6}')) in $((SECONDS - t))s"

# --- 4. check that the server starts ------------------------------------------
if [ "$CHECK" -eq 1 ]; then
    t=$SECONDS
    CHECK_CTR=$("$DOCKER" run -d -p "127.0.0.1::$PORT" "$NAME" 2>>"$LOGFILE") ||
        die "check: docker run $NAME failed"
    hostport=$("$DOCKER" port "$CHECK_CTR" "$PORT/tcp" | grep '^127\.0\.0\.1:' | head -n1)
    [ -n "$hostport" ] || die "check: no port published on 127.0.0.1"
    token=
    for _ in $(seq 1 60); do
        token=$("$DOCKER" logs "$CHECK_CTR" 2>&1 | grep -o '?token=[0-9a-f]\+' | head -n1 | cut -d= -f2) || true
        [ -n "$token" ] && break
        [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$CHECK_CTR")" = true ] ||
            { "$DOCKER" logs "$CHECK_CTR" >>"$LOGFILE" 2>&1; die "check: server exited"; }
        sleep 1
    done
    if [ -z "$token" ]; then
        "$DOCKER" logs "$CHECK_CTR" >>"$LOGFILE" 2>&1
        die "check: no token URL in the server log after 60s"
    fi
    code=000
    for _ in $(seq 1 20); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: token $token" \
            "http://$hostport/api/status") || true
        [ "$code" = 200 ] && break
        sleep 0.5
    done
    [ "$code" = 200 ] || die "check: GET /api/status with the token returned HTTP $code"
    "$DOCKER" rm -f "$CHECK_CTR" >/dev/null
    CHECK_CTR=
    log "check passed: server started, /api/status answered 200 with the token ($((SECONDS - t))s)"
fi

log "done: $NAME built in ${SECONDS}s"
