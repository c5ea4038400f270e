#!/usr/bin/env bash
# What the heartbeat costs the requests of a full node: one node (2 cores,
# ping_interval 1 s) holds 19,000 idle WebSocket connections while one API
# client calls is_online 80,000 times with one request in flight; the answer
# latency's max is the longest the event loop stalled (a ping run included).
# Usage: scripts/bench-heartbeat.sh [SHARDCAST_BINARY] [PORT]
# (default: target/release/shardcast, port 17930; builds the release binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --quiet -p shardcast -p shardcast-bench
BIN=${1:-target/release/shardcast}; PORT=${2:-17930}
D=$(mktemp -d)
SP=""
trap 'kill "$SP" 2>/dev/null || true; rm -rf "$D"' EXIT
cat > "$D/c.toml" <<T
[server]
http_addr = "127.0.0.1:$PORT"
workers = 2
data_dir = "$D/data"
[ws]
ping_interval = "1s"
idle_timeout = "60s"
[api]
systems = ["demo"]
[log]
level = "warn"
T
"$BIN" -c "$D/c.toml" > "$D/log" 2>&1 &
SP=$!
sleep 1
B=target/release/shardcast-bench
$B idle --url "ws://127.0.0.1:$PORT/ws?systemId=demo" --connections 19000 --hold 25 > "$D/idle.out" 2>&1 &
IP=$!
sleep 8
$B api --api http://127.0.0.1:$PORT --route is-online --connections 1 --depth 1 --requests 80000 2>&1 | tail -4
wait "$IP"
