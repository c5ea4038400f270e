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
#                                   [--peers "nchan uws"] [--keep]
#   default: 19,000 idle connections, 10,000 subscribers, 50 messages, workloads a–e,
#            3 rounds (each figure is the median of its rounds); about 8 minutes with
#            one peer, half as long again with both
#   --quick: 2,000 idle connections, 2,000 subscribers, 10 messages, 1 round: a check
#            that everything works, not a measurement
#   --workloads: the fan-out workloads to run ("" for the idle figures only)
#   --peers: the servers measured beside shardcast, nchan and/or uws (default both); the
#            first is the baseline of the ratio columns (--peers "uws nchan": shardcast/uws)
#   --keep:  keep the work directory (configs, logs, JSON results)
#   SHARDCAST_BIN=PATH in the environment measures that node binary instead of the
#            one built here (a before/after comparison of two builds)
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
WORKLOADS="a b c d e"
PEERS="nchan uws"
ROUNDS=""
KEEP=0
QUICK=0
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
    --keep) KEEP=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench-vs-nchan: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$ROUNDS" ]; then
  if [ "$QUICK" -eq 1 ]; then ROUNDS=1; else ROUNDS=3; fi
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
# SHARDCAST_BIN measures another build of the node (a before/after comparison).
SHARDCAST=${SHARDCAST_BIN:-target/release/shardcast}
BENCH=target/release/shardcast-bench

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
start_shardcast() {
  RUN=$((RUN + 1))
  PORT=$(free_port)
  local dir="$WORK/shardcast-$RUN"
  mkdir -p "$dir/data"
  cat >"$dir/shardcast.toml" <<EOF
[server]
http_addr = "127.0.0.1:$PORT"
workers = 2
data_dir = "$dir/data"
shutdown_timeout = "2s"

[api]
systems = ["bench"]

[log]
level = "warn"
EOF
  "$SHARDCAST" -c "$dir/shardcast.toml" >"$dir/shardcast.log" 2>&1 &
  SERVER_PID=$!
  wait_http "$PORT" /readyz
}

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
# KIND is idle or fanout-W (W a workload letter).
bench() {
  local server=$1 kind=$2 round=$3 out publish
  out="$WORK/results/$round-$server-$kind.json"
  "start_$server"
  sleep 0.5
  log "round $round: $server $kind (port $PORT), load average $(cut -d' ' -f1 /proc/loadavg)"
  if [ "${kind#fanout-}" != "$kind" ]; then
    read -r -a publish <<<"$(workload_args "${kind#fanout-}")"
  fi
  case "$server-${kind%%-*}" in
    shardcast-idle)
      timeout --foreground 900 "$BENCH" idle --json --label shardcast --url "ws://127.0.0.1:$PORT/ws?systemId=bench" \
        --connections "$IDLE_N" --server-pid "$SERVER_PID" >"$out" ;;
    nchan-idle|uws-idle)
      timeout --foreground 900 "$BENCH" idle --json --label "$server" --url "ws://127.0.0.1:$PORT/sub/idle" --no-welcome \
        --connections "$IDLE_N" --server-pid "$SERVER_PID" >"$out" ;;
    shardcast-fanout)
      timeout --foreground 900 "$BENCH" fanout --json --label shardcast --api "http://127.0.0.1:$PORT" --system bench \
        --mode system --subscribers "$FAN_N" --messages "$FAN_M" --payload "$PAYLOAD" \
        "${publish[@]}" --server-pid "$SERVER_PID" >"$out" ;;
    nchan-fanout|uws-fanout)
      timeout --foreground 900 "$BENCH" generic --json --label "$server" --subscribe "ws://127.0.0.1:$PORT/sub/bench" \
        --publish "http://127.0.0.1:$PORT/pub/bench" --subscribers "$FAN_N" --messages "$FAN_M" \
        --payload "$PAYLOAD" "${publish[@]}" --server-pid "$SERVER_PID" >"$out" ;;
  esac
  cut -d' ' -f1 /proc/loadavg >>"$WORK/load" # the 1-minute load after each measurement
  stop_server
  sleep 1
}

# rotate "A B C" [N]: "B C A" (N times, default once; with two servers, a swap).
rotate() {
  echo "$1" | awk -v n="${2:-1}" '{ n %= NF; for (i = 1; i <= NF; i++) printf "%s%s", $((i + n - 1) % NF + 1), (i < NF ? " " : "\n") }'
}
for round in $(seq 1 "$ROUNDS"); do
  # Round R starts R - 1 places on (two servers: shardcast first in odd rounds).
  order=$(rotate "shardcast $PEERS" $((round - 1)))
  for kind in idle $(for w in $WORKLOADS; do echo "fanout-$w"; done); do
    for server in $order; do
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
echo "servers: shardcast $("$SHARDCAST" --version | awk '{print $2}') (2 workers)"
if has_peer nchan; then
  nchan_version=$(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')
  echo "         nchan: nginx $("$NGINX" -v 2>&1 | sed 's|.*nginx/||') + nchan $nchan_version (2 worker processes)"
fi
if has_peer uws; then
  echo "         uws: $(UWS_PEER_DIR=$UWS_DIR "$UWS_DIR/node" scripts/uws-peer/server.js --version) (1 thread)"
fi
echo "load: shardcast-bench on the same machine, $ROUNDS round(s)"
# The columns: shardcast, the other peers, the baseline (the first peer) last.
results() { # results KIND: the result files of KIND, shardcast's first, then the peers'
  local server
  for server in shardcast $PEERS; do ls "$WORK"/results/*-"$server-$1".json; done
}
echo
# shellcheck disable=SC2046 # one word per file
"$BENCH" compare --baseline "$BASELINE" $(results idle)
for w in $WORKLOADS; do
  echo
  workload_title "$w"
  # shellcheck disable=SC2046
  "$BENCH" compare --baseline "$BASELINE" $(results fanout-"$w")
done
echo
echo "handshake = connect start → welcome frame (shardcast) / → 101 answer (nchan and uws send no welcome);"
echo "memory = server VmRSS growth / connections (nginx: master + workers; uws: its node process);"
echo "latency = publish → receive; the load generator shares the machine's cores with the server under test."
log "done in $((SECONDS - START_SECS)) s"
