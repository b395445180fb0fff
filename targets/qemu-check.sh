#!/usr/bin/env bash
# Runs the aarch64 edgespec (targets/build.sh BOARD first) under qemu
# user-mode emulation on SmolLM2 and checks that its greedy output equals the
# host build's, target alone and speculative (model drafter, prompt lookup,
# VocabTrim drafter). Also shows the fast kernels are in the artefact: ggml's
# CPU-feature line under qemu with a Cortex-A76, and the count of int8
# dot-product (sdot/udot) instructions in the binary.
# Usage: targets/qemu-check.sh [MODEL] [N_TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
n=${2:-24}
arm=target/aarch64-unknown-linux-gnu/release/edgespec
host=target/release/edgespec
[ -x "$arm" ] || { echo "error: $arm missing: run targets/build.sh rpi5" >&2; exit 1; }
[ -x "$host" ] || cargo build --release
qemu() { qemu-aarch64-static -cpu cortex-a76 -L /usr/aarch64-linux-gnu "$@"; }

echo "== aarch64 build, under qemu -cpu cortex-a76"
qemu "$arm" info | grep -E "ggml system info|device"
echo "int8 dot-product instructions in the binary: $(aarch64-linux-gnu-objdump -d "$arm" | grep -c -E '\s(sdot|udot)\s')"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
prompt="Write a Python function that reverses a string."
"$host" calibrate -m "$model" --raw-text README.md -o "$work/counts.json" 2>/dev/null
"$host" trim -d "$model" --counts "$work/counts.json" -k 4096 -o "$work/trim.gguf" 2>/dev/null
fail=0
check() { # NAME ARGS...
  local name=$1; shift
  "$host" generate -m "$model" -p "$prompt" --chat -n "$n" -t 2 "$@" >"$work/host-$name.txt" 2>/dev/null
  qemu "$arm" generate -m "$model" -p "$prompt" --chat -n "$n" -t 2 "$@" >"$work/arm-$name.txt" 2>"$work/arm-$name.err"
  if cmp -s "$work/host-$name.txt" "$work/arm-$name.txt" && [ -s "$work/host-$name.txt" ]; then
    echo "same output on x86-64 and aarch64: $name"
  else
    echo "DIFFERENT output: $name"; diff "$work/host-$name.txt" "$work/arm-$name.txt" | head -5; fail=1
  fi
}
check target-only --target-only
check model-drafter -d "$model" --gamma 3
check lookup --draft-kind lookup --gamma 3
check trimmed-drafter -d "$work/trim.gguf" --draft-source "$model" --gamma 3
cmp -s "$work/host-target-only.txt" "$work/arm-model-drafter.txt" && echo "speculative == target-only on aarch64" || { echo "speculative differs from target-only on aarch64"; fail=1; }
exit $fail
