#!/usr/bin/env bash
# Measures shardcast against its peers on this machine — nchan (the nginx push module) and
# uWebSockets.js (a pub/sub server of ours on it, scripts/uws-peer/) — with the same load
# generator (shardcast-bench) and the same workloads, and prints a table per workload:
#
#   idle   WebSocket connections → connect rate, handshake latency, server memory per
#          connection (VmRSS delta / N; nginx: master + workers, the delta is the workers';
#          uWebSockets: its one node process)
#   fan-out: one channel of N subscribers, M messages of 64 B published over HTTP →
#          delivered messages/s, delivered %, publish → receive latency p50/p99, server
#          CPU per delivered message, publish answer p99 — published as users publish:
#     (a) one publisher, one request in flight (the PHP SDK over keep-alive, most backends)
#     (b) 8 publishers, one request in flight each
#     (c) a new HTTP connection per publish, as the PHP SDK makes them
#     (d) paced: one publisher at 10 msg/s
#     (e) one publisher pipelining 16 requests (the figure earlier versions led with)
#   --deflate: permessage-deflate (RFC 7692) instead: the same workloads (default (a)
#          only) with a JSON body of each of --json-sizes bytes (an order event made by
#          shardcast-bench --payload-json: the same body for every server; shardcast
#          sends it as the JSON value of its envelope's `data`), each server in the
#          variants below, and the idle connections with deflate negotiated → wire bytes
#          per delivery, server CPU per delivery, latency, memory per connection:
#            shardcast-deflate  ws.compression on (the default), the generator offers
#                               deflate
#            shardcast-plain    the generator offers nothing (what a client without
#                               deflate sees)
#            shardcast-nocomp   ws.compression = false, the generator offers (declined)
#            nchan-deflate      nchan_deflate_message_for_websocket on, the generator
#                               offers
#            nchan-plain        the directive off, the generator offers nothing
#            uws-plain          uWebSockets.js as above (compression disabled), no offer
#          The offer is $DEFLATE_OFFER (default: a browser's offer plus
#          server_no_context_takeover, which shardcast always agrees to and nchan 1.3.6
#          echoes; nchan compresses each message once from a reset stream whatever a
#          subscriber negotiated, so the flag changes only the generator's inflating:
#          one inflater per thread instead of one per connection).
#
# shardcast and nginx run with 2 worker threads/processes, uWebSockets with its one thread
# (compare CPU per delivery with it, not rates), on free loopback ports, each started
# fresh for every measurement (so that memory deltas are not hidden by reuse), in
# rotation: shardcast nchan uws, nchan uws shardcast, uws shardcast nchan, … (to cancel
# drift). nchan and uWebSockets take the same URLs (WebSocket /sub/<chan>, POST
# /pub/<chan>) and send the body as is; shardcast fans out with send_to_system to a
# system that only the subscribers use (its send_to_group needs one bind_to_group per
# subscriber first) and wraps the body in its JSON envelope.
#
# Usage: scripts/bench-vs-nchan.sh [--quick] [--rounds R] [--idle N] [--subscribers N]
#                                   [--messages M] [--payload B] [--workloads "a b c d e"]
#                                   [--peers "nchan uws"] [--workers W] [--same-bytes]
#                                   [--generator-nice N] [--keep]
#                                   [--deflate [--json-sizes "1000 100"]]
#   default: 19,000 idle connections, 10,000 subscribers, 50 messages, workloads a–e,
#            3 rounds (each figure is the median of its rounds); about 8 minutes with
#            one peer, half as long again with both
#   --quick: 2,000 idle connections, 2,000 subscribers, 10 messages, 1 round: a check
#            that everything works, not a measurement
#   --workloads: the fan-out workloads to run ("" for the idle figures only)
#   --peers: the servers measured beside shardcast, nchan and/or uws (default both); the
#            first is the baseline of the ratio columns (--peers "uws nchan": shardcast/uws)
#   --workers: shardcast's server.workers (default 2: one per core here); 1 gives it
#            the one thread uWebSockets.js has, the other core left to the load generator
#   --same-bytes: each peer also runs as a second column, PEER-sized, whose bodies are
#            as long as shardcast's frame payload (the body in its 76-byte JSON
#            envelope), so that every server of that column sends the same bytes per
#            delivery (the "wire bytes" row shows it): what a write costs each server,
#            apart from what shardcast's envelope adds; without --deflate only
#   --generator-nice N: the load generator runs at niceness N (e.g. -5; below 0 needs
#            root): with N < 0 it takes the CPU it needs before the server under test
#            does, as clients on their own machines would, instead of an equal share of
#            the cores with each busy server thread (a server with two threads leaves it
#            a third of this machine's two cores, one with one thread half)
#   --keep:  keep the work directory (configs, logs, JSON results)
#   --deflate: the permessage-deflate comparison (above) instead of workloads a–e;
#            default workloads "a", idle connections with deflate only; the baseline of
#            the ratios is nchan-deflate, and each workload also gets a table of
#            shardcast with deflate on vs off (baseline shardcast-plain)
#   --json-sizes: with --deflate, the JSON body sizes in bytes (default "1000 100": a
#            1 KB push, and one below ws.compression_min_size)
#   SHARDCAST_BIN=PATH in the environment measures that node binary instead of the
#            one built here (a before/after comparison of two builds)
#   DEFLATE_OFFER="…" in the environment: the Sec-WebSocket-Extensions offer of
#            --deflate (e.g. a browser's, "permessage-deflate; client_max_window_bits")
#   CARGO_TARGET_DIR is honoured (the binaries are taken from there)
#
# Needs Debian (apt-get) for nginx and libnginx-mod-nchan, which it installs if missing
# (sudo when not root), and npm for uWebSockets.js (scripts/uws-peer/install.sh installs
# it, pinned, in ~/.cache/shardcast/uws-peer); builds shardcast and shardcast-bench in
# release mode. It stops everything it started on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

