#!/usr/bin/env bash
# Configures and builds into BUILD_DIR (default build/). Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cuda_args=()
# Use the CUDA toolkit when one is installed where NVIDIA puts it and nvcc is not on PATH.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  cuda_args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
fi
# cmake's own chatter is dropped; its errors (stderr) and our "nosa:" lines (what is built,
# e.g. whether the cuda backend is) are shown.
cmake -S . -B "$build" -G Ninja "${cuda_args[@]}" "$@" | { grep '^-- nosa:' || true; }
cmake --build "$build" -j "$(nproc)"
