#!/usr/bin/env bash
# Benchmark: the agent's front against Debian's nginx, what an organiser
# would put in front of Jupyter by hand. One agent with [tls] mode =
# "self-signed" (its front on [container] publish; Jupyter published on
# 127.0.0.1 at a port Docker picks: docs/tls.md) and, beside it, nginx with
# the usual Jupyter reverse-proxy configuration (TLS with the agent's own
# certificate and key, proxy_pass to Jupyter's port, the Upgrade and
# Connection headers for WebSockets), in front of the same Jupyter. One run,
# everything on 127.0.0.1, three paths: direct to Jupyter (http), nginx
# (https), the agent (https):
#
# 1. memory per open idle connection, measured first: --held connections
#    (TLS handshake, one GET /api/status, then held open and idle; a Python
#    client, spread over the source addresses 127.0.0.2, 127.0.0.3, ... 50
#    each, under the front's limit per client address), the difference in
#    VmRSS of the agent, and of nginx's workers summed, per connection;
# 2. GET /api/status on kept-alive connections with wrk (-t1 -c8 -d15s),
#    the paths in turn, twice (the order reversed), the better run of each
#    counting: requests/s, median and p90 latency, and the CPU time (utime
#    + stime, /proc) of the proxy's processes and of Jupyter's container
#    (its cgroup) per 1000 requests;
# 3. a new connection + GET /api/status: one curl process each (no TLS
#    session to resume), the three paths alternately, median and p90;
# 4. kernel_info_request -> kernel_info_reply on a kernel's channels
#    WebSocket, the three paths alternately on one kernel (Tornado's client,
#    run in the local Jupyter image with --network host);
# 5. a 200 MB file of random bytes in Jupyter's working directory, fetched
#    through /files/ with curl: MB/s (10^6 bytes), best of three.
#
# Prints a table (the one in docs/benchmarks.md) and the issue's aims for
# the front against this run's figures; asserts nothing. The token goes to
# curl, wrk (its Lua script reads it), the Python client and the WebSocket
# client (a read-only mount) in a header file (0600), never in a process's
# arguments.
#
#   scripts/bench-front.sh [--agent PATH] [--duration SECONDS]
#       [--wrk-connections N] [--wrk-runs N] [--connections N]
#       [--round-trips N] [--held N] [--downloads N] [--download-mb N]
#       [--copier-mbps N]                                  (as root)
#
# Defaults: wrk -t1 -c8 -d15s, best of 2 runs; 100 new connections and 200
# round trips each path; 500 held connections; best of 3 downloads of
# 200 MB. --copier-mbps: today's byte copier's download figure, which the
# front's must reach (default: the issue's run; docs/benchmarks.md).
# Without --agent it builds the agent (cargo build --release; honours
# CARGO_TARGET_DIR). Prepares what it needs: nginx, wrk, curl, openssl and
# jq (Debian packages), a Docker engine (the agent's install-docker when
# none answers; stopped again afterwards only then), and the local Jupyter
# image (scripts/build-test-image.sh; $JUPYTER_TEST_IMAGE).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh disable=SC1091
. scripts/lib.sh

PROG=bench-front
IMAGE=${JUPYTER_TEST_IMAGE:-jupyter-agent/notebook:local}
AGENT=
DURATION=15
WRK_CONNECTIONS=8
WRK_RUNS=2
CONNECTIONS=100
ROUND_TRIPS=200
HELD=500
DOWNLOADS=3
DOWNLOAD_MB=200
COPIER_MBPS=407
# Held connections per source address: under the front's MAX_PER_CLIENT (64).
PER_ADDRESS=50

die() {
    echo "$PROG: $*" >&2
    exit 1
}

