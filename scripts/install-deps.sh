#!/usr/bin/env bash
# System packages edgespec needs on a Debian machine with Rust: cmake and a
# C/C++ compiler for llama.cpp, clang/libclang for bindgen, python3 + pip to
# fetch the models, valgrind for the C API's memory check.
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends \
  cmake clang libclang-dev build-essential pkg-config git \
  python3 python3-pip valgrind >/dev/null
rustup component add rustfmt clippy >/dev/null 2>&1 || true
echo "system packages ready: $(cmake --version | head -1), $(clang --version | head -1)"
