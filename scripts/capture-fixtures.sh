#!/usr/bin/env bash
# Capture the startup logs of real Jupyter servers into tests/fixtures/.
#
# The token parser is tested on what real servers print. This script starts
# each server in a local container, waits until it has printed its `?token=`
# URL lines (and the log has been quiet for a few seconds), stops it and saves
# `docker logs` byte for byte. See tests/fixtures/README.md for the files.
#
# Servers:
#   - Debian 12's Jupyter Notebook 6.4 (the image from scripts/build-test-image.sh),
#     without and with a TTY, and with the token set by JUPYTER_TOKEN;
#   - newer servers installed with pip, each in its own virtual environment under /opt
#     in an image derived from that one (jupyter-agent/fixtures:local):
#       lab4  jupyter_server 2.x + JupyterLab 4      (`jupyter lab`)
#       nb7   jupyter_server 2.x + Notebook 7        (`jupyter notebook`, /tree)
#       lab3  jupyter_server 1.x + JupyterLab 3      (`jupyter lab`)
#       nb57  classic Notebook 5.7                   (`jupyter notebook`)
#
# pip cannot verify TLS inside the containers here, so the wheels are fetched
# with the host's pip (`pip download` for CPython 3.11 / manylinux x86_64) into
# a cache directory and installed offline (`--no-index`) during `docker build`.
# Every environment is pinned in full below, so a re-run installs the same
# versions. Needs root-level Docker access and the host's pip; not run in CI.
set -euo pipefail

PROG=$(basename "$0")
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
DOCKER=${DOCKER:-/usr/bin/docker}
BASE_IMAGE=${JUPYTER_TEST_IMAGE:-jupyter-agent/notebook:local}
FIXTURE_IMAGE=${JUPYTER_FIXTURE_IMAGE:-jupyter-agent/fixtures:local}
WHEEL_CACHE=${WHEEL_CACHE:-/var/tmp/jupyter-agent-fixture-wheels}
OUT=$REPO/tests/fixtures
REBUILD=0
ONLY=
# The token given through JUPYTER_TOKEN in the "token from env" captures.
# Test data only: an obviously made-up value, not a secret.
ENV_TOKEN=0123456789abcdef0123456789abcdef0123456789abcdef
WAIT_MAX=60     # seconds to wait for the URL lines
QUIET=3         # seconds without new output after them before stopping
SERVER_ARGS=(--ip=0.0.0.0 --port=8888 --allow-root --no-browser)
ALL_CAPTURES="nb64 nb64-tty nb64-env lab4 lab4-env nb7 lab3 nb57"

usage() {
    cat <<EOF
Usage: $PROG [--out DIR] [--only LIST] [--rebuild-image]

Start real Jupyter servers in local containers and save their startup logs
(and 'jupyter ... list --json' output) as test fixtures.

Options:
  --out DIR        where to write the fixtures (default: tests/fixtures)
  --only LIST      comma-separated subset of: ${ALL_CAPTURES// /,}
  --rebuild-image  rebuild $FIXTURE_IMAGE (re-downloads wheels if missing)
  -h, --help       show this help

Environment:
  JUPYTER_TEST_IMAGE     base image (default jupyter-agent/notebook:local; built
                         with scripts/build-test-image.sh if missing)
  JUPYTER_FIXTURE_IMAGE  derived image with the pip-installed servers
                         (default jupyter-agent/fixtures:local)
  WHEEL_CACHE            wheel download cache
                         (default /var/tmp/jupyter-agent-fixture-wheels)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --only) ONLY=${2//,/ }; shift 2 ;;
        --rebuild-image) REBUILD=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "$PROG: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
ONLY=${ONLY:-$ALL_CAPTURES}
for c in $ONLY; do
    case " $ALL_CAPTURES " in *" $c "*) ;; *) echo "$PROG: unknown capture: $c" >&2; exit 2 ;; esac
done
wanted() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

die() { echo "$PROG: error: $*" >&2; exit 1; }
log() { printf '[%s +%3ds] %s\n' "$PROG" "$SECONDS" "$*"; }