IDLE_N=19000
FAN_N=10000
FAN_M=50
PAYLOAD=64
WORKLOADS=""
PEERS="nchan uws"
WORKERS=2
ROUNDS=""
KEEP=0
QUICK=0
DEFLATE=0
SAME_BYTES=0
GENERATOR_NICE=""
# What shardcast's push frame adds around a body sent to a system (docs/api.md §2, "Pushes and notices"):
# {"messageId":"<16 hex>","sendUserId":"","code":0,"msg":"","data":"<body>"}
ENVELOPE=76
JSON_SIZES="1000 100"
DEFLATE_OFFER=${DEFLATE_OFFER:-"permessage-deflate; server_no_context_takeover; client_max_window_bits"}
while [ "$#" -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; IDLE_N=2000; FAN_N=2000; FAN_M=10; shift ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --idle) IDLE_N="$2"; shift 2 ;;
    --subscribers) FAN_N="$2"; shift 2 ;;
    --messages) FAN_M="$2"; shift 2 ;;
    --payload) PAYLOAD="$2"; shift 2 ;;
    --workloads) WORKLOADS="$2"; shift 2 ;;
    --peers) PEERS="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --same-bytes) SAME_BYTES=1; shift ;;
    --generator-nice) GENERATOR_NICE="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --deflate) DEFLATE=1; shift ;;
    --json-sizes) JSON_SIZES="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench-vs-nchan: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$ROUNDS" ]; then
  if [ "$QUICK" -eq 1 ]; then ROUNDS=1; else ROUNDS=3; fi
fi
if [ -z "$WORKLOADS" ]; then
  if [ "$DEFLATE" -eq 1 ]; then WORKLOADS="a"; else WORKLOADS="a b c d e"; fi
fi
for peer in $PEERS; do
  case "$peer" in
    nchan|uws) ;;
    *) echo "bench-vs-nchan: unknown peer $peer (nchan, uws)" >&2; exit 2 ;;
  esac
