#!/usr/bin/env bash
# Memory-safety evidence for the C API: builds edgespec for a portable x86-64
# level (valgrind cannot decode the AVX-512 code a native build may contain;
# x86-64-v3, as the default host build),
# compiles examples/c/generate.c against that static library, and runs it
# under valgrind memcheck on a synthetic model: any invalid read/write or
# definitely-lost block fails the check. Prints valgrind's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/valgrind
export CARGO_TARGET_DIR=$dir
case "$(uname -m)" in
  x86_64) export RUSTFLAGS="-C target-cpu=x86-64-v3" ;;
esac
cargo build --release -p edgespec-capi
cargo build --release -p edgespec-tools --bin edgespec
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$dir/release/edgespec" synth -o "$work/model.gguf" --embd 64 --layers 2
cc -std=c11 -Wall -Wextra -Werror -O1 -g -Iinclude examples/c/generate.c "$dir/release/libedgespec.a" \
   -lstdc++ -lgomp -lm -lpthread -ldl -o "$work/generate"
OMP_NUM_THREADS=2 valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \
  --error-exitcode=99 "$work/generate" "$work/model.gguf" "hello world hello world" "" 12 \
  >"$work/out.txt" 2>"$work/valgrind.log" || { cat "$work/valgrind.log"; echo "valgrind check FAILED" >&2; exit 1; }
grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|in use at exit" "$work/valgrind.log"
grep -q "ERROR SUMMARY: 0 errors" "$work/valgrind.log"
echo "valgrind check passed"