count() {
    [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 expects a positive number, not '$2'"
    echo "$2"
}

while [ $# -gt 0 ]; do
    case $1 in
    --agent) AGENT=${2:?--agent needs a path}; shift 2 ;;
    --duration) DURATION=$(count "$1" "${2:-}"); shift 2 ;;
    --wrk-connections) WRK_CONNECTIONS=$(count "$1" "${2:-}"); shift 2 ;;
    --wrk-runs) WRK_RUNS=$(count "$1" "${2:-}"); shift 2 ;;
    --connections) CONNECTIONS=$(count "$1" "${2:-}"); shift 2 ;;
    --round-trips) ROUND_TRIPS=$(count "$1" "${2:-}"); shift 2 ;;
    --held) HELD=$(count "$1" "${2:-}"); shift 2 ;;
    --downloads) DOWNLOADS=$(count "$1" "${2:-}"); shift 2 ;;
    --download-mb) DOWNLOAD_MB=$(count "$1" "${2:-}"); shift 2 ;;
    --copier-mbps) COPIER_MBPS=$(count "$1" "${2:-}"); shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[ $(((HELD + PER_ADDRESS - 1) / PER_ADDRESS)) -le 250 ] || die "--held: at most $((250 * PER_ADDRESS))"

WORK=
NGINX_DIR=
AGENT_PID=
NGINX_PID=
HOLDER_PID=
STARTED_ENGINE=
NAME=bench-front-$$
stop() {
    local pid=$1 what=$2
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    kill -0 "$pid" 2>/dev/null && echo "$PROG: $what (pid $pid) did not stop within 30s" >&2
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop "$HOLDER_PID" "the connection holder"
    stop "$NGINX_PID" nginx
    stop "$AGENT_PID" "the agent"
    docker rm -f "$NAME" "$NAME-ws" >/dev/null 2>&1 || true
    [ -z "$WORK" ] || rm -rf --one-file-system "$WORK"
    [ -z "$NGINX_DIR" ] || rm -rf --one-file-system "$NGINX_DIR"
    # lib.sh's ENGINE_WAS_UP stays empty here: stop the engine only if this run started it.
    [ -z "$STARTED_ENGINE" ] || stop_engine_if_started
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$AGENT" ]; then
    echo "== cargo build --release -p jupyter-agent"
    cargo build --release --locked -p jupyter-agent
    AGENT=${CARGO_TARGET_DIR:-target}/release/jupyter-agent
fi
[ -x "$AGENT" ] || die "no agent binary at $AGENT (cargo build --release -p jupyter-agent)"

echo "== preparing the host"
ensure_packages nginx:nginx-light wrk:wrk curl:curl openssl:openssl jq:jq
if ! engine_answers; then
    STARTED_ENGINE=1
    install_docker "$AGENT"
fi
scripts/build-test-image.sh
# As the agent's systemd unit (LimitNOFILE=16384): the agent, nginx and the
# holder of the idle connections each open one descriptor a connection or two.
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 16384 ]; then
    ulimit -n 16384 || die "cannot raise the open files limit to 16384 (ulimit -n)"
fi

LOAD=$(cut -d' ' -f1 /proc/loadavg)
WORK=$(mktemp -d /var/tmp/bench-front.XXXXXX)
chmod 700 "$WORK"
mkdir -m 700 "$WORK/ws"
CONFIG=$WORK/config.toml
cat >"$CONFIG" <<EOF
state_dir = "$WORK/state"
log_dir = "$WORK/log"
socket = "$WORK/agent.sock"
result_file = "$WORK/result.txt"

[image]
name = "$IMAGE"
pull = "never"

[container]
name = "$NAME"
publish = "127.0.0.1:0"
restart = "no"

[jupyter]
ready_timeout = "3m"
url_host = "127.0.0.1"

[tls]
mode = "self-signed"
EOF

echo "== jupyter-agent run ([tls] mode = \"self-signed\", container $NAME)"
"$AGENT" --config "$CONFIG" run >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
if ! "$AGENT" --config "$CONFIG" wait --timeout 3m >/dev/null 2>"$WORK/wait.log"; then
    tail -n 20 "$WORK/agent.log" "$WORK/wait.log" >&2
    die "the agent did not get ready"
