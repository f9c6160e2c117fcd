#!/usr/bin/env bash
# Build a second Jupyter test image with jupyter_server 2 (the server under
# Notebook 7 and JupyterLab 4): the local Debian image plus a virtual
# environment /opt/js2 holding jupyter-server from PyPI wheels. The wheels are
# fetched with the host's pip (CPython 3.11, manylinux x86_64; the only
# network use) and installed offline inside `docker build`; the versions are
# pinned by scripts/pins/jupyter-server-2.txt. The tests start it with
# `/opt/js2/bin/jupyter-server`.
#
# Idempotent: exits 0 at once when the image exists (unless --force).
#
#   scripts/build-server2-image.sh [--name NAME] [--force]
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)
NAME=${JUPYTER_SERVER2_IMAGE:-jupyter-agent/server2:local}
BASE_IMAGE=${JUPYTER_TEST_IMAGE:-jupyter-agent/notebook:local}
WHEEL_CACHE=${WHEEL_CACHE:-/var/tmp/jupyter-agent-server2-wheels}
DOCKER=${DOCKER:-/usr/bin/docker}
PIP_VERSION=26.3
SERVER=jupyter-server==2.21.1
FORCE=0

while [ $# -gt 0 ]; do
    case "$1" in
        --name) NAME=$2; shift 2 ;;
        --force) FORCE=1; shift ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "$PROG: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
die() { echo "$PROG: error: $*" >&2; exit 1; }

if [ "$FORCE" -eq 0 ] && "$DOCKER" image inspect "$NAME" >/dev/null 2>&1; then
    echo "$PROG: $NAME exists"
    exit 0
fi
"$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1 || "$HERE/build-test-image.sh" --name "$BASE_IMAGE"
command -v python3 >/dev/null || die "python3 (with pip) is needed on the host"

mkdir -p "$WHEEL_CACHE/server" "$WHEEL_CACHE/pip"
grep -v '^#' "$HERE/pins/jupyter-server-2.txt" >"$WHEEL_CACHE/server/constraints.txt"
python3 -m pip download -q --disable-pip-version-check \
    --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 \
    --platform manylinux1_x86_64 --platform any \
    -c "$WHEEL_CACHE/server/constraints.txt" -d "$WHEEL_CACHE/server" "$SERVER" ||
    die "pip download of $SERVER failed"
python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$WHEEL_CACHE/pip" "pip==$PIP_VERSION" || die "pip download of pip failed"

CTX=$(mktemp -d /var/tmp/build-server2-image.XXXXXX)
trap 'rm -rf "$CTX"' EXIT
cp -a "$WHEEL_CACHE"/. "$CTX/"
cat >"$CTX/Dockerfile" <<DOCKERFILE
FROM $BASE_IMAGE
COPY . /wheels
RUN set -eu; \\
    python3 -m venv --without-pip /opt/js2; \\
    /opt/js2/bin/python /wheels/pip/pip-$PIP_VERSION-py3-none-any.whl/pip install \\
      --quiet --no-index --no-cache-dir --disable-pip-version-check \\
      --find-links /wheels/server -c /wheels/server/constraints.txt "$SERVER"; \\
    rm -rf /wheels /root/.cache
DOCKERFILE
DOCKER_BUILDKIT=0 "$DOCKER" build -q -t "$NAME" "$CTX" >"$CTX/build.log" 2>&1 ||
    { cat "$CTX/build.log" >&2; die "docker build of $NAME failed"; }
"$DOCKER" run --rm --entrypoint /opt/js2/bin/jupyter-server "$NAME" --version >/dev/null ||
    die "$NAME has no working /opt/js2/bin/jupyter-server"
echo "$PROG: built $NAME ($SERVER on $BASE_IMAGE)"
