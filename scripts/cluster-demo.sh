#!/usr/bin/env bash
# Starts a local etcd and three shardcast nodes on loopback so you can try a
# cluster on one machine:
#   node 1: http://127.0.0.1:7811   node 2: :7812   node 3: :7813
# Connect a WebSocket to one node and push through another, e.g.
#   ws://127.0.0.1:7811/ws?systemId=demo
#   curl -s 127.0.0.1:7813/api/send_to_system -H 'SystemId: demo' -d '{"data":"hi"}'
# or open each node's console (http://127.0.0.1:7811/ and :7812 in two browser
# windows), join "room1" in both and chat across the nodes: groups whose name
# starts with "room" keep their last 50 pushes (group history), so a window
# that joins late shows the room's earlier messages.
# Ctrl-C stops everything this script started.
#
#   scripts/cluster-demo.sh                 installs etcd (apt) and Rust if needed,
#                                           builds target/release/shardcast, runs it
#   scripts/cluster-demo.sh --no-build      no set-up and no build: runs the binary
#                                           already built (target/release/shardcast)
#   scripts/cluster-demo.sh --bin PATH      no set-up and no build: runs the
#                                           shardcast binary at PATH
#
# Without a build, etcd must be on PATH already (Debian: etcd-server).
# SHARDCAST_DEMO_PORT=N puts the nodes on N+1..N+3 and their links on
# N+101..N+103 (default 7810); SHARDCAST_DEMO_ETCD_PORT=M puts etcd's client
# port on M and its peer port on M+10 (default 23790).
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
bin=target/release/shardcast
while [ "$#" -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --bin)
      [ "$#" -ge 2 ] || { echo "cluster-demo: --bin needs a path" >&2; exit 2; }
      bin=$2
      build=0
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "cluster-demo: unknown argument $1 (see --help)" >&2
      exit 2
      ;;
  esac
  shift
done

if [ "$build" = 1 ]; then
  scripts/setup.sh etcd-server
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  cargo build --release --bin shardcast
fi
if [ ! -x "$bin" ]; then
  echo "cluster-demo: no shardcast binary at $bin: build it (cargo build --release)," >&2
  echo "  name another with --bin PATH, or run without --no-build" >&2
  exit 1
fi
if ! command -v etcd >/dev/null 2>&1; then
  echo "cluster-demo: etcd is not on PATH: install it (Debian: apt-get install etcd-server)" >&2
  echo "  or run without --no-build, which does" >&2
  exit 1
fi

base=${SHARDCAST_DEMO_PORT:-7810}
etcd_client=${SHARDCAST_DEMO_ETCD_PORT:-23790}
etcd_peer=$((etcd_client + 10))

work=$(mktemp -d /tmp/shardcast-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

etcd --name demo --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_client" \
  --advertise-client-urls "http://127.0.0.1:$etcd_client" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "demo=http://127.0.0.1:$etcd_peer" >"$work/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$etcd_client/health" >/dev/null && break; sleep 0.2; done

key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
for i in 1 2 3; do
  # Fixed node ids, as a proxy routing resumes needs (conf/nginx-cluster.example.conf).
  cat >"$work/node$i.toml" <<TOML
[server]
http_addr = "127.0.0.1:$((base + i))"
workers = 2
crypto_key = "$key"
[api]
systems = ["demo"]
[console]
enabled = true
[history]
groups = [{ prefix = "room", size = 50, ttl = "10m" }]
[cluster]
enabled = true
name = "demo"
node_id = $i
listen_addr = "127.0.0.1:$((base + 100 + i))"
advertise_addr = "127.0.0.1:$((base + 100 + i))"
etcd_endpoints = ["http://127.0.0.1:$etcd_client"]
secret = "$secret"
TOML
  "$bin" -c "$work/node$i.toml" >"$work/node$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do
  port=$((base + i))
  ready=0
  for _ in $(seq 50); do
    if curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; then ready=1; break; fi
    sleep 0.2
  done
  if [ "$ready" = 0 ]; then
    echo "cluster-demo: node $i is not ready after 10 s; its log:" >&2
    tail -n 20 "$work/node$i.log" >&2
    exit 1
  fi
  echo "node $i ready: http://127.0.0.1:$port  (console: http://127.0.0.1:$port/; log: $work/node$i.log)"
done
echo "etcd: http://127.0.0.1:$etcd_client — press Ctrl-C to stop"
wait
