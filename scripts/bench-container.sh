#!/usr/bin/env bash
# epoll or io_uring in a container: two standalone nodes from the image of
# scripts/container-test.sh (localhost/shardcast:container-test, run that first),
# one under podman's default seccomp profile (io_uring refused: the node starts
# on epoll), one under conf/seccomp-io_uring.json (io_uring). shardcast-bench
# on the host, against the containers' addresses, alternating between the two:
#   fanout  send_to_system to N subscribers, M messages (delivered/s, p99, server
#           CPU per delivery)
#   api     is_online over 8 keep-alive connections (requests/s, p99)
# Prints the driver each node logged and the medians of R rounds.
#
# Usage: scripts/bench-container.sh [--subscribers N] [--messages M] [--rounds R]
#   default: 8,000 subscribers, 200 messages, 3 rounds (about 2 minutes)
# Stops and removes both containers on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/shardcast:container-test}
SUBS=8000
MSGS=200
ROUNDS=3
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
fanout_args "$@"

podman image exists "$IMAGE" || { echo "bench-container: no $IMAGE; run scripts/container-test.sh" >&2; exit 1; }
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --quiet -p shardcast-bench

WORK=$(mktemp -d /tmp/bench-container.XXXXXX)
NAMES=()
cleanup() {
  local rc=$?
  for c in "${NAMES[@]}"; do podman rm -f -t 20 "$c" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Same limits as scripts/container-test.sh: runc, ulimits this host allows.
NOFILE=$(ulimit -Hn)
if [ "$NOFILE" = unlimited ] || [ "$NOFILE" -gt 65536 ]; then NOFILE=65536; fi
RUN=(--runtime runc --ulimit "nofile=$NOFILE:$NOFILE" --ulimit nproc=4096:4096 --health-cmd none)
declare -A IP PID
for d in epoll io_uring; do
  name=bench-container-$d-$$
  opts=()
  [ "$d" = io_uring ] && opts=(--security-opt "seccomp=$PWD/conf/seccomp-io_uring.json")
  podman run -d --name "$name" "${RUN[@]}" "${opts[@]}" "$IMAGE" >/dev/null
  NAMES+=("$name")
  IP[$d]=$(podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$name")
  PID[$d]=$(podman inspect -f '{{.State.Pid}}' "$name")
  for _ in $(seq 50); do curl -sf "http://${IP[$d]}:7800/readyz" >/dev/null && break; sleep 0.2; done
  echo "$d container ($name, ${IP[$d]}): $(podman logs "$name" 2>&1 | grep -o 'driver="[a-z_]*" cores=[0-9]*' | head -1)"
done

for round in $(seq 1 "$ROUNDS"); do
  for d in epoll io_uring; do
    target/release/shardcast-bench fanout --json --label "$d" --api "http://${IP[$d]}:7800" \
      --mode system --subscribers "$SUBS" --messages "$MSGS" --server-pid "${PID[$d]}" \
      >"$WORK/fanout-$d-$round.json"
    target/release/shardcast-bench api --json --label "$d" --api "http://${IP[$d]}:7800" \
      --requests 100000 --connections 8 --server-pid "${PID[$d]}" >"$WORK/api-$d-$round.json"
    sleep 1
  done
done

echo "fanout: send_to_system to $SUBS subscribers, $MSGS messages of 64 B; api: is_online,"
echo "100,000 requests over 8 keep-alive connections; medians of $ROUNDS round(s)"
python3 - "$WORK" <<'PY'
import glob, json, statistics, sys
work = sys.argv[1]
print(f"{'driver':>9} {'delivered/s':>12} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs/delivery':>16}"
      f" {'api req/s':>10} {'api p99 µs':>10} {'api CPU µs/req':>15}")
for d in ("epoll", "io_uring"):
    f = [json.load(open(p)) for p in glob.glob(f"{work}/fanout-{d}-*.json")]
    a = [json.load(open(p)) for p in glob.glob(f"{work}/api-{d}-*.json")]
    med = lambda rs, g: statistics.median(g(r) for r in rs)
    print(f"{d:>9} {med(f, lambda r: r['delivered_per_sec']):>12,.0f}"
          f" {med(f, lambda r: r['latency_us']['p50_us']) / 1e3:>7.1f}"
          f" {med(f, lambda r: r['latency_us']['p99_us']) / 1e3:>7.1f}"
          f" {med(f, lambda r: r['server_cpu_per_delivery_us'] or 0):>16.2f}"
          f" {med(a, lambda r: r['rate']):>10,.0f}"
          f" {med(a, lambda r: r['latency_us']['p99_us']):>10,.0f}"
          f" {med(a, lambda r: (r['server_cpu_s'] or 0) / r['answered'] * 1e6):>15.2f}")
PY
