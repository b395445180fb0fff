#!/usr/bin/env bash
# One command from a fresh Debian machine with Rust to the main demo:
# installs system packages, fetches the models (about 2 GB, verified by
# sha256), builds edgespec, then answers two prompts with the default pair,
# Qwen2.5-Coder-1.5B alone and with speculative decoding (cost-aware hybrid
# drafter: prompt lookup + Qwen2.5-Coder-0.5B): an edit of code given in
# the prompt, where most of the answer is a copy and drafting pays, and an
# open question, where there is little to copy and the policy must not lose.
# Each mode runs three times, alternating, in fresh processes (the first
# speculative run on a new machine is the cold one: no cost cache yet); the
# medians are compared and the spread of the three pairs' ratios is shown,
# so one noisy run on a shared machine does not decide the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-$(nproc)}

bash scripts/install-deps.sh
python3 models/fetch.py
cargo build --release

bin=./target/release/edgespec
target=models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
draft=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
edit_prompt=$(cat scripts/quickstart-edit-prompt.txt)
open_prompt="In four sentences, explain to a new programmer why version control is worth learning."

echo
echo "== edgespec inspect (bytes read per token) =="
$bin inspect "$target" | grep -E "architecture|parameters|bytes per token|LM head bytes"
$bin inspect "$draft" | grep -E "bytes per token|LM head bytes"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# demo NAME PROMPT: target alone and speculative, three times each, alternating.
demo() {
  local name=$1 prompt=$2 rep mode
  for rep in 1 2 3; do
    for mode in target spec; do
      local args=(--target-only)
      [ "$mode" = spec ] && args=(-d "$draft" --draft-kind hybrid --stats)
      $bin generate -m "$target" "${args[@]}" -p "$prompt" --chat -n 300 -t "$threads" \
        >"$out/$name.$mode.$rep.txt" 2>"$out/$name.$mode.$rep.err"
    done
  done
  echo
  echo "== $name: speculative answer (hybrid drafter, --gamma auto) =="
  cat "$out/$name.spec.1.txt"; echo; grep -E "decode|speculation" "$out/$name.spec.1.err"
  local same=identical rep
  for rep in 1 2 3; do
    cmp -s "$out/$name.target.1.txt" "$out/$name.spec.$rep.txt" || same="different at a near-tie (docs/lossless.md)"
  done
  python3 - "$name" "$same" "$out" >>"$out/summary" <<'PY'
import re, statistics, sys
name, same, out = sys.argv[1:4]
def stat(mode, rep, pattern):
    text = open(f"{out}/{name}.{mode}.{rep}.err").read()
    return float(re.search(pattern, text).group(1))
rate = r"decode: \d+ tokens, ([0-9.]+) tok/s"
t = [stat("target", r, rate) for r in (1, 2, 3)]
s = [stat("spec", r, rate) for r in (1, 2, 3)]
drafted = [int(stat("spec", r, r"(\d+) drafted")) for r in (1, 2, 3)]
ratios = [b / a for a, b in zip(t, s)]
print(f"{name}: target alone {statistics.median(t):.1f} tok/s, speculative "
      f"{statistics.median(s):.1f} tok/s: {statistics.median(s) / statistics.median(t):.2f}x "
      f"(pairs {', '.join(f'{r:.2f}' for r in ratios)}; drafted {', '.join(map(str, drafted))}); "
      f"outputs {same}")
PY
}

demo "code edit" "$edit_prompt"
demo "open question" "$open_prompt"
echo
cat "$out/summary"
