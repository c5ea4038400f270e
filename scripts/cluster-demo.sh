#!/usr/bin/env bash
# Starts a local etcd and three shardcast nodes on loopback so you can try a
# cluster on one machine:
#   node 1: http://127.0.0.1:7811   node 2: :7812   node 3: :7813
# Connect a WebSocket to one node and push through another, e.g.
#   ws://127.0.0.1:7811/ws?systemId=demo
#   curl -s 127.0.0.1:7813/api/send_to_system -H 'SystemId: demo' -d '{"data":"hi"}'
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh etcd-server
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --bin shardcast

work=$(mktemp -d /tmp/shardcast-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

etcd --name demo --data-dir "$work/etcd" \
  --listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
  --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
  --initial-cluster demo=http://127.0.0.1:23800 >"$work/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -sf http://127.0.0.1:23790/health >/dev/null && break; sleep 0.2; done

key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
for i in 1 2 3; do
  cat >"$work/node$i.toml" <<TOML
[server]
http_addr = "127.0.0.1:781$i"
workers = 2
crypto_key = "$key"
[api]
systems = ["demo"]
[cluster]
enabled = true
name = "demo"
listen_addr = "127.0.0.1:791$i"
advertise_addr = "127.0.0.1:791$i"
etcd_endpoints = ["http://127.0.0.1:23790"]
secret = "$secret"
TOML
  target/release/shardcast -c "$work/node$i.toml" >"$work/node$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:781$i/readyz" >/dev/null && break; sleep 0.2; done
  echo "node $i ready: http://127.0.0.1:781$i  (log: $work/node$i.log)"
done
echo "etcd: http://127.0.0.1:23790 — press Ctrl-C to stop"
wait
