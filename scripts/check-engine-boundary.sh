#!/usr/bin/env bash
# src/engine is the only place that talks to llama.cpp: no other module may
# name llama_cpp_sys_2 or llama_cpp_2 (tests, the CLI and the C API included).
set -euo pipefail
cd "$(dirname "$0")/.."
if found=$(grep -rnE '\bllama_cpp_(sys_)?2\b' --include='*.rs' src tests benches examples 2>/dev/null | grep -v '^src/engine/'); then
  echo "llama.cpp used outside src/engine:" >&2
  echo "$found" >&2
  exit 1
fi
echo "engine boundary: llama.cpp is used only in src/engine"
