#!/usr/bin/env bash
# One command per device, run from a Debian machine with Rust:
#   targets/build.sh rpi4              Raspberry Pi 4 (Cortex-A72, armv8-a)
#   targets/build.sh rpi5              Raspberry Pi 5 (Cortex-A76, armv8.2-a+dotprod+fp16)
#   targets/build.sh jetson-orin-cpu   Jetson Orin CPU (Cortex-A78AE, armv8.2-a+dotprod+fp16)
#   targets/build.sh jetson-orin-cuda  on the Jetson itself (JetPack): CUDA, sm_87
# The binary lands in target/aarch64-unknown-linux-gnu/release/edgespec (cross)
# or target/release/edgespec (native).
#
# Why ggml is built here for the Pi 5 and Orin: llama-cpp-sys-2 pins
# GGML_CPU_ARM_ARCH=armv8-a for every cross build, which drops the int8
# dot-product kernels (several times faster on Q4_K). We build ggml with the
# board's architecture and link it through llama-cpp-2's system-ggml-static.
set -euo pipefail
cd "$(dirname "$0")/.."
board=${1:-}
jobs=${JOBS:-$(nproc)}

install_cross_tools() {
  if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
      gcc-aarch64-linux-gnu g++-aarch64-linux-gnu binutils-aarch64-linux-gnu qemu-user-static >/dev/null
  fi
  rustup target add aarch64-unknown-linux-gnu >/dev/null
}

llama_cpp_dir() {
  cargo metadata --format-version 1 2>/dev/null | python3 -c '
import json, os, sys
pkgs = json.load(sys.stdin)["packages"]
print(next(os.path.dirname(p["manifest_path"]) for p in pkgs if p["name"] == "llama-cpp-sys-2") + "/llama.cpp")'
}

build_ggml() { # BOARD ARCH
  local out="target/ggml/$1"
  if [ -f "$out/install/lib/cmake/ggml/ggml-config.cmake" ] && [ "$(cat "$out/arch" 2>/dev/null)" = "$2 rpc" ]; then
    return
  fi
  # llama-cpp-sys-2 ships ggml without the pkg-config template that ggml's
  # CMake writes (we do not use it): build from a copy with a minimal one.
  rm -rf "$out/src" && mkdir -p "$out" && cp -r "$(llama_cpp_dir)/ggml" "$out/src" && chmod -R u+w "$out/src"
  [ -f "$out/src/ggml.pc.in" ] || printf 'Name: ggml\nDescription: ggml\nVersion: @GGML_VERSION@\nLibs: -lggml\n' >"$out/src/ggml.pc.in"
  cmake -S "$out/src" -B "$out/build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
    -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
    -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DGGML_NATIVE=OFF \
    -DGGML_CPU_ARM_ARCH="$2" -DGGML_OPENMP=ON -DGGML_RPC=ON -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF \
    -DCMAKE_INSTALL_PREFIX="$PWD/$out/install" >"target/ggml-$1-cmake.log"
  cmake --build "$out/build" -j "$jobs" >"target/ggml-$1-build.log"
  cmake --install "$out/build" >/dev/null
  # The RPC backend (--target-rpc, edgespec rpc-server) goes into libggml.a:
  # llama-cpp-sys-2 links a system ggml as ggml, ggml-base and ggml-cpu only.
  printf 'OPEN %s\nADDLIB %s\nSAVE\nEND\n' "$out/install/lib/libggml.a" "$out/install/lib/libggml-rpc.a" |
    aarch64-linux-gnu-ar -M
  echo "$2 rpc" >"$out/arch"
}

# Cross builds are one static binary (crt-static in BOARD/config.toml): the
# C++ runtime and OpenMP linked in too.
static_libs="edgespec/static-stdcxx,edgespec/static-openmp"

case "$board" in
  rpi4)
    install_cross_tools
    cargo build --release --features "$static_libs" --config targets/rpi4/config.toml ;;
  rpi5 | jetson-orin-cpu)
    install_cross_tools
    mkdir -p target
    build_ggml "$board" "armv8.2-a+dotprod+fp16"
    cargo build --release --features "edgespec/system-ggml-static,$static_libs" --config "targets/$board/config.toml" ;;
  jetson-orin-cuda)
    # Native build on the Jetson (JetPack provides CUDA and nvcc).
    CMAKE_CUDA_ARCHITECTURES=87 GGML_CUDA_NO_VMM=ON cargo build --release --features edgespec/cuda-no-vmm ;;
  *)
    sed -n '2,8p' "$0"; exit 2 ;;
esac
echo "built edgespec for $board"
