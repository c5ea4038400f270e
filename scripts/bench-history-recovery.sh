#!/usr/bin/env bash
# Group history after a node restart (docs/api.md §9; issue 26 item 7): N clients of
# node A, all in one history group, lose their node and recover on node B.
#
# A local etcd and two shardcast nodes (release build, 2 workers each, free loopback
# ports), both with [history] groups = [{ prefix = "room:", size = 1000, ttl = "10m" }],
# [api] max_http_connections = 20000 (N clients reconnecting at once would find 4,096
# places by default) and the shipped [ws] settings (resume_window = "30s") except
# ws.notices = false: with notices on, binding N clients to one group sends N²/2
# online notices (50 million at 10,000; README, "Big groups"). Then
# scripts/history_recovery.mjs (Node.js, the `ws` package of tests/console):
#
#   1. N clients connect to node A and are bound to the group (keep-alive HTTP,
#      pipelined, through node A); M pushes through node B; every client keeps the
#      offset and epoch of its last push.
#   2. Node A gets SIGTERM: it hands its streams to node B and closes its clients
#      with 1001. Once it has exited, K more pushes through node B.
#   3. All N reconnect to node B at once (new clientIds); the driver, as the backend,
#      binds each as its welcome arrives:
#        bind:    bind_to_group with "since": {offset, epoch}: the node replays the K
#                 pushes; the answer says recovered, offset, epoch;
#        recover: a plain bind, then the client sends {"type":"recover",…} and gets
#                 the K pushes and {"code":0,"msg":"recovered",…}.
#      Figures: recoveries/s (N / first reconnect start → last client with all K
#      missed pushes), per client reconnect start → its last missed push (p50, p90,
#      p99, max), how many were answered recovered:true, node B's CPU seconds over
#      the burst (/proc/PID/stat), the driver's. Then one more push must reach every
#      client once, next in order. Failures — a missed, doubled or out-of-order push,
#      another epoch, an unanswered recovery — stop the script (exit 1).
#
# The group's stream is owned by node A (`--owners a`: the handover on SIGTERM is
# exercised; room:r, or the first of room:0, room:1, … that node A's
# shardcast_history_streams counts after one send) or by node B (`b`: no handover).
# A fresh cluster (nodes and etcd) for every run; the printed figures are medians
# over the rounds.
#
# Usage: scripts/bench-history-recovery.sh [--quick] [--clients N] [--before M]
#          [--gap K] [--rounds R] [--owners "a b"] [--paths "bind recover"]
#          [--workers W] [--keep]
#   default: 10,000 clients, M = 20 pushes before the stop, K = 5 in the gap,
#            owners "a b", paths "bind recover", 2 workers per node, 3 rounds
#   --quick: 500 clients, 1 round: a check that it works
#   --keep:  keep the work directory (configs, logs, JSON results); it is kept after
#            a failure too
#
# Builds shardcast in release mode (into $CARGO_TARGET_DIR when set); runs
# `npm ci --prefix tests/console` when tests/console/node_modules/ws is missing. Stops
# everything it started on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=10000
BEFORE=20
GAP=5
ROUNDS=""
OWNERS="a b"
PATHS="bind recover"
WORKERS=2
KEEP=0
QUICK=0
ARGS=("$@")
while [ "$#" -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; CLIENTS=500; shift ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --before) BEFORE="$2"; shift 2 ;;
    --gap) GAP="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --owners) OWNERS="$2"; shift 2 ;;
    --paths) PATHS="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench-history-recovery: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$ROUNDS" ] || { if [ "$QUICK" -eq 1 ]; then ROUNDS=1; else ROUNDS=3; fi; }