done
read -r BASELINE _ <<<"$PEERS"
[ -n "$BASELINE" ] || { echo "bench-vs-nchan: --peers names no peer" >&2; exit 2; }
has_peer() { case " $PEERS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# The servers measured (each a column of the tables): a server, or with --deflate a
# server in one of its variants (server-variant).
if [ "$DEFLATE" -eq 1 ]; then
  SERVERS="shardcast-deflate shardcast-plain shardcast-nocomp"
  for peer in $PEERS; do
    case "$peer" in
      nchan) SERVERS="$SERVERS nchan-deflate nchan-plain" ;;
      uws) SERVERS="$SERVERS uws-plain" ;;
    esac
  done
  if has_peer nchan; then BASELINE=nchan-deflate; else BASELINE=uws-plain; fi
  for size in $JSON_SIZES; do
    case "$size" in
      ''|*[!0-9]*) echo "bench-vs-nchan: --json-sizes: $size is not a number of bytes" >&2; exit 2 ;;
    esac
  done
else
  SERVERS="shardcast $PEERS"
  if [ "$SAME_BYTES" -eq 1 ]; then
    for peer in $PEERS; do SERVERS="$SERVERS $peer-sized"; done
  fi
fi
if [ "$SAME_BYTES" -eq 1 ] && [ "$DEFLATE" -eq 1 ]; then
  echo "bench-vs-nchan: --same-bytes is for the workloads without --deflate" >&2
  exit 2
fi

# How the load generator is started: with a time limit, and at --generator-nice.
GENERATOR=(timeout --foreground 900)
if [ -n "$GENERATOR_NICE" ]; then GENERATOR=(nice -n "$GENERATOR_NICE" "${GENERATOR[@]}"); fi

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
START_SECS=$SECONDS

# --- what it needs -----------------------------------------------------------------
if has_peer nchan; then
  scripts/setup.sh nginx libnginx-mod-nchan # toolchain, build deps and nchan (a no-op when present)
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  NCHAN_SO=/usr/lib/nginx/modules/ngx_nchan_module.so
  [ -x "$NGINX" ] || { echo "bench-vs-nchan: nginx not found" >&2; exit 1; }
  [ -f "$NCHAN_SO" ] || { echo "bench-vs-nchan: $NCHAN_SO not found" >&2; exit 1; }
else
  scripts/setup.sh # toolchain and build deps (a no-op when present)
fi
if has_peer uws; then
  # uWebSockets.js from the npm registry, pinned, outside the repo; prints where.
  UWS_DIR=$(scripts/uws-peer/install.sh)
fi

[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
log "building shardcast and shardcast-bench (release)"
cargo build --release --quiet -p shardcast -p shardcast-bench
BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
# SHARDCAST_BIN measures another build of the node (a before/after comparison).
SHARDCAST=${SHARDCAST_BIN:-$BIN_DIR/shardcast}
BENCH=$BIN_DIR/shardcast-bench

# --- bookkeeping: everything started here is stopped on exit -------------------------
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

WORK=$(mktemp -d /tmp/bench-vs-nchan.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/results"
SERVER_PID=""
cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ]; then stop_server; fi
  if [ "$KEEP" -eq 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until GET $2 on port $1 answers 200 (at most 15 s), or the server died.
# HTTP/1.1: uWebSockets answers 505 to HTTP/1.0.
wait_http() {
  local port=$1 path=$2 line
  for _ in $(seq 1 150); do
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "bench-vs-nchan: the server exited" >&2; return 1; }
    line=$( (exec 3<>"/dev/tcp/127.0.0.1/$port" &&
      printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3 &&
      head -n 1 <&3) 2>/dev/null || true)
    case "$line" in "HTTP/1."?" 200"*) return 0 ;; esac
    sleep 0.1
  done
  echo "bench-vs-nchan: the server on port $port did not come up" >&2
  return 1
}

stop_server() {
  local pid=$SERVER_PID
  SERVER_PID=""
  stop_pid "$pid"
}

