#!/usr/bin/env bash
# Builds llama.cpp's own tools (llama-bench, llama-completion,
# llama-speculative-simple) from the llama.cpp tree that llama-cpp-sys-2
# compiles into edgespec, so edgespec and its peer are measured on the same
# library version and the same CPU flags (x86-64-v3 or native, OpenMP).
#
# llama-cpp-sys-2 ships llama.cpp without the tool sources; those come from
# the llama-cpp-python sdist (vendor/llama.cpp), copied only where our tree
# lacks a file (cp -n), so library, ggml and common stay at our version.
#
# Usage: benches/build-peer.sh        -> binaries in benches/peer/bin/
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out="$here/benches/peer"
sdist_version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
jobs=${JOBS:-$(nproc)}
mkdir -p "$out"

sys_dir=$(cd "$here" && cargo metadata --format-version 1 2>/dev/null | python3 -c '
import json, os, sys
pkgs = json.load(sys.stdin)["packages"]
print(next(os.path.dirname(p["manifest_path"]) for p in pkgs if p["name"] == "llama-cpp-sys-2"))')
echo "llama.cpp from: $sys_dir/llama.cpp"

if [ ! -d "$out/sdist/llama_cpp_python-$sdist_version" ]; then
  mkdir -p "$out/sdist"
  python3 -m pip download --no-deps --no-binary :all: --disable-pip-version-check -q \
    -d "$out/sdist" "llama-cpp-python==$sdist_version" \
    || { echo "error: cannot download the llama-cpp-python sdist from the package registry" >&2; exit 1; }
  tar -xzf "$out/sdist/llama_cpp_python-$sdist_version.tar.gz" -C "$out/sdist"
fi
tools_src="$out/sdist/llama_cpp_python-$sdist_version/vendor/llama.cpp"

rm -rf "$out/src"
cp -r "$sys_dir/llama.cpp" "$out/src"
chmod -R u+w "$out/src"
for d in app tools examples vendor; do
  mkdir -p "$out/src/$d"
  cp -rn "$tools_src/$d/." "$out/src/$d/"
done

# The CPU flags of edgespec's own default build: x86-64-v3 on x86-64 hosts
# (.cargo/config.toml), this CPU's own with PEER_NATIVE=1 (for an edgespec
# built with RUSTFLAGS="-C target-cpu=native") and on other hosts.
if [ "$(uname -m)" = x86_64 ] && [ "${PEER_NATIVE:-0}" != 1 ]; then
  cpu_flags="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
else
  cpu_flags="-DGGML_NATIVE=ON"
fi
# shellcheck disable=SC2086
cmake -S "$out/src" -B "$out/build" -DCMAKE_BUILD_TYPE=Release $cpu_flags \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=ON -DBUILD_SHARED_LIBS=OFF -DGGML_RPC=ON >"$out/cmake.log" 2>&1
cmake --build "$out/build" -j "$jobs" --target llama-bench llama-completion llama-speculative-simple >"$out/build.log" 2>&1
mkdir -p "$out/bin"
cp "$out/build/bin/llama-bench" "$out/build/bin/llama-completion" "$out/build/bin/llama-speculative-simple" "$out/bin/"
echo "built: $(ls "$out/bin" | tr '\n' ' ')"