log() { printf '[bench-history-recovery %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

scripts/setup.sh etcd-server
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
log "building shardcast (release)"
cargo build --release --quiet -p shardcast
SHARDCAST=${SHARDCAST_BIN:-${CARGO_TARGET_DIR:-target}/release/shardcast}
if [ ! -f tests/console/node_modules/ws/package.json ]; then
  log "installing the ws package (npm ci --prefix tests/console)"
  npm ci --prefix tests/console --no-audit --no-fund --loglevel=error
fi

# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
WORK=$(mktemp -d /tmp/bench-history-recovery.XXXXXX)
mkdir -p "$WORK/results"
PIDS=()
cleanup() {
  local rc=$?
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  # Kept with --keep, and after a failure (not after Ctrl-C).
  if [ "$KEEP" -eq 1 ] || { [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ]; }; then
    log "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

KEY=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')

# start_cluster DIR: etcd and nodes a and b in DIR; sets HTTP[a], HTTP[b] (ports),
# NODE_PID[a], NODE_PID[b] and ETCD_PID.
declare -A HTTP NODE_PID
ETCD_PID=""
start_cluster() {
  local dir=$1 etcd_port etcd_peer n
  mkdir -p "$dir"
  etcd_port=$(free_port)
  etcd_peer=$(free_port)
  start_etcd "$dir" "$etcd_port" "$etcd_peer"
  for n in a b; do
    local link
    HTTP[$n]=$(free_port)
    link=$(free_port)
    mkdir -p "$dir/$n"
    cat >"$dir/$n/shardcast.toml" <<TOML
[server]
http_addr = "127.0.0.1:${HTTP[$n]}"
workers = $WORKERS
data_dir = "$dir/$n"
crypto_key = "$KEY"
[ws]
resume_window = "30s"
notices = false
[api]
systems = ["bench"]
max_http_connections = 20000
[history]
groups = [{ prefix = "room:", size = 1000, ttl = "10m" }]
[log]
level = "warn"
[cluster]
enabled = true
name = "bench"
listen_addr = "127.0.0.1:$link"
advertise_addr = "127.0.0.1:$link"
etcd_endpoints = ["http://127.0.0.1:$etcd_port"]
secret = "$SECRET"
TOML
    "$SHARDCAST" -c "$dir/$n/shardcast.toml" >"$dir/$n/log" 2>&1 &
    NODE_PID[$n]=$!
    PIDS+=("$!")
  done
  for n in a b; do
    for _ in $(seq 150); do
      curl -sf "http://127.0.0.1:${HTTP[$n]}/readyz" >/dev/null && continue 2
      kill -0 "${NODE_PID[$n]}" 2>/dev/null || { cat "$dir/$n/log" >&2; return 1; }
      sleep 0.1
    done
    echo "bench-history-recovery: node $n did not come up" >&2
    return 1
  done
}

# stop_cluster: stops (and forgets) whatever start_cluster started.
stop_cluster() {
  stop_pid "${NODE_PID[b]}"
  stop_pid "${NODE_PID[a]}"
  stop_pid "$ETCD_PID"
  PIDS=()
}

CLK_TCK=$(getconf CLK_TCK)
driver_args() {
  echo --clients "$CLIENTS" --before "$BEFORE" --gap "$GAP" --owner "$1" --path "$2" \
    --clk-tck "$CLK_TCK"
}

RUN=0
for round in $(seq 1 "$ROUNDS"); do
  for owner in $OWNERS; do
    for path in $PATHS; do
      RUN=$((RUN + 1))
      dir="$WORK/run-$RUN"
      start_cluster "$dir"
      read -r -a args <<<"$(driver_args "$owner" "$path")"
      log "round $round: owner $owner, $path: node scripts/history_recovery.mjs ${args[*]} (load $(cut -d' ' -f1-3 /proc/loadavg))"
      if ! timeout --foreground 600 node scripts/history_recovery.mjs \
          --a "http://127.0.0.1:${HTTP[a]}" --b "http://127.0.0.1:${HTTP[b]}" \
          --pid-a "${NODE_PID[a]}" --pid-b "${NODE_PID[b]}" "${args[@]}" \
          >"$dir/result.json" 2> >(tee "$dir/driver.log" >&2); then
        cat "$dir/result.json" >&2
        log "FAILED: see $dir (driver.log, a/log, b/log)"
        exit 1
      fi
      wait "${NODE_PID[a]}" 2>/dev/null || true
      cp "$dir/result.json" "$WORK/results/$owner-$path-$round.json"
      cut -d' ' -f1 /proc/loadavg >"$WORK/results/$owner-$path-$round.load"
      stop_cluster
      sleep 1
    done
  done
done

echo
echo "shardcast group history, recovery after a node restart — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "scripts/bench-history-recovery.sh ${ARGS[*]}"
echo "two nodes ($("$SHARDCAST" --version | awk '{print $2}'), release, $WORKERS workers each) and etcd, fresh for every run;" \
  "$CLIENTS clients on node A, $BEFORE pushes, node A stopped (SIGTERM), $GAP pushes in the gap, all reconnect to node B at once;" \
  "$ROUNDS round(s), medians"
python3 - "$WORK/results" "$OWNERS" "$PATHS" <<'PY'
import glob, json, statistics, sys
res, owners, paths = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
print(f"{'owner':>7} {'path':>8} {'recovered':>11} {'rec:true':>9} {'rec/s':>8} {'p50 ms':>7} {'p90 ms':>7} "
      f"{'p99 ms':>7} {'max ms':>7} {'B CPU s':>8} {'drv CPU s':>9} {'A stop ms':>9} {'load':>5}")
for owner in owners:
    for path in paths:
        files = sorted(glob.glob(f"{res}/{owner}-{path}-*.json"))
        rs = [json.load(open(f)) for f in files]
        loads = [float(open(f[:-5] + ".load").read()) for f in files]
        if not rs:
            continue
        med = lambda f: statistics.median(f(r) for r in rs)
        n = rs[0]["clients"]
        print(f"{'node ' + owner.upper():>7} {path:>8} {med(lambda r: r['recovered']):>5.0f}/{n:<5} "
              f"{med(lambda r: r['answered']['true']):>9.0f} {med(lambda r: r['recoveries_per_sec']):>8,.0f} "
              f"{med(lambda r: r['latency_ms']['p50']):>7.0f} {med(lambda r: r['latency_ms']['p90']):>7.0f} "
              f"{med(lambda r: r['latency_ms']['p99']):>7.0f} {med(lambda r: r['latency_ms']['max']):>7.0f} "
              f"{med(lambda r: r['node_b_cpu_s']):>8.2f} {med(lambda r: r['driver_cpu_s']):>9.2f} "
              f"{med(lambda r: r['stop']['exited_ms']):>9.0f} {statistics.median(loads):>5.2f}")
        print(f"{'':>16} groups {sorted(set(r['group'] for r in rs))}; failures {sum(r['failures'] for r in rs)};"
              f" per round rec/s {[round(r['recoveries_per_sec']) for r in rs]}")
PY
