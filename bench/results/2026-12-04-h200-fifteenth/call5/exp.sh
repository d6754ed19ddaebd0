#!/usr/bin/env bash
# Fifteenth session, call 5: the attention grid's CTAs in an order pool_delta writes (the
# chunks that hold a miss first), offload only: tests and memcheck, then the step at 128K
# settled, new / base (HEAD 77bce1d) in the order new, base, base, new.
set -uo pipefail
export LD_LIBRARY_PATH=$PWD/.devrun/rtlibs
out=${OUT:-/tmp/out}; mkdir -p "$out"
MEMCHECK_ENV="NOSA_TEST_ONLY=nosa-off NOSA_TEST_STEPS=30" bash scripts/gpu-run.sh tests memcheck 2>&1 | tail -4
grep -q "=== test_cuda_backend rc=0" "$out/test_cuda_backend.log" && grep -q "=== test_cuda_kernels rc=0" "$out/test_cuda_kernels.log" || { echo "tests failed: stop"; exit 1; }
args="--backend cuda --config 1b --modes nosa-offload,nosa-resident --batch 64,256 --context 128K --workload correlated:0.99 --steps 12 --warmup 3 --settle 200 --fill synthetic"
for r in "1 bin" "1 base/bin" "2 base/bin" "2 bin"; do
  set -- $r
  echo "== round $1 $2" >> "$out/grids.log"
  timeout -s INT 110 .devrun/$2/nosa-bench $args --out /tmp/g$1${2%%/*} >> "$out/grids.log" 2>&1
done
grep -E "^== |^cuda " "$out/grids.log"
rm -f "$out/summary.txt" "$out/device.txt"
