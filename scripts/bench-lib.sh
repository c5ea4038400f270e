# Shell helpers shared by the benchmark scripts (sourced, not run).

# port_in_use PORT: something accepts on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: a loopback port nothing listens on (20000-29999).
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 10000))
    if ! port_in_use "$p"; then echo "$p"; return 0; fi
  done
  echo "$(basename "$0"): no free port" >&2
  return 1
}

# stop_pid PID: SIGTERM, up to 10 s, then SIGKILL; a no-op for an empty PID.
stop_pid() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# bench_workdir NAME: sets WORK to a fresh /tmp/NAME.XXXXXX and PIDS to (); on exit
# (Ctrl-C included) every pid appended to PIDS is stopped and WORK is removed.
bench_workdir() {
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$WORK"
  exit "$rc"
}

# fanout_args "$@": --subscribers, --messages, --rounds into SUBS, MSGS and ROUNDS
# (whose defaults the caller sets first); -h/--help prints the script's header.
fanout_args() {
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --subscribers) SUBS="$2"; shift 2 ;;
      --messages) MSGS="$2"; shift 2 ;;
      --rounds) ROUNDS="$2"; shift 2 ;;
      -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
      *) echo "$(basename "$0"): unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
  done
}

# start_bench_node EXTRA: a fresh standalone node under $WORK/node-N ($SHARDCAST, 2
# workers, the system "bench", api.max_http_connections = 20000: a crowd reconnecting at
# once finds a place) on a free loopback port, its config the base sections followed by
# the TOML text EXTRA; sets PORT and SERVER_PID and waits (15 s at most) until GET
# /readyz answers 200. Fails, with the node's log, when it exits or does not come up.
BENCH_NODE_RUN=0
start_bench_node() {
  BENCH_NODE_RUN=$((BENCH_NODE_RUN + 1))
  PORT=$(free_port)
  local dir="$WORK/node-$BENCH_NODE_RUN" line
  mkdir -p "$dir/data"
  cat >"$dir/shardcast.toml" <<EOF
[server]
http_addr = "127.0.0.1:$PORT"
workers = 2
data_dir = "$dir/data"
shutdown_timeout = "2s"
[api]
systems = ["bench"]
max_http_connections = 20000
[log]
level = "warn"
$1
EOF
  "$SHARDCAST" -c "$dir/shardcast.toml" >"$dir/shardcast.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 150); do
    kill -0 "$SERVER_PID" 2>/dev/null ||
      { echo "$(basename "$0"): the node exited:" >&2; cat "$dir/shardcast.log" >&2; return 1; }
    line=$( (exec 3<>"/dev/tcp/127.0.0.1/$PORT" &&
      printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 &&
      head -n 1 <&3) 2>/dev/null || true)
    case "$line" in "HTTP/1."?" 200"*) return 0 ;; esac
    sleep 0.1
  done
  echo "$(basename "$0"): the node on port $PORT did not come up" >&2
  return 1
}

# start_etcd DIR CLIENT_PORT PEER_PORT: a one-member etcd on loopback (data in DIR/etcd,
# log DIR/etcd.log); sets ETCD_PID and appends it to PIDS; waits up to 10 s for /health.
start_etcd() {
  etcd --name bench --data-dir "$1/etcd" \
    --listen-client-urls "http://127.0.0.1:$2" --advertise-client-urls "http://127.0.0.1:$2" \
    --listen-peer-urls "http://127.0.0.1:$3" --initial-advertise-peer-urls "http://127.0.0.1:$3" \
    --initial-cluster "bench=http://127.0.0.1:$3" >"$1/etcd.log" 2>&1 &
  ETCD_PID=$!
  PIDS+=("$ETCD_PID")
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$2/health" >/dev/null && return 0; sleep 0.2; done
}
