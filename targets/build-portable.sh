#!/usr/bin/env bash
# x86-64 binaries to ship: the `dist` profile (no debug information, no
# symbols) for one x86-64 micro-architecture level (the default host build
# is x86-64-v3 with debug information; a native one, opted in, dies with
# SIGILL on CPUs without the build machine's extensions). ggml is built here
# with exactly the level's instruction sets and linked through the runtime's
# system-ggml-static feature: llama-cpp-sys-2 turns GGML_NATIVE off for a
# non-native target-cpu but leaves ggml's own defaults (AVX, AVX2, FMA,
# F16C, BMI2) on, so its build would not run on an SSE4.2-only CPU.
#   x86-64-v2: SSE4.2 (any x86-64 CPU since ~2009)
#   x86-64-v3: + AVX, AVX2, FMA, F16C, BMI2 (most since 2015)
#   x86-64-v4: + AVX-512 (F, BW, DQ, VL)
# Ship one per level and pick the highest the CPU has (see /proc/cpuinfo).
# Output: dist/x86_64-LEVEL/{edgespec,libedgespec.so,libedgespec.a}.
#
# Or `all`: one package for every x86-64 CPU. ggml's CPU backend is built
# once per instruction-set level (x64, SSE4.2, AVX ... AVX-512 VNNI/BF16,
# AVX-VNNI; its GGML_CPU_ALL_VARIANTS) as libggml-cpu-*.so beside the
# binary, and edgespec loads the best one the CPU runs when it starts
# (feature portable-cpu; EDGESPEC_BACKENDS_DIR points elsewhere). llama.cpp
# and ggml are shared libraries found through the binary's $ORIGIN. The
# Sapphire Rapids variant is left out: ggml's AMX kernels crash on such VMs
# (ggml-org/llama.cpp#20824), and those CPUs load the Zen 4 variant (the
# same AVX-512 set without AMX). Output: dist/x86_64-all/.
# Usage: targets/build-portable.sh x86-64-v2|x86-64-v3|x86-64-v4|all
set -euo pipefail
cd "$(dirname "$0")/.."
level=${1:?x86-64-v2, x86-64-v3, x86-64-v4 or all}
jobs=${JOBS:-$(nproc)}
if [ "$level" = all ]; then
  target_dir=target/portable-all
  # Rust code for the x86-64 baseline; ggml's variants bring their own flags.
  RUSTFLAGS="-C target-cpu=x86-64 -C link-arg=-Wl,-rpath,\$ORIGIN" \
    cargo build --profile dist --target-dir "$target_dir" \
    --features edgespec-tools/portable-cpu -p edgespec-tools
  out=dist/x86_64-all
  rm -rf "$out" && mkdir -p "$out"
  cp "$target_dir/dist/edgespec" "$out/"
  # The libraries under the names the binary asks for (their sonames).
  sys_out=$(dirname "$(find "$target_dir/dist/build" -path '*/out/backends/libggml-cpu-x64.so' | head -1)")/..
  for lib in $(readelf -d "$out/edgespec" | sed -n 's/.*NEEDED.*\[\(lib\(ggml\|llama\)[^]]*\)\]/\1/p'); do
    cp -L "$sys_out/lib/$lib" "$out/"
  done
  cp "$sys_out"/backends/libggml-*.so "$out/"
  rm -f "$out/libggml-cpu-sapphirerapids.so"
  ls -l "$out"
  exit 0
fi
v3=OFF; v4=OFF
case $level in
  x86-64-v2) ;;
  x86-64-v3) v3=ON ;;
  x86-64-v4) v3=ON; v4=ON ;;
  *) echo "error: unknown level $level" >&2; exit 2 ;;
esac

llama_cpp_dir() {
  cargo metadata --format-version 1 2>/dev/null | python3 -c '
import json, os, sys
pkgs = json.load(sys.stdin)["packages"]
print(next(os.path.dirname(p["manifest_path"]) for p in pkgs if p["name"] == "llama-cpp-sys-2") + "/llama.cpp")'
}

ggml=target/ggml/$level
if [ ! -f "$ggml/install/lib/cmake/ggml/ggml-config.cmake" ]; then
  rm -rf "$ggml/src" && mkdir -p "$ggml" && cp -r "$(llama_cpp_dir)/ggml" "$ggml/src" && chmod -R u+w "$ggml/src"
  [ -f "$ggml/src/ggml.pc.in" ] || printf 'Name: ggml\nDescription: ggml\nVersion: @GGML_VERSION@\nLibs: -lggml\n' >"$ggml/src/ggml.pc.in"
  cmake -S "$ggml/src" -B "$ggml/build" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DGGML_NATIVE=OFF \
    -DGGML_SSE42=ON -DGGML_AVX=$v3 -DGGML_AVX2=$v3 -DGGML_FMA=$v3 -DGGML_F16C=$v3 -DGGML_BMI2=$v3 \
    -DGGML_AVX512=$v4 -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
    -DGGML_OPENMP=ON -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF \
    -DCMAKE_INSTALL_PREFIX="$PWD/$ggml/install" >"target/ggml-$level-cmake.log"
  cmake --build "$ggml/build" -j "$jobs" >"target/ggml-$level-build.log"
  cmake --install "$ggml/build" >/dev/null
fi
target_dir=target/portable-$level
# RUSTFLAGS replaces the native flag of .cargo/config.toml.
RUSTFLAGS="-C target-cpu=$level" CMAKE_PREFIX_PATH="$PWD/$ggml/install" \
  cargo build --profile dist --target-dir "$target_dir" \
  --features edgespec/system-ggml-static -p edgespec-tools -p edgespec-capi
out=dist/x86_64-$level
mkdir -p "$out"
cp "$target_dir/dist/edgespec" "$target_dir/dist/libedgespec.so" "$target_dir/dist/libedgespec.a" "$out/"
ls -l "$out"
