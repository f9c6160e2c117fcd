#!/usr/bin/env bash
# Builds the release: jupyter-agent and jupyter-bootstrap for x86_64 Linux,
# statically linked (glibc with crt-static: no musl target is needed), packed
# into a tarball, with SHA256SUMS. tests/release.rs checks what it wrote
# (static ELF, checksums, contents, runs in an empty root).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/release.sh [--out DIR] [--version V]

Builds jupyter-agent and jupyter-bootstrap for x86_64 Linux, statically
linked (RUSTFLAGS='-C target-feature=+crt-static', --target
x86_64-unknown-linux-gnu, --release --locked), one package per cargo
invocation so that the agent's TLS features stay out of the bootstrap.
It writes to DIR:

  jupyter-agent-V-x86_64-linux.tar.gz   both binaries and a README.txt
  jupyter-agent, jupyter-bootstrap      the same binaries, unpacked
  SHA256SUMS                            sha256sum -c SHA256SUMS checks all three

  --out DIR      where to write (default: dist/ in the repository)
  --version V    the version in the tarball's name (default: the workspace's)
  -h, --help     this text

The tarball's file times are $SOURCE_DATE_EPOCH, else the last commit's time.

Then check it (static x86_64 ELF, checksums, the tarball's contents, the
binaries run in an empty root; as root):

  JA_RELEASE_DIR=DIR cargo test -p e2e --test tests -- release::
EOF
}

die() { echo "release: $*" >&2; exit 1; }

CALLER_DIR=$PWD
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=
VERSION=
while [ $# -gt 0 ]; do
    case $1 in
        --out) [ $# -ge 2 ] || die "--out needs a directory"; OUT=$2; shift 2 ;;
        --out=*) OUT=${1#--out=}; shift ;;
        --version) [ $# -ge 2 ] || die "--version needs a value"; VERSION=$2; shift 2 ;;
        --version=*) VERSION=${1#--version=}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done
case $OUT in
    "") OUT=$ROOT/dist ;;
    /*) ;;
    *) OUT=$CALLER_DIR/$OUT ;;
esac

TARGET=x86_64-unknown-linux-gnu
PACKAGES=(jupyter-agent jupyter-bootstrap)

# The workspace's version and target directory, from cargo metadata (python3,
# else sed on the one-line JSON).
META=$(cargo metadata --no-deps --format-version 1 --locked) || die "cargo metadata failed"
meta() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c '
import json, sys
m = json.load(sys.stdin)
if sys.argv[1] == "version":
    print(next(p["version"] for p in m["packages"] if p["name"] == "jupyter-agent"))
else:
    print(m["target_directory"])
' "$1" <<<"$META"
    elif [ "$1" = version ]; then
        sed -n 's/.*{"name":"jupyter-agent","version":"\([^"]*\)".*/\1/p' <<<"$META"
    else
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' <<<"$META"
    fi
}
[ -n "$VERSION" ] || VERSION=$(meta version)
[[ $VERSION =~ ^[A-Za-z0-9][A-Za-z0-9.+~_-]*$ ]] || die "not a usable version: '$VERSION'"
TARGET_DIR=$(meta target_directory)
[ -n "$TARGET_DIR" ] || die "cannot read the target directory from cargo metadata"
BUILT=$TARGET_DIR/$TARGET/release

# --target keeps crt-static away from build scripts and proc macros (which
# cannot be static); CARGO_ENCODED_RUSTFLAGS would override RUSTFLAGS.
unset CARGO_ENCODED_RUSTFLAGS
# Run by a test (tests/release.rs without JA_RELEASE_DIR), the environment
# holds the test crate's CARGO_MANIFEST_DIR, CARGO_PKG_NAME, ...: ring's build
# script tracks them (rerun-if-env-changed), so they made the agent's whole
# fat-LTO build stale, every time, for nothing.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^CARGO_(PKG|MANIFEST|CRATE|BIN|PRIMARY|TARGET_TMPDIR)')
# getrandom: ask the kernel directly. Static glibc cannot provide the
# getrandom symbol the default backend looks up, which then falls back to
# /dev/urandom and fails in a root without /dev (the DNS resolver needs it).
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\""
for pkg in "${PACKAGES[@]}"; do
    echo "== building $pkg $VERSION (static, $TARGET)"
    cargo build --quiet --release --locked --target "$TARGET" -p "$pkg" ||
        die "cargo build -p $pkg failed"
done

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/release.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
NAME=jupyter-agent-$VERSION-x86_64-linux
mkdir -p "$STAGE/$NAME" "$OUT"
for pkg in "${PACKAGES[@]}"; do
    [ -f "$BUILT/$pkg" ] || die "no binary at $BUILT/$pkg"
    cp "$BUILT/$pkg" "$STAGE/$NAME/$pkg"
    chmod 755 "$STAGE/$NAME/$pkg"
done

cat >"$STAGE/$NAME/README.txt" <<EOF
jupyter-agent $VERSION for x86_64 Linux (statically linked: any distribution,
no shared libraries needed)

jupyter-agent      turns the host into a working Jupyter container: installs
                   and starts Docker if needed, starts the container, proves
                   the login token and reports the login URL
                   (jupyter-agent --help; jupyter-agent run --help)
jupyter-bootstrap  for user data: waits for the agent's report and passes it
                   on to the terminal, a result file and a ROS wait condition
                   (jupyter-bootstrap wait --help)

In ECS user data (as root), after fetching and checking this tarball:

  tar -xzf $NAME.tar.gz
  install -m 0755 $NAME/jupyter-agent $NAME/jupyter-bootstrap /usr/local/bin/
  mkdir -p /etc/jupyter-agent    # and write /etc/jupyter-agent/config.toml
  jupyter-agent install          # systemd service: converges now and at every boot
  jupyter-bootstrap wait --timeout 30m --result-file /root/userdata-result.txt \\
    --ros-notify "\${WaitConditionHandle.CurlCli}"
EOF
chmod 644 "$STAGE/$NAME/README.txt"
chmod 755 "$STAGE/$NAME"
[ ! -f "$ROOT/LICENSE" ] || install -m 644 "$ROOT/LICENSE" "$STAGE/$NAME/LICENSE"

EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}
[[ $EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH is not a number: $EPOCH"
TARBALL=$OUT/$NAME.tar.gz
tar --format=gnu --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" --sort=name \
    -C "$STAGE" -cf - "$NAME" | gzip -n -9 >"$STAGE/tarball"
mv "$STAGE/tarball" "$TARBALL"
for pkg in "${PACKAGES[@]}"; do
    cp "$STAGE/$NAME/$pkg" "$STAGE/$pkg.new"
    mv "$STAGE/$pkg.new" "$OUT/$pkg"
done
(cd "$OUT" && sha256sum "$NAME.tar.gz" "${PACKAGES[@]}" >"$STAGE/SHA256SUMS" && mv "$STAGE/SHA256SUMS" SHA256SUMS)
(cd "$OUT" && sha256sum --quiet -c SHA256SUMS) || die "SHA256SUMS does not check"

size() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
echo "== built (checked by: JA_RELEASE_DIR=$OUT cargo test -p e2e --test tests -- release::):"
for f in "${PACKAGES[@]}" "$NAME.tar.gz"; do
    s=$(size "$OUT/$f")
    printf '  %-42s %9d bytes  %s\n' "$f" "$s" "$(mib "$s")"
done
echo "$TARBALL"
