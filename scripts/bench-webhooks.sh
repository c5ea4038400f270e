#!/usr/bin/env bash
# Measures shardcast's webhooks on this machine with shardcast-bench and prints a table:
#
#   (1) delivery rate to a fast receiver: nginx (1 worker process) answering every POST
#       with `return 204` over keep-alive, on loopback. A node (server.workers = 1,
#       ws.client_send = "webhook", client_send_rate = 0) turns every client message
#       into a `message` event; `shardcast-bench chat` drives C WebSocket clients that
#       keep W messages each awaiting their ack.
#       (1a) saturated: as fast as the acks come, webhook.queue = 1,000,000. Delivered
#            events/s = the growth of shardcast_webhook_delivered_total over the steady
#            window (from --warmup s after the start of sending to its end); then,
#            with the clients gone, over --drain s while the backlog drains (nothing
#            else runs: the delivery path alone).
#       (1b) sustainable: a node with the default queue (10,000); paced runs at rising
#            offered rates (the --steps factors × (1a)'s delivered rate); the highest
#            with no event dropped and ≥ 97 % of the offered rate delivered in the
#            window is the max sustainable rate.
#   (2) pushes while the webhook receiver hangs: `shardcast-bench fanout` (send_to_system
#       to S subscribers, 64 B messages) against a node (server.workers = 2) without a
#       webhook and against one whose webhook.url is a TCP listener that accepts and
#       never answers (webhook.timeout = 5 s, queue 10,000): delivered msg/s, latency,
#       and the events dropped; twice: a burst (M messages published as fast as
#       accepted: the delivery rate; its latency is mostly queueing behind the burst)
#       and paced (P messages at R msg/s, below capacity: the latency). Paced, each
#       publish is written to each subscriber on its own (a burst's pipelined publishes
#       share one write per subscriber), which costs several times the CPU per push:
#       keep R × S far below the burst's rate. The subscribers' connect events fill the
#       system's share of the queue (S > 5,000, half of it: the rest are dropped at
#       once), its 32 lanes hang on their first event each until its circuit breaker
#       opens (5 timeouts in a row), and every disconnect at the end is dropped.
#
# Every process it starts (nodes, nginx, the hung listener) gets fresh free loopback
# ports and a temporary directory, and is stopped on exit, Ctrl-C included. The
# (2) runs alternate (no webhook first in odd rounds) to cancel drift; each figure of
# the summary is the median of the rounds.
#
# Usage: scripts/bench-webhooks.sh [--quick] [--rounds R] [--clients C] [--window W]
#                                   [--duration S] [--warmup S] [--drain S] [--steps "F …"]
#                                   [--subscribers S] [--messages M] [--paced-messages P]
#                                   [--paced-rate R] [--keep]
#   default: 3 rounds; 200 clients, window 16, 15 s runs, warmup 3 s, drain 5 s,
#            steps "1 1.05 1.1 1.15 1.2 1.25 1.3"; 12,000 subscribers, a burst of 50
#            messages, 100 messages paced at 10 msg/s
#   --quick: 1 round, 6 s runs, steps "1 1.2", 3,000 subscribers, 10 and 20 messages: a
#            check that everything works, not a measurement
#   --keep:  keep the work directory (configs, logs, JSON results)
#
# Needs nginx, python3 and curl (Debian: installs nginx and curl if missing); builds
# shardcast and shardcast-bench in release mode (CARGO_TARGET_DIR is honoured).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=""
CLIENTS=200
WINDOW=16
DURATION=15
WARMUP=3
DRAIN=5
STEPS="1 1.05 1.1 1.15 1.2 1.25 1.3"
SUBSCRIBERS=12000
MESSAGES=50
PACED_MESSAGES=100
PACED_RATE=10
KEEP=0
QUICK=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; DURATION=6; WARMUP=2; DRAIN=3; STEPS="1 1.2"; SUBSCRIBERS=3000; MESSAGES=10
      PACED_MESSAGES=20; shift ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --window) WINDOW="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --drain) DRAIN="$2"; shift 2 ;;
    --steps) STEPS="$2"; shift 2 ;;
    --subscribers) SUBSCRIBERS="$2"; shift 2 ;;
    --messages) MESSAGES="$2"; shift 2 ;;
    --paced-messages) PACED_MESSAGES="$2"; shift 2 ;;
    --paced-rate) PACED_RATE="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench-webhooks: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$ROUNDS" ]; then
  if [ "$QUICK" -eq 1 ]; then ROUNDS=1; else ROUNDS=3; fi
