#!/usr/bin/env bash
# Benchmark: what the HTTPS path adds. With [tls] mode = "self-signed" the
# agent listens on [container] publish with rustls, terminates TLS and copies
# the bytes to Jupyter, published on 127.0.0.1 at a port Docker picks
# (docs/tls.md). One agent, one container, one run; everything on 127.0.0.1:
#
# 1. GET /api/status on a kept-alive connection (one curl a round, the URL
#    repeated, the first request left out: it includes the connect and
#    handshake), direct to Jupyter's port and through the agent (curl
#    trusting exactly the agent's self-signed certificate), alternately in
#    5 rounds: 200 requests each way;
# 2. a new connection each: 100 curl processes each way, alternately (no TLS
#    session to resume): the TLS handshake (time_appconnect - time_connect)
#    and the request's total time; and, for the client's own share of a
#    handshake, the same curl against openssl s_server with the agent's
#    certificate and key;
# 3. kernel_info_request -> kernel_info_reply on a kernel's channels
#    WebSocket, ws:// direct vs wss:// through the agent, alternately on one
#    kernel (Tornado's client, run in the local Jupyter image with
#    --network host: nothing new on the host);
# 4. the agent's memory (VmRSS, VmHWM from /proc/PID/status), measured
#    first: idle once ready, then with 50 TLS connections held open (openssl
#    s_client, each one handshaken and piped on to Jupyter by the agent),
#    and the difference per connection;
# 5. the agent binary's size.
#
# Prints the figures (a table for the README) and a one-line summary;
# asserts nothing. The token goes to curl, and to the WebSocket client in
# a read-only mount, in a header file (0600), never in a process's
# arguments.
#
#   scripts/bench-tls.sh [--agent PATH] [--requests N] [--connections N]
#                     [--round-trips N] [--held N]        (as root)
#
# Without --agent it builds the agent (cargo build --release; honours
# CARGO_TARGET_DIR). Prepares what it needs: curl, openssl and jq (Debian
# packages), a Docker engine (the agent's install-docker when none answers;
# stopped again afterwards only then), and the local Jupyter image
# (scripts/build-test-image.sh; $JUPYTER_TEST_IMAGE).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh disable=SC1091
. scripts/lib.sh

PROG=bench-tls
IMAGE=${JUPYTER_TEST_IMAGE:-jupyter-agent/notebook:local}
AGENT=
REQUESTS=200
CONNECTIONS=100
ROUND_TRIPS=200
HELD=50

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
    --requests) REQUESTS=$(count "$1" "${2:-}"); shift 2 ;;
    --connections) CONNECTIONS=$(count "$1" "${2:-}"); shift 2 ;;
    --round-trips) ROUND_TRIPS=$(count "$1" "${2:-}"); shift 2 ;;
    --held) HELD=$(count "$1" "${2:-}"); shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

WORK=
AGENT_PID=
STARTED_ENGINE=
HOLDERS=()
NAME=bench-tls-$$
# The openssl s_client processes holding connections open.
stop_holders() {
    local pid
    for pid in "${HOLDERS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${HOLDERS[@]}"; do wait "$pid" 2>/dev/null || true; done
    HOLDERS=()
}
cleanup() {
    stop_holders
    if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
        kill -TERM "$AGENT_PID" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$AGENT_PID" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$AGENT_PID" 2>/dev/null && echo "$PROG: the agent (pid $AGENT_PID) did not stop within 30s" >&2
        wait "$AGENT_PID" 2>/dev/null || true
    fi
    docker rm -f "$NAME" "$NAME-ws" >/dev/null 2>&1 || true
    [ -z "$WORK" ] || rm -rf --one-file-system "$WORK"
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
ensure_packages curl:curl openssl:openssl jq:jq
if ! engine_answers; then
    STARTED_ENGINE=1
    install_docker "$AGENT"
fi
scripts/build-test-image.sh

WORK=$(mktemp -d /var/tmp/bench-tls.XXXXXX)
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
tls_port=${BASH_REMATCH[1]}
path=${BASH_REMATCH[2]}
token=${BASH_REMATCH[3]}
if ! [[ $direct_port =~ ^[0-9]+$ ]] || [ "$direct_port" = "$tls_port" ]; then
    die "no port of Jupyter's own in the status (container.host_port: '$direct_port')"
fi
# The server's base path: the URL's path without its /tree or /lab page.
base=${path%/}
base=${base%/tree}
base=${base%/lab}/
DIRECT=http://127.0.0.1:$direct_port
TLS=https://127.0.0.1:$tls_port

# The header file (0600): curl reads it with -H @FILE; the WebSocket client too.
(umask 077 && printf 'Authorization: token %s\n' "$token" >"$WORK/ws/auth-header")
unset token url
HEADER=$WORK/ws/auth-header
# The certificate part of the agent's self-signed.pem: what curl trusts.
awk '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/' "$WORK/state/tls/self-signed.pem" >"$WORK/ws/cert.pem"
CERT=$WORK/ws/cert.pem
served=$(openssl x509 -in "$CERT" -noout -fingerprint -sha256 | sed 's/^[^=]*=//')
[ "${served^^}" = "${fingerprint^^}" ] || die "self-signed.pem ($served) is not the certificate on record ($fingerprint)"
for target in "$DIRECT" "$TLS"; do
    code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 20 --cacert "$CERT" -H "@$HEADER" "$target${base}api/status") ||
        die "GET $target${base}api/status failed"
    [ "$code" = 200 ] || die "GET $target${base}api/status answered $code"
