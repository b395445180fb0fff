#!/usr/bin/env bash
# Checks that a board build is one static binary: no program interpreter,
# no shared library needed, so no glibc version floor (JetPack 5: 2.31).
# Usage: targets/check-static.sh [BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/aarch64-unknown-linux-gnu/release/edgespec}
[ -x "$bin" ] || { echo "error: $bin missing: run targets/build.sh BOARD" >&2; exit 1; }
objdump=aarch64-linux-gnu-objdump
command -v "$objdump" >/dev/null || objdump=objdump
needed=$("$objdump" -p "$bin" | awk '$1 == "NEEDED" {printf "%s ", $2}')
interp=$("$objdump" -s -j .interp "$bin" 2>/dev/null | grep -c "Contents of section" || true)
glibc=$("$objdump" -T "$bin" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1 || true)
echo "$bin: $(du -h "$bin" | cut -f1), shared libraries needed: ${needed:-none}, interpreter: $([ "$interp" = 0 ] && echo none || echo yes), newest glibc symbol version: ${glibc:-none}"
if [ -n "$needed" ] || [ "$interp" != 0 ] || [ -n "$glibc" ]; then
  echo "error: $bin is not one static binary" >&2
  exit 1
fi