fi

log() { printf '[webhooks %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { echo "bench-webhooks: $*" >&2; exit 1; }
START_SECS=$SECONDS

# --- what it needs -----------------------------------------------------------------
scripts/setup.sh nginx curl
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx not found"
command -v python3 >/dev/null || die "python3 not found"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
log "building shardcast and shardcast-bench (release)"
cargo build --release --quiet -p shardcast -p shardcast-bench
BIN="${CARGO_TARGET_DIR:-target}/release"
SHARDCAST="$BIN/shardcast"
BENCH="$BIN/shardcast-bench"

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

# --- bookkeeping: everything started here is stopped on exit -------------------------
WORK=$(mktemp -d /tmp/bench-webhooks.XXXXXX)
chmod 755 "$WORK" # nginx workers run as nobody
mkdir -p "$WORK/results"
NODE_PID="" NGINX_PID="" HUNG_PID=""
cleanup() {
  local rc=$?
  stop_node
  stop_pid "$NGINX_PID"
  stop_pid "$HUNG_PID"
  if [ "$KEEP" -eq 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_node() {
  stop_pid "$NODE_PID"
  NODE_PID=""
}

# wait_up PID PORT [PATH]: until PATH answers 200 (or, without PATH, the port accepts).
wait_up() {
  local pid=$1 port=$2 path=${3:-}
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || die "the process on port $port exited (see $WORK)"
    if [ -z "$path" ]; then
      port_in_use "$port" && return 0
    elif [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$path")" = 200 ]; then
      return 0
    fi
    sleep 0.1
  done
  die "nothing answers on port $port"
}

start_nginx() {
  NGINX_PORT=$(free_port)
  local dir="$WORK/nginx"
  mkdir -p "$dir/logs"
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location = /healthz { return 200 "ok\n"; }
    location / { return 204; }
  }
}
EOF
  "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" >"$dir/nginx.out" 2>&1 &
  NGINX_PID=$!
  wait_up "$NGINX_PID" "$NGINX_PORT" /healthz
}

# A receiver that hangs: accepts every connection and never reads nor answers.
start_hung() {
  HUNG_PORT=$(free_port)
  python3 - "$HUNG_PORT" >"$WORK/hung.log" 2>&1 <<'EOF' &
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1024)
held = []
while True:
    held.append(s.accept()[0])
EOF
  HUNG_PID=$!
  wait_up "$HUNG_PID" "$HUNG_PORT"
}

# start_node NAME WORKERS WEBHOOK_URL QUEUE: a fresh node (NODE_PID, NODE_PORT); with a
# webhook URL, client messages are forwarded to it (ws.client_send = "webhook").
NODE_RUN=0
start_node() {
  local name=$1 workers=$2 url=$3 queue=$4
  NODE_RUN=$((NODE_RUN + 1))
  NODE_PORT=$(free_port)
  local dir="$WORK/node-$NODE_RUN-$name"
  mkdir -p "$dir/data"
  {
    cat <<EOF
[server]
http_addr = "127.0.0.1:$NODE_PORT"
workers = $workers
data_dir = "$dir/data"
shutdown_timeout = "2s"

[api]
systems = ["bench"]

[log]
level = "error"
EOF
    if [ -n "$url" ]; then
      cat <<EOF

[ws]
client_send = "webhook"
client_send_rate = 0

[webhook]
url = "$url"
queue = $queue
timeout = "5s"
EOF
    fi
  } >"$dir/shardcast.toml"
  "$SHARDCAST" -c "$dir/shardcast.toml" >"$dir/shardcast.log" 2>&1 &
  NODE_PID=$!
  wait_up "$NODE_PID" "$NODE_PORT" /readyz
}

