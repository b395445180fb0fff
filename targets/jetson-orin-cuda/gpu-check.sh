#!/usr/bin/env bash
# The CUDA check, run on a machine with an NVIDIA GPU, CUDA, CMake and a C++
# compiler but no Rust (the device machine of this project; a Jetson works the
# same way with ARCH=87 and an aarch64 edgespec).
#
# It expects, in DIR (default .device): `edgespec` built on the Rust machine with
# `--features dynamic-link` (see prepare-gpu-check.sh) and `llama.cpp/`, the
# very llama.cpp sources that edgespec was built from. It builds libllama and
# libggml (+ the CUDA backend) there as shared libraries, runs edgespec
# against them, generates two synthetic models with edgespec's own writer
# (no model has to travel), and compares target-only and speculative greedy
# output on the CPU and on the GPU, with decode tok/s for each.
set -uo pipefail
dir=${1:-.device}
arch=${ARCH:-90}
cd "$dir"
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
log() { echo "== $*"; }

log "machine"; nproc; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nvcc --version | tail -1
log "building llama.cpp $(ls llama.cpp >/dev/null && echo ok) with CUDA for sm_$arch"
start=$(date +%s)
cmake -S llama.cpp -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" -DGGML_NATIVE=ON -DGGML_OPENMP=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_APP=OFF >"$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log"; exit 1; }
cmake --build build -j "$(nproc)" --target llama >"$out/build.log" 2>&1 || { grep -m5 -i error "$out/build.log"; tail -20 "$out/build.log"; exit 1; }
echo "build took $(( $(date +%s) - start )) s"
export LD_LIBRARY_PATH="$PWD/build/bin:${LD_LIBRARY_PATH:-}"
chmod +x ./edgespec
./edgespec info || exit 1

log "synthetic models (edgespec synth)"
# Shallow, peaky models: a deep random network has nearly flat logits, where
# the last-bit differences between CPU and GPU kernels (and batched vs single
# passes) decide the argmax. The drafter is the target's first two layers
# (same seed), so it agrees with the target part of the time.
./edgespec synth -o "$out/target.gguf" --embd 512 --layers 4 --heads 8 --kv-heads 4 --ff 1024 --words 32000 --f16 --seed 1
./edgespec synth -o "$out/draft.gguf" --embd 512 --layers 2 --heads 8 --kv-heads 4 --ff 1024 --words 32000 --f16 --seed 1
prompt="kalo mine suta ro vika lomi neta kalo mine"
run() { # NAME ARGS...
  local name=$1; shift
  ./edgespec generate -m "$out/target.gguf" -p "$prompt" -n 128 --ignore-eos -c 1024 -t "$(nproc)" "$@" >"$out/$name.txt" 2>"$out/$name.err"
  echo "$name: $(grep -o 'decode: [0-9]* tokens, [0-9.]* tok/s' "$out/$name.err") $(grep -o '[0-9]* drafted.*accepted, α [0-9.]*, τ [0-9.]*' "$out/$name.err") md5 $(md5sum <"$out/$name.txt" | cut -c1-12)"
}
run cpu_target --target-only --gpu-layers 0
run gpu_target --target-only --gpu-layers 99
run gpu_target_again --target-only --gpu-layers 99
run cpu_spec -d "$out/draft.gguf" --gamma 3 --gpu-layers 0 --stats
run gpu_spec -d "$out/draft.gguf" --gamma 3 --gpu-layers 99 --stats
run gpu_self -d "$out/target.gguf" --gamma 4 --gpu-layers 99 --stats
run gpu_auto -d "$out/draft.gguf" --gamma auto --gpu-layers 99 --stats
run gpu_lookup --draft-kind lookup --gpu-layers 99 --stats
log "equality"
same() { cmp -s "$out/$1.txt" "$out/$2.txt" && echo "$1 == $2" || echo "$1 != $2"; }
same cpu_target cpu_spec
for x in gpu_target_again gpu_spec gpu_self gpu_auto gpu_lookup; do same gpu_target "$x"; done
same cpu_target gpu_target
grep -h -i "cuda\|offload" "$out"/gpu_target.err | head -3
