#!/usr/bin/env bash
# One device call: tests, sanitizers on the kernels, the attention kernel at small batches,
# the headline grid (bench/RESULTS.md, thirteenth session, call 4).
set -uo pipefail
export LD_LIBRARY_PATH=$PWD/.devrun/rtlibs
out=${OUT:-/tmp/out}; mkdir -p "$out"
MEMCHECK_ENV="NOSA_TEST_ONLY=nosa-off NOSA_TEST_STEPS=30" RACECHECK_TESTS=test_cuda_kernels \
  RACECHECK_SECONDS=150 bash scripts/gpu-run.sh tests memcheck racecheck 2>&1 | tail -8
timeout 100 .devrun/bin/bench_cuda_attention 1b 16,24,32 > "$out/att_small.log" 2>&1
echo "att rc=$?"; grep " pool" "$out/att_small.log"
GRID_SECONDS=330 GRID_ARGS="--backend cuda --config 1b --modes dense-resident,infllmv2-offload,nosa-offload,nosa-resident --batch 64,256 --context 64K,128K --workload correlated:0.99 --steps 12 --warmup 3 --settle 200 --fill synthetic --dense-max 512" \
  bash scripts/gpu-run.sh nosa-bench 2>&1 | grep -A40 "^bknd" | head -60