# metric NAME: its value on the node's /metrics page.
# A series' value; a name alone sums its samples over all labels (e.g. every reason).
metric() {
  curl -s "http://127.0.0.1:$NODE_PORT/metrics" |
    awk -v m="$1" '$1 == m || index($1, m "{") == 1 { s += $2; n++ } END { if (n) printf "%.0f\n", s }'
}
# CPU ticks (utime + stime) of the node's webhook thread / of nginx (master + workers).
webhook_ticks() {
  local t
  for t in /proc/"$NODE_PID"/task/*; do
    [ "$(cat "$t/comm" 2>/dev/null)" = shardcast-webho ] && awk '{ print $14 + $15 }' "$t/stat"
  done | awk '{ s += $1 } END { print s + 0 }'
}
nginx_ticks() {
  { echo "$NGINX_PID"; pgrep -P "$NGINX_PID" || true; } |
    while read -r p; do awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || true; done |
    awk '{ s += $1 } END { print s + 0 }'
}
now() { date +%s.%N; }
TCK=$(getconf CLK_TCK)
# pct TICKS SECS: % of a core.
pct() { awk -v t="$1" -v s="$2" -v k="$TCK" 'BEGIN { printf "%.0f", (s > 0 ? 100 * t / k / s : 0) }'; }
# jget FILE KEY…: a number from a JSON result (empty when absent).
jget() {
  python3 - "$@" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)
EOF
}
wait_queue_empty() {
  for _ in $(seq 1 300); do
    [ "$(metric shardcast_webhook_queued)" = 0 ] && return 0
    sleep 0.1
  done
  log "the webhook queue did not empty"
}

chat() {
  local label=$1 out=$2
  shift 2
  timeout --foreground 600 "$BENCH" chat --json --label "$label" \
    --url "ws://127.0.0.1:$NODE_PORT/ws?systemId=bench" --clients "$CLIENTS" --window "$WINDOW" \
    --duration "$DURATION" --warmup "$WARMUP" --server-pid "$NODE_PID" "$@" >"$out"
}

# --- (1) delivery rate -----------------------------------------------------------------
# One line per round in delivery.tsv: saturated delivered/s, sent/s, acked-ok/s, webhook
# thread and nginx CPU %, drain delivered/s and CPU %, max sustainable offered and
# delivered/s, the first failing step.
HOOK_PATH=/hook
delivery_round() {
  local r=$1 f sat t0 t1 w0 w1 n0 n1 d0 d1 q1 drain drain_wh drain_ng
  start_nginx
  local url="http://127.0.0.1:$NGINX_PORT$HOOK_PATH"

  log "round $r: (1a) saturated, queue 1,000,000"
  start_node sat 1 "$url" 1000000
  f="$WORK/results/$r-chat-saturated.json"
  t0=$(now) w0=$(webhook_ticks) n0=$(nginx_ticks)
  chat saturated "$f"
  t1=$(now) w1=$(webhook_ticks) n1=$(nginx_ticks)
  local sat_wh sat_ng
  sat_wh=$(pct $((w1 - w0)) "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
  sat_ng=$(pct $((n1 - n0)) "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
  sat=$(jget "$f" metrics shardcast_webhook_delivered_total per_sec)
  [ -n "$sat" ] || die "no delivery rate in $f"

  log "round $r: (1a) draining the backlog for $DRAIN s"
  t0=$(now) w0=$(webhook_ticks) n0=$(nginx_ticks) d0=$(metric shardcast_webhook_delivered_total)
  sleep "$DRAIN"
  t1=$(now) w1=$(webhook_ticks) n1=$(nginx_ticks) d1=$(metric shardcast_webhook_delivered_total)
  q1=$(metric shardcast_webhook_queued)
  local secs
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  drain=$(awk -v a="$d0" -v b="$d1" -v s="$secs" 'BEGIN { printf "%.0f", (b - a) / s }')
  [ "$q1" -gt 0 ] || drain="$drain+" # the backlog ran out: a lower bound
  drain_wh=$(pct $((w1 - w0)) "$secs")
  drain_ng=$(pct $((n1 - n0)) "$secs")
  stop_node

  log "round $r: (1b) paced, default queue (10,000)"
  start_node paced 1 "$url" 10000
  local best_rate=0 best_delivered=0 failed=- rate delivered x0 x1 dropped
  for step in $STEPS; do
    rate=$(awk -v s="$sat" -v f="$step" 'BEGIN { printf "%.0f", s * f }')
    f="$WORK/results/$r-chat-paced-$step.json"
    x0=$(metric shardcast_webhook_dropped_total)
    chat "paced×$step" "$f" --rate "$rate"
    wait_queue_empty
    x1=$(metric shardcast_webhook_dropped_total)
    dropped=$((x1 - x0))
    delivered=$(jget "$f" metrics shardcast_webhook_delivered_total per_sec)
    log "round $r:   offered $rate/s: delivered $(printf '%.0f' "$delivered")/s, dropped $dropped"
    if [ "$dropped" -eq 0 ] && awk -v d="$delivered" -v o="$rate" 'BEGIN { exit !(d >= 0.97 * o) }'; then
      best_rate=$rate best_delivered=$(printf '%.0f' "$delivered")
    else
      failed="$rate(dropped $dropped)"
      break
    fi
  done
  stop_node
  stop_pid "$NGINX_PID"
  NGINX_PID=""
  printf '%s\t%.0f\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$sat" \
    "$(jget "$WORK/results/$r-chat-saturated.json" send_rate)" \
    "$(jget "$WORK/results/$r-chat-saturated.json" ack_ok_rate)" \
    "$sat_wh" "$sat_ng" "$drain" "$drain_wh" "$drain_ng" "$best_rate" "$best_delivered" "$failed" \
    >>"$WORK/delivery.tsv"
}

# --- (2) pushes with a hung receiver -----------------------------------------------------
# fanout_run ROUND MODE KIND: MODE burst or paced, KIND no-webhook or hung.
fanout_run() {
  local r=$1 mode=$2 kind=$3 f="$WORK/results/$1-fanout-$2-$3.json"
  local publish=(--messages "$MESSAGES")
  [ "$mode" = paced ] && publish=(--messages "$PACED_MESSAGES" --rate "$PACED_RATE")
  case "$kind" in
    no-webhook) start_node plain 2 "" 0 ;;
    hung) start_node hung 2 "http://127.0.0.1:$HUNG_PORT$HOOK_PATH" 10000 ;;
  esac
  log "round $r: (2) fan-out, $mode, $kind"
  timeout --foreground 900 "$BENCH" fanout --json --label "$kind" --api "http://127.0.0.1:$NODE_PORT" \
    --system bench --mode system --subscribers "$SUBSCRIBERS" "${publish[@]}" \
    --server-pid "$NODE_PID" >"$f"
  if [ "$kind" = hung ]; then
    sleep 1 # the subscribers' disconnects
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$mode" "$(metric shardcast_webhook_dropped_total)" \
      "$(metric shardcast_webhook_queued)" "$(metric shardcast_webhook_retries_total)" \
      "$(metric shardcast_webhook_delivered_total)" >>"$WORK/hung.tsv"
  fi
  stop_node
}

# Busy CPU seconds of the whole machine (to tell how much other processes took).
machine_busy() { awk -v k="$TCK" '/^cpu / { print ($2 + $3 + $4 + $7 + $8 + $9) / k; exit }' /proc/stat; }
# OURS = CPU seconds of this script's children waited for so far (nodes, nginx, bench);
# `times` runs in this shell (in a subshell it would see none of them).
children_cpu() {
  times >"$WORK/times"
  OURS=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); s += t[1] * 60 + t[2] } print s }' "$WORK/times")
}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
children_cpu
BUSY0=$(machine_busy) OURS0=$OURS WALL0=$(now)
start_hung
for r in $(seq 1 "$ROUNDS"); do
  delivery_round "$r"
  if [ $((r % 2)) -eq 1 ]; then order="no-webhook hung"; else order="hung no-webhook"; fi
  for mode in burst paced; do
    for kind in $order; do
      fanout_run "$r" "$mode" "$kind"
    done
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
children_cpu
BUSY1=$(machine_busy)
log "CPU-s: machine busy $BUSY0 → $BUSY1, this script's processes $OURS0 → $OURS"
OTHER=$(awk -v b0="$BUSY0" -v b1="$BUSY1" -v o0="$OURS0" -v o1="$OURS" \
  -v w0="$WALL0" -v w1="$(now)" -v n="$(nproc)" 'BEGIN {
    other = (b1 - b0) - (o1 - o0); if (other < 0) other = 0
    printf "%.1f CPU-s of %.0f (%.0f %% of the machine)", other, (w1 - w0) * n, 100 * other / ((w1 - w0) * n) }')

# --- the table -----------------------------------------------------------------------------
# median of column N of a TSV (a trailing "+" marks a lower bound and is kept).
median() {
  cut -f"$2" "$1" | sort -g | awk '{ v[NR] = $0 } END { if (NR) print v[int((NR + 1) / 2)] }'
}
k() { awk -v v="${1%+}" -v p="${1##*[0-9]}" 'BEGIN { if (v >= 1e4) printf "%.1f k%s", v / 1e3, p; else printf "%s%s", v, p }'; }
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
D="$WORK/delivery.tsv"
H="$WORK/hung.tsv"
echo
echo "shardcast webhooks — $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores, kernel $(uname -r), ${cpu_model:-unknown CPU};" \
  "load average before $LOAD_BEFORE, after $LOAD_AFTER"
echo "other processes used $OTHER during the measurements"
echo "shardcast $("$SHARDCAST" --version | awk '{print $2}'); receiver nginx" \
  "$("$NGINX" -v 2>&1 | sed 's|.*nginx/||') (1 worker, return 204, keep-alive); $ROUNDS round(s), medians"
echo
echo "(1) webhook delivery: message events from $CLIENTS WebSocket clients (window $WINDOW each), node workers = 1"
printf '  %-58s %12s\n' "" "median"
printf '  %-58s %12s\n' "saturated (queue 1 M): client messages sent /s" "$(k "$(median "$D" 3)")"
printf '  %-58s %12s\n' "  accepted (ack code 0) /s" "$(k "$(median "$D" 4)")"
printf '  %-58s %12s\n' "  webhook events delivered /s (${WARMUP} s → ${DURATION} s)" "$(k "$(median "$D" 2)")"
printf '  %-58s %12s\n' "  webhook thread / nginx CPU, % of a core" "$(median "$D" 5) / $(median "$D" 6)"
printf '  %-58s %12s\n' "draining the backlog (no clients): delivered /s" "$(k "$(median "$D" 7)")"
printf '  %-58s %12s\n' "  webhook thread / nginx CPU, % of a core" "$(median "$D" 8) / $(median "$D" 9)"
printf '  %-58s %12s\n' "max sustainable (paced, queue 10,000, 0 dropped): offered /s" "$(k "$(median "$D" 10)")"
printf '  %-58s %12s\n' "  delivered /s" "$(k "$(median "$D" 11)")"
echo "  per round (delivered /s — saturated | drain | max sustainable, first failing offer):"
awk -F'\t' '{ printf "    round %s: %s | %s | %s, %s\n", $1, $2, $7, $11, $12 }' "$D"
echo
"$BENCH" compare "$WORK"/results/*-chat-saturated.json
echo
echo "(2) pushes while the webhook receiver hangs (node workers = 2; timeout 5 s, queue 10,000)"
"$BENCH" compare --baseline no-webhook "$WORK"/results/*-fanout-burst-*.json
"$BENCH" compare --baseline no-webhook "$WORK"/results/*-fanout-paced-*.json
echo "  hung receiver, webhook events at the end of each run: dropped / still queued / retries / delivered:"
awk -F'\t' '{ printf "    round %s, %s: %s / %s / %s / %s\n", $1, $2, $3, $4, $5, $6 }' "$H"
echo "the load generator shares the machine's $(nproc) cores with the node and nginx."
log "done in $((SECONDS - START_SECS)) s"
