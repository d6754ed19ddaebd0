#!/usr/bin/env bash
# Fifteenth session, call 3: HEAD's kernel (chunk size from the host); the grid's entries are the
# selected blocks rounded up to 16 plus the open one (65, not 80), and the chooser takes the fewest blocks per chunk for its chunk count.
# Tests, memcheck of both tests (backend: nosa-off, 30 steps), the attention kernel (new,
# then HEAD bceb793 as base), then the step at 128K: new, base (batch 32-256), new, base (48, 64).
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
args="--backend cuda --config 1b --modes nosa-offload,nosa-resident --context 128K --workload correlated:0.99 --steps 12 --warmup 3 --settle 200 --fill synthetic"
# Round 1 new then base, round 2 base then new (the order's own effect shows).
for r in "1 bin 32,48,64,128,256" "1 base/bin 32,48,64,128,256" "2 base/bin 48,64" "2 bin 48,64"; do
  set -- $r
  echo "== round $1 $2" >> "$out/grids.log"
  timeout -s INT 170 .devrun/$2/nosa-bench $args --batch $3 --out /tmp/g$1${2%%/*} >> "$out/grids.log" 2>&1
done
grep -E "^== |^cuda " "$out/grids.log"
rm -f "$out/summary.txt" "$out/device.txt"
