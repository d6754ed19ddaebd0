#!/usr/bin/env bash
# bench/run-gpu.sh: the GPU benchmark in one command, for the device machine (one H100/H200).
# Builds nosa-bench (cuda backend), then runs, within about 8 minutes of wall time:
#   1. the grid: 1B model (random weights, generated in-process), cuda backend, modes
#      dense-resident / infllmv2-offload / nosa-offload / nosa-resident, batch 8..128 (dense
#      also at its largest fitting batch), context 16K..128K where memory allows, workloads
#      random and correlated:0.9;
#   2. a locality sweep: hit rate of infllmv2 and nosa offload against the workload's rho
#      (each slot settles 200 steps first: docs/BENCH.md, "Workloads").
# Results land under $OUT (bench.csv, bench.json, PNG plots, the terminal logs). Each run is
# cut off by `timeout` so that the next still happens; nosa-bench rewrites its CSV/JSON after
# every instance, so a cut-off run keeps what it measured.
#   OUT=/path bench/run-gpu.sh             (on the device machine, from the repository root)
# Environment: BUILD_DIR (default build-gpu), GRID_SECONDS (default 300), SWEEP_SECONDS
# (default 60), FILL (shared | synthetic, default shared: the template is prefilled by the
# cuda backend, or synthesized when that would take over a minute), SETTLE (the grid's
# --settle, default 0: its hit rates are those of the first ~30 steps after a slot's fill;
# 200 gives settled figures and needs a longer GRID_SECONDS: docs/BENCH.md).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that receives the results}"
build=${BUILD_DIR:-build-gpu}
grid_s=${GRID_SECONDS:-300}
sweep_s=${SWEEP_SECONDS:-60}
fill=${FILL:-shared}
mkdir -p "$OUT"
start=$(date +%s)

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max,pcie.link.width.max \
    --format=csv 2>&1 || echo "nvidia-smi failed"
  nproc
  free -g
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

echo "== build ($build)"
gen=()
command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
cuda=()
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  cuda=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
fi
if ! cmake -S . -B "$build" "${gen[@]}" "${cuda[@]}" -DCMAKE_BUILD_TYPE=Release \
      > "$OUT/build.log" 2>&1 ||
   ! cmake --build "$build" -j "$(nproc)" --target nosa-bench >> "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"
  echo "run-gpu.sh: build failed (full log: $OUT/build.log)"
  exit 1
fi
bin="$build/bin/nosa-bench"
echo "build: $(( $(date +%s) - start )) s"

echo "== grid (timeout ${grid_s}s)"
set +e
timeout --signal=INT --kill-after=10 "$grid_s" "$bin" --backend cuda --config 1b \
  --modes dense-resident,infllmv2-offload,nosa-offload,nosa-resident \
  --batch 8,16,32,64,128 --context 16K,32K,64K,128K --workload random,correlated:0.9 \
  --steps 16 --warmup 4 --settle "${SETTLE:-0}" --fill "$fill" --prefill-chunk 16384 \
  --fill-timeout 60 --dense-max 512 --out "$OUT/grid" 2>&1 | tee "$OUT/grid.log"
grid_rc=${PIPESTATUS[0]}
echo "grid: exit $grid_rc after $(( $(date +%s) - start )) s"

echo "== locality sweep (timeout ${sweep_s}s)"
timeout --signal=INT --kill-after=10 "$sweep_s" "$bin" --backend cuda --config 1b \
  --modes infllmv2-offload,nosa-offload --batch 32 --context 32K \
  --workload random,correlated:0.5,correlated:0.8,correlated:0.9,correlated:0.95,correlated:0.99 \
  --steps 32 --warmup 4 --settle 200 --fill synthetic --out "$OUT/locality" 2>&1 |
  tee "$OUT/locality.log"
sweep_rc=${PIPESTATUS[0]}
set -e
echo "locality: exit $sweep_rc; total $(( $(date +%s) - start )) s"
[ "$grid_rc" = 0 ] && [ "$sweep_rc" = 0 ]
