#!/usr/bin/env bash
# Makes a minimal root file system of this machine's own Debian release
# (debootstrap --variant=minbase, mirror from the machine's apt
# configuration), ready for `chroot DIR apt-get ...`: the tests install
# Docker into it with `jupyter-agent install-docker --root DIR` and run the
# agent in it to install git, and the install benchmark compares installs
# in two of them.
#
# A debootstrap is minutes of downloads, and one run of scripts/test.sh needs
# several roots (the systemd image, the install tests' template): the fresh
# tree is kept as a tarball for the week (suite, mirror and week in its
# name, under $JA_DEBIAN_ROOT_CACHE, default /var/cache/jupyter-agent), and
# later calls unpack it in seconds. Nothing is ever installed into the
# cached tree; a lock keeps two callers from making it twice.
#
#   scripts/make-debian-root.sh DIR      (as root; DIR must not exist or be empty)
set -euo pipefail
PROG=$(basename "$0")
die() { echo "$PROG: error: $*" >&2; exit 1; }

case "${1:-}" in
    -h|--help|"")
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
        [ -n "${1:-}" ] && exit 0 || exit 2 ;;
esac
DIR=$1
[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap needs it)"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install debootstrap)"
if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
    die "$DIR exists and is not empty"
fi

# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
SUITE=$(debian_suite) || die "no VERSION_CODENAME in /etc/os-release"
MIRROR=$(debian_mirror "$SUITE") || die "no 'deb' source for $SUITE in the apt configuration"

CACHE=${JA_DEBIAN_ROOT_CACHE:-/var/cache/jupyter-agent}
mkdir -p "$CACHE"
prefix=debian-root-$SUITE-$(printf '%s' "$MIRROR" | sha256sum | cut -c1-12)
TARBALL=$CACHE/$prefix-w$(($(date +%s) / 604800)).tar
# GNU tar as root keeps owners, modes, device nodes, hard links and xattrs.
TAR_OPTS=(--numeric-owner --xattrs --xattrs-include='*' --acls)
exec 9>"$CACHE/$prefix.lock"
flock 9
if [ -s "$TARBALL" ]; then
    mkdir -p "$DIR"
    tar "${TAR_OPTS[@]}" -C "$DIR" -xpf "$TARBALL" || die "cannot unpack $TARBALL into $DIR"
else
    LOG=$(mktemp /tmp/make-debian-root.XXXXXX.log)
    if ! debootstrap --variant=minbase "$SUITE" "$DIR" "$MIRROR" >"$LOG" 2>&1; then
        tail -n 30 "$LOG" >&2
        die "debootstrap failed (log: $LOG)"
    fi
    rm -f "$LOG"
    # Earlier weeks' trees go; this one is written whole, then renamed.
    find "$CACHE" -maxdepth 1 -name "$prefix-w*.tar*" -delete
    if ! { tar "${TAR_OPTS[@]}" -C "$DIR" -cf "$TARBALL.part" . && mv "$TARBALL.part" "$TARBALL"; }; then
        rm -f "$TARBALL.part"
        echo "$PROG: could not keep the tree in $TARBALL (the next call debootstraps again)" >&2
    fi
fi
exec 9>&-
# What the host's apt relies on to reach its mirror carries over (Acquire::
# settings: relaxed Release dates for a snapshot mirror, a proxy), and its
# resolver for the chroot's downloads.
for f in /etc/apt/apt.conf.d/*; do
    if [ -f "$f" ] && grep -qiE '^[[:space:]]*Acquire::(Check-Valid-Until|Check-Date|Proxy|https?::Proxy)' "$f"; then
        cp "$f" "$DIR/etc/apt/apt.conf.d/"
    fi
done
cp -L /etc/resolv.conf "$DIR/etc/resolv.conf"
echo "$PROG: $DIR holds Debian $SUITE (minbase) from the machine's own mirror"
