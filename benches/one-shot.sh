#!/usr/bin/env bash
# Whole-process time of a one-shot `edgespec generate`: the target alone
# against the default speculative policy (hybrid drafter, --gamma auto),
# same model, prompt, threads and token count (--ignore-eos: both runs
# generate exactly N tokens even where a near-tie sends their texts
# apart and one would end sooner), greedy. Runs alternate
# A B A B so machine drift hits both alike; a first pair warms the page
# cache and is not counted. "cold" gives every speculative run an empty
# cost cache; "warm" one filled by an earlier run of the same command.
# Prints each pair, then medians with min-max and the ratio per pair
# (target-alone time / speculative time: above 1 the speculative run was
# faster).
#
# Usage: [EDGESPEC=BIN] benches/one-shot.sh cold|warm PROMPT [PAIRS] [N_TOKENS] [THREADS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache_state=${1:?cold or warm}
prompt=${2:?prompt text}
pairs=${3:-5}
n=${4:-200}
threads=${5:-2}
target=${TARGET:-$here/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}
drafter=${DRAFTER:-$here/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf}
edgespec="${EDGESPEC:-$here/target/release/edgespec}"
[ -x "$edgespec" ] || { echo "error: $edgespec missing; run cargo build --release" >&2; exit 1; }
for m in "$target" "$drafter"; do
  [ -f "$m" ] || { echo "error: $m missing; run python3 models/fetch.py" >&2; exit 1; }
done
case $cache_state in cold|warm) ;; *) echo "error: cold or warm, not $cache_state" >&2; exit 2 ;; esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(-m "$target" -p "$prompt" --chat -n "$n" -t "$threads" --ignore-eos)
alone() { "$edgespec" generate "${common[@]}" --target-only >"$work/alone.txt" 2>/dev/null; }
speculative() {
  if [ "$cache_state" = cold ]; then rm -rf "$work/costs"; fi
  "$edgespec" generate "${common[@]}" -d "$drafter" --draft-kind hybrid \
    --cost-cache "$work/costs" >"$work/spec.txt" 2>/dev/null
}
seconds() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }

alone; speculative # warm-up pair (page cache; fills the cost cache for "warm")
if cmp -s "$work/alone.txt" "$work/spec.txt"; then same=identical; else same="different (repacked batch kernels round near-ties; see README)"; fi
a=(); s=()
for p in $(seq 1 "$pairs"); do
  ta=$(seconds alone); ts=$(seconds speculative)
  printf 'pair %d: target alone %.2f s, speculative %.2f s\n' "$p" "$ta" "$ts"
  a+=("$ta"); s+=("$ts")
done
python3 - "${a[*]}" "${s[*]}" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" "$threads" "$cache_state" "$n" <<'PY'
import statistics, sys
alone = [float(x) for x in sys.argv[1].split()]
spec = [float(x) for x in sys.argv[2].split()]
ratios = [a / s for a, s in zip(alone, spec)]
def fmt(xs, unit=""): return f"median {statistics.median(xs):.3f}{unit} (min {min(xs):.3f}, max {max(xs):.3f})"
print(f"machine: {sys.argv[3].strip()}, {sys.argv[4]} threads, {sys.argv[6]} tokens, cost cache {sys.argv[5]}")
print(f"target alone: {fmt(alone, ' s')}")
print(f"speculative:  {fmt(spec, ' s')}")
print(f"speed ratio (alone/speculative) per pair: {fmt(ratios)}")
PY
echo "outputs of the warm-up pair: $same"
