#!/usr/bin/env bash
# Runs the Autobahn TestSuite (fuzzingclient) against a local shardcast in
# echo mode (`ws.echo = true`: nothing unsolicited, every message echoed), so
# the conformance client sees a pure RFC 6455 echo server.
#
#   scripts/autobahn.sh              # all 517 cases, permessage-deflate (12.*, 13.*) included
#   scripts/autobahn.sh '5.*' 7.1.1  # only these cases (debugging)
#
# Needs the pyenv Python 2.7.18 (autobahntestsuite 0.8.2 is Python 2 only; the
# Python 3 package of that name is something else). Its virtualenv is kept in
# ${XDG_CACHE_HOME:-$HOME/.cache}/shardcast/autobahn-venv. The report goes to
# target/autobahn-report (index.html / index.json). Exits non-zero when a case
# FAILED or is UNIMPLEMENTED, when a close handshake was FAILED or UNCLEAN, or
# when wstest failed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# --- Python 2.7 and the test suite ------------------------------------------
PYENV_ROOT=${PYENV_ROOT:-$HOME/.pyenv}
PY27=""
for p in "$PYENV_ROOT"/versions/2.7.18/bin/python2.7 "$PYENV_ROOT"/versions/2.7*/bin/python2.7; do
  if [ -x "$p" ]; then PY27=$p; break; fi
done
if [ -z "$PY27" ]; then
  echo "autobahn: no pyenv Python 2.7 found under $PYENV_ROOT/versions (expected 2.7.18)." >&2
  echo "autobahn: autobahntestsuite 0.8.2 runs only on Python 2.7; install it with 'pyenv install 2.7.18'." >&2
  exit 2
fi

CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/shardcast
VENV=$CACHE/autobahn-venv
# The last releases that still support Python 2.7, as pip's resolver picks them
# for autobahntestsuite 0.8.2 (which itself pins autobahn 0.10.9, txaio<=2.1.0).
# Pinned so that a later upload cannot break the set.
PINS=(
  autobahntestsuite==0.8.2 autobahn==0.10.9 txaio==2.1.0
  Twisted==20.3.0 Automat==22.10.0 constantly==15.1.0 hyperlink==21.0.0
  incremental==22.10.0 PyHamcrest==1.10.1 zope.interface==5.5.2 attrs==21.4.0
  klein==20.6.0 Tubes==0.2.1 Werkzeug==1.0.1 Jinja2==2.11.3 MarkupSafe==1.1.1
  pyOpenSSL==21.0.0 cryptography==3.3.2 cffi==1.15.1 pycparser==2.21
  service-identity==21.1.0 pyasn1==0.5.1 pyasn1-modules==0.3.0 idna==2.10
  ipaddress==1.0.23 enum34==1.1.10 six==1.17.0 typing==3.10.0.0
  unittest2==1.1.0 linecache2==1.0.0 traceback2==1.4.0
  ujson==2.0.3 wsaccel==0.6.6
)
STAMP="${PINS[*]}"
if [ ! -x "$VENV/bin/wstest" ] || [ "$(cat "$VENV/.pins" 2>/dev/null)" != "$STAMP" ]; then
  echo "autobahn: creating $VENV (Python 2.7 virtualenv with autobahntestsuite 0.8.2)"
  rm -rf "$VENV" "$CACHE/autobahn-boot"
  mkdir -p "$CACHE"
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONWARNINGS=ignore
  # Python 2.7 has no venv module: bootstrap virtualenv (last line for 2.7).
  "$PY27" -m pip install -q --target "$CACHE/autobahn-boot" 'virtualenv==20.15.1'
  PYTHONPATH=$CACHE/autobahn-boot "$PY27" -m virtualenv -q "$VENV"
  "$VENV/bin/pip" install -q "${PINS[@]}"
  printf '%s' "$STAMP" >"$VENV/.pins"
fi
# cryptography warns on every start that Python 2 is deprecated.
export PYTHONWARNINGS=ignore

