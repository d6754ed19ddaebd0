#!/usr/bin/env bash
# Fourteenth session, call 5: the step at 128K, NOSA offloaded (batch 64, 256) and resident
# (64), chunks spread evenly (new) against HEAD bceb793 (base), in one call.
set -uo pipefail
export LD_LIBRARY_PATH=$PWD/.devrun/rtlibs
GRID_SECONDS=150 GRID_ARGS="--backend cuda --config 1b --modes nosa-offload,nosa-resident --batch 64,256 --context 128K --workload correlated:0.99 --steps 12 --warmup 3 --settle 200 --fill synthetic" \
  bash scripts/gpu-run.sh nosa-bench 2>&1 | grep -E "^cuda|^bknd|rc=" | head -40
rm -f "${OUT:-/tmp/out}"/*.tar
