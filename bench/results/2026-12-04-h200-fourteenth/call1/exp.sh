#!/usr/bin/env bash
# Fourteenth session, call 1: the three-slot attention pipeline: tests, sanitizers on the
# kernels, the attention kernel (new, then HEAD bceb793 as base) at every batch.
set -uo pipefail
export LD_LIBRARY_PATH=$PWD/.devrun/rtlibs
out=${OUT:-/tmp/out}; mkdir -p "$out"
MEMCHECK_ENV="NOSA_TEST_ONLY=nosa-off NOSA_TEST_STEPS=30" RACECHECK_TESTS=test_cuda_kernels \
  RACECHECK_SECONDS=150 bash scripts/gpu-run.sh tests memcheck racecheck 2>&1 | tail -8
cp "$out/summary.txt" "$out/tests_summary.txt"
for b in bin base/bin; do
  tag=${b%%/*}
  timeout 150 .devrun/$b/bench_cuda_attention 1b > "$out/att_$tag.log" 2>&1; echo "att $tag rc=$?"
  timeout 100 .devrun/$b/bench_cuda_attention 1b 16,24,32 > "$out/att_small_$tag.log" 2>&1; echo "att small $tag rc=$?"
done
for f in att_bin att_base att_small_bin att_small_base; do echo "== $f"; grep -E "auto pool|auto w/" "$out/$f.log"; done
