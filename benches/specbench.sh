#!/usr/bin/env bash
# Spec-Bench by category, plus code, with llama.cpp's n-gram modes beside
# edgespec's in one bench process (modes interleaved, one warm-up):
# translation, summarization, qa, math_reasoning, rag, MT-bench (both
# turns) from benches/prompts/specbench/, and HumanEval problems as chat
# prompts from a slice (FROM..FROM+N) the project's other sets do not use.
#
# Needs: cargo build --release, python3 models/fetch.py,
# benches/build-peer.sh, python3 benches/prompts/fetch-humaneval.py.
# Usage: [PER_CATEGORY=2] [CODE_FROM=120] [CODE_N=4] [MODES=…] [REPS=1]
#        benches/specbench.sh [OUT] [N_TOKENS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/bench-out/specbench}
n=${2:-128}
per=${PER_CATEGORY:-2}
from=${CODE_FROM:-120}
code_n=${CODE_N:-4}
modes=${MODES:-target,hybrid,lookup,llama-ngram-map-k,llama-ngram-mod}
es="$here/target/release/edgespec"
target="$here/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
draft="$here/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
humaneval="$here/benches/prompts/humaneval.jsonl"
sb="$here/benches/prompts/specbench"
for f in "$es" "$target" "$draft" "$humaneval"; do
    [ -e "$f" ] || { echo "error: $f missing (see the header of $0)" >&2; exit 1; }
done
mkdir -p "$out"
python3 "$sb/make-sets.py" "$es" "$target" --per-category "$per" --answer-tokens "$n"
sed -n "$((from + 1)),$((from + code_n))p" "$humaneval" > "$out/code.jsonl"
sets=(-f "code=$out/code.jsonl")
for c in translation summarization qa math_reasoning rag mt-bench; do
    sets+=(-f "$c=$sb/specbench-$c.jsonl")
done
"$es" bench -m "$target" -d "$draft" "${sets[@]}" --modes "$modes" -n "$n" \
    --reps "${REPS:-1}" --out "$out" --force
