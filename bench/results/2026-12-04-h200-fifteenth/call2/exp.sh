#!/usr/bin/env bash
# Fifteenth session, call 2: blocks per chunk from the list's own entry count (attention_chunk_size:
# the grid's chunk count is for the rounded 80 entries, a list has 65), no even spread.
# Tests, memcheck of both tests (backend: nosa-off, 30 steps), the attention kernel (new,
# then HEAD bceb793 as base), then the step at 128K: new, base (batch 32-256), new, base (64).
set -uo pipefail
export LD_LIBRARY_PATH=$PWD/.devrun/rtlibs
out=${OUT:-/tmp/out}; mkdir -p "$out"
bash scripts/gpu-run.sh tests 2>&1 | tail -3
MEMCHECK_ENV="NOSA_TEST_ONLY=nosa-off NOSA_TEST_STEPS=30" timeout 240 bash scripts/gpu-run.sh memcheck 2>&1 | tail -3
grep -q "=== test_cuda_backend rc=0" "$out/test_cuda_backend.log" && grep -q "=== test_cuda_kernels rc=0" "$out/test_cuda_kernels.log" || { echo "tests failed: stop"; exit 1; }
for b in bin base/bin; do
  echo "== att ${b%%/*}" >> "$out/att.log"
  timeout 100 .devrun/$b/bench_cuda_attention 1b 16,32,48,64,128,256 >> "$out/att.log" 2>&1; echo "att $b rc=$?"
done
grep -E "^== |auto" "$out/att.log"
for r in 1 2; do
  batches=32,48,64,128,256; [ $r = 2 ] && batches=64
  GRID_SECONDS=170 GRID_ARGS="--backend cuda --config 1b --modes nosa-offload,nosa-resident --batch $batches --context 128K --workload correlated:0.99 --steps 12 --warmup 3 --settle 200 --fill synthetic" \
    bash scripts/gpu-run.sh nosa-bench >/dev/null 2>&1
  for g in grid grid_base; do
    echo "== round $r $g" >> "$out/grids.log"; cat "$out/$g.log" >> "$out/grids.log"
    rm -f "$out/$g.log" "$out/$g.tar"
  done
done
grep -E "^== |^cuda " "$out/grids.log"
rm -f "$out/summary.txt" "$out/device.txt"