CONTAINERS=()
TMP=$(mktemp -d /var/tmp/capture-fixtures.XXXXXX)
cleanup() {
    local c
    for c in "${CONTAINERS[@]}"; do "$DOCKER" rm -f "$c" >/dev/null 2>&1 || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- pinned environments -------------------------------------------------------
# Resolved on 2026-11-27 with `pip download` for CPython 3.11, then frozen.
PIP_VERSION=26.3

# Shared by lab4 and nb7 (nb7 adds notebook==7.6.5).
PINS_SERVER2=$(grep -v '^#' "$HERE/pins/jupyter-server-2.txt")

PINS_LAB3="
    aiofiles==22.1.0 aiosqlite==0.22.1 anyio==3.7.1
    argon2-cffi-bindings==21.2.0 argon2-cffi==25.1.0
    arrow==1.4.0 asttokens==3.0.2 attrs==26.1.0 babel==2.19.0
    beautifulsoup4==4.15.0 bleach==6.4.0 certifi==2026.10.19.post1
    cffi==2.1.1 charset-normalizer==3.5.3 comm==0.2.3 debugpy==1.8.22
    defusedxml==0.7.1 entrypoints==0.4.2 executing==2.3.0
    fastjsonschema==2.22.3 fqdn==1.6.0 idna==3.20 ipykernel==6.29.5
    ipython-genutils==0.2.0 ipython-pygments-lexers==1.1.1 ipython==9.18.1
    isoduration==20.11.0 jedi==0.20.1 jinja2==3.1.6 json5==0.17.3
    jsonpointer==3.12 jsonschema-specifications==2025.9.1 jsonschema==4.26.0
    jupyter-client==7.4.9 jupyter-core==5.9.1 jupyter-events==0.12.1
    jupyter-server-fileid==0.9.3 jupyter-server-ydoc==0.8.0
    jupyter-server==1.24.0 jupyter-ydoc==0.2.5 jupyterlab-pygments==0.3.0
    jupyterlab-server==2.28.1 jupyterlab==3.6.8 lark==1.3.1 markupsafe==3.0.4
    matplotlib-inline==0.2.2 mistune==3.4.0 nbclassic==1.3.3 nbclient==0.11.0
    nbconvert==7.17.2 nbformat==5.11.1 nest-asyncio==1.6.0 notebook-shim==0.2.4
    notebook==6.5.7 packaging==26.4 pandocfilters==1.5.1 parso==0.8.7
    pexpect==4.9.0 platformdirs==4.14.8 prometheus-client==0.26.0
    prompt-toolkit==3.0.53 psutil==7.2.2 ptyprocess==0.7.0
    pure-eval==0.2.4 pycparser==3.12 pygments==2.21.0 python-dateutil==4.0.0
    python-json-logger==4.2.0 pyyaml==6.0.4 pyzmq==26.4.0 referencing==0.37.0
    requests==2.34.2 rfc3339-validator==0.1.4 rfc3986-validator==0.1.1
    rfc3987-syntax==1.1.0 rpds-py==2026.9.1 send2trash==2.2.0 six==1.17.0
    sniffio==1.3.1 soupsieve==2.10 stack-data==0.6.3 terminado==0.18.1
    tinycss2==1.5.1 tornado==6.6.1 traitlets==5.16.1 typing-extensions==4.16.0
    tzdata==2026.6 uri-template==1.3.0 urllib3==2.8.0 wcwidth==0.9.4
    webcolors==25.10.0 webencodings==0.6.1 websocket-client==1.9.2 y-py==0.6.2
    ypy-websocket==0.8.4"

# notebook 5.7.16 imports `six` without declaring it, hence the explicit six.
PINS_NB57="
    asttokens==3.0.2 attrs==26.1.0 bleach==6.4.0 comm==0.2.3
    debugpy==1.8.22 defusedxml==0.7.1 entrypoints==0.4.2 executing==2.3.0
    fastjsonschema==2.22.3 ipykernel==6.29.5 ipython-genutils==0.2.0
    ipython-pygments-lexers==1.1.1 ipython==9.18.1 jedi==0.20.1
    jinja2==3.0.0 jsonschema-specifications==2025.9.1 jsonschema==4.26.0
    jupyter-client==6.1.12 jupyter-core==5.9.1 markupsafe==3.0.4
    matplotlib-inline==0.2.2 mistune==0.8.4 nbconvert==5.6.1 nbformat==5.11.1
    nest-asyncio==1.6.0 notebook==5.7.16 packaging==26.4 pandocfilters==1.5.1
    parso==0.8.7 pexpect==4.9.0 platformdirs==4.14.8 prometheus-client==0.26.0
    prompt-toolkit==3.0.53 psutil==7.2.2 ptyprocess==0.7.0 pure-eval==0.2.4
    pygments==2.21.0 python-dateutil==4.0.0 pyzmq==26.4.0 referencing==0.37.0
    rpds-py==2026.9.1 send2trash==2.2.0 six==1.17.0 stack-data==0.6.3
    terminado==0.18.1 testpath==0.6.0 tornado==6.6.1 traitlets==5.16.1
    typing-extensions==4.16.0 tzdata==2026.6 wcwidth==0.9.4 webencodings==0.6.1"

# env name | top-level requirements | pins
ENVS=(lab4 nb7 lab3 nb57)
env_reqs() {
    case "$1" in
        lab4) echo "jupyterlab==4.6.6" ;;
        nb7)  echo "notebook==7.6.5" ;;
        lab3) echo "jupyterlab==3.6.8 jupyter-server==1.24.0" ;;
        nb57) echo "notebook==5.7.16 six==1.17.0" ;;
    esac
}
env_pins() {
    case "$1" in
        lab4) echo "$PINS_SERVER2" ;;
        nb7)  echo "$PINS_SERVER2 notebook==7.6.5" ;;
        lab3) echo "$PINS_LAB3" ;;
        nb57) echo "$PINS_NB57" ;;
    esac
}