RUN=0
# start_shardcast [COMPRESSION]: ws.compression true (the default) or false.
start_shardcast() {
  RUN=$((RUN + 1))
  PORT=$(free_port)
  local dir="$WORK/shardcast-$RUN"
  mkdir -p "$dir/data"
  cat >"$dir/shardcast.toml" <<EOF
[server]
http_addr = "127.0.0.1:$PORT"
workers = $WORKERS
data_dir = "$dir/data"
shutdown_timeout = "2s"

[api]
systems = ["bench"]

[ws]
compression = ${1:-true}
# Session resume on, as the shipped conf/shardcast.toml has it.
resume_window = "30s"

[log]
level = "warn"
EOF
  "$SHARDCAST" -c "$dir/shardcast.toml" >"$dir/shardcast.log" 2>&1 &
  SERVER_PID=$!
  wait_http "$PORT" /readyz
}

# start_nchan [DEFLATE]: nchan_deflate_message_for_websocket off (the default) or on.
start_nchan() {
  RUN=$((RUN + 1))
  PORT=$(free_port)
  local dir="$WORK/nginx-$RUN"
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<EOF
load_module $NCHAN_SO;
worker_processes 2;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 20000; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$PORT reuseport;
    nchan_deflate_message_for_websocket ${1:-off};
    location = /healthz { return 200 "ok\n"; }
    location ~ ^/pub/(\w+)$ { nchan_publisher; nchan_channel_id \$1; }
    location ~ ^/sub/(\w+)$ { nchan_subscriber websocket; nchan_channel_id \$1; }
  }
}
EOF
  "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" >"$dir/nginx.out" 2>&1 &
  SERVER_PID=$!
  wait_http "$PORT" /healthz
}

start_uws() {
  RUN=$((RUN + 1))
  PORT=$(free_port)
  local dir="$WORK/uws-$RUN"
  mkdir -p "$dir"
  # The open-files limit raised to the hard one, as nginx's worker_rlimit_nofile does;
  # exec, so that SERVER_PID is node's own pid (the one measured and stopped).
  (
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    UWS_PEER_DIR=$UWS_DIR exec "$UWS_DIR/node" scripts/uws-peer/server.js --port "$PORT"
  ) >"$dir/uws.log" 2>&1 &
  SERVER_PID=$!
  wait_http "$PORT" /healthz
}

# start_server SERVER: the server of a column, started in its variant.
start_server() {
  case "$1" in
    shardcast|shardcast-deflate|shardcast-plain) start_shardcast true ;;
    shardcast-nocomp) start_shardcast false ;;
    nchan|nchan-plain|nchan-sized) start_nchan off ;;
    nchan-deflate) start_nchan on ;;
    uws|uws-plain|uws-sized) start_uws ;;
    *) echo "bench-vs-nchan: unknown server $1" >&2; return 1 ;;
  esac
}

# offers SERVER: whether the generator offers permessage-deflate to that column.
offers() {
  case "$1" in
    shardcast-deflate|shardcast-nocomp|nchan-deflate) return 0 ;;
    *) return 1 ;;
  esac
}

# The publishing options of a fan-out workload, and its title.
workload_args() {
  case "$1" in
    a) echo "--publishers 1 --depth 1" ;;
    b) echo "--publishers 8 --depth 1" ;;
    c) echo "--new-connection-per-request" ;;
    d) echo "--publishers 1 --depth 1 --rate 10" ;;
    e) echo "--publishers 1 --depth 16" ;;
    *) echo "bench-vs-nchan: unknown workload $1 (a–e)" >&2; return 1 ;;
  esac
}
workload_title() {
  case "$1" in
    a) echo "(a) one publisher, one request in flight" ;;
    b) echo "(b) 8 publishers, one request in flight each" ;;
    c) echo "(c) a new HTTP connection per publish (the PHP SDK)" ;;
    d) echo "(d) paced: 10 msg/s from one publisher" ;;
    e) echo "(e) one publisher pipelining 16 requests" ;;
  esac
}
for w in $WORKLOADS; do workload_args "$w" >/dev/null; done

