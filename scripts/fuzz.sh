#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60), on the stable
# toolchain without a sanitizer (`-s none`), as many at a time as there are
# CPUs (FUZZ_JOBS to change it). Installs cargo-fuzz from crates.io if
# missing. Each target starts from its committed seeds (fuzz/seeds/<target>)
# plus what earlier runs found (fuzz/corpus/<target>, not committed). A crash
# fails the script with the failing input saved under fuzz/artifacts/<target>/;
# turn it into a regression test before fixing it.
# For AddressSanitizer: RUSTC_BOOTSTRAP=1 FUZZ_SANITIZER=address scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
jobs="${FUZZ_JOBS:-$(nproc)}"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

targets=(link_frame link_seal http_request client_id api_bodies resume_token deflate)
cargo fuzz build -s "$sanitizer"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

fuzz_one() {
  local t=$1
  mkdir -p "corpus/$t"
  cargo fuzz run -s "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$logs/$t" 2>&1 || true
}

echo "== fuzz ${targets[*]} for ${seconds}s each, $jobs at a time"
running=0
for t in "${targets[@]}"; do
  fuzz_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

failed=0
for t in "${targets[@]}"; do
  echo "== $t"
  grep -E "^(Done|stat::number_of_executed_units|SUMMARY|thread .* panicked)|Test unit written|ERROR" "$logs/$t" || true
  if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
    echo "fuzz: $t crashed; inputs in fuzz/artifacts/$t/" >&2
    failed=1
  fi
done
[ "$failed" -eq 0 ] || exit 1
echo "fuzz: no crash in ${#targets[@]} targets"
