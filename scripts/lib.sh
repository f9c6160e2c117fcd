# shellcheck shell=bash
# Shared by scripts/test and scripts/run-local: make this Debian machine able
# to run the agent and its tests. Source it; it defines functions only.
#
# Nothing here names a package registry: apt uses the machine's own sources.

# Installs the Debian packages named, those whose command is missing.
#   ensure_packages COMMAND:PACKAGE ...
ensure_packages() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "== installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# True when a Docker engine answers on the default socket.
engine_answers() {
    timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# Set when an engine already answered before prepare_host ran.
ENGINE_WAS_UP=

# Stops the engine if prepare_host found none answering (CI stops what it
# started). With systemd through docker.service, else dockerd's pid file.
stop_engine_if_started() {
    [ -z "$ENGINE_WAS_UP" ] || return 0
    engine_answers || return 0
    echo "== stopping the Docker engine this run started"
    if [ -d /run/systemd/system ]; then
        systemctl stop docker.socket docker || true
        return 0
    fi
    local pid
    pid=$(cat /var/run/docker.pid 2>/dev/null) || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 120); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    echo "dockerd (pid $pid) did not stop within 60s" >&2
}

# The codename of this machine's Debian release (bookworm).
debian_suite() {
    local suite
    suite=$(sed -n 's/^VERSION_CODENAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release | head -n1)
    [ -n "$suite" ] && echo "$suite"
}

# The first URI of an enabled 'deb' source for suite $1 in the machine's own
# apt configuration: deb822 (*.sources) first, then one-line format.
debian_mirror_candidates() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk -v suite="$1" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") &&
                    tolower(enabled) != "no" && uris != "") {
                    split(uris, u, " "); print u[1]; found = 1; exit
                }
                types = ""; suites = ""; uris = ""; enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            {
                line = $0; sub(/^[ \t]+/, "", line)
                key = tolower(line); sub(/:.*/, "", key)
                val = line; sub(/^[^:]*:[ \t]*/, "", val); gsub(/[ \t]+/, " ", val)
                if (key == "types") types = val
                else if (key == "suites") suites = val
                else if (key == "uris") uris = val
                else if (key == "enabled") enabled = val
            }
            END { if (!found) flush() }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk -v suite="$1" '
            /^[ \t]*deb[ \t]/ {
                i = 2
                if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }
        ' "$f"
    done
}

debian_mirror() {
    local m
    m=$(debian_mirror_candidates "$1" | head -n1)
    [ -n "$m" ] && echo "$m"
}

# Everything the agent needs on a fresh Debian machine, with the agent's
# own installer: Docker (installed and started by `jupyter-agent
# install-docker` when no engine answers), then the local Jupyter image
# (debootstrap). $1: the jupyter-agent binary.
prepare_host() {
    local agent=$1 config
    ensure_packages debootstrap:debootstrap curl:curl flock:util-linux git:git \
        shellcheck:shellcheck busybox:busybox dash:dash sha256sum:coreutils docker-registry:docker-registry pebble:pebble
    engine_answers && ENGINE_WAS_UP=1
    config=$(mktemp /tmp/jupyter-agent-host.XXXXXX.toml)
    printf 'state_dir = "/var/lib/jupyter-agent-host"\nlog_dir = "/var/log/jupyter-agent-host"\n' >"$config"
    echo "== $agent install-docker"
    "$agent" --config "$config" install-docker
    rm -f "$config"
    "$(dirname "${BASH_SOURCE[0]}")/build-test-image"
    # A jupyter_server 2 image too: the stable login is proven on both servers.
    if ! python3 -m pip --version >/dev/null 2>&1; then
        echo "== installing Debian packages: python3-pip"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    fi
    "$(dirname "${BASH_SOURCE[0]}")/build-server2-image"
    # systemd as PID 1 in a container: the service path, tested for real.
    "$(dirname "${BASH_SOURCE[0]}")/build-systemd-image"
}

# Alibaba's own ROS template formatter and checker (PyPI: alibabacloud-ros-tran),
# in a virtual environment of its own: the template tests run both templates
# through `rostran format` (tests/room_template.rs).
ROSTRAN_VERSION=0.28.1
ROSTRAN_DIR=/var/tmp/jupyter-agent-rostran
ensure_rostran() {
    if "$ROSTRAN_DIR/bin/rostran" --version 2>/dev/null | grep -qF "$ROSTRAN_VERSION"; then
        return 0
    fi
    echo "== installing alibabacloud-ros-tran $ROSTRAN_VERSION (rostran) into $ROSTRAN_DIR"
    rm -rf "$ROSTRAN_DIR"
    python3 -m venv "$ROSTRAN_DIR"
    "$ROSTRAN_DIR/bin/pip" install -q --disable-pip-version-check "alibabacloud-ros-tran==$ROSTRAN_VERSION"
}
