#!/usr/bin/env bash
# The long soak (issue 16): one process, one model pair, GENERATIONS (default
# 1000) generations through the C API with every draft kind, sampled and
# greedy settings, cancellations and deliberate errors in between
# (crates/edgespec-capi/tests/c/soak.c says what it checks). The CI test
# `soak_through_the_c_api` runs a short version on synthetic models.
#   scripts/soak.sh [TARGET] [DRAFTER] [GENERATIONS] [MAX_TOKENS]
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
drafter=${2:-$target}
generations=${3:-1000}
max_tokens=${4:-24}
cargo build --release -p edgespec-capi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -std=c11 -Wall -Wextra -Werror -O2 -Iinclude crates/edgespec-capi/tests/c/soak.c \
  target/release/libedgespec.a -lstdc++ -lgomp -lm -lpthread -ldl -o "$work/soak"
SECONDS=0
"$work/soak" "$target" "$drafter" "$generations" "$max_tokens"
echo "took ${SECONDS} s"
