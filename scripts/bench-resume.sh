#!/usr/bin/env bash
# Session resume (docs/api.md §8) on one node: what keeping sessions costs, and how
# fast a crowd of dropped clients comes back. Prints one table per figure:
#
#   (a) fan-out with resume on vs off: server CPU per delivered frame (and the rest of
#       the fan-out figures) of send_to_system to N subscribers, one publisher, one
#       request in flight — target: on ≤ 1.2 × off
#   (b) idle connections with resume on vs off: server memory per connection (VmRSS
#       growth / N) — target: equal
#   (c) resume: N clients drop with a TCP reset, M pushes are sent in the gap, all N
#       reconnect at once with their resume tokens: resumes/s (N / first reconnect start
#       → last client complete), latency from a client's reconnect start to its welcome
#       and all M missed frames (p50/p90/p99/max), failures, server CPU over the burst
#
# The node: release build, 2 workers, its own data dir and free loopback port, started
# fresh for every measurement with [ws] resume_window = "30s" (on) or "0s" (off); on/off
# alternate (off, on, on, off, …) to cancel drift. Each figure is the median over the
# rounds (shardcast-bench compare). The node has api.max_http_connections = 20000: a
# connection counts against it until its upgrade, and N clients reconnecting at once
# would otherwise find 4,096 places (the default) and be refused 503 beyond them.
#
# Usage: scripts/bench-resume.sh [--quick] [--rounds R] [--subscribers N] [--messages M]
#                                [--idle N] [--clients N] [--gap M] [--figures "a b c"]
#                                [--keep]
#   default: 10,000 subscribers × 50 messages, 19,000 idle connections, 10,000 resuming
#            clients with 5 pushes in the gap, 3 rounds; about 8 minutes
#   --quick: 200 of each, 10 messages, 1 round: a check that everything works
#   --figures: the figures to measure (default "a b c")
#   --keep:  keep the work directory (configs, logs, JSON results)
#
# Builds shardcast and shardcast-bench in release mode. Stops everything it started on
# exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

FAN_N=10000
FAN_M=50
IDLE_N=19000
RES_N=10000
RES_M=5
FIGURES="a b c"
NODE_PORT=""
NODE_PID=""
ROUNDS=""
KEEP=0
QUICK=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; FAN_N=200; FAN_M=10; IDLE_N=200; RES_N=200; shift ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --subscribers) FAN_N="$2"; shift 2 ;;
    --messages) FAN_M="$2"; shift 2 ;;
    --idle) IDLE_N="$2"; shift 2 ;;
    --clients) RES_N="$2"; shift 2 ;;
    --gap) RES_M="$2"; shift 2 ;;
    --figures) FIGURES="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench-resume: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$ROUNDS" ]; then
  if [ "$QUICK" -eq 1 ]; then ROUNDS=1; else ROUNDS=3; fi
fi
for f in $FIGURES; do
  case "$f" in a|b|c) ;; *) echo "bench-resume: unknown figure $f (a, b, c)" >&2; exit 2 ;; esac
done

log() { printf '[bench-resume %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
START_SECS=$SECONDS

[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
log "building shardcast and shardcast-bench (release)"
cargo build --release --quiet --bin shardcast --bin shardcast-bench
SHARDCAST=target/release/shardcast
BENCH=target/release/shardcast-bench

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

WORK=$(mktemp -d /tmp/bench-resume.XXXXXX)
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

stop_server() {
  local pid=$SERVER_PID
  SERVER_PID=""
  stop_pid "$pid"
}

# Waits until GET /readyz answers 200 (at most 15 s), or the node died.
wait_ready() {
  local line
  for _ in $(seq 1 150); do
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "bench-resume: the node exited:" >&2; cat "$1" >&2; return 1; }
    line=$( (exec 3<>"/dev/tcp/127.0.0.1/$PORT" &&
      printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 &&
      head -n 1 <&3) 2>/dev/null || true)
    case "$line" in "HTTP/1."?" 200"*) return 0 ;; esac
    sleep 0.1
  done
  echo "bench-resume: the node on port $PORT did not come up" >&2
  return 1
}

# start_node on|off: a fresh node; sets PORT and SERVER_PID.
RUN=0
start_node() {
  local window
  case "$1" in on) window=30s ;; off) window=0s ;; esac
  RUN=$((RUN + 1))
  PORT=$(free_port)
  local dir="$WORK/node-$RUN"
  mkdir -p "$dir/data"
  cat >"$dir/shardcast.toml" <<EOF
[server]
http_addr = "127.0.0.1:$PORT"
workers = 2
data_dir = "$dir/data"
shutdown_timeout = "2s"

[ws]
resume_window = "$window"

