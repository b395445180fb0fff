#!/usr/bin/env bash
# Greedy outputs of two edgespec binaries, mode by mode (models from
# models/fetch.py; the trimmed drafter as in README "VocabTrim", K 32768).
set -u
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cd "$(dirname "$0")/../../.."
old=${1:?usage: equivalence.sh OLD_BINARY NEW_BINARY}; new=${2:?}
S=models/SmolLM2-135M-Instruct.Q4_1.gguf
T=models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
D=models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
K=bench-out/qwen0.5b.k32768.gguf
P1="Write a Python function that returns the n-th Fibonacci number, with a docstring."
P2="Repeat exactly: the quick brown fox jumps over the lazy dog. the quick brown fox jumps over the lazy dog."
same=0; diff=0
run() { # name args...
  local name=$1; shift
  "$old" generate "$@" >"$work"/old.txt 2>"$work"/old.err
  local a=$?
  "$new" generate "$@" >"$work"/new.txt 2>"$work"/new.err
  local b=$?
  if [ $a = 0 ] && [ $b = 0 ] && cmp -s "$work"/old.txt "$work"/new.txt; then
    same=$((same+1)); echo "same  $name ($(wc -c <"$work"/new.txt) bytes)"
  else
    diff=$((diff+1)); echo "DIFF  $name (rc $a/$b)"; tail -2 "$work"/old.err "$work"/new.err
  fi
}
for p in "$P1" "$P2"; do
  run "smol target" -m $S -p "$p" --chat -n 64 -t 2 --target-only --no-repack
  for k in model lookup hybrid; do
    for g in 3 auto; do run "smol $k:$g" -m $S -d $S --draft-kind $k --gamma $g -p "$p" --chat -n 64 -t 2 --no-repack; done
  done
  run "smol ead" -m $S --small $S --mode ead -p "$p" --chat -n 64 -t 2 --ead-no-fallback --no-repack
  run "smol ead-spec" -m $S --small $S --mode ead-spec --gamma 3 -p "$p" --chat -n 64 -t 2 --ead-no-fallback --no-repack
  run "qwen target" -m $T -p "$p" --chat -n 48 -t 2 --target-only --no-repack
  run "qwen hybrid:auto" -m $T -d $D --draft-kind hybrid -p "$p" --chat -n 48 -t 2 --no-repack
  run "qwen model:3" -m $T -d $D --draft-kind model --gamma 3 -p "$p" --chat -n 48 -t 2 --no-repack
  run "qwen trimmed:3" -m $T -d $K --draft-kind trimmed --gamma 3 -p "$p" --chat -n 48 -t 2 --no-repack
  run "qwen ead:share=0.15" -m $T --small $D --mode ead --ead-share 0.15 -p "$p" --chat -n 48 -t 2 --ead-no-fallback --no-repack
  run "qwen ead-spec:3" -m $T --small $D --mode ead-spec --gamma 3 --ead-threshold 1.5 -p "$p" --chat -n 48 -t 2 --ead-no-fallback --no-repack
done
echo "identical: $same, different: $diff"
