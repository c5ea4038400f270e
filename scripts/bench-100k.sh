#!/usr/bin/env bash
# 100,000 concurrent WebSocket connections on one machine whose processes may hold
# 20,000 files each: six standalone nodes (2 workers each) and six `shardcast-bench
# idle` processes, 17,000 connections each (102,000 in all), each process on its own
# 127.0.0.x source address, all held open at the same time. Prints per node the
# connections opened and failed, the connect rate and the server memory per
# connection, then the totals; fails when any connection failed.
#
# Usage: scripts/bench-100k.sh [--per-node N] [--nodes K]
# Stops everything it started on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

PER_NODE=17000
NODES=6
while [ "$#" -gt 0 ]; do
  case "$1" in
    --per-node) PER_NODE="$2"; shift 2 ;;
    --nodes) NODES="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) echo "bench-100k: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --quiet -p shardcast -p shardcast-bench
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

bench_workdir bench-100k

declare -A PORT NODE_PID
for i in $(seq 1 "$NODES"); do
  PORT[$i]=$(free_port)
  mkdir -p "$WORK/n$i"
  cat >"$WORK/n$i/shardcast.toml" <<TOML
[server]
http_addr = "127.0.0.1:${PORT[$i]}"
workers = 2
data_dir = "$WORK/n$i"
[api]
systems = ["bench"]
[ws]
ping_interval = "30s"
[log]
level = "warn"
TOML
  target/release/shardcast -c "$WORK/n$i/shardcast.toml" >"$WORK/n$i/log" 2>&1 &
  NODE_PID[$i]=$!
  PIDS+=($!)
done
for i in $(seq 1 "$NODES"); do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:${PORT[$i]}/readyz" >/dev/null && break; sleep 0.1; done
done

# Every bench process holds its connections long enough for all to be open at once.
hold=60
bench_pids=()
for i in $(seq 1 "$NODES"); do
  target/release/shardcast-bench idle --json --url "ws://127.0.0.1:${PORT[$i]}/ws?systemId=bench" \
    --connections "$PER_NODE" --sources "127.0.0.$((i + 10))" --server-pid "${NODE_PID[$i]}" \
    --hold "$hold" >"$WORK/idle-$i.json" 2>"$WORK/idle-$i.err" &
  bench_pids+=($!)
  PIDS+=($!)
done
# The most open at the same time: the sum of shardcast_connections over the nodes,
# polled until every connection is open or the bench processes are done.
open_now=0
total=$((NODES * PER_NODE))
for _ in $(seq 1 150); do
  n=0
  for i in $(seq 1 "$NODES"); do
    c=$(curl -sf "http://127.0.0.1:${PORT[$i]}/metrics" | awk '/^shardcast_connections\{/ { s += $2 } END { print s + 0 }')
    n=$((n + c))
  done
  [ "$n" -gt "$open_now" ] && open_now=$n
  [ "$open_now" -ge "$total" ] && break
  sleep 1
done
echo "open at the same time (sum of shardcast_connections over the nodes): $open_now"
for pid in "${bench_pids[@]}"; do wait "$pid" || true; done

python3 - "$WORK" "$NODES" "$open_now" <<'PY'
import json, sys
work, nodes, open_now = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tot_open = tot_failed = 0
mem = []
for i in range(1, nodes + 1):
    r = json.loads(open(f"{work}/idle-{i}.json").read().strip().splitlines()[-1])
    tot_open += r["opened"]; tot_failed += r["failed"]
    mem.append(r["bytes_per_connection"])
    print(f"node {i}: {r['opened']:,} open, {r['failed']} failed, "
          f"{r['connect_rate']:,.0f} conn/s, {r['bytes_per_connection']:.0f} B per connection")
print(f"all: {tot_open:,} opened, {tot_failed} failed, {open_now:,} open at once; "
      f"server memory {sum(mem) / len(mem):.0f} B per connection (mean of the nodes)")
sys.exit(1 if tot_failed or open_now < tot_open else 0)
PY
