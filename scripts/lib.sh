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

# Starts dockerd when no engine answers (there is no systemd on these
# machines). Sets STARTED_DOCKERD to its pid when it started one.
STARTED_DOCKERD=
ensure_engine() {
    if engine_answers; then
        return 0
    fi
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        echo "== starting docker.service"
        systemctl start docker
    else
        local log=/var/log/jupyter-agent-dockerd.log
        echo "== starting dockerd (log: $log)"
        dockerd >"$log" 2>&1 &
        STARTED_DOCKERD=$!
        echo "$STARTED_DOCKERD" >/run/jupyter-agent-dockerd.pid
    fi

    for _ in $(seq 1 120); do
        engine_answers && return 0
        if [ -n "$STARTED_DOCKERD" ] && ! kill -0 "$STARTED_DOCKERD" 2>/dev/null; then
            echo "dockerd exited; its log:" >&2
            tail -n 30 /var/log/jupyter-agent-dockerd.log >&2
            return 1
        fi
        sleep 0.5
    done
    echo "the Docker engine did not answer within 60s" >&2
    return 1
}

# Stops the dockerd that ensure_engine started, if any.
stop_started_engine() {
    [ -n "$STARTED_DOCKERD" ] || return 0
    echo "== stopping the dockerd this script started"
    kill -TERM "$STARTED_DOCKERD" 2>/dev/null || true

    for _ in $(seq 1 60); do
        kill -0 "$STARTED_DOCKERD" 2>/dev/null || break
        sleep 0.5
    done
    rm -f /run/jupyter-agent-dockerd.pid
    STARTED_DOCKERD=
}

# The codename of this machine's Debian release (bookworm).
debian_suite() {
    local suite
    # shellcheck disable=SC1091
    suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
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

# Everything the agent needs on a fresh Debian machine: Docker and
# debootstrap (for the local Jupyter image), an engine, and the image.
prepare_host() {
    ensure_packages dockerd:docker.io debootstrap:debootstrap curl:curl
    ensure_engine
    "$(dirname "${BASH_SOURCE[0]}")/build-test-image"
}