done

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
# VmRSS and VmHWM of the agent, KiB.
memory() {
    awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { print r, h }' "/proc/$AGENT_PID/status"
}
agent_sockets() {
    find "/proc/$AGENT_PID/fd" -lname 'socket:*' 2>/dev/null | wc -l
}

# 4. Memory first: idle right after ready, then with HELD connections open.
read -r rss_idle hwm_idle < <(memory)
echo "== memory: $HELD TLS connections held open (openssl s_client)"
mkfifo "$WORK/hold"
exec 3<>"$WORK/hold"
sockets_before=$(agent_sockets)
for _ in $(seq 1 "$HELD"); do
    openssl s_client -connect "127.0.0.1:$tls_port" -noservername -CAfile "$CERT" -verify_return_error -quiet \
        <"$WORK/hold" >/dev/null 2>&1 &
    HOLDERS+=("$!")
done
# Each held connection is two sockets in the agent: the client's and Jupyter's.
want=$((sockets_before + 2 * HELD))
for i in $(seq 1 300); do
    [ "$(agent_sockets)" -ge "$want" ] && break
    [ "$i" -lt 300 ] || die "the agent holds $(agent_sockets) sockets, not $want, after 30s"
    sleep 0.1
done
for pid in "${HOLDERS[@]}"; do
    kill -0 "$pid" 2>/dev/null || die "an openssl s_client ended (handshake refused?)"
done
sleep 1
read -r rss_held hwm_held < <(memory)
stop_holders
exec 3>&-

# 1. Kept-alive connections: in ROUNDS rounds, one curl to Jupyter then one
# through the agent, each with the URL repeated (the first request left out).
ROUNDS=5
echo "== GET ${base}api/status on a kept-alive connection, $REQUESTS requests each way in $ROUNDS rounds"
: >"$WORK/keepalive-http.s"
: >"$WORK/keepalive-https.s"
for round in $(seq 1 "$ROUNDS"); do
    n=$((REQUESTS * round / ROUNDS - REQUESTS * (round - 1) / ROUNDS))
    for target in "$DIRECT" "$TLS"; do
        name=${target%%:*}
        for _ in $(seq 0 "$n"); do
            printf 'url = "%s"\noutput = "/dev/null"\n' "$target${base}api/status"
        done >"$WORK/keepalive.curlrc"
        curl -sS --max-time 120 --cacert "$CERT" -H "@$HEADER" -K "$WORK/keepalive.curlrc" \
            -w '%{http_code} %{num_connects} %{time_total}\n' >"$WORK/keepalive.out" ||
            die "curl on a kept-alive connection to $target failed"
        tail -n +2 "$WORK/keepalive.out" >"$WORK/keepalive.rest"
        reconnects=$(awk '$2 != 0' "$WORK/keepalive.rest" | wc -l)
        [ "$reconnects" -eq 0 ] || die "curl opened $reconnects new connections to $target: not kept alive"
        column_of_200s "$WORK/keepalive.rest" 3 "$WORK/keepalive.s" "$n"
        cat "$WORK/keepalive.s" >>"$WORK/keepalive-$name.s"
    done
done
read -r ka_direct_med ka_direct_p90 < <(stats "$WORK/keepalive-http.s")
read -r ka_tls_med ka_tls_p90 < <(stats "$WORK/keepalive-https.s")

