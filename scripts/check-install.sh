#!/usr/bin/env bash
# The installed C library as a C program finds it: installs into a scratch
# prefix (scripts/install-lib.sh), checks the SONAME and the version links,
# then builds examples/c/minimal.c twice through pkg-config, against the
# shared library (run with LD_LIBRARY_PATH; it must load
# libedgespec.so.MAJOR) and statically (Libs.private), and runs both on a
# synthetic model.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
bash scripts/install-lib.sh "$prefix" >/dev/null
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
major=${version%%.*}
soname=$(readelf -d "$prefix/lib/libedgespec.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libedgespec.so.$major" ] || { echo "FAIL: SONAME '$soname'"; exit 1; }
echo "ok: SONAME $soname; $(cd "$prefix/lib" && ls -l libedgespec.so* | awk '{print $9, $10, $11}' | tr '\n' ' ')"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
model="$prefix/m.gguf"
cargo run --release -q -p edgespec-tools -- synth -o "$model" >/dev/null 2>&1
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror examples/c/minimal.c -o "$prefix/shared" $(pkg-config --cflags --libs edgespec)
needed=$(readelf -d "$prefix/shared" | sed -n 's/.*(NEEDED).*\[\(libedgespec[^]]*\)\]/\1/p')
[ "$needed" = "libedgespec.so.$major" ] || { echo "FAIL: the program needs '$needed'"; exit 1; }
LD_LIBRARY_PATH="$prefix/lib" "$prefix/shared" "$model" "kalo mine" >/dev/null
echo "ok: shared build needs $needed and runs"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror examples/c/minimal.c -o "$prefix/static" \
  $(pkg-config --cflags edgespec) "$prefix/lib/libedgespec.a" $(pkg-config --static --libs-only-l edgespec | sed 's/-ledgespec//')
if readelf -d "$prefix/static" | grep -q "libedgespec"; then echo "FAIL: the static build needs libedgespec.so"; exit 1; fi
"$prefix/static" "$model" "kalo mine" >/dev/null
echo "ok: static build (Libs.private: $(pkg-config --static --libs-only-l edgespec | sed 's/-ledgespec //')) runs"
