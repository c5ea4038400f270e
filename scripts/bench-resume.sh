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
#   (d) memory after traffic with resume on vs off: N connections that read everything
#       and answer pings (echoing the payload, which tells the node what they got) are
#       opened; then (d1) 4 × send_to_client of 60,000 B to every connection, or (d2)
#       2,500 × send_to_system of 40 B, one request in flight, every frame counted; the
#       server's VmRSS growth from before the traffic to 5 s after the last frame, / N,
#       and shardcast_resume_kept_bytes (all workers) then — target: on − off ≤ 4 KiB
#       per connection, kept ≈ 0. Each workload on a fresh node with [ws] ping_interval
#       = "2s": the 5 s hold two ping rounds, so every connection answered a ping sent
#       after its last frame.
#   (e) kept bytes at the node bound: resume on, [ws] resume_max_bytes = 4 MiB and
#       ping_interval = "300s" (no ping, so nothing is ever acknowledged; and
#       send_queue_bytes = 16 MiB, so that a client lagging on the loaded machine is not
#       dropped as slow), 2,000 × send_to_system of 4,000 B (~8 MB into each worker's
#       log) to N connections:
#       shardcast_resume_kept_bytes (all workers; without acknowledgements it only
#       grows, so the last reading is the most) ≤ the bound, and
#       shardcast_resume_bound_dropped_total
#
# The node: release build, 2 workers, its own data dir and free loopback port, started
# fresh for every measurement with [ws] resume_window = "30s" (on) or "0s" (off); on/off
# alternate (off, on, on, off, …) to cancel drift. Each figure is the median over the
# rounds (shardcast-bench compare). The node has api.max_http_connections = 20000: a
# connection counts against it until its upgrade, and N clients reconnecting at once
# would otherwise find 4,096 places (the default) and be refused 503 beyond them.
#
# Usage: scripts/bench-resume.sh [--quick] [--rounds R] [--subscribers N] [--messages M]
#                                [--idle N] [--clients N] [--gap M] [--mem N]
#                                [--figures "a b c d e"] [--keep]
#   default: 10,000 subscribers × 50 messages, 19,000 idle connections, 10,000 resuming
#            clients with 5 pushes in the gap, 2,000 connections with traffic (d), 200
#            at the bound (e), 3 rounds; about 8 minutes for a b c, 4 more for d e
#   --quick: 200 of each (50 at the bound), 10 messages, 1 round: a check that
#            everything works
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
MEM_N=2000
MEM_AFTER_MS=5000
BOUND_N=200
BOUND=4194304
BOUND_TRAFFIC=system:2000:4000
FIGURES="a b c"
NODE_PORT=""
NODE_PID=""
ROUNDS=""
KEEP=0
QUICK=0
while [ "$#" -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; FAN_N=200; FAN_M=10; IDLE_N=200; RES_N=200; MEM_N=200; BOUND_N=50; shift ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --subscribers) FAN_N="$2"; shift 2 ;;
    --messages) FAN_M="$2"; shift 2 ;;
    --idle) IDLE_N="$2"; shift 2 ;;
    --clients) RES_N="$2"; shift 2 ;;
    --gap) RES_M="$2"; shift 2 ;;
    --mem) MEM_N="$2"; shift 2 ;;
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
  case "$f" in a|b|c|d|e) ;; *) echo "bench-resume: unknown figure $f (a, b, c, d, e)" >&2; exit 2 ;; esac
done

log() { printf '[bench-resume %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
START_SECS=$SECONDS

[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
log "building shardcast and shardcast-bench (release)"
cargo build --release --quiet -p shardcast -p shardcast-bench
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

# The [ws] settings of the nodes of figures d and e besides resume_window.
ws_extra() {
  case "$1" in
    d1|d2) printf 'ping_interval = "2s"\n' ;;
    e) printf 'ping_interval = "300s"\nidle_timeout = "600s"\nresume_max_bytes = %s\n%s\n' \
      "$BOUND" 'send_queue_bytes = 16777216' ;;
  esac
}

# start_node on|off [FIGURE]: a fresh node (with FIGURE's [ws] settings); sets PORT and
# SERVER_PID.
start_node() {
  local window
  case "$1" in on) window=30s ;; off) window=0s ;; esac
  start_bench_node "$(printf '[ws]\nresume_window = "%s"\n%s' "$window" "$(ws_extra "${2:-}")")"
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

