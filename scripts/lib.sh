# shellcheck shell=bash
# Shared by scripts/test.sh, scripts/run-local.sh and the image and bench scripts:
# make this Debian machine able to run the agent and its tests, and time
# what they do. Source it: it defines functions and their variables (and notes the
# time, for the total in stage_times).
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

# Set (by note_engine) when an engine already answered before this run.
ENGINE_WAS_UP=

# Notes whether an engine answers now, before anything is installed or
# started: stop_engine_if_started stops only an engine this run started.
note_engine() {
    if engine_answers; then ENGINE_WAS_UP=1; fi
}

# Waits up to $1 seconds for a Docker engine to answer (another job may be
# installing and starting it); false if none did.
wait_for_engine() {
    local deadline=$((SECONDS + $1)) said=
    until engine_answers; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        [ -n "$said" ] || { echo "waiting up to $1 s for the Docker engine"; said=1; }
        sleep 2
    done
}

# Stops the engine if note_engine found none answering (CI stops what it
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

# Docker, installed and started by the agent's own installer when no engine
# answers (`jupyter-agent install-docker`). $1: the jupyter-agent binary.
install_docker() {
    local agent=$1 config
    config=$(mktemp /tmp/jupyter-agent-host.XXXXXX.toml)
    printf 'state_dir = "/var/lib/jupyter-agent-host"\nlog_dir = "/var/log/jupyter-agent-host"\n' >"$config"
    echo "== $agent install-docker"
    "$agent" --config "$config" install-docker
    rm -f "$config"
}

# The Debian packages the main job needs on a fresh machine: debootstrap and
# curl for the local Jupyter image (scripts/build-test-image.sh).
ensure_host_packages() {
    ensure_packages debootstrap:debootstrap curl:curl
}

# The Debian packages the tests need besides, and pip (the jupyter_server 2
# image's wheels). All apt work happens here, before any job runs in the
# background: install-docker is the only apt user after it.
ensure_test_packages() {
    ensure_packages debootstrap:debootstrap curl:curl flock:util-linux git:git \
        shellcheck:shellcheck busybox:busybox dash:dash sha256sum:coreutils docker-registry:docker-registry pebble:pebble \
        chromium:chromium prlimit:util-linux jq:jq
    if ! python3 -m pip --version >/dev/null 2>&1; then
        echo "== installing Debian packages: python3-pip"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
    fi
}