fi
kill -0 "$AGENT_PID" 2>/dev/null || die "the agent exited (see above)"
sleep 1

# What the agent serves: the login URL (token included), Jupyter's own port.
"$AGENT" --config "$CONFIG" status --json --show-token >"$WORK/status.json"
chmod 600 "$WORK/status.json"
url=$(jq -r '.jupyter.url // empty' "$WORK/status.json")
direct_port=$(jq -r '.container.host_port // empty' "$WORK/status.json")
fingerprint=$(jq -r '.tls.fingerprint // empty' "$WORK/status.json")
[ "$(jq -r '.tls.served // empty' "$WORK/status.json")" = self-signed ] || die "the agent serves no self-signed certificate"
[[ $url =~ ^https://127\.0\.0\.1:([0-9]+)(/[^?]*)\?token=([^&]+)$ ]] || die "unexpected login URL shape (https://127.0.0.1:PORT/...?token=...)"
agent_port=${BASH_REMATCH[1]}
path=${BASH_REMATCH[2]}
token=${BASH_REMATCH[3]}
if ! [[ $direct_port =~ ^[0-9]+$ ]] || [ "$direct_port" = "$agent_port" ]; then
    die "no port of Jupyter's own in the status (container.host_port: '$direct_port')"
fi
# The server's base path: the URL's path without its /tree or /lab page.
base=${path%/}
base=${base%/tree}
base=${base%/lab}/

# The header file (0600): curl reads it with -H @FILE; wrk's script, the
# Python client and the WebSocket client too.
(umask 077 && printf 'Authorization: token %s\n' "$token" >"$WORK/ws/auth-header")
unset token url
HEADER=$WORK/ws/auth-header
# The agent's certificate and key (docs/tls.md): the certificate part is
# what the clients trust; nginx serves the same file.
PEM=$WORK/state/tls/self-signed.pem
awk '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/' "$PEM" >"$WORK/ws/cert.pem"
CERT=$WORK/ws/cert.pem
served=$(openssl x509 -in "$CERT" -noout -fingerprint -sha256 | sed 's/^[^=]*=//')
[ "${served^^}" = "${fingerprint^^}" ] || die "self-signed.pem ($served) is not the certificate on record ($fingerprint)"

# nginx: Debian's nginx.conf and the usual Jupyter site (as JupyterHub's
# documentation has it), in a prefix of its own; the master started here as
# root, its workers as www-data.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
NGINX_DIR=$(mktemp -d /var/tmp/bench-front-nginx.XXXXXX)
chmod 755 "$NGINX_DIR"
mkdir -p "$NGINX_DIR/temp"
chown www-data "$NGINX_DIR/temp" 2>/dev/null || true
nginx_port=$(free_port)
cat >"$NGINX_DIR/nginx.conf" <<EOF
user www-data;
worker_processes auto;
worker_rlimit_nofile $((2 * HELD + 2048));
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/error.log;
events {
    worker_connections $((2 * HELD + 1024));
}
http {
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    access_log $NGINX_DIR/access.log;
    gzip on;
    client_body_temp_path $NGINX_DIR/temp/body;
    proxy_temp_path $NGINX_DIR/temp/proxy;
    fastcgi_temp_path $NGINX_DIR/temp/fastcgi;
    uwsgi_temp_path $NGINX_DIR/temp/uwsgi;
    scgi_temp_path $NGINX_DIR/temp/scgi;

    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        '' close;
    }
    server {
        listen 127.0.0.1:$nginx_port ssl;
        server_name _;
        ssl_certificate $PEM;
        ssl_certificate_key $PEM;
        location / {
            proxy_pass http://127.0.0.1:$direct_port;
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_buffering off;
        }
    }
}
EOF
nginx_version=$(nginx -v 2>&1 | sed -n 's|^nginx version: nginx/||p')
echo "== nginx $nginx_version on 127.0.0.1:$nginx_port (the usual Jupyter site, the agent's certificate and key)"
nginx -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -e "$NGINX_DIR/error.log" -g 'daemon off;' &
NGINX_PID=$!

DIRECT=http://127.0.0.1:$direct_port
NGINX=https://127.0.0.1:$nginx_port
AGENTURL=https://127.0.0.1:$agent_port
TARGETS=("$DIRECT" "$NGINX" "$AGENTURL")
KEYS=(direct nginx agent)
for i in 0 1 2; do
    for n in $(seq 1 50); do
        code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 20 --cacert "$CERT" -H "@$HEADER" \
            "${TARGETS[$i]}${base}api/status" 2>/dev/null) && break
        [ "$n" -lt 50 ] || die "GET ${TARGETS[$i]}${base}api/status failed"
        kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited: $(tail -n 5 "$NGINX_DIR/error.log")"
        sleep 0.1
    done
    [ "$code" = 200 ] || die "GET ${TARGETS[$i]}${base}api/status answered $code"