# --- images --------------------------------------------------------------------
"$HERE/build-test-image.sh" --name "$BASE_IMAGE"

download_wheels() {
    local env dir
    command -v python3 >/dev/null || die "python3 (with pip) is needed on the host"
    for env in "${ENVS[@]}"; do
        dir=$WHEEL_CACHE/$env
        mkdir -p "$dir"
        env_pins "$env" | tr -s ' \n' '\n' | sed '/^$/d' >"$dir/constraints.txt"
        env_reqs "$env" | tr ' ' '\n' >"$dir/requirements.txt"
        log "downloading wheels for $env ($(env_reqs "$env"))"
        python3 -m pip download -q --disable-pip-version-check \
            --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 \
            --platform manylinux1_x86_64 --platform any \
            -c "$dir/constraints.txt" -r "$dir/requirements.txt" -d "$dir" ||
            die "pip download for $env failed"
    done
    mkdir -p "$WHEEL_CACHE/pip"
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        -d "$WHEEL_CACHE/pip" "pip==$PIP_VERSION" || die "pip download of pip failed"
}

build_fixture_image() {
    local ctx=$TMP/context
    download_wheels
    mkdir -p "$ctx"
    cp -al "$WHEEL_CACHE"/. "$ctx/" 2>/dev/null || cp -a "$WHEEL_CACHE"/. "$ctx/"
    # No network use inside the build: everything comes from /wheels.
    cat >"$ctx/Dockerfile" <<EOF
FROM $BASE_IMAGE
COPY . /wheels
RUN set -eu; \\
    for env in ${ENVS[*]}; do \\
      python3 -m venv --without-pip /opt/\$env; \\
      /opt/\$env/bin/python /wheels/pip/pip-$PIP_VERSION-py3-none-any.whl/pip install \\
        --quiet --no-index --no-cache-dir --disable-pip-version-check \\
        --find-links /wheels/\$env -c /wheels/\$env/constraints.txt \\
        -r /wheels/\$env/requirements.txt; \\
    done; \\
    rm -rf /wheels /root/.cache
EOF
    log "building $FIXTURE_IMAGE (venvs ${ENVS[*]} under /opt)"
    DOCKER_BUILDKIT=0 "$DOCKER" build -q -t "$FIXTURE_IMAGE" "$ctx" >"$TMP/build.log" 2>&1 ||
        { cat "$TMP/build.log" >&2; die "docker build of $FIXTURE_IMAGE failed"; }
    rm -rf "$ctx"
}

need_fixture_image=0
for c in lab4 lab4-env nb7 lab3 nb57; do wanted "$c" && need_fixture_image=1; done
if [ "$need_fixture_image" -eq 1 ]; then
    if [ "$REBUILD" -eq 1 ] || ! "$DOCKER" image inspect "$FIXTURE_IMAGE" >/dev/null 2>&1; then
        build_fixture_image
    else
        log "using existing $FIXTURE_IMAGE (--rebuild-image to rebuild)"
    fi
fi

# Installed versions, for the file names: pkg_version ENV DIST
pkg_version() {
    "$DOCKER" run --rm "$FIXTURE_IMAGE" "/opt/$1/bin/python" -c \
        "import importlib.metadata as m; print(m.version('$2'))"
}

# --- capture helpers -----------------------------------------------------------
CID=
# start NAME [docker run options...] -- IMAGE [command...]
start() {
    local name=jupyter-agent-fixture-$1-$$; shift
    CID=$("$DOCKER" run -d --name "$name" -p 127.0.0.1::8888 "$@") ||
        die "docker run failed for $name"
    CONTAINERS+=("$CID")
}