[api]
systems = ["bench"]
max_http_connections = 20000

[log]
level = "warn"
EOF
  "$SHARDCAST" -c "$dir/shardcast.toml" >"$dir/shardcast.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "$dir/shardcast.log"
}

# The measurements' arguments: the node's port and pid are NODE_PORT and NODE_PID when
# set (the printed commands), else those of the running node.
fanout_args() {
  echo fanout --api "http://127.0.0.1:${NODE_PORT:-$PORT}" --system bench --mode system \
    --subscribers "$FAN_N" --messages "$FAN_M" --publishers 1 --depth 1 --server-pid "${NODE_PID:-$SERVER_PID}"
}
idle_args() {
  echo idle --url "ws://127.0.0.1:${NODE_PORT:-$PORT}/ws?systemId=bench" --connections "$IDLE_N" \
    --server-pid "${NODE_PID:-$SERVER_PID}"
}
resume_args() {
  echo resume --api "http://127.0.0.1:${NODE_PORT:-$PORT}" --system bench --clients "$RES_N" \
    --messages "$RES_M" --server-pid "${NODE_PID:-$SERVER_PID}"
}

# bench FIGURE on|off ROUND: one measurement on a fresh node; JSON result kept.
bench() {
  local fig=$1 mode=$2 round=$3 out args
  out="$WORK/results/$fig-$round-$mode.json"
  start_node "$mode"
  sleep 0.5
  case "$fig" in
    a) read -r -a args <<<"$(fanout_args)" ;;
    b) read -r -a args <<<"$(idle_args)" ;;
    c) read -r -a args <<<"$(resume_args)" ;;
  esac
  log "round $round: ($fig) resume $mode (port $PORT): shardcast-bench ${args[*]}"
  timeout --foreground 900 "$BENCH" "${args[@]}" --json --label "$mode" >"$out" ||
    { log "failed; the node's log:"; tail -n 20 "$WORK/node-$RUN/shardcast.log" >&2; return 1; }
  stop_server
  sleep 1
}

for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order="off on"; else order="on off"; fi
  for fig in $FIGURES; do
    if [ "$fig" = c ]; then
      bench c on "$round"
      continue
    fi
    for mode in $order; do bench "$fig" "$mode" "$round"; done
    order=$(echo "$order" | awk '{print $2, $1}')
  done
done

# ratio FILES… METRIC: the on/off ratio of a compare row, for the target lines.
ratio() {
  local metric=$1
  shift
  "$BENCH" compare --json --baseline off "$@" | python3 -c '
import json, sys
rows = json.load(sys.stdin)["rows"]
r = [x for x in rows if x["metric"] == sys.argv[1]]
v = r[0]["ratio_to_baseline"].get("on") if r else None
print("-" if v is None else f"{v:.2f}")' "$metric"
}

# The commands as run (port and pid of each fresh node in place of PORT and PID).
NODE_PORT=PORT NODE_PID=PID
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
echo
echo "shardcast session resume — $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores, kernel $(uname -r), ${cpu_model:-unknown CPU}"
echo "node: shardcast $("$SHARDCAST" --version | awk '{print $2}') (release, 2 workers), fresh for every run;" \
  "resume on = [ws] resume_window = \"30s\", off = \"0s\""
echo "load: shardcast-bench on the same machine, $ROUNDS round(s), medians"
for fig in $FIGURES; do
  echo
  case "$fig" in
    a)
      echo "(a) fan-out, resume on vs off: CPU per delivery — target on/off ≤ 1.20"
      echo "    shardcast-bench $(fanout_args) --json --label on|off"
      "$BENCH" compare --baseline off "$WORK"/results/a-*.json
      echo "    server CPU per delivery, on/off: $(ratio "server CPU per delivery" "$WORK"/results/a-*.json)"
      ;;
    b)
      echo "(b) idle connections, resume on vs off: memory per connection — target equal"
      echo "    shardcast-bench $(idle_args) --json --label on|off"
      "$BENCH" compare --baseline off "$WORK"/results/b-*.json
      echo "    server memory per connection, on/off: $(ratio "server memory per connection" "$WORK"/results/b-*.json)"
      ;;
    c)
      echo "(c) resume: $RES_N clients reconnect at once after a TCP reset, $RES_M pushes missed"
      echo "    shardcast-bench $(resume_args) --json --label on"
      "$BENCH" compare "$WORK"/results/c-*.json
      ;;
  esac
done
echo
echo "CPU per delivery = server CPU time (both workers) / frames delivered; memory = server VmRSS"
echo "growth / connections; resume latency = a client's TCP connect start → its welcome and"
echo "every missed frame; the load generator shares the machine's cores with the node."
log "done in $((SECONDS - START_SECS)) s"
