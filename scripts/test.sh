#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs the whole test suite: formatting,
# lints, unit tests, and the integration tests that start real shardcast
# processes (and, for the cluster tests, a real etcd).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh etcd-server
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
# Fuzz smoke run: every cargo-fuzz target for a short time (FUZZ_SECONDS=0 skips).
if [ "${FUZZ_SECONDS:-30}" -gt 0 ]; then
  scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
fi
