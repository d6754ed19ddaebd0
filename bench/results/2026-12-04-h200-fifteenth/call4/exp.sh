#!/usr/bin/env bash
# Fifteenth session, call 4: the kept change (HEAD's kernel; the grid's entries the selected
# blocks rounded to 16 plus the open one; HEAD's chooser, then the fewest blocks per chunk for
# its chunk count): tests, memcheck, the attention kernel, then the headline grid of the
# fourteenth session's call 4.
set -uo pipefail
export LD_LIBRARY_PATH=$PWD/.devrun/rtlibs
out=${OUT:-/tmp/out}; mkdir -p "$out"
MEMCHECK_ENV="NOSA_TEST_ONLY=nosa-off NOSA_TEST_STEPS=30" bash scripts/gpu-run.sh tests memcheck 2>&1 | tail -4
grep -q "=== test_cuda_backend rc=0" "$out/test_cuda_backend.log" && grep -q "=== test_cuda_kernels rc=0" "$out/test_cuda_kernels.log" || { echo "tests failed: stop"; exit 1; }
timeout 100 .devrun/bin/bench_cuda_attention 1b 16,32,48,64,128,256 > "$out/att.log" 2>&1; echo "att rc=$?"
grep -E "auto" "$out/att.log"
GRID_SECONDS=400 GRID_ARGS="--backend cuda --config 1b --modes dense-resident,infllmv2-offload,nosa-offload,nosa-resident --batch 64,256 --context 64K,128K --workload correlated:0.99 --steps 12 --warmup 3 --settle 200 --fill synthetic --dense-max 512" \
  bash scripts/gpu-run.sh nosa-bench 2>&1 | grep -A60 "^bknd" | head -70
