#!/usr/bin/env bash
# Checks that the x86-64-v2 build (targets/build-portable.sh x86-64-v2) runs
# on a CPU without AVX: under qemu user-mode emulation of a Nehalem (SSE4.2,
# no AVX/AVX2/AVX-512) its greedy output on SmolLM2, target alone and
# speculative, equals its own output on this machine (same kernels, so
# bytes must match) and speculative equals target alone; no instruction of
# the binary uses a ymm/zmm register; and, for contrast, whether the
# default (x86-64-v3) host build survives the same CPU. The package of
# `targets/build-portable.sh all` is checked too when it is built.
# Usage: targets/portable-check.sh [MODEL] [N_TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
n=${2:-16}
portable=dist/x86_64-x86-64-v2/edgespec
host=target/release/edgespec
all=dist/x86_64-all
if [ ! -x "$portable" ] && [ ! -x "$all/edgespec" ]; then
  echo "error: $portable and $all/edgespec missing: run targets/build-portable.sh x86-64-v2 (or all)" >&2; exit 1
fi
[ -x "$host" ] || cargo build --release
command -v qemu-x86_64-static >/dev/null || apt-get install -y -qq --no-install-recommends qemu-user-static
old_cpu() { qemu-x86_64-static -cpu Nehalem "$@"; }
args=(generate -m "$model" -p "The capital of France is" -n "$n" -t 2 --no-repack)
status=0
if [ -x "$portable" ]; then
  alone=$("$portable" "${args[@]}" --target-only 2>/dev/null)
  for extra in "--target-only" "-md $model --gamma 3"; do
    # shellcheck disable=SC2086
    got=$(old_cpu "$portable" "${args[@]}" $extra 2>/dev/null)
    if [ "$got" = "$alone" ]; then echo "ok: x86-64-v2 under qemu -cpu Nehalem, $extra: the target alone's output"
    else echo "FAIL: x86-64-v2 under Nehalem, $extra: '$got' vs '$alone'"; status=1; fi
  done
  features=$(old_cpu "$portable" info | grep "ggml system info")
  echo "x86-64-v2 under Nehalem: $features"
  if grep -q "AVX" <<<"$features"; then echo "FAIL: ggml was built with AVX"; status=1; fi
fi
# The one package for every CPU (targets/build-portable.sh all), when built:
# under Nehalem ggml must load an SSE-only CPU variant and speculative
# output must equal the target alone's; on this machine, given only the
# SSE4.2 variant, the same binary must write what it wrote under Nehalem.
if [ -x "$all/edgespec" ]; then
  variant() { "$@" info 2>/dev/null | grep "ggml system info"; }
  features=$(variant old_cpu "$all/edgespec")
  echo "all, under Nehalem: $features"
  if grep -q "AVX" <<<"$features"; then echo "FAIL: all: an AVX variant loaded under Nehalem"; status=1; fi
  echo "all, on this CPU: $(variant "$all/edgespec")"
  old_alone=$(old_cpu "$all/edgespec" "${args[@]}" --target-only 2>/dev/null)
  old_spec=$(old_cpu "$all/edgespec" "${args[@]}" -md "$model" --gamma 3 2>/dev/null)
  sse=$(mktemp -d)
  cp "$all"/libggml-cpu-sse42.so "$sse/"
  here=$(EDGESPEC_BACKENDS_DIR=$sse "$all/edgespec" "${args[@]}" --target-only 2>/dev/null)
  rm -rf "$sse"
  if [ -n "$old_alone" ] && [ "$old_spec" = "$old_alone" ] && [ "$here" = "$old_alone" ]; then
    echo "ok: all under qemu -cpu Nehalem: speculative = target alone, and = this CPU on the SSE4.2 variant"
  else
    echo "FAIL: all: Nehalem '$old_alone' / speculative '$old_spec' / here on SSE4.2 '$here'"; status=1
  fi
fi
if old_cpu "$host" info >/dev/null 2>&1; then echo "note: the default (x86-64-v3) host build also runs on Nehalem"
else echo "for contrast: the default (x86-64-v3) host build fails under Nehalem (exit $?)"; fi
exit "$status"