done
NGINX_WORKERS=$(pgrep -P "$NGINX_PID" | tr '\n' ' ')
[ -n "$NGINX_WORKERS" ] || die "nginx has no worker processes"

# median and p90 (nearest rank: scripts/benchlib.py) of a file of seconds, one a line: "MEDIAN P90" in ms.
stats() {
    python3 scripts/benchlib.py stats --scale 1000 "$1"
}
# Column $2 of the lines of $1 whose first column is 200, into $3; dies when
# fewer than $4 there.
column_of_200s() {
    awk -v c="$2" '$1 == 200 { print $c }' "$1" >"$3"
    local n
    n=$(wc -l <"$3")
    [ "$n" -ge "$4" ] || die "only $n of $4 requests answered 200 ($1)"
}
# The summed VmRSS of processes, KiB.
rss() {
    local pid total=0 kib
    for pid in "$@"; do
        kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
        total=$((total + kib))
    done
    echo "$total"
}
# The summed CPU time (utime + stime) of processes, ms.
TICK=$(getconf CLK_TCK)
cpu_ms() {
    local pid total=0 ticks
    for pid in "$@"; do
        ticks=$(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')
        total=$((total + ticks))
    done
    echo $((total * 1000 / TICK))
}
# The CPU time of Jupyter's container, ms: its cgroup's usage (v2), else its
# main process's.
JUPYTER_PID=$(docker inspect --format '{{.State.Pid}}' "$NAME")
JUPYTER_CGROUP=/sys/fs/cgroup$(sed -n 's/^0:://p' "/proc/$JUPYTER_PID/cgroup")
jupyter_cpu_ms() {
    if [ -r "$JUPYTER_CGROUP/cpu.stat" ]; then
        awk '$1 == "usage_usec" { print int($2 / 1000) }' "$JUPYTER_CGROUP/cpu.stat"
    else
        cpu_ms "$JUPYTER_PID"
    fi
}
PROXY_PIDS=("" "$NGINX_PID $NGINX_WORKERS" "$AGENT_PID")
MEMORY_PIDS=("" "$NGINX_WORKERS" "$AGENT_PID")

# 1. Memory first: each proxy's RSS, then with HELD idle connections open.
cat >"$WORK/hold.py" <<'EOF'
"""Opens N connections to 127.0.0.1:PORT over TLS, PER of them from each
source address 127.0.0.2, 127.0.0.3, ...; sends GET PATH on each, reads the
answer and keeps the connection open, idle. Prints "held" then, and on a
line on its standard input prints how many are still open (none closed by
the server: no hang-up polled) and exits."""

import http.client
import select
import ssl
import sys

port, n, per, path, header, cafile = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:7]
with open(header) as f:
    key, value = f.read().strip().split(": ", 1)
ctx = ssl.create_default_context(cafile=cafile)
conns = []
for i in range(n):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30,
                                    source_address=(f"127.0.0.{2 + i // per}", 0))
    c.request("GET", path, headers={key: value})
    r = c.getresponse()
    r.read()
    if r.status != 200 or r.will_close:
        sys.exit(f"connection {i + 1}: {r.status}{', not kept alive' if r.will_close else ''}")
    conns.append(c)
