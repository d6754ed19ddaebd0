#!/usr/bin/env bash
# Issue 7's GPU path: a subset of tests/fault (docs/FAULTS.md) with both workers and the
# reference (nosa-generate) on the CUDA backend, in one device `run` (from the repository
# root), over the build carried in .devrun/e2e/ (bin/ with fault_harness, rtlibs/; made here by
# scripts/gpu-faults.sh --pack). Faults, each run by fault_harness on a fresh node of the small
# model (tests/fault/small_config.json) and under its own time limit, so the whole run stays
# under 6 minutes:
#   worker-kill           kill -9 of a worker mid-decode
#   kvhost-kill           kill -9 of the kv-host, restart with --recover
#   worker-pause          SIGSTOP past the heartbeat timeout, SIGCONT: fenced, jobs moved
#   worker-hang           SIGSTOP: declared dead, its jobs moved
#   coord-kill            kill -9 of the coordinator, restart on its journal
#   worker-kill --seed 11 the moment and the victim from a seed
# Each must hold what docs/FAULTS.md says (exact tokens against nosa-generate on the same
# backend, recomputed <= block_size, nothing lost, the arena empty at the end). Under $OUT (at
# most 8 files come back from the device): faults.txt (the device, a row per fault, the
# verdict) and logs.tar (each fault's whole output; the harness dumps the processes' last log
# lines on a failure). Exit 1 when a fault failed.
#
#   scripts/gpu-faults.sh --pack         # here: scripts/gpu-e2e.sh --pack with fault_harness
#   scripts/gpu-faults.sh [FAULT...]     # there: the faults above (default all)
#
# Environment: NOSA_FAULTS_BACKEND (cuda; cpu: a dry run on a machine without GPU),
# NOSA_FAULTS_SECONDS (limit per fault, 50), NOSA_TEST_HEARTBEAT_TIMEOUT_MS (the harness's,
# 3000).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--pack" ]; then
  NOSA_E2E_PACK_EXTRA=fault_harness exec scripts/gpu-e2e.sh --pack
fi

backend=${NOSA_FAULTS_BACKEND:-cuda}
limit=${NOSA_FAULTS_SECONDS:-50}
out=${OUT:-/tmp/gpu-faults-out}
mkdir -p "$out"
. scripts/devrun-e2e.sh
bin=$(cd "$(devrun_e2e_bin fault_harness)" && pwd) || exit 1
[ -x "$bin/fault_harness" ] || { echo "gpu-faults: $bin/fault_harness is not built" >&2; exit 1; }
faults=("$@")
[ ${#faults[@]} -gt 0 ] || faults=(worker-kill kvhost-kill worker-pause worker-hang coord-kill
                                   worker-kill:11)
report=$out/faults.txt
logs=$(mktemp -d "${TMPDIR:-/tmp}/gpu-faults-XXXXXX")
trap 'tar -C "$logs" -cf "$out/logs.tar" . 2>/dev/null; rm -rf "$logs"' EXIT
if [ "$backend" = cuda ]; then
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader |
    sed 's/^/device: /' | tee "$report"
else
  echo "device: none (backend $backend)" | tee "$report"
fi

echo "fault            backend secs  | faults | runs | jobs | completed | failed (reason) | lost | mismatched | recomputed | recompute > block | failed checks |  verdict" |
  tee -a "$report"
failures=0
for f in "${faults[@]}"; do
  kind=${f%%:*} args=()
  [ "$kind" = "$f" ] || args=(--seed "${f#*:}")
  log=$logs/${f//:/-seed}.log
  t0=$SECONDS
  # The harness kills every process it started on each exit path (SIGTERM from timeout too).
  timeout -k 10 "$limit" "$bin/fault_harness" "$bin" --fault "$kind" "${args[@]}" \
    --backend "$backend" --model-config tests/fault/small_config.json >"$log" 2>&1
  rc=$?
  # The summary row: faults, runs, jobs, completed, failed, lost, mismatched, recomputed, ...
  row=$(grep -A2 '^| faults injected' "$log" | tail -n 1)
  case $rc in
    0) verdict=ok ;;
    124) verdict="TIMEOUT after ${limit}s" ;;
    77) verdict="SKIPPED ($(grep -m1 skipped "$log"))" ;;
    *) verdict="FAIL (exit $rc): $(grep -m1 -E '^(FAIL|FATAL) ' "$log")" ;;
  esac
  [ "$rc" = 0 ] || failures=$((failures + 1))
  printf '%-16s %-5s %4ss  %s  %s\n' "$f" "$backend" $((SECONDS - t0)) "${row:-(no summary)}" \
    "$verdict" | tee -a "$report"
done
echo "gpu-faults: ${#faults[@]} faults, $failures failed ($(date -u +%F), backend $backend)" |
  tee -a "$report"
[ "$failures" = 0 ]