# --- shardcast ----------------------------------------------------------------
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --bin shardcast

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shardcast-autobahn.XXXXXX")
REPORT=$ROOT/target/autobahn-report
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$WORK/data"
# max_client_message: Autobahn sends messages and frames of up to 16 MiB
# (cases 9.*, 10.*); the default 8 KiB limit would close those with 1009 and
# fail them. send_queue_bytes: the echo of such a message is queued whole,
# and a queue over the limit closes the connection as a slow consumer.
# compression_min_size = 0: every echo on a connection with permessage-deflate
# is compressed when it shrinks, so 12.* and 13.* read compressed echoes of
# every size (the server need not compress at all to pass them).
cat >"$WORK/shardcast.toml" <<EOF
[server]
http_addr = "127.0.0.1:$PORT"
workers = 2
data_dir = "$WORK/data"

[api]
systems = ["autobahn"]

[ws]
echo = true
max_client_message = 16777216
send_queue_bytes = 67108864
idle_timeout = "60s"
compression_min_size = 0

[console]
enabled = false

[log]
level = "warn"
EOF

target/release/shardcast -c "$WORK/shardcast.toml" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
ready=""
for _ in $(seq 100); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
  if curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "autobahn: shardcast did not become ready on 127.0.0.1:$PORT" >&2
  cat "$WORK/server.log" >&2
  exit 1
fi
echo "autobahn: shardcast (pid $SERVER_PID) listening on 127.0.0.1:$PORT"

# --- fuzzingclient --------------------------------------------------------------
if [ "$#" -gt 0 ]; then
  CASES=$(printf '"%s",' "$@"); CASES="[${CASES%,}]"
else
  CASES='["*"]'
fi
rm -rf "$REPORT"
mkdir -p "$REPORT"
# Every case: 12.* and 13.* test permessage-deflate (docs/api.md §10).
cat >"$WORK/spec.json" <<EOF
{
  "outdir": "$REPORT",
  "servers": [{"agent": "shardcast", "url": "ws://127.0.0.1:$PORT/ws?systemId=autobahn"}],
  "cases": $CASES,
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
EOF

start=$(date +%s)
status=0
(cd "$WORK" && "$VENV/bin/wstest" -m fuzzingclient -s "$WORK/spec.json") >"$REPORT/wstest.log" 2>&1 || status=$?
echo "autobahn: wstest finished in $(( $(date +%s) - start ))s (log: $REPORT/wstest.log)"
if [ "$status" -ne 0 ] || [ ! -f "$REPORT/index.json" ]; then
  echo "autobahn: wstest failed (exit $status)" >&2
  tail -30 "$REPORT/wstest.log" >&2
  exit 1
fi
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "autobahn: shardcast exited during the run" >&2
  cat "$WORK/server.log" >&2
  exit 1
fi

# --- summary ------------------------------------------------------------------------
"$VENV/bin/python" - "$REPORT/index.json" <<'EOF'
import json, sys

def key(case):
    return [int(p) for p in case.split(".")]

index = json.load(open(sys.argv[1]))
results = {}
for agent in index.values():
    results.update(agent)
order = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
counts = dict((b, 0) for b in order)
closes = {}
bad = []
for case in sorted(results, key=key):
    r = results[case]
    b = r["behavior"]
    c = r.get("behaviorClose")
    counts[b] = counts.get(b, 0) + 1
    closes[c] = closes.get(c, 0) + 1
    # The case's own verdict, or its close handshake (UNCLEAN: the server
    # dropped TCP without the closing handshake the case expected).
    if b not in ("OK", "NON-STRICT", "INFORMATIONAL") or c not in ("OK", "INFORMATIONAL"):
        bad.append((case, r))
names = order + sorted(set(counts) - set(order))
print("autobahn: %d cases: %s" % (len(results), ", ".join("%s %d" % (b, counts[b]) for b in names)))
print("autobahn: close handshake: %s" % ", ".join("%s %d" % kv for kv in sorted(closes.items())))
for case, r in bad:
    print("  %-10s %-14s close=%-13s remoteCloseCode=%s  %s" % (
        case, r["behavior"], r.get("behaviorClose"), r.get("remoteCloseCode"), r.get("reportfile")))
failed = (counts.get("FAILED", 0) + counts.get("UNIMPLEMENTED", 0)
          + closes.get("FAILED", 0) + closes.get("UNCLEAN", 0))
sys.exit(1 if failed else 0)
EOF
echo "autobahn: report at $REPORT/index.html"
