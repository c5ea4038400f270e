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