print("held", flush=True)
sys.stdin.readline()
poll = select.poll()
for c in conns:
    poll.register(c.sock, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
print("open", n - len(poll.poll(0)), flush=True)
EOF
declare -A PER_CONN=() RSS_IDLE=() RSS_HELD=()
for i in 1 2; do
    key=${KEYS[$i]}
    port=${TARGETS[$i]##*:}
    echo "== memory: $HELD idle TLS connections held open to $key"
    # shellcheck disable=SC2086 # the pids, one word each
    before=$(rss ${MEMORY_PIDS[$i]})
    rm -f "$WORK/hold.fifo"
    mkfifo "$WORK/hold.fifo"
    python3 "$WORK/hold.py" "$port" "$HELD" "$PER_ADDRESS" "${base}api/status" "$HEADER" "$CERT" \
        <"$WORK/hold.fifo" >"$WORK/hold.out" 2>"$WORK/hold.err" &
    HOLDER_PID=$!
    exec 3>"$WORK/hold.fifo"
    for n in $(seq 1 1200); do
        grep -qx held "$WORK/hold.out" && break
        kill -0 "$HOLDER_PID" 2>/dev/null || die "the connection holder failed: $(tail -n 3 "$WORK/hold.err")"
        [ "$n" -lt 1200 ] || die "$HELD connections not open after 120s"
        sleep 0.1
    done
    sleep 1
    # shellcheck disable=SC2086
    held=$(rss ${MEMORY_PIDS[$i]})
    echo >&3
    exec 3>&-
    wait "$HOLDER_PID" || die "the connection holder failed: $(tail -n 3 "$WORK/hold.err")"
    HOLDER_PID=
    open=$(sed -n 's/^open //p' "$WORK/hold.out")
    [ "$open" = "$HELD" ] || die "$key closed $((HELD - open)) of the $HELD idle connections while they were measured"
    RSS_IDLE[$key]=$before
    RSS_HELD[$key]=$held
    PER_CONN[$key]=$(awk -v a="$before" -v b="$held" -v n="$HELD" 'BEGIN { printf "%.1f", (b - a) / n }')
done
sleep 1

# 2. Kept-alive connections: wrk, its Lua script reading the header file.
cat >"$WORK/wrk.lua" <<EOF
local f = assert(io.open("$HEADER"))
local name, value = f:read("*l"):match("^([^:]+):%s*(.*)$")
f:close()
wrk.headers[name] = value

done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("bench %d %d %d %d %d %d %d %.1f %.1f\n", summary.requests, summary.duration,
        e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(90)))
end
EOF
declare -A RPS=() KA_MED=() KA_P90=() PROXY_CPU=() JUPYTER_CPU=()
# WRK_RUNS rounds, the paths in turn (the order reversed every other round);
# of each path's runs the one with the most requests/s counts: the machine's
# other work only ever slows a run down.
order=(0 1 2)
for round in $(seq 1 "$WRK_RUNS"); do
    for i in "${order[@]}"; do
        key=${KEYS[$i]}
        echo "== wrk -t1 -c$WRK_CONNECTIONS -d${DURATION}s ${TARGETS[$i]}${base}api/status ($key, run $round of $WRK_RUNS)"
        # shellcheck disable=SC2086
        cpu0=$(cpu_ms ${PROXY_PIDS[$i]})
        jcpu0=$(jupyter_cpu_ms)
        wrk -t1 -c"$WRK_CONNECTIONS" -d"${DURATION}s" --timeout 10s -s "$WORK/wrk.lua" "${TARGETS[$i]}${base}api/status" \
            >"$WORK/wrk-$key.out" 2>&1 || die "wrk against $key failed: $(tail -n 5 "$WORK/wrk-$key.out")"
        # shellcheck disable=SC2086
        cpu1=$(cpu_ms ${PROXY_PIDS[$i]})
        jcpu1=$(jupyter_cpu_ms)
        read -r _ requests duration e_connect e_read e_write e_status e_timeout p50 p90 < <(grep '^bench ' "$WORK/wrk-$key.out") ||
            die "no figures from wrk against $key: $(tail -n 5 "$WORK/wrk-$key.out")"
        errors=$((e_connect + e_read + e_write + e_status + e_timeout))
        [ "$errors" -eq 0 ] || die "wrk against $key: $errors errors (connect $e_connect, read $e_read, write $e_write, status $e_status, timeout $e_timeout)"
        rps=$(awk -v r="$requests" -v d="$duration" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
        [ -z "${RPS[$key]:-}" ] || [ "$rps" -gt "${RPS[$key]}" ] || continue
        RPS[$key]=$rps
        KA_MED[$key]=$(awk -v u="$p50" 'BEGIN { printf "%.3f", u / 1000 }')
        KA_P90[$key]=$(awk -v u="$p90" 'BEGIN { printf "%.3f", u / 1000 }')
        [ "$i" -eq 0 ] || PROXY_CPU[$key]=$(awk -v c=$((cpu1 - cpu0)) -v r="$requests" 'BEGIN { printf "%.1f", c * 1000 / r }')
        JUPYTER_CPU[$key]=$(awk -v c=$((jcpu1 - jcpu0)) -v r="$requests" 'BEGIN { printf "%.1f", c * 1000 / r }')
    done
    order=("${order[2]}" "${order[1]}" "${order[0]}")
done

# 3. New connections: one curl process each, the three paths alternately.
echo "== a new connection each: $CONNECTIONS to each path, alternately"
declare -A NEW_MED=() NEW_P90=()
for key in "${KEYS[@]}"; do : >"$WORK/new-$key.out"; done
for _ in $(seq 1 "$CONNECTIONS"); do
    for i in 0 1 2; do
        curl -sS -o /dev/null --max-time 20 --cacert "$CERT" -H "@$HEADER" -w '%{http_code} %{time_total}\n' \
            "${TARGETS[$i]}${base}api/status" >>"$WORK/new-${KEYS[$i]}.out" || die "curl to ${TARGETS[$i]} failed"
    done
done
for key in "${KEYS[@]}"; do
    column_of_200s "$WORK/new-$key.out" 2 "$WORK/new-$key.s" "$CONNECTIONS"
    read -r med p90 < <(stats "$WORK/new-$key.s")
    NEW_MED[$key]=$med
    NEW_P90[$key]=$p90
done

# 4. Kernel WebSocket round trips, with Tornado in the Jupyter image.
echo "== kernel_info round trips on a kernel's WebSocket: $ROUND_TRIPS each path, alternately (Python in $IMAGE)"
cat >"$WORK/ws/ws.py" <<'EOF'
"""kernel_info_request -> kernel_info_reply on one kernel's channels
WebSocket: ws:// to Jupyter's port, wss:// through nginx and through the
agent, in turn. Prints "NAME SECONDS", one line a round trip."""

import asyncio
import datetime
import json
import ssl
import sys
import time
import uuid

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

direct, nginx, agent, base, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
with open("/bench/auth-header") as f:
    key, value = f.read().strip().split(": ", 1)
auth = {key: value}
ctx = ssl.create_default_context(cafile="/bench/cert.pem")


async def round_trip(conn, session):
    """Seconds from sending the request to its reply; then waits for the
    kernel's idle status, so that nothing of it is left for the next one."""
    msg_id = uuid.uuid4().hex
    request = {
        "header": {"msg_id": msg_id, "username": "bench", "session": session, "msg_type": "kernel_info_request",
                   "version": "5.3", "date": datetime.datetime.now(datetime.timezone.utc).isoformat()},
        "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell",
    }
    start = time.perf_counter()
    conn.write_message(json.dumps(request))
    elapsed, idle = None, False
    while elapsed is None or not idle:
        raw = await asyncio.wait_for(conn.read_message(), 60)
        if raw is None:
            sys.exit("the kernel's WebSocket closed")
        if isinstance(raw, bytes):
            continue
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg.get("channel") == "shell" and elapsed is None:
            elapsed = time.perf_counter() - start
        elif msg.get("channel") == "iopub" and msg["header"]["msg_type"] == "status":
            idle = msg["content"].get("execution_state") == "idle"
    return elapsed


async def main():
    http = AsyncHTTPClient()
    kernels = f"http://127.0.0.1:{direct}{base}api/kernels"
    kernel = json.loads((await http.fetch(kernels, method="POST", body="{}", headers=auth)).body)["id"]
    try:
        path = f"{base}api/kernels/{kernel}/channels"
        paths = []
        for name, url, opts in (("direct", f"ws://127.0.0.1:{direct}{path}", None),
                                ("nginx", f"wss://127.0.0.1:{nginx}{path}", ctx),
                                ("agent", f"wss://127.0.0.1:{agent}{path}", ctx)):
            conn = await websocket_connect(HTTPRequest(url, headers=auth, ssl_options=opts))
            paths.append((name, conn, uuid.uuid4().hex))
        for _ in range(10):  # the kernel starting, then warm-up
            for _, conn, session in paths:
                await round_trip(conn, session)
        for _ in range(n):
            for name, conn, session in paths:
                print(name, await round_trip(conn, session))
        for _, conn, _ in paths:
            conn.close()
    finally:
        await http.fetch(f"{kernels}/{kernel}", method="DELETE", headers=auth)


asyncio.run(main())
EOF
chmod 600 "$WORK/ws/ws.py"
docker run --rm --name "$NAME-ws" --network host --pull never --user 0:0 -v "$WORK/ws:/bench:ro" \
    --entrypoint python3 "$IMAGE" /bench/ws.py "$direct_port" "$nginx_port" "$agent_port" "$base" "$ROUND_TRIPS" \
    >"$WORK/ws.out" 2>"$WORK/ws.err" || { tail -n 20 "$WORK/ws.err" >&2; die "the WebSocket client failed"; }
declare -A WS_MED=() WS_P90=()
for key in "${KEYS[@]}"; do
    awk -v k="$key" '$1 == k { print $2 }' "$WORK/ws.out" >"$WORK/ws-$key.s"
    [ "$(wc -l <"$WORK/ws-$key.s")" -eq "$ROUND_TRIPS" ] || die "the WebSocket client printed too few round trips ($key)"
    read -r med p90 < <(stats "$WORK/ws-$key.s")
    WS_MED[$key]=$med
    WS_P90[$key]=$p90
done

# 5. Downloads through /files/: a file of random bytes in Jupyter's working
# directory (the container's, where docker exec starts).
FILE=bench-front-$$.bin
bytes=$((DOWNLOAD_MB * 1000000))
echo "== $DOWNLOAD_MB MB through ${base}files/, best of $DOWNLOADS each path"
docker exec "$NAME" sh -c "head -c $bytes /dev/urandom >$FILE" || die "cannot write $FILE in the container"
declare -A MBPS=()
for key in "${KEYS[@]}"; do : >"$WORK/dl-$key.out"; done
for _ in $(seq 1 "$DOWNLOADS"); do
    for i in 0 1 2; do
        curl -sS -o /dev/null --max-time 300 --cacert "$CERT" -H "@$HEADER" \
            -w '%{http_code} %{size_download} %{speed_download}\n' "${TARGETS[$i]}${base}files/$FILE" \
            >>"$WORK/dl-${KEYS[$i]}.out" || die "downloading from ${TARGETS[$i]} failed"
    done
done
docker exec "$NAME" rm -f "$FILE" || true
for key in "${KEYS[@]}"; do
    good=$(awk -v b="$bytes" '$1 == 200 && $2 == b' "$WORK/dl-$key.out" | wc -l)
    [ "$good" -eq "$DOWNLOADS" ] || die "only $good of $DOWNLOADS downloads from $key were whole: $(cat "$WORK/dl-$key.out")"
    MBPS[$key]=$(awk '{ if ($3 > m) m = $3 } END { printf "%.0f", m / 1e6 }' "$WORK/dl-$key.out")
done

ms() { printf '%.2f ms' "$1"; }
kib() { [ -z "$1" ] || printf '%s KiB' "$1"; }
cpu() { [ -z "$1" ] || printf '%s ms' "$1"; }
agent_version=$("$AGENT" --version 2>/dev/null | head -n1) || agent_version=jupyter-agent
LABELS=("direct to Jupyter (http)" "nginx $nginx_version, the usual Jupyter config (https)" "the agent, $agent_version (https)")

echo
printf 'The front: Jupyter direct, nginx and the agent, on 127.0.0.1 (%s, %s cores, load average %s at the start, image %s; the agent'"'"'s certificate and key for both):\n\n' \
    "$(date -u +%F)" "$(nproc)" "$LOAD" "$IMAGE"
echo "| path | requests/s | p50 (p90), kept alive | new connection + request, p50 (p90) | kernel round trip, p50 (p90) | $DOWNLOAD_MB MB download | proxy CPU per 1000 requests | Jupyter CPU per 1000 requests | memory per idle connection |"
echo '|---|---|---|---|---|---|---|---|---|'
for i in 0 1 2; do
    key=${KEYS[$i]}
    printf '| %s | %s | %s (%s) | %s (%s) | %s (%s) | %s MB/s | %s | %s | %s |\n' "${LABELS[$i]}" "${RPS[$key]}" \
        "$(ms "${KA_MED[$key]}")" "$(ms "${KA_P90[$key]}")" "$(ms "${NEW_MED[$key]}")" "$(ms "${NEW_P90[$key]}")" \
        "$(ms "${WS_MED[$key]}")" "$(ms "${WS_P90[$key]}")" "${MBPS[$key]}" \
        "$(cpu "${PROXY_CPU[$key]:-}")" "$(cpu "${JUPYTER_CPU[$key]}")" "$(kib "${PER_CONN[$key]:-}")"
done
echo
printf 'wrk -t1 -c%s -d%ss on %sapi/status, best of %s; %s new connections (one curl each); %s kernel_info round trips; best of %s downloads through %sfiles/; %s idle TLS connections (one request each, then held), RSS of the agent %s -> %s KiB, of nginx'"'"'s workers %s -> %s KiB\n' \
    "$WRK_CONNECTIONS" "$DURATION" "$base" "$WRK_RUNS" "$CONNECTIONS" "$ROUND_TRIPS" "$DOWNLOADS" "$base" "$HELD" \
    "${RSS_IDLE[agent]}" "${RSS_HELD[agent]}" "${RSS_IDLE[nginx]}" "${RSS_HELD[nginx]}"

# The issue's aims for the front, against this run's figures.
aim() {
    if awk "BEGIN { exit !($2) }"; then echo "  met:    $1"; else echo "  missed: $1"; fi
}
echo
echo "aims for the agent's front (issue 21):"
aim "requests/s at least nginx's (${RPS[agent]} vs ${RPS[nginx]})" "${RPS[agent]} >= ${RPS[nginx]}"
aim "requests/s within 10 % of direct (${RPS[agent]} vs ${RPS[direct]})" "${RPS[agent]} >= 0.9 * ${RPS[direct]}"
aim "download at least today's byte copier's (${MBPS[agent]} vs $COPIER_MBPS MB/s, --copier-mbps)" "${MBPS[agent]} >= $COPIER_MBPS"
aim "p50 within 0.5 ms of direct ($(ms "${KA_MED[agent]}") vs $(ms "${KA_MED[direct]}"))" "${KA_MED[agent]} <= ${KA_MED[direct]} + 0.5"
aim "memory per idle connection at most nginx's (${PER_CONN[agent]} vs ${PER_CONN[nginx]} KiB)" "${PER_CONN[agent]} <= ${PER_CONN[nginx]}"
