#!/usr/bin/env bash
# Group history (docs/api.md §9) on one node: what keeping a group's stream costs.
#
#   (a) group fan-out, history on vs off: send_to_group to N subscribers bound to one
#       group, one publisher, one request in flight — server CPU per delivery (and the
#       rest of the fan-out figures); target on/off ≤ 1.10. "on" is the same node with
#       [history] groups = [{ prefix = "", size = 1000, ttl = "10m" }]: every push goes
#       through the stream's owner core, is numbered, kept, and carries its place.
#   (d) the same, paced at 10 pushes/s (one write per delivery).
#   (m) memory per kept push: K pushes of B bytes to a history group nobody is in;
#       shardcast_history_kept_bytes / K (what the node counts against
#       history.max_bytes) and the node's VmRSS growth / K.
#
# The node: release build, 2 workers, resume on (ws.resume_window = "30s", as shipped),
# fresh for every run, on a free loopback port;
# on/off alternate (off on, on off, …) to cancel drift; each figure is the median of
# its rounds (shardcast-bench compare).
#
# Usage: scripts/bench-history.sh [--quick] [--rounds R] [--subscribers N]
#                                 [--messages M] [--figures "a d m"] [--keep]
#   default: 10,000 subscribers × 50 messages, 3 rounds, K = 10,000 pushes of 1 KiB
#   --quick: 500 subscribers, 10 messages, K = 1,000, 1 round: a check that it works
# Builds shardcast and shardcast-bench in release mode; stops everything it started on
# exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

FAN_N=10000
FAN_M=50
MEM_K=10000
MEM_B=1024
FIGURES="a d m"
ROUNDS=""
KEEP=0
QUICK=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; FAN_N=500; FAN_M=10; MEM_K=1000; shift ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --subscribers) FAN_N="$2"; shift 2 ;;
    --messages) FAN_M="$2"; shift 2 ;;
    --figures) FIGURES="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench-history: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$ROUNDS" ] || { if [ "$QUICK" -eq 1 ]; then ROUNDS=1; else ROUNDS=3; fi; }

log() { printf '[bench-history %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
log "building shardcast and shardcast-bench (release)"
cargo build --release --quiet -p shardcast -p shardcast-bench
SHARDCAST=${SHARDCAST_BIN:-target/release/shardcast}
BENCH=target/release/shardcast-bench

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
WORK=$(mktemp -d /tmp/bench-history.XXXXXX)
mkdir -p "$WORK/results"
SERVER_PID=""
cleanup() {
  local rc=$?
  stop_pid "$SERVER_PID"
  if [ "$KEEP" -eq 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_node on|off: a fresh node; sets PORT and SERVER_PID.
start_node() {
  local history=""
  [ "$1" = on ] && history='groups = [{ prefix = "", size = 1000, ttl = "10m" }]'
  # Resume on, as the shipped conf/shardcast.toml has it.
  start_bench_node "$(printf '[ws]\nresume_window = "30s"\n[history]\n%s' "$history")"
}

# The measurement's arguments (PORT and PID in the printed commands).
fanout_args() {
  local rate=""
  [ "$1" = d ] && rate="--rate 10"
  echo fanout --api "http://127.0.0.1:${NODE_PORT:-$PORT}" --system bench --mode group \
    --subscribers "$FAN_N" --messages "$FAN_M" --publishers 1 --depth 1 $rate \
    --server-pid "${NODE_PID:-$SERVER_PID}"
}

# metric NAME: the sum of a metric over the node's workers.
metric() {
  curl -sf "http://127.0.0.1:$PORT/metrics" |
    awk -v m="$1" '$1 ~ "^"m"({|$)" { s += $2 } END { printf "%.0f", s }'
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status"; }

# memory_run ROUND: K pushes of B bytes to one history group, one request in flight.
memory_run() {
  start_node on
  local before body
  before=$(rss_kib)
  body=$(python3 -c "import json; print(json.dumps({'groupName': 'room', 'data': 'x' * $MEM_B}))")
  python3 - "$PORT" "$MEM_K" "$body" <<'PY'
import http.client, sys
port, k, body = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(k):
    c.request("POST", "/api/send_to_group", body, {"SystemId": "bench"})
    assert c.getresponse().read().startswith(b'{"code":0')
PY
  sleep 1
  local kept after
  kept=$(metric shardcast_history_kept_bytes)
  after=$(rss_kib)
  # Each size kept 1,000 at most: the stream holds min(K, 1000) pushes.
  local n=$((MEM_K < 1000 ? MEM_K : 1000))
  echo "$1 $n $kept $(( (after - before) * 1024 ))" >>"$WORK/results/m.txt"
  stop_pid "$SERVER_PID"
  SERVER_PID=""
}

for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order="off on"; else order="on off"; fi
  for fig in $FIGURES; do
    if [ "$fig" = m ]; then memory_run "$round"; continue; fi
    for mode in $order; do
      start_node "$mode"
      read -r -a args <<<"$(fanout_args "$fig")"
      log "round $round: ($fig) history $mode: shardcast-bench ${args[*]}"
      timeout --foreground 900 "$BENCH" "${args[@]}" --json --label "$mode" \
        >"$WORK/results/$fig-$round-$mode.json"
      stop_pid "$SERVER_PID"
      SERVER_PID=""
      sleep 1
    done
  done
done

NODE_PORT=PORT NODE_PID=PID
echo
echo "shardcast group history — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "node: shardcast $("$SHARDCAST" --version | awk '{print $2}') (release, 2 workers), fresh for every run; $ROUNDS round(s), medians"
for fig in $FIGURES; do
  echo
  case "$fig" in
    a|d)
      [ "$fig" = a ] && echo "(a) group fan-out, one request in flight, history on vs off — target on/off ≤ 1.10"
      [ "$fig" = d ] && echo "(d) group fan-out paced at 10/s, history on vs off"
      echo "    shardcast-bench $(fanout_args "$fig") --json --label on|off"
      "$BENCH" compare --baseline off "$WORK"/results/"$fig"-*.json
      ;;
    m)
      echo "(m) memory per kept push: $MEM_K pushes of $MEM_B B of data to one history group (size 1000)"
      python3 - "$WORK/results/m.txt" <<'PY'
import statistics, sys
rows = [list(map(int, l.split())) for l in open(sys.argv[1])]
n = rows[0][1]
kept = statistics.median(r[2] for r in rows) / n
rss = statistics.median(r[3] for r in rows) / n
print(f"    pushes kept {n}; counted per push (shardcast_history_kept_bytes / kept) {kept:,.0f} B;"
      f" VmRSS growth per kept push {rss:,.0f} B")
PY
      ;;
  esac
done
