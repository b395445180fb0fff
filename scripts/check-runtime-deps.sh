#!/usr/bin/env bash
# The library a board image links (libedgespec.a/.so from crates/edgespec-capi)
# carries the runtime only: none of the tools' dependencies (command line,
# progress bars, logging setup, charts, hashing, JSON) and no tools crate.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(cargo tree -p edgespec-capi -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u)
banned="edgespec-tools edgespec-testing clap indicatif env_logger plotters anyhow sha2 serde_json criterion"
status=0
for crate in $banned; do
  if grep -qx "$crate" <<<"$tree"; then
    echo "the shipped library depends on $crate:" >&2
    cargo tree -p edgespec-capi -e normal -i "$crate" >&2
    status=1
  fi
done
[ "$status" = 0 ] && echo "runtime dependencies: the C library carries none of: $banned"
exit "$status"
