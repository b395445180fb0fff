#!/usr/bin/env bash
# The benchmark runs behind README.md's Results section, in one go on one
# machine: (A) every mode side by side with llama.cpp's tools on code and chat
# prompts, (B) VocabTrim: K curve and calibration sources on code prompts,
# (C) Gemma 3 270M trimmed vs full, (D) a threads sweep, (E) the drafter
# step alone (criterion), (F) a γ sweep of the full and trimmed drafters.
# Reports land in $OUT/{main,vocabtrim,vocabtrim-gen-only,gemma,threads,gamma}/
# report.md with runs.jsonl, report.json and charts.
#
# Needs: cargo build --release, python3 models/fetch.py,
# benches/build-peer.sh, python3 benches/prompts/fetch-humaneval.py.
# Usage: [SECTIONS="A B C D E F"] benches/readme-results.sh [OUT] [PROMPTS_PER_SET] [N_TOKENS]
set -euo pipefail
sections=${SECTIONS:-A B C D E F}
want() { [[ " $sections " == *" $1 "* ]]; }
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/bench-out/readme}
limit=${2:-8}
n=${3:-128}
es="$here/target/release/edgespec"
m="$here/models"
target="$m/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
draft="$m/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
gemma="$m/gemma-3-270m-q4_k_m.gguf"
code="$here/benches/prompts/humaneval.jsonl"
chat="$here/benches/prompts/chat.txt"
for f in "$es" "$target" "$draft" "$gemma" "$code"; do
    [ -e "$f" ] || { echo "error: $f missing (see the header of $0)" >&2; exit 1; }
done
mkdir -p "$out"

# Calibration: target generations on the shipped calibration prompts, and a
# raw-text corpus (Python's standard library sources) as the tie-breaking prior.
# Counts and trimmed drafters already in $OUT are reused.
corpus=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
[ -f "$out/qwen.gen.json" ] || "$es" calibrate -m "$target" -f "$here/benches/prompts/calibration.txt" -o "$out/qwen.gen.json"
[ -f "$out/qwen.raw.json" ] || "$es" calibrate -m "$target" --raw-text "$corpus" -o "$out/qwen.raw.json"
[ -f "$out/gemma.raw.json" ] || "$es" calibrate -m "$gemma" --raw-text "$corpus" -o "$out/gemma.raw.json"
[ -f "$out/qwen0.5b.k32768.gguf" ] || "$es" trim -d "$draft" --counts "$out/qwen.gen.json" --prior "$out/qwen.raw.json" -k 32768 -o "$out/qwen0.5b.k32768.gguf"
[ -f "$out/qwen0.5b.raw.k32768.gguf" ] || "$es" trim -d "$draft" --counts "$out/qwen.raw.json" -k 32768 -o "$out/qwen0.5b.raw.k32768.gguf"

# (A) Every mode, code and chat, two repetitions in interleaved order.
want A && "$es" bench --force -m "$target" -d "$draft" --trimmed "$out/qwen0.5b.k32768.gguf" \
    -f code="$code" -f chat="$chat" --limit "$limit" -n "$n" --reps 2 \
    --modes target,small,model:auto,model:3,trimmed:auto,trimmed:3,lookup,hybrid,ead:0.1,ead-spec:0.1,llama-completion,llama-draft,llama-ngram \
    --out "$out/main"
# (B) VocabTrim on code: the K curve of the recommended counts (target
# generations, ties ranked by the raw-text prior) beside the full drafter and
# raw-text counts alone at K = 32768 (trimmed:3)...
want B && "$es" bench --force -m "$target" -d "$draft" --trimmed "$out/qwen0.5b.raw.k32768.gguf" \
    -f code="$code" --limit "$limit" -n "$n" --reps 2 --modes target,model:3,trimmed:3 \
    --counts "$out/qwen.gen.json" --prior "$out/qwen.raw.json" \
    --sweep k=8192,16384,32768,65536 --out "$out/vocabtrim"
# ...and generation counts alone (the paper's recipe), for comparison.
want B && "$es" bench --force -m "$target" -d "$draft" -f code="$code" --limit "$limit" -n "$n" --modes target \
    --counts "$out/qwen.gen.json" --sweep k=16384,32768,65536 --out "$out/vocabtrim-gen-only"
# (C) Gemma 3 270M drafting for itself: full head vs trimmed heads (c time = step cost ratio).
if want C; then
    "$es" bench --force -m "$gemma" -d "$gemma" -f code="$code" --no-chat --limit "$limit" -n "$n" --modes target,model:3 \
        --counts "$out/gemma.raw.json" --sweep k=16384,32768 --out "$out/gemma"
    for f in "$gemma" "$out/gemma/trimmed-k16384.gguf" "$out/gemma/trimmed-k32768.gguf"; do
        "$es" inspect "$f" | grep -E "^(name|vocabulary|bytes per token|LM head bytes)" || true
    done
fi
# (D) Threads: 1 and 2 threads side by side, llama.cpp included.
want D && "$es" bench --force -m "$target" -d "$draft" -f code="$code" --limit 4 -n "$n" --reps 2 \
    --modes target,model:auto,hybrid,llama-completion --sweep threads=1,2 --out "$out/threads"
# (E) The drafter step alone, full vs trimmed (criterion; target/criterion/).
want E && (cd "$here" && cargo bench --bench micro -- "drafter step")
# (F) Fixed draft length γ = 1..6, full and trimmed drafters (tok/s and α vs γ).
want F && "$es" bench --force -m "$target" -d "$draft" --trimmed "$out/qwen0.5b.k32768.gguf" \
    -f code="$code" --limit "$limit" -n "$n" --modes target --sweep gamma=1..6 --out "$out/gamma"
exit 0
