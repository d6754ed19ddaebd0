#!/usr/bin/env bash
# Fourteenth session, call 4: chunks spread evenly over a list and the one-wave rule up to
# 16 blocks: tests, sanitizers, the attention kernel (new, then HEAD bceb793 as base), then
# the headline grid (thirteenth session, call 4) of the new build.
set -uo pipefail
export LD_LIBRARY_PATH=$PWD/.devrun/rtlibs
out=${OUT:-/tmp/out}; mkdir -p "$out"
MEMCHECK_ENV="NOSA_TEST_ONLY=nosa-off NOSA_TEST_STEPS=30" RACECHECK_TESTS="test_cuda_kernels test_cuda_backend" \
  RACECHECK_STEPS=30 RACECHECK_SECONDS=120 bash scripts/gpu-run.sh tests memcheck racecheck 2>&1 | tail -9
grep -q "test_cuda_backend .*rc=0 " "$out/summary.txt" && grep -q "test_cuda_kernels .*rc=0 " "$out/summary.txt" || { echo "tests failed: stop"; exit 1; }
for b in bin base/bin; do
  tag=${b%%/*}
  timeout 100 .devrun/$b/bench_cuda_attention 1b 16,24,32,48,64,128,256 > "$out/att_$tag.log" 2>&1; echo "att $tag rc=$?"
done
for f in att_bin att_base; do echo "== $f"; grep -E "auto" "$out/$f.log"; done
GRID_SECONDS=330 GRID_ARGS="--backend cuda --config 1b --modes dense-resident,infllmv2-offload,nosa-offload,nosa-resident --batch 64,256 --context 64K,128K --workload correlated:0.99 --steps 12 --warmup 3 --settle 200 --fill synthetic --dense-max 512" \
  bash scripts/gpu-run.sh nosa-bench 2>&1 | grep -A60 "^bknd" | head -70
