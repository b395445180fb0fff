#!/usr/bin/env bash
# Installs the C library: libedgespec.a, libedgespec.so, include/edgespec.h
# and a pkg-config file, so that
#     cc app.c $(pkg-config --cflags --libs edgespec)          # shared
#     cc app.c $(pkg-config --static --cflags --libs edgespec) # static
# works. Usage: scripts/install-lib.sh [PREFIX]   (default /usr/local)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-/usr/local}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
# The C API crate alone: the runtime without the tools' features.
cargo build --release -p edgespec-capi
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 644 target/release/libedgespec.a "$prefix/lib/"
install -m 755 target/release/libedgespec.so "$prefix/lib/"
install -m 644 include/edgespec.h "$prefix/include/"
# The licences travel with the library: ours and llama.cpp's/ggml's, which it contains.
install -d "$prefix/share/doc/edgespec"
install -m 644 LICENSE-MIT LICENSE-APACHE THIRD-PARTY-NOTICES.md "$prefix/share/doc/edgespec/"
cat > "$prefix/lib/pkgconfig/edgespec.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: edgespec
Description: On-device LLM inference with speculative decoding (llama.cpp inside)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -ledgespec
Libs.private: -lstdc++ -lgomp -lm -lpthread -ldl
PC
command -v ldconfig >/dev/null && { ldconfig 2>/dev/null || true; }
echo "installed edgespec $version to $prefix (pkg-config: $prefix/lib/pkgconfig/edgespec.pc)"
