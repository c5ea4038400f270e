#!/usr/bin/env bash
# The link path under the user workloads: a two-node cluster (a local etcd, two
# shardcast nodes with 1 worker each, release build), N subscribers on node 2, and
# send_to_system published with one request in flight (1 publisher, then 8) either
# through node 2 itself (local: the mailbox path stays inside one core) or through
# node 1 (every push crosses the link to node 2 as one frame per publish). Prints one
# line per (workload, entry node): delivered msg/s, publish → receive p50/p99, server
# CPU per delivery (both nodes), publish answer p50. Then, with no subscribers left,
# scripts/cross_node_latency.py: what a send_to_client crossing the link adds over a
# local one.
#
# Usage: scripts/bench-cluster.sh [--subscribers N] [--messages M] [--rounds R] [--history]
#   default: 8,000 subscribers, 50 messages, 3 rounds (the median is printed);
#   --rounds 0: the cross-node latency only
#   --history: send_to_group to a group with history (docs/api.md §9) instead of
#     send_to_system: every push goes to the stream's owner node first, so the entry
#     that is not the owner shows what the owner hop adds (the owner is named)
# Stops everything it started on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

SUBS=8000
MSGS=50
ROUNDS=3
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
HISTORY=0
args=()
for a in "$@"; do
  if [ "$a" = --history ]; then HISTORY=1; else args+=("$a"); fi
done
fanout_args "${args[@]}"
MODE=system
HISTORY_TOML=""
if [ "$HISTORY" -eq 1 ]; then
  MODE=group
  HISTORY_TOML='[history]
groups = [{ prefix = "", size = 1000, ttl = "10m" }]'
fi

scripts/setup.sh etcd-server
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --quiet -p shardcast -p shardcast-bench

bench_workdir bench-cluster

ETCD_PORT=$(free_port)
ETCD_PEER=$(free_port)
start_etcd "$WORK" "$ETCD_PORT" "$ETCD_PEER"

KEY=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
declare -A HTTP NODE_PID
for i in 1 2; do
  HTTP[$i]=$(free_port)
  link=$(free_port)
  mkdir -p "$WORK/n$i"
  cat >"$WORK/n$i/shardcast.toml" <<TOML
[server]
http_addr = "127.0.0.1:${HTTP[$i]}"
workers = 1
data_dir = "$WORK/n$i"
crypto_key = "$KEY"
[api]
systems = ["bench"]
[log]
level = "warn"
[cluster]
enabled = true
name = "bench"
listen_addr = "127.0.0.1:$link"
advertise_addr = "127.0.0.1:$link"
etcd_endpoints = ["http://127.0.0.1:$ETCD_PORT"]
secret = "$SECRET"
$HISTORY_TOML
TOML
  target/release/shardcast -c "$WORK/n$i/shardcast.toml" >"$WORK/n$i/log" 2>&1 &
  NODE_PID[$i]=$!
  PIDS+=($!)
done
for i in 1 2; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:${HTTP[$i]}/readyz" >/dev/null && break; sleep 0.1; done
done

# run ENTRY PUBLISHERS ROUND: one fan-out, subscribers on node 2, published via ENTRY.
run() {
  target/release/shardcast-bench fanout --json --label "via-node$1" \
    --api "http://127.0.0.1:${HTTP[$1]}" --url "ws://127.0.0.1:${HTTP[2]}/ws?systemId=bench" \
    --system bench --mode "$MODE" --subscribers "$SUBS" --messages "$MSGS" \
    --depth 1 --publishers "$2" --server-pid "${NODE_PID[1]},${NODE_PID[2]}" \
    >"$WORK/r-$1-$2-$3.json"
  sleep 1
}
for round in $(seq 1 "$ROUNDS"); do
  for pubs in 1 8; do
    for entry in 2 1; do run "$entry" "$pubs" "$round"; done
  done
done

if [ "$ROUNDS" -gt 0 ]; then
if [ "$HISTORY" -eq 1 ]; then
  for i in 1 2; do
    n=$(curl -sf "http://127.0.0.1:${HTTP[$i]}/metrics" |
      awk '$1 ~ /^shardcast_history_streams/ { s += $2 } END { print s + 0 }')
    [ "$n" -gt 0 ] && echo "send_to_group with history: node $i owns the stream"
  done
fi
echo "link path: $SUBS subscribers on node 2 (1 worker per node), $MSGS messages of 64 B," \
  "one request in flight per publisher, send_to_$MODE; medians of $ROUNDS round(s)"
python3 - "$WORK" "$ROUNDS" <<'PY'
import glob, json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
print(f"{'publishers':>10} {'entry':>8} {'delivered/s':>12} {'p50 ms':>8} {'p99 ms':>8} "
      f"{'CPU µs/delivery':>16} {'answer p50 ms':>14}")
for pubs in (1, 8):
    for entry in (2, 1):
        rs = [json.load(open(f)) for f in glob.glob(f"{work}/r-{entry}-{pubs}-*.json")]
        med = lambda f: statistics.median(f(r) for r in rs)
        print(f"{pubs:>10} {'node ' + str(entry):>8} {med(lambda r: r['delivered_per_sec']):>12,.0f} "
              f"{med(lambda r: r['latency_us']['p50_us']) / 1e3:>8.1f} "
              f"{med(lambda r: r['latency_us']['p99_us']) / 1e3:>8.1f} "
              f"{med(lambda r: r['server_cpu_per_delivery_us'] or 0):>16.2f} "
              f"{med(lambda r: r['publish_answer_us']['p50_us']) / 1e3:>14.2f}")
PY
fi
echo
python3 scripts/cross_node_latency.py "127.0.0.1:${HTTP[1]}" "127.0.0.1:${HTTP[2]}" 3000 bench
