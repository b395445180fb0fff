#!/usr/bin/env bash
# The aarch64 wheel (targets/build-wheel.sh aarch64) under qemu: Debian's
# arm64 CPython 3.11 and the libraries it needs unpacked into a sysroot,
# the wheel unpacked beside it, then `import edgespec` and a greedy
# completion on SmolLM2 (exact mode, lookup drafts) that must equal this
# machine's CLI (target/release/edgespec) on the same prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
wheel=$(ls dist/wheels/edgespec-*-abi3-*aarch64*.whl | head -1)
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
root=target/arm64-python
if [ ! -x "$root/usr/bin/python3.11" ]; then
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -qq
  debs=$(mktemp -d)
  (cd "$debs" && apt-get download -qq python3.11-minimal:arm64 libpython3.11-minimal:arm64 \
     libpython3.11-stdlib:arm64 libexpat1:arm64 zlib1g:arm64 libffi8:arm64 libssl3:arm64 \
     libbz2-1.0:arm64 liblzma5:arm64 libsqlite3-0:arm64 libncursesw6:arm64 libtinfo6:arm64 \
     libreadline8:arm64 libuuid1:arm64 libnsl2:arm64 libtirpc3:arm64 libdb5.3:arm64 \
     libgomp1:arm64 libstdc++6:arm64 libgcc-s1:arm64 libc6:arm64)
  mkdir -p "$root"
  for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$root"; done
  rm -rf "$debs"
fi
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
python3 -m zipfile -e "$wheel" "$site"
check='
import sys, edgespec
llm = edgespec.Llama(sys.argv[1], draft="lookup", n_ctx=512, n_threads=2, exact=True)
r = llm("List the days of the week:", max_tokens=12, temperature=0)
print(r["choices"][0]["text"])
'
arm=$(PYTHONPATH="$site" qemu-aarch64-static -cpu cortex-a76 -L "$root" "$root/usr/bin/python3.11" -c "$check" "$model")
here=$(target/release/edgespec generate -m "$model" -p "List the days of the week:" -n 12 -c 512 -t 2 \
  --exact --draft-kind lookup 2>/dev/null)
echo "aarch64: $arm"
echo "here:    $here"
[ "$arm" = "$here" ] && echo "aarch64 wheel: ok (same text as this machine)"
