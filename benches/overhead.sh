#!/usr/bin/env bash
# Target-only decode speed, edgespec vs llama.cpp's llama-completion built
# from the same llama.cpp (benches/build-peer.sh), same model, prompt,
# threads and token count, greedy, runs interleaved A B A B so machine
# drift hits both alike. Prints each run, then medians, spreads and the ratio.
#
# Usage: benches/overhead.sh [MODEL] [REPS] [N_TOKENS] [THREADS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$here/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf}
reps=${2:-5}
n=${3:-128}
threads=${4:-2}
prompt="Write a detailed history of the Roman Empire, from its founding to its fall."
peer="$here/benches/peer/bin/llama-completion"
edgespec="$here/target/release/edgespec"
[ -x "$peer" ] || { echo "error: $peer missing; run benches/build-peer.sh" >&2; exit 1; }
[ -x "$edgespec" ] || { echo "error: $edgespec missing; run cargo build --release" >&2; exit 1; }
[ -f "$model" ] || { echo "error: $model missing; run python3 models/fetch.py" >&2; exit 1; }

ours=(); theirs=()
for r in $(seq 1 "$reps"); do
  e=$("$edgespec" generate -m "$model" -p "$prompt" -n "$n" -t "$threads" --ignore-eos 2>&1 >/dev/null \
      | sed -n 's/.*decode: [0-9]* tokens, \([0-9.]*\) tok\/s.*/\1/p')
  l=$("$peer" -m "$model" -p "$prompt" -n "$n" -t "$threads" --temp 0 --ignore-eos -no-cnv --no-display-prompt 2>&1 >/dev/null \
      | sed -n 's/.*eval time = .* runs .* \([0-9.]*\) tokens per second.*/\1/p' | tail -1)
  echo "run $r: edgespec $e tok/s, llama.cpp $l tok/s"
  ours+=("$e"); theirs+=("$l")
done
python3 - "${ours[*]}" "${theirs[*]}" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)" "$threads" "$model" <<'PY'
import statistics, sys
ours = [float(x) for x in sys.argv[1].split()]
theirs = [float(x) for x in sys.argv[2].split()]
ratios = [a / b for a, b in zip(ours, theirs)]
def fmt(xs): return f"median {statistics.median(xs):.2f} (min {min(xs):.2f}, max {max(xs):.2f})"
print(f"machine: {sys.argv[3].strip()}, {sys.argv[4]} threads, model {sys.argv[5].split('/')[-1]}")
print(f"edgespec  decode tok/s: {fmt(ours)}")
print(f"llama.cpp decode tok/s: {fmt(theirs)}")
print(f"ratio edgespec/llama.cpp per pair: {fmt(ratios)}")
PY