# bench SERVER KIND ROUND: one measurement on a fresh server; JSON result kept.
# KIND is idle, fanout-W (W a workload letter) or, with --deflate, fanout-W-BYTES (a
# JSON body of BYTES).
bench() {
  local server=$1 kind=$2 round=$3 out workload publish=() body=() offer=()
  out="$WORK/results/$round-$server-$kind.json"
  start_server "$server"
  sleep 0.5
  log "round $round: $server $kind (port $PORT), load average $(cut -d' ' -f1 /proc/loadavg)"
  if [ "${kind#fanout-}" != "$kind" ]; then
    workload=${kind#fanout-}
    read -r -a publish <<<"$(workload_args "${workload%%-*}")"
    if [ "${workload#*-}" != "$workload" ]; then
      body=(--payload-json "${workload#*-}")
    elif [ "${server#*-}" = sized ]; then
      body=(--payload "$((PAYLOAD + ENVELOPE))")
    else
      body=(--payload "$PAYLOAD")
    fi
  fi
  if offers "$server"; then offer=(--deflate "$DEFLATE_OFFER"); fi
  case "${server%%-*}-${kind%%-*}" in
    shardcast-idle)
      "${GENERATOR[@]}" "$BENCH" idle --json --label "$server" --url "ws://127.0.0.1:$PORT/ws?systemId=bench" \
        --connections "$IDLE_N" "${offer[@]}" --server-pid "$SERVER_PID" >"$out" ;;
    nchan-idle|uws-idle)
      "${GENERATOR[@]}" "$BENCH" idle --json --label "$server" --url "ws://127.0.0.1:$PORT/sub/idle" --no-welcome \
        --connections "$IDLE_N" "${offer[@]}" --server-pid "$SERVER_PID" >"$out" ;;
    shardcast-fanout)
      "${GENERATOR[@]}" "$BENCH" fanout --json --label "$server" --api "http://127.0.0.1:$PORT" --system bench \
        --mode system --subscribers "$FAN_N" --messages "$FAN_M" "${body[@]}" \
        "${publish[@]}" "${offer[@]}" --server-pid "$SERVER_PID" >"$out" ;;
    nchan-fanout|uws-fanout)
      "${GENERATOR[@]}" "$BENCH" generic --json --label "$server" --subscribe "ws://127.0.0.1:$PORT/sub/bench" \
        --publish "http://127.0.0.1:$PORT/pub/bench" --subscribers "$FAN_N" --messages "$FAN_M" \
        "${body[@]}" "${publish[@]}" "${offer[@]}" --server-pid "$SERVER_PID" >"$out" ;;
  esac
  cut -d' ' -f1 /proc/loadavg >>"$WORK/load" # the 1-minute load after each measurement
  stop_server
  sleep 1
}

# rotate "A B C" [N]: "B C A" (N times, default once; with two servers, a swap).
rotate() {
  echo "$1" | awk -v n="${2:-1}" '{ n %= NF; for (i = 1; i <= NF; i++) printf "%s%s", $((i + n - 1) % NF + 1), (i < NF ? " " : "\n") }'
}
# The fan-out kinds: fanout-W, or with --deflate fanout-W-BYTES for each JSON size.
FANOUT_KINDS=$(for w in $WORKLOADS; do
  if [ "$DEFLATE" -eq 1 ]; then
    for size in $JSON_SIZES; do echo "fanout-$w-$size"; done
  else
    echo "fanout-$w"
  fi
done)
# columns KIND "SERVERS": the servers measured for KIND (idle or fanout), in the order
# given; with --deflate the idle connections are measured with deflate negotiated only.
columns() {
  local server
  for server in $2; do
    case "$1-$DEFLATE-$server" in
      idle-0-*-sized) ;;
      idle-1-*-deflate|idle-0-*|fanout-*) echo "$server" ;;
    esac
  done
}
for round in $(seq 1 "$ROUNDS"); do
  # Round R starts R - 1 places on (two servers: shardcast first in odd rounds).
  order=$(rotate "$SERVERS" $((round - 1)))
  for kind in idle $FANOUT_KINDS; do
    for server in $(columns "${kind%%-*}" "$order"); do
      bench "$server" "$kind" "$round"
    done
    order=$(rotate "$order")
  done