# Wait until a `?token=` line is in the log and no new output came for $QUIET s.
wait_for_urls() {
    local out size last=-1 quiet=0 t0=$SECONDS
    while [ $((SECONDS - t0)) -lt "$WAIT_MAX" ]; do
        out=$("$DOCKER" logs "$CID" 2>&1) || true
        if [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$CID")" != true ]; then
            printf '%s\n' "$out" | tail -n 30 >&2
            die "server exited before printing its URL"
        fi
        size=${#out}
        if grep -q '?token=' <<<"$out"; then
            if [ "$size" -eq "$last" ]; then quiet=$((quiet + 1)); else quiet=0; fi
            [ "$quiet" -ge "$QUIET" ] && return 0
        fi
        last=$size
        sleep 1
    done
    printf '%s\n' "$out" | tail -n 30 >&2
    die "no ?token= URL in the log within ${WAIT_MAX}s"
}

# Check the server answers on its published 127.0.0.1 port with TOKEN.
check_api() {
    local token=$1 hostport code
    hostport=$("$DOCKER" port "$CID" 8888/tcp | grep '^127\.0\.0\.1:' | head -n1)
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: token $token" \
        "http://$hostport/api/status") || true
    [ "$code" = 200 ] || die "GET /api/status with the token gave HTTP $code"
}

log_token() { grep -ao '?token=[0-9a-f]\{8,\}' | head -n1 | cut -d= -f2; }

# Stop the server (SIGTERM), save its raw `docker logs` output, remove it.
stop_and_save() {
    local file=$1
    "$DOCKER" stop -t 10 "$CID" >/dev/null
    "$DOCKER" logs "$CID" >"$OUT/$file" 2>&1
    "$DOCKER" rm "$CID" >/dev/null
    log "wrote $file ($(wc -c <"$OUT/$file") bytes)"
}

# capture KEY FILE TOKEN_MODE(log|env) LIST_CMD LIST_FILE [docker run args...]
capture() {
    local key=$1 file=$2 mode=$3 list_cmd=$4 list_file=$5 token; shift 5
    log "capturing $key"
    if [ "$mode" = env ]; then
        start "$key" -e "JUPYTER_TOKEN=$ENV_TOKEN" "$@"
    else
        start "$key" "$@"
    fi
    wait_for_urls
    if [ "$mode" = env ]; then
        token=$ENV_TOKEN
    else
        token=$("$DOCKER" logs "$CID" 2>&1 | log_token) || true
        [ -n "$token" ] || die "$key: no hex token in the log"
    fi
    check_api "$token"
    if [ -n "$list_cmd" ]; then
        # shellcheck disable=SC2086
        "$DOCKER" exec "$CID" $list_cmd >"$OUT/$list_file" ||
            die "$key: '$list_cmd' failed"
        log "wrote $list_file"
    fi
    stop_and_save "$file"
}

# docker run options that put the venv /opt/ENV first on PATH
venv() { VENV=(-e "PATH=/opt/$1/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"); }

mkdir -p "$OUT"

# --- Debian 12 notebook 6.4 -------------------------------------------------------
if wanted nb64; then
    capture nb64 notebook-6.4-debian12.log log "" "" "$BASE_IMAGE"
fi
if wanted nb64-tty; then
    capture nb64-tty notebook-6.4-debian12-tty.log log "" "" -t "$BASE_IMAGE"
fi
if wanted nb64-env; then
    capture nb64-env notebook-6.4-debian12-token-from-env.log env \
        "jupyter notebook list --json" notebook-6.4-debian12-notebook-list.json "$BASE_IMAGE"
fi

# --- pip-installed servers --------------------------------------------------------------------
if wanted lab4 || wanted lab4-env; then
    js=$(pkg_version lab4 jupyter-server); lab=$(pkg_version lab4 jupyterlab); venv lab4
    if wanted lab4; then
        capture lab4 "jupyter_server-$js-lab-$lab.log" log "" "" \
            "${VENV[@]}" "$FIXTURE_IMAGE" jupyter lab "${SERVER_ARGS[@]}"
    fi
    if wanted lab4-env; then
        capture lab4-env "jupyter_server-$js-lab-$lab-token-from-env.log" env \
            "jupyter server list --json" "jupyter_server-$js-server-list.json" \
            "${VENV[@]}" "$FIXTURE_IMAGE" jupyter lab "${SERVER_ARGS[@]}"
    fi
fi
if wanted nb7; then
    js=$(pkg_version nb7 jupyter-server); nb=$(pkg_version nb7 notebook); venv nb7
    capture nb7 "jupyter_server-$js-notebook-$nb.log" log "" "" \
        "${VENV[@]}" "$FIXTURE_IMAGE" jupyter notebook "${SERVER_ARGS[@]}"
fi
if wanted lab3; then
    js=$(pkg_version lab3 jupyter-server); lab=$(pkg_version lab3 jupyterlab); venv lab3
    capture lab3 "jupyter_server-$js-lab-$lab.log" log "" "" \
        "${VENV[@]}" "$FIXTURE_IMAGE" jupyter lab "${SERVER_ARGS[@]}"
fi
if wanted nb57; then
    nb=$(pkg_version nb57 notebook); venv nb57
    capture nb57 "notebook-$nb.log" log "" "" \
        "${VENV[@]}" "$FIXTURE_IMAGE" jupyter notebook "${SERVER_ARGS[@]}"
fi

log "done in ${SECONDS}s; fixtures in $OUT"
