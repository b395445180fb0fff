#!/usr/bin/env bash
# The runtime's engine module (crates/edgespec/src/engine) is the only place
# that talks to llama.cpp: no other module or crate may name llama_cpp_sys_2
# or llama_cpp_2 (tests, the tools and the C API included).
set -euo pipefail
cd "$(dirname "$0")/.."
engine=crates/edgespec/src/engine/
if found=$(grep -rnE '\bllama_cpp_(sys_)?2\b' --include='*.rs' crates benches examples fuzz 2>/dev/null | grep -v "^$engine"); then
  echo "llama.cpp used outside $engine:" >&2
  echo "$found" >&2
  exit 1
fi
echo "engine boundary: llama.cpp is used only in $engine"
