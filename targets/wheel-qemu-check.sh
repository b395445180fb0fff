#!/usr/bin/env bash
# The wheels of targets/build-wheel.sh under qemu, unpacked onto PYTHONPATH,
# each running `import edgespec` and a greedy completion on SmolLM2 (exact
# mode, lookup drafts):
#   aarch64: Debian's arm64 CPython 3.11 and the libraries it needs
#            unpacked into a sysroot; the text must equal this machine's
#            CLI (target/release/edgespec) on the same prompt.
#   x86_64:  this machine's python3 under qemu -cpu Nehalem (SSE4.2, no
#            AVX): the module must load ggml's SSE4.2 CPU variant and write
#            what the shipped CLI (dist/x86_64-all) writes here given only
#            that variant; natively it loads the best variant and writes
#            what that CLI writes natively.
# Usage: targets/wheel-qemu-check.sh [aarch64|x86_64]   (default aarch64)
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${1:-aarch64}
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
check='
import sys, edgespec
llm = edgespec.Llama(sys.argv[1], draft="lookup", n_ctx=512, n_threads=2, exact=True)
r = llm("List the days of the week:", max_tokens=12, temperature=0)
variants = {l.strip().rsplit("/", 1)[-1] for l in open("/proc/self/maps") if "libggml-cpu-" in l}
print(",".join(sorted(variants)) or "-")
print(r["choices"][0]["text"])
'
cli() {
  "$@" generate -m "$model" -p "List the days of the week:" -n 12 -c 512 -t 2 \
    --exact --draft-kind lookup 2>/dev/null
}
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
if [ "$arch" = x86_64 ]; then
  wheel=$(ls dist/wheels/edgespec-*-abi3-*x86_64*.whl | head -1)
  all=dist/x86_64-all
  [ -x "$all/edgespec" ] || { echo "error: $all missing: run targets/build-portable.sh all" >&2; exit 1; }
  command -v qemu-x86_64-static >/dev/null || apt-get install -y -qq --no-install-recommends qemu-user-static
  python3 -m zipfile -e "$wheel" "$site"
  status=0
  old=$(PYTHONPATH="$site" qemu-x86_64-static -cpu Nehalem "$(python3 -c "import sys; print(sys.executable)")" -c "$check" "$model")
  sse=$(mktemp -d)
  cp "$all"/libggml-cpu-sse42.so "$sse/"
  old_cli=$(EDGESPEC_BACKENDS_DIR=$sse cli "$all/edgespec")
  rm -rf "$sse"
  echo "Nehalem: $(echo "$old" | head -1): $(echo "$old" | tail -n +2)"
  echo "CLI, SSE4.2 variant here: $old_cli"
  if [ "$(echo "$old" | head -1)" = libggml-cpu-sse42.so ] && [ "$(echo "$old" | tail -n +2)" = "$old_cli" ]; then
    echo "ok: x86_64 wheel under qemu -cpu Nehalem"
  else echo "FAIL: x86_64 wheel under Nehalem"; status=1; fi
  native=$(PYTHONPATH="$site" python3 -c "$check" "$model")
  native_cli=$(cli "$all/edgespec")
  echo "here: $(echo "$native" | head -1): $(echo "$native" | tail -n +2)"
  if [ "$(echo "$native" | tail -n +2)" = "$native_cli" ] && [ "$(echo "$native" | head -1)" != - ]; then
    echo "ok: x86_64 wheel on this CPU (the CLI's text)"
  else echo "FAIL: x86_64 wheel here: CLI wrote '$native_cli'"; status=1; fi
  exit "$status"
fi
wheel=$(ls dist/wheels/edgespec-*-abi3-*aarch64*.whl | head -1)
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
python3 -m zipfile -e "$wheel" "$site"
arm=$(PYTHONPATH="$site" qemu-aarch64-static -cpu cortex-a76 -L "$root" "$root/usr/bin/python3.11" -c "$check" "$model" | tail -n +2)
here=$(cli target/release/edgespec)
echo "aarch64: $arm"
echo "here:    $here"
[ "$arm" = "$here" ] && echo "aarch64 wheel: ok (same text as this machine)"
