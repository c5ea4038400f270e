#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs the whole test suite: formatting,
# lints, unit tests, and the integration tests that start real shardcast
# processes (and, for the cluster tests, a real etcd; for the console test,
# Debian's Chromium driven by playwright-core).
set -euo pipefail
cd "$(dirname "$0")/.."
node_pkgs=()
command -v npm >/dev/null 2>&1 || node_pkgs=(nodejs npm)
scripts/setup.sh etcd-server chromium "${node_pkgs[@]}"
# playwright-core exactly as tests/console/package-lock.json pins it; it
# downloads no browser of its own (the test launches /usr/bin/chromium).
npm ci --prefix tests/console --no-audit --no-fund --loglevel=error
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
# Fuzz smoke run: every cargo-fuzz target for a short time (FUZZ_SECONDS=0 skips).
if [ "${FUZZ_SECONDS:-30}" -gt 0 ]; then
  scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
fi
