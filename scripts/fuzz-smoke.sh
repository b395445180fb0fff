#!/usr/bin/env bash
# CI's fuzzing check: each cargo-fuzz target for a short bounded time on the
# committed corpus (stable Rust, `-s none`), so the targets keep building and
# the corpus keeps passing. Long runs: fuzz/README.md.
#   scripts/fuzz-smoke.sh [SECONDS per target, default 30]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-30}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in gguf_parse trimmed_metadata text_files prompt_cache; do
  # Runs on a copy: the committed corpus changes only by a deliberate cmin.
  work=$(mktemp -d)
  cp -r "corpus/$target/." "$work/"
  status=0
  cargo fuzz run -s none -O "$target" "$work" -- \
    -max_total_time="$seconds" -rss_limit_mb=512 -max_len=131072 -print_final_stats=1 \
    > "$work.log" 2>&1 || status=$?
  grep -E "^Done|^stat::(number_of_executed_units|peak_rss_mb)" "$work.log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$work.log"
    echo "fuzz target $target failed" >&2
    exit 1
  fi
  rm -rf "$work" "$work.log"
done
echo "fuzz smoke passed"
