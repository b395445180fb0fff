#!/usr/bin/env bash
# Prepares DIR (default .device, git-ignored) for gpu-check.sh on a GPU
# machine without Rust: a portable edgespec built against shared llama.cpp
# libraries, plus the llama.cpp sources it was built from (tools, tests and
# unused backends left out to stay small).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-.device}
export CARGO_TARGET_DIR=target/dynlink
RUSTFLAGS="-C target-cpu=x86-64-v2" cargo build --release --features edgespec/dynamic-link --bin edgespec
rm -rf "$dir" && mkdir -p "$dir"
cp target/dynlink/release/edgespec "$dir/" && strip "$dir/edgespec"
src=$(cargo metadata --format-version 1 2>/dev/null | python3 -c '
import json, os, sys
pkgs = json.load(sys.stdin)["packages"]
print(next(os.path.dirname(p["manifest_path"]) for p in pkgs if p["name"] == "llama-cpp-sys-2") + "/llama.cpp")')
mkdir -p "$dir/llama.cpp"
for d in CMakeLists.txt cmake include src ggml common vendor; do cp -r "$src/$d" "$dir/llama.cpp/"; done
chmod -R u+w "$dir/llama.cpp"
for b in ggml-vulkan ggml-sycl ggml-metal ggml-opencl ggml-cann ggml-musa ggml-hip ggml-webgpu ggml-zdnn ggml-kompute; do
  rm -rf "$dir/llama.cpp/ggml/src/$b"
done
[ -f "$dir/llama.cpp/ggml/ggml.pc.in" ] || printf 'Name: ggml\nDescription: ggml\nVersion: @GGML_VERSION@\nLibs: -lggml\n' >"$dir/llama.cpp/ggml/ggml.pc.in"
cp targets/jetson-orin-cuda/gpu-check.sh "$dir/"
du -sh "$dir"
