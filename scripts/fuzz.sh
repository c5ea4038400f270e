#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60), on the stable
# toolchain without a sanitizer (`-s none`). Installs cargo-fuzz from
# crates.io if missing. Each target starts from its committed seeds
# (fuzz/seeds/<target>) plus what earlier runs found (fuzz/corpus/<target>,
# not committed). A crash stops the script with the failing input saved under
# fuzz/artifacts/<target>/; turn it into a regression test before fixing it.
# For AddressSanitizer: RUSTC_BOOTSTRAP=1 FUZZ_SANITIZER=address scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

targets=(link_frame http_request client_id api_bodies)
cargo fuzz build -s "$sanitizer"
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== fuzz $t for ${seconds}s"
  cargo fuzz run -s "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 2>&1 \
    | grep -E "^(Done|stat::number_of_executed_units|==|SUMMARY|thread .* panicked)|Test unit written|ERROR" || true
  if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
    echo "fuzz: $t crashed; inputs in fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
echo "fuzz: no crash in ${#targets[@]} targets"
