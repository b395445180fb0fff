#!/usr/bin/env bash
# The installed C library as a C program finds it: installs into a scratch
# prefix with cargo-c (`cargo cinstall`, the maintained tool for C-ABI Rust
# libraries; installed here when missing), checks the SONAME and the
# version links, the header and the licences, then builds
# examples/c/minimal.c twice through pkg-config, against the shared
# library (run with LD_LIBRARY_PATH; it must load the SONAME) and
# statically (Libs.private), and runs both on a synthetic model.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo_c=0.10.24 # the newest cargo-c that builds with rustc 1.95
if ! cargo cinstall --version >/dev/null 2>&1; then
  # Building it needs OpenSSL's headers (Debian: libssl-dev) and pkg-config.
  cargo install cargo-c --version "$cargo_c" --locked
fi
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cargo cinstall --release -p edgespec-capi --prefix "$prefix" --libdir lib >/dev/null
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
major=${version%%.*}
rest=${version#*.}
minor=${rest%%.*}
# cargo-c's convention: MAJOR, or 0.MINOR while the major version is 0.
if [ "$major" = 0 ]; then sover="0.$minor"; else sover=$major; fi
soname=$(readelf -d "$prefix/lib/libedgespec.so.$version" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libedgespec.so.$sover" ] || { echo "FAIL: SONAME '$soname'"; exit 1; }
echo "ok: SONAME $soname; $(cd "$prefix/lib" && ls -l libedgespec.so* | awk '{print $9, $10, $11}' | tr '\n' ' ')"
cmp -s include/edgespec.h "$prefix/include/edgespec.h" || { echo "FAIL: the installed header is not include/edgespec.h"; exit 1; }
for f in LICENSE-MIT LICENSE-APACHE THIRD-PARTY-NOTICES.md; do
  [ -f "$prefix/share/doc/edgespec/$f" ] || { echo "FAIL: $f not installed"; exit 1; }
done
echo "ok: header and licences installed"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
model="$prefix/m.gguf"
cargo run --release -q -p edgespec-tools -- synth -o "$model" >/dev/null 2>&1
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror examples/c/minimal.c -o "$prefix/shared" $(pkg-config --cflags --libs edgespec)
needed=$(readelf -d "$prefix/shared" | sed -n 's/.*(NEEDED).*\[\(libedgespec[^]]*\)\]/\1/p')
[ "$needed" = "libedgespec.so.$sover" ] || { echo "FAIL: the program needs '$needed'"; exit 1; }
LD_LIBRARY_PATH="$prefix/lib" "$prefix/shared" "$model" "kalo mine" >/dev/null
echo "ok: shared build needs $needed and runs"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Werror examples/c/minimal.c -o "$prefix/static" \
  $(pkg-config --cflags edgespec) "$prefix/lib/libedgespec.a" $(pkg-config --static --libs-only-l edgespec | sed 's/-ledgespec//')
if readelf -d "$prefix/static" | grep -q "libedgespec"; then echo "FAIL: the static build needs libedgespec.so"; exit 1; fi
"$prefix/static" "$model" "kalo mine" >/dev/null
echo "ok: static build (Libs.private: $(pkg-config --static --libs-only-l edgespec | sed 's/-ledgespec //')) runs"