# 2. New connections: one curl process each (no TLS session to resume),
# alternately: Jupyter direct, through the agent, and a reference for the
# client's own share of a handshake: the same curl against openssl s_server
# with the agent's certificate and key (no request there, no token sent).
echo "== a new connection each: $CONNECTIONS each way (and to openssl s_server, the client's share)"
openssl s_server -accept 127.0.0.1:0 -cert "$WORK/state/tls/self-signed.pem" -key "$WORK/state/tls/self-signed.pem" \
    -www </dev/null >"$WORK/s_server.out" 2>&1 &
HOLDERS+=("$!")
ref_port=
for _ in $(seq 1 100); do
    ref_port=$(sed -n 's/^ACCEPT 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$WORK/s_server.out")
    [ -z "$ref_port" ] || break
    sleep 0.1
done
[ -n "$ref_port" ] || die "openssl s_server did not start: $(head -c 500 "$WORK/s_server.out")"
REF=https://127.0.0.1:$ref_port
: >"$WORK/new-http.out"
: >"$WORK/new-https.out"
: >"$WORK/new-ref.out"
for _ in $(seq 1 "$CONNECTIONS"); do
    for target in "$DIRECT" "$TLS"; do
        curl -sS -o /dev/null --max-time 20 --cacert "$CERT" -H "@$HEADER" \
            -w '%{http_code} %{time_total} %{time_connect} %{time_appconnect}\n' "$target${base}api/status" \
            >>"$WORK/new-${target%%:*}.out" || die "curl to $target failed"
    done
    curl -sS -o /dev/null --max-time 20 --cacert "$CERT" \
        -w '%{http_code} %{time_total} %{time_connect} %{time_appconnect}\n' "$REF/" \
        >>"$WORK/new-ref.out" || die "curl to openssl s_server ($REF) failed"
done
stop_holders
column_of_200s "$WORK/new-http.out" 2 "$WORK/new-http.s" "$CONNECTIONS"
column_of_200s "$WORK/new-https.out" 2 "$WORK/new-https.s" "$CONNECTIONS"
awk '$1 == 200 { print $4 - $3 }' "$WORK/new-https.out" >"$WORK/handshake.s"
column_of_200s "$WORK/new-ref.out" 2 "$WORK/new-ref.s" "$CONNECTIONS"
awk '$1 == 200 { print $4 - $3 }' "$WORK/new-ref.out" >"$WORK/handshake-ref.s"
read -r new_direct_med new_direct_p90 < <(stats "$WORK/new-http.s")
read -r new_tls_med new_tls_p90 < <(stats "$WORK/new-https.s")
read -r hs_med hs_p90 < <(stats "$WORK/handshake.s")
read -r ref_med ref_p90 < <(stats "$WORK/handshake-ref.s")

# 3. Kernel WebSocket round trips, with Tornado in the Jupyter image.
echo "== kernel_info round trips on a kernel's WebSocket: $ROUND_TRIPS each way (Python in $IMAGE)"
cat >"$WORK/ws/ws.py" <<'EOF'
"""kernel_info_request -> kernel_info_reply on one kernel's channels
WebSocket: ws:// to Jupyter's port and wss:// through the agent, alternately.
Prints "ws SECONDS" and "wss SECONDS", one line a round trip."""

import asyncio
import datetime
import json
import ssl
import sys
import time
import uuid

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

direct, tls, base, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
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
        plain = await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{direct}{path}", headers=auth))
        secure = await websocket_connect(HTTPRequest(f"wss://127.0.0.1:{tls}{path}", headers=auth, ssl_options=ctx))
        sessions = uuid.uuid4().hex, uuid.uuid4().hex
        for _ in range(10):  # the kernel starting, then warm-up
            await round_trip(plain, sessions[0])
            await round_trip(secure, sessions[1])
        for _ in range(n):
            print("ws", await round_trip(plain, sessions[0]))
            print("wss", await round_trip(secure, sessions[1]))
        plain.close()
        secure.close()
    finally:
        await http.fetch(f"{kernels}/{kernel}", method="DELETE", headers=auth)


asyncio.run(main())
EOF
chmod 600 "$WORK/ws/ws.py"
docker run --rm --name "$NAME-ws" --network host --pull never --user 0:0 -v "$WORK/ws:/bench:ro" \
    --entrypoint python3 "$IMAGE" /bench/ws.py "$direct_port" "$tls_port" "$base" "$ROUND_TRIPS" \
    >"$WORK/ws.out" 2>"$WORK/ws.err" || { tail -n 20 "$WORK/ws.err" >&2; die "the WebSocket client failed"; }
awk '$1 == "ws" { print $2 }' "$WORK/ws.out" >"$WORK/ws.s"
awk '$1 == "wss" { print $2 }' "$WORK/ws.out" >"$WORK/wss.s"
if [ "$(wc -l <"$WORK/ws.s")" -ne "$ROUND_TRIPS" ] || [ "$(wc -l <"$WORK/wss.s")" -ne "$ROUND_TRIPS" ]; then
    die "the WebSocket client printed too few round trips"
fi
read -r ws_med ws_p90 < <(stats "$WORK/ws.s")
read -r wss_med wss_p90 < <(stats "$WORK/wss.s")

# 5. The binary.
size=$(stat -L -c %s "$AGENT")

ms() { printf '%.2f ms' "$1"; }
added() { awk -v a="$1" -v b="$2" 'BEGIN { d = sprintf("%+.2f", b - a); sub(/^-0\.00$/, "+0.00", d); print d " ms" }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
per_conn=$(awk -v a="$rss_idle" -v b="$rss_held" -v n="$HELD" 'BEGIN { printf "%.1f", (b - a) / n }')

echo
printf 'TLS path: [tls] mode = "self-signed" vs Jupyter direct, on 127.0.0.1 (%s, %s cores, image %s):\n\n' \
    "$(date -u +%F)" "$(nproc)" "$IMAGE"
echo '| figure | direct to Jupyter | through the agent (TLS) | added by TLS |'
echo '|---|---|---|---|'
printf '| GET /api/status, kept-alive connection, median (p90) of %s | %s (%s) | %s (%s) | %s (%s) |\n' "$REQUESTS" \
    "$(ms "$ka_direct_med")" "$(ms "$ka_direct_p90")" "$(ms "$ka_tls_med")" "$(ms "$ka_tls_p90")" \
    "$(added "$ka_direct_med" "$ka_tls_med")" "$(added "$ka_direct_p90" "$ka_tls_p90")"
printf '| new connection + GET /api/status, median (p90) of %s | %s (%s) | %s (%s) | %s (%s) |\n' "$CONNECTIONS" \
    "$(ms "$new_direct_med")" "$(ms "$new_direct_p90")" "$(ms "$new_tls_med")" "$(ms "$new_tls_p90")" \
    "$(added "$new_direct_med" "$new_tls_med")" "$(added "$new_direct_p90" "$new_tls_p90")"
printf '| ... of which the TLS handshake (appconnect - connect), median (p90) | | %s (%s) | |\n' \
    "$(ms "$hs_med")" "$(ms "$hs_p90")"
printf '| reference: the same curl, handshake with openssl s_server (same certificate and key), median (p90) | | %s (%s) | |\n' \
    "$(ms "$ref_med")" "$(ms "$ref_p90")"
printf '| kernel_info round trip on the kernel WebSocket, median (p90) of %s | %s (%s) | %s (%s) | %s (%s) |\n' \
    "$ROUND_TRIPS" "$(ms "$ws_med")" "$(ms "$ws_p90")" "$(ms "$wss_med")" "$(ms "$wss_p90")" \
    "$(added "$ws_med" "$wss_med")" "$(added "$ws_p90" "$wss_p90")"
printf '| agent memory, VmRSS (VmHWM): idle once ready; %s TLS connections open | | %s (%s); %s (%s) | %s KiB per connection |\n' \
    "$HELD" "$(mib "$rss_idle")" "$(mib "$hwm_idle")" "$(mib "$rss_held")" "$(mib "$hwm_held")" "$per_conn"
printf '| agent binary (%s) | | %s MB | |\n' "$AGENT" "$(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1e6 }')"
echo
printf 'summary: TLS adds %s a request on a kept-alive connection, %s a new connection (handshake %s; the same client with openssl s_server: %s), %s a kernel round trip, and %s KiB of agent memory an open connection (medians)\n' \
    "$(added "$ka_direct_med" "$ka_tls_med")" "$(added "$new_direct_med" "$new_tls_med")" "$(ms "$hs_med")" "$(ms "$ref_med")" \
    "$(added "$ws_med" "$wss_med")" "$per_conn"