done

# --- the table ---------------------------------------------------------------------------
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
echo
echo "shardcast vs ${PEERS// /, } — $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores, kernel $(uname -r), ${cpu_model:-unknown CPU}"
echo "load average (1 min) after each measurement: $(sort -n "$WORK/load" | awk 'NR == 1 { lo = $1 } { hi = $1; s[NR] = $1 }
  END { printf "%s–%s, median %s", lo, hi, s[int((NR + 1) / 2)] }') (the benchmark's own processes count in it)"
echo "servers: shardcast $("$SHARDCAST" --version | awk '{print $2}') ($WORKERS workers)"
if has_peer nchan; then
  nchan_version=$(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')
  echo "         nchan: nginx $("$NGINX" -v 2>&1 | sed 's|.*nginx/||') + nchan $nchan_version (2 worker processes)"
fi
if has_peer uws; then
  echo "         uws: $(UWS_PEER_DIR=$UWS_DIR "$UWS_DIR/node" scripts/uws-peer/server.js --version) (1 thread)"
fi
echo "load: shardcast-bench on the same machine, $ROUNDS round(s)${GENERATOR_NICE:+, at niceness $GENERATOR_NICE}"
if [ "$SAME_BYTES" -eq 1 ]; then
  echo "bodies: $PAYLOAD B; *-sized columns: $((PAYLOAD + ENVELOPE)) B, shardcast's frame payload"
fi
if [ "$DEFLATE" -eq 1 ]; then
  echo "permessage-deflate: the generator offers \"$DEFLATE_OFFER\""
  echo "to *-deflate and shardcast-nocomp (ws.compression = false), nothing to *-plain;"
  echo "nchan-deflate: nchan_deflate_message_for_websocket on; bodies: --payload-json (JSON)"
fi
# The columns: shardcast's, the other peers', the baseline (the first peer) last.
results() { # results KIND [SERVERS]: the result files of KIND, in the order of SERVERS
  local server
  for server in $(columns "${1%%-*}" "${2:-$SERVERS}"); do
    ls "$WORK"/results/*-"$server-$1".json
  done
}
echo
if [ "$DEFLATE" -eq 1 ] && ! has_peer nchan; then
  # Idle with deflate is measured for shardcast alone then: no baseline column.
  # shellcheck disable=SC2046 # one word per file
  "$BENCH" compare $(results idle)
else
  # shellcheck disable=SC2046 # one word per file
  "$BENCH" compare --baseline "$BASELINE" $(results idle)
fi
for kind in $FANOUT_KINDS; do
  workload=${kind#fanout-}
  echo
  if [ "$DEFLATE" -eq 1 ]; then
    echo "$(workload_title "${workload%%-*}"), ${workload#*-} B of JSON"
  else
    workload_title "$workload"
  fi
  # shellcheck disable=SC2046
  "$BENCH" compare --baseline "$BASELINE" $(results "$kind")
  if [ "$DEFLATE" -eq 1 ]; then
    echo
    echo "shardcast, deflate on vs off: $(workload_title "${workload%%-*}"), ${workload#*-} B of JSON"
    # shellcheck disable=SC2046
    "$BENCH" compare --baseline shardcast-plain \
      $(results "$kind" "shardcast-deflate shardcast-nocomp shardcast-plain")
  fi
done
echo
echo "handshake = connect start → welcome frame (shardcast) / → 101 answer (nchan and uws send no welcome);"
echo "memory = server VmRSS growth / connections (nginx: master + workers; uws: its node process);"
echo "wire bytes = frame headers and payloads of the measured messages as received;"
echo "latency = publish → receive; the load generator shares the machine's cores with the server under test."
log "done in $((SECONDS - START_SECS)) s"
