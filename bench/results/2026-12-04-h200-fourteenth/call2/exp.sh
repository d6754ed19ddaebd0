#!/usr/bin/env bash
# Fourteenth session, call 2: Nsight Compute on the batch-16 attention kernels (three-slot
# build), then the 128K grid points of both offload modes, three-slot build and HEAD bceb793.
set -uo pipefail
export LD_LIBRARY_PATH=$PWD/.devrun/rtlibs
out=${OUT:-/tmp/out}; mkdir -p "$out"
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
timeout 150 "$ncu" --clock-control none -k regex:attention_ --launch-skip 4 --launch-count 2 \
  --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
  --section SchedulerStats --section MemoryWorkloadAnalysis \
  .devrun/bin/bench_cuda_attention 1b 16 > "$out/ncu_b16.log" 2>&1
echo "ncu rc=$?"; grep -E "Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Waves Per SM|Stall|Registers|Block Size|Grid Size" "$out/ncu_b16.log" | head -40
GRID_SECONDS=200 GRID_ARGS="--backend cuda --config 1b --modes infllmv2-offload,nosa-offload --batch 64,256 --context 128K --workload correlated:0.99 --steps 12 --warmup 3 --settle 200 --fill synthetic" \
  bash scripts/gpu-run.sh nosa-bench 2>&1 | grep -E "^cuda|^bknd|summary|rc=" | head -40
