#!/usr/bin/env bash
# One command from a fresh Debian machine with Rust to the main demo:
# installs system packages, fetches the models (about 2 GB, verified by
# sha256), builds edgespec, then generates the same answer twice with the
# default pair -- Qwen2.5-Coder-1.5B alone, then with speculative decoding
# (cost-aware hybrid drafter: prompt lookup + Qwen2.5-Coder-0.5B) -- and
# prints both speeds and whether the outputs match.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-$(nproc)}

bash scripts/install-deps.sh
python3 models/fetch.py
cargo build --release

bin=./target/release/edgespec
target=models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
draft=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
prompt="Write a Python function that merges two sorted lists into one sorted list, with a docstring and two doctest examples."

echo
echo "== edgespec inspect (bytes read per token) =="
$bin inspect "$target" | grep -E "architecture|parameters|bytes per token|LM head bytes"
$bin inspect "$draft" | grep -E "bytes per token|LM head bytes"

out=$(mktemp -d)
echo
echo "== target alone =="
$bin generate -m "$target" -p "$prompt" --chat -n 200 -t "$threads" --target-only >"$out/target.txt" 2>"$out/target.err"
cat "$out/target.txt"; cat "$out/target.err"
echo
echo "== speculative (hybrid drafter, --gamma auto) =="
$bin generate -m "$target" -d "$draft" --draft-kind hybrid -p "$prompt" --chat -n 200 -t "$threads" --stats >"$out/spec.txt" 2>"$out/spec.err"
cat "$out/spec.txt"; cat "$out/spec.err"

rate() { sed -n 's/.*decode: [0-9]* tokens, \([0-9.]*\) tok\/s.*/\1/p' "$1"; }
echo
if cmp -s "$out/target.txt" "$out/spec.txt"; then same="identical"; else same="DIFFERENT"; fi
python3 -c "import sys; t, s = float(sys.argv[1]), float(sys.argv[2]); print(f'target alone {t:.1f} tok/s, speculative {s:.1f} tok/s: {s/t:.2f}x; outputs {sys.argv[3]}')" \
  "$(rate "$out/target.err")" "$(rate "$out/spec.err")" "$same"
rm -rf "$out"