# The local Jupyter image and those only the tests use, and rostran: a
# jupyter_server 2 image (the stable login is proven on both servers), one
# with systemd as PID 1 (the service path, tested for real). Three
# independent chains, run at once, since each mostly waits on the network
# (debootstrap, apt in a chroot, pip): the local image then the
# jupyter_server 2 one built on it; the systemd image; rostran. Each image
# waits up to $1 seconds (default 0) for an engine that another job is
# starting. scripts/test.sh runs this beside cargo.
prepare_test_images() {
    local wait=${1:-0} here logs rc=0 name
    here=$(dirname "${BASH_SOURCE[0]}")
    logs=$(mktemp -d /tmp/test-images.XXXXXX)
    local -A pid=()
    timed() {
        local t=$SECONDS rc=0
        "$@" || rc=$?
        local how="done"
        [ "$rc" -eq 0 ] || how="failed (exit $rc)"
        echo "== $(basename "$1"): $how in $((SECONDS - t))s"
        return "$rc"
    }
    (timed "$here/build-test-image.sh" --wait-engine "$wait" && timed "$here/build-server2-image.sh") \
        >"$logs/notebook and jupyter_server 2 images" 2>&1 &
    pid["notebook and jupyter_server 2 images"]=$!
    timed "$here/build-systemd-image.sh" --wait-engine "$wait" >"$logs/systemd image" 2>&1 &
    pid["systemd image"]=$!
    timed ensure_rostran >"$logs/rostran" 2>&1 &
    pid[rostran]=$!
    for name in "notebook and jupyter_server 2 images" "systemd image" rostran; do
        if wait "${pid[$name]}"; then
            echo "== $name"
        else
            rc=1
            echo "== $name: FAILED"
        fi
        cat "$logs/$name"
    done
    rm -rf "$logs"
    return "$rc"
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

# --- timing -------------------------------------------------------------------
# scripts/test.sh and scripts/run-local.sh print how long each stage took, as it
# ends and in a table at the end (stage_times, from their EXIT trap).

# Seconds since the epoch, to the nanosecond.
now() { date +%s.%N; }

# Seconds (three decimals) from $1, a `now`, until now.
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.3f", a - b }'; }

# 75.4 -> "1m 15s"; 9.26 -> "9.3s".
human_duration() {
    awk -v s="$1" 'BEGIN { if (s < 59.95) printf "%.1fs", s; else { t = int(s + 0.5); printf "%dm %02ds", int(t / 60), t % 60 } }'
}

STAGE_T0=$(now)
STAGE_LINES=()
STAGE_NOW=
STAGE_NOW_T0=

# stage NAME COMMAND...: runs COMMAND as the stage NAME, between "== NAME"
# and "== NAME: 12.3s". A failing COMMAND ends the script (set -e) and the
# table then shows the stage as failed.
stage() {
    local name=$1
    shift
    echo "== $name"
    STAGE_NOW=$name
    STAGE_NOW_T0=$(now)
    "$@"
    stage_done "$name" "$(since "$STAGE_NOW_T0")"
    STAGE_NOW=
}

stage_done() {
    STAGE_LINES+=("$(printf '  %-58s %9s' "$1" "$(human_duration "$2")")")
    echo "== $1: $(human_duration "$2")"
}

declare -A BG_PID=() BG_LOG=() BG_T0=()

# stage_bg NAME COMMAND...: starts COMMAND (a program, or a function of this
# file) in the background as the stage NAME, in a process group of its own
# (stage_bg_stop ends it with its children), its output kept in a file until
# stage_wait NAME prints it.
stage_bg() {
    local name=$1 log
    shift
    log=$(mktemp /tmp/stage.XXXXXX.log)
    echo "== $name: started in the background (its output follows when it ends)"
    BG_T0[$name]=$(now)
    BG_LOG[$name]=$log
    # $0: where its end time goes; $1: this file, for its functions.
    # shellcheck disable=SC2016
    setsid bash -c 'set -euo pipefail; . "$1"; shift; "$@"; now >"$0"' \
        "$log.end" "${BASH_SOURCE[0]}" "$@" >"$log" 2>&1 </dev/null &
    BG_PID[$name]=$!
}

# stage_wait NAME: waits for the background stage NAME, prints its output,
# and fails if it failed. The table gets its own time and how long the
# foreground waited for it.
stage_wait() {
    local name=$1 rc=0 t0 took
    t0=$(now)
    wait "${BG_PID[$name]}" || rc=$?
    unset "BG_PID[$name]"
    echo "== $name: its output"
    cat "${BG_LOG[$name]}"
    if [ "$rc" -ne 0 ]; then
        STAGE_LINES+=("$(printf '  %-58s %9s' "$name" "failed")")
        echo "== $name: failed (exit $rc)" >&2
        rm -f "${BG_LOG[$name]}" "${BG_LOG[$name]}.end"
        return "$rc"
    fi
    took=$(awk -v a="$(cat "${BG_LOG[$name]}.end")" -v b="${BG_T0[$name]}" 'BEGIN { printf "%.3f", a - b }')
    rm -f "${BG_LOG[$name]}" "${BG_LOG[$name]}.end"
    stage_done "$name (background)" "$took"
    stage_done "  ... the foreground waited for it" "$(since "$t0")"
}

# Stops the background stages still running (a foreground stage failed):
# TERM to each one's process group, so that image builds clean up.
stage_bg_stop() {
    local name pid
    for name in "${!BG_PID[@]}"; do
        pid=${BG_PID[$name]}
        echo "== stopping the background stage: $name"
        kill -TERM -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        echo "== its output:"
        cat "${BG_LOG[$name]}"
        rm -f "${BG_LOG[$name]}" "${BG_LOG[$name]}.end"
    done
}

# The table of stage times, and the total; a stage cut short is marked.
stage_times() {
    [ -z "$STAGE_NOW" ] || STAGE_LINES+=("$(printf '  %-58s %9s' "$STAGE_NOW" "failed after $(human_duration "$(since "$STAGE_NOW_T0")")")")
    echo "== stage times (wall clock)"
    local line
    for line in "${STAGE_LINES[@]}"; do echo "$line"; done
    printf '  %-58s %9s\n' "total" "$(human_duration "$(since "$STAGE_T0")")"
}

# Imports the tree ROOT as the image NAME (more `docker import` options may
# follow). It goes in under a temporary name, tagged NAME only once the whole
# tree went in: a tar stopped mid-stream (a run stopped because a stage
# failed) sends what the engine takes as a whole, smaller archive, and a
# truncated image under NAME would be taken as built by every later run.
#   import_tree ROOT NAME [IMPORT_OPTION ...]
import_tree() {
    local root=$1 name=$2 docker=${DOCKER:-docker}
    shift 2
    local partial
    partial=jupyter-agent-partial:$$-$RANDOM
    if tar --numeric-owner -C "$root" -c . | "$docker" import "$@" - "$partial"; then
        "$docker" tag "$partial" "$name" && "$docker" rmi "$partial" >/dev/null
    else
        "$docker" rmi "$partial" >/dev/null 2>&1 || true
        return 1
    fi
}
