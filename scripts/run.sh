#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds shardcast and runs one standalone
# node on port 7800 with the system "demo" registered (conf/shardcast.toml).
# Extra arguments go to shardcast, e.g. `scripts/run.sh -c my.toml`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --bin shardcast
if [ "$#" -eq 0 ]; then set -- -c conf/shardcast.toml; fi
exec target/release/shardcast "$@"