# mem_args d1|d2 and bound_args: idle connections, then traffic (figures d and e).
mem_args() {
  local traffic
  case "$1" in d1) traffic=client:4:60000 ;; d2) traffic=system:2500:40 ;; esac
  echo idle --url "ws://127.0.0.1:${NODE_PORT:-$PORT}/ws?systemId=bench" --connections "$MEM_N" \
    --traffic "$traffic" --after-ms "$MEM_AFTER_MS" --server-pid "${NODE_PID:-$SERVER_PID}"
}
bound_args() {
  echo idle --url "ws://127.0.0.1:${NODE_PORT:-$PORT}/ws?systemId=bench" --connections "$BOUND_N" \
    --traffic "$BOUND_TRAFFIC" --after-ms 500 --server-pid "${NODE_PID:-$SERVER_PID}"
}

# bench FIGURE on|off ROUND: one measurement on a fresh node; JSON result kept.
bench() {
  local fig=$1 mode=$2 round=$3 out args
  out="$WORK/results/$fig-$round-$mode.json"
  start_node "$mode" "$fig"
  sleep 0.5
  case "$fig" in
    a) read -r -a args <<<"$(fanout_args)" ;;
    b) read -r -a args <<<"$(idle_args)" ;;
    c) read -r -a args <<<"$(resume_args)" ;;
    d1|d2) read -r -a args <<<"$(mem_args "$fig")" ;;
    e) read -r -a args <<<"$(bound_args)" ;;
  esac
  log "round $round: ($fig) resume $mode (port $PORT): shardcast-bench ${args[*]}"
  timeout --foreground 900 "$BENCH" "${args[@]}" --json --label "$mode" >"$out" ||
    { log "failed; the node's log:"; tail -n 20 "$WORK/node-$BENCH_NODE_RUN/shardcast.log" >&2; return 1; }
  stop_server
  sleep 1
}

for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then order="off on"; else order="on off"; fi
  for fig in $(echo "$FIGURES" | sed 's/d/d1 d2/'); do
    if [ "$fig" = c ] || [ "$fig" = e ]; then
      bench "$fig" on "$round"
      continue
    fi
    for mode in $order; do bench "$fig" "$mode" "$round"; done
    order=$(echo "$order" | awk '{print $2, $1}')
  done
done

# ratio|minus|value METRIC FILES…: of a compare row, for the target lines: on/off, on −
# off (in the row's unit), or on's value.
ratio() { on_vs_off ratio "$@"; }
minus() { on_vs_off minus "$@"; }
value() { on_vs_off value "$@"; }
on_vs_off() {
  local how=$1 metric=$2
  shift 2
  "$BENCH" compare --json --baseline off "$@" | python3 -c '
import json, sys
rows = json.load(sys.stdin)["rows"]
r = [x for x in rows if x["metric"] == sys.argv[2]]
vals = r[0]["values"] if r else {}
on, off = vals.get("on"), vals.get("off")
if sys.argv[1] == "ratio":
    v = r[0]["ratio_to_baseline"].get("on") if r else None
elif sys.argv[1] == "minus":
    v = None if on is None or off is None else on - off
else:
    v = on
print("-" if v is None else f"{v:.2f}")' "$how" "$metric"
}

# bound_line FILES…: figure e's kept bytes and drops against the bound, run by run.
bound_line() {
  python3 - "$BOUND" "$@" <<'PY'
import json, sys
bound = int(sys.argv[1])
for f in sys.argv[2:]:
    t = json.load(open(f)).get("traffic") or {}
    kept, dropped = t.get("resume_kept_bytes"), t.get("resume_bound_dropped")
    if kept is None:
        print(f"    {f}: no /metrics reading")
        continue
    ok = "≤" if kept <= bound else "> (over the bound!)"
    print(f"    kept {int(kept):,} B {ok} bound {bound:,} B; entries dropped by the bound "
          f"{int(dropped or 0):,}; frames received {t.get('received', 0):,} of "
          f"{t.get('expected', 0):,}")
PY
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
    d)
      echo "(d) memory per connection after traffic, resume on vs off — target on − off ≤ 4 KiB"
      echo "    node: [ws] ping_interval = \"2s\"; server VmRSS read before the traffic and" \
        "$((MEM_AFTER_MS / 1000)) s after the last frame"
      for w in d1 d2; do
        echo "  ($w) shardcast-bench $(mem_args "$w") --json --label on|off"
        "$BENCH" compare --baseline off "$WORK"/results/$w-*.json
        echo "    memory per connection after traffic, on − off:" \
          "$(minus "memory per conn. after traffic" "$WORK"/results/$w-*.json) KiB;" \
          "resume kept after traffic (on): $(value "resume kept after traffic" "$WORK"/results/$w-*.json) KiB"
      done
      ;;
    e)
      echo "(e) kept bytes at the node bound: [ws] resume_max_bytes = $BOUND, ping_interval = \"300s\"," \
        "send_queue_bytes = 16 MiB"
      echo "    shardcast-bench $(bound_args) --json --label on"
      "$BENCH" compare "$WORK"/results/e-*.json
      bound_line "$WORK"/results/e-*.json
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
