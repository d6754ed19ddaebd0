#!/usr/bin/env bash
# Fourteenth session, call 3: the attention merge in the partial kernel's last CTA per list
# and chunks spread evenly: tests, sanitizers, the attention kernel (new, then HEAD bceb793
# as base), then the 128K offload grid points of both builds.
set -uo pipefail
export LD_LIBRARY_PATH=$PWD/.devrun/rtlibs
out=${OUT:-/tmp/out}; mkdir -p "$out"
MEMCHECK_ENV="NOSA_TEST_ONLY=nosa-off NOSA_TEST_STEPS=30" RACECHECK_TESTS="test_cuda_kernels test_cuda_backend" \
  RACECHECK_STEPS=30 RACECHECK_SECONDS=120 bash scripts/gpu-run.sh tests memcheck racecheck 2>&1 | tail -9
for b in bin base/bin; do
  tag=${b%%/*}
  timeout 120 .devrun/$b/bench_cuda_attention 1b 16,24,32,48,64,128,256 > "$out/att_$tag.log" 2>&1; echo "att $tag rc=$?"
done
for f in att_bin att_base; do echo "== $f"; grep -E "auto" "$out/$f.log"; done
GRID_SECONDS=190 GRID_ARGS="--backend cuda --config 1b --modes infllmv2-offload,nosa-offload --batch 64,256 --context 128K --workload correlated:0.99 --steps 12 --warmup 3 --settle 200 --fill synthetic" \
  bash scripts/gpu-run.sh nosa-bench 2>&1 | grep -E "^cuda|^bknd|rc=" | head -40
rm -f "$out"/*.tar
