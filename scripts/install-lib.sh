#!/usr/bin/env bash
# Installs the C library: libedgespec.a, libedgespec.so (SONAME
# libedgespec.so.MAJOR, installed as libedgespec.so.X.Y.Z with the
# libedgespec.so.MAJOR and libedgespec.so links), include/edgespec.h, the
# licences, and a pkg-config file whose Libs.private is what rustc says the
# static library needs on this toolchain (not a fixed list), so that
#     cc app.c $(pkg-config --cflags --libs edgespec)          # shared
#     cc app.c $(pkg-config --static --cflags --libs edgespec) # static
# works. Usage: scripts/install-lib.sh [PREFIX]   (default /usr/local)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-/usr/local}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
major=${version%%.*}
# The C API crate alone: the runtime without the tools' features.
cargo build --release -p edgespec-capi
private=$(cargo rustc --release -p edgespec-capi --crate-type staticlib -- --print native-static-libs 2>&1 |
  sed -n 's/.*native-static-libs: //p' | tail -1)
[ -n "$private" ] || { echo "error: rustc printed no native-static-libs" >&2; exit 1; }
libdir="$prefix/lib"
install -d "$libdir/pkgconfig" "$prefix/include"
install -m 644 target/release/libedgespec.a "$libdir/"
install -m 755 target/release/libedgespec.so "$libdir/libedgespec.so.$version"
ln -sf "libedgespec.so.$version" "$libdir/libedgespec.so.$major"
ln -sf "libedgespec.so.$major" "$libdir/libedgespec.so"
install -m 644 include/edgespec.h "$prefix/include/"
# The licences travel with the library: ours and llama.cpp's/ggml's, which it contains.
install -d "$prefix/share/doc/edgespec"
install -m 644 LICENSE-MIT LICENSE-APACHE THIRD-PARTY-NOTICES.md "$prefix/share/doc/edgespec/"
cat > "$libdir/pkgconfig/edgespec.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: edgespec
Description: On-device LLM inference with speculative decoding (llama.cpp inside)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -ledgespec
Libs.private: $private
PC
command -v ldconfig >/dev/null && { ldconfig 2>/dev/null || true; }
echo "installed edgespec $version to $prefix (pkg-config: $libdir/pkgconfig/edgespec.pc)"
