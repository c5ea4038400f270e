#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs the whole test suite: formatting,
# lints, unit tests, and the integration tests that start real shardcast
# processes (and, for the cluster tests, a real etcd and nginx; for the console test,
# Debian's Chromium driven by playwright-core).
set -euo pipefail
cd "$(dirname "$0")/.."
node_pkgs=()
command -v npm >/dev/null 2>&1 || node_pkgs=(nodejs npm)
scripts/setup.sh etcd-server chromium nginx python3 "${node_pkgs[@]}"
# playwright-core and ws exactly as tests/console/package-lock.json pins them; it
# downloads no browser of its own (the test launches /usr/bin/chromium).
npm ci --prefix tests/console --no-audit --no-fund --loglevel=error
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
step() { echo "== test.sh $(date +%T) $*"; }
step fmt
cargo fmt --all -- --check
step clippy
cargo clippy --workspace --all-targets -- -D warnings
step "unit tests (library, binaries, benches as tests; the load generator's too)"
cargo test --workspace --lib --bins --benches
# The integration tests are one binary (tests/it). Most of them wait on sockets
# and timers, so they run eight at a time; the fault tests (floods, storms,
# timing bounds under load) run two at a time, as on the 2-core machine.
step "integration tests"
cargo test --test it -- --skip fault:: --test-threads 8
step "fault tests"
cargo test --test it fault:: -- --test-threads 2
# Fuzz smoke run: every cargo-fuzz target for a short time (FUZZ_SECONDS=0 skips).
if [ "${FUZZ_SECONDS:-30}" -gt 0 ]; then
  step "fuzz smoke run"
  scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
fi
step done
