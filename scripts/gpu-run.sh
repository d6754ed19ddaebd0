#!/usr/bin/env bash
# The one script the GPU machine runs (device `run`, from the repository root), over the
# build carried in .devrun/ (bin/, rtlibs/; made here by scripts/gpu-run.sh --pack):
# the GPU tests directly (ctest would need the build's absolute paths), then
# compute-sanitizer memcheck and racecheck over them, logs under $OUT.
#
#   scripts/gpu-run.sh --pack      # here: build build-cuda for sm_90, fill .devrun/
#   scripts/gpu-run.sh             # there: tests + sanitizers, summary table last
set -uo pipefail
cd "$(dirname "$0")/.."
tests=(test_cuda_kernels test_cuda_backend)
bench=bench_cuda_decode

if [ "${1:-}" = "--pack" ]; then
  set -e
  BUILD_DIR=build-cuda scripts/build.sh -DCMAKE_CUDA_ARCHITECTURES=90
  rm -rf .devrun && mkdir -p .devrun/bin
  for t in "${tests[@]}" "$bench"; do cp build-cuda/bin/"$t" .devrun/bin/; done
  strip .devrun/bin/* || true
  /work/shared/device/pack-runtime-libs .devrun/rtlibs .devrun/bin/* >/dev/null
  du -sh .devrun
  exit 0
fi

out=${OUT:-/tmp/gpu-run-out}
mkdir -p "$out"
export LD_LIBRARY_PATH=$PWD/.devrun/rtlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
summary=()
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/device.txt"

# At most 8 files come back: each run's log is appended to $OUT/<name up to the first dot>.log.
run() { # name, timeout, command...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS log=/tmp/gpu-run.$name.log
  timeout "$limit" "$@" >"$log" 2>&1
  local rc=$?
  { echo "=== $name rc=$rc"; cat "$log"; } >>"$out/${name%%.*}.log"
  summary+=("$(printf '%-34s rc=%-3s %4ss  %s' "$name" "$rc" "$((SECONDS - t0))" \
    "$(grep -E 'passed|ERROR SUMMARY|RACECHECK SUMMARY|skipped|nosa-offload' "$log" | tail -1)")")
  tail -n 12 "$log"
}

for t in "${tests[@]}"; do run "$t" 240 .devrun/bin/"$t"; done
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for t in "${tests[@]}"; do
  run "$t.memcheck" 200 "$cs" --tool memcheck --error-exitcode 9 .devrun/bin/"$t"
done
# Decode-step timing, 1B shape: batch 16 and 1 at 16K context.
run bench_b16 240 .devrun/bin/"$bench" 1b 16 16384 30
run bench_b1 120 .devrun/bin/"$bench" 1b 1 16384 30
# racecheck: cuBLAS's own kernels (nvjet*) are excluded (their shared-memory use goes
# through asynchronous copies that racecheck reports as hazards); one configuration that
# reaches every kernel of ours (nosa, offloaded) against the CPU, 70 steps.
rc_opts=(--tool racecheck --error-exitcode 9 --kernel-name-exclude kns=nvjet)
run test_cuda_kernels.racecheck 120 "$cs" "${rc_opts[@]}" .devrun/bin/test_cuda_kernels
NOSA_TEST_ONLY=nosa-off NOSA_TEST_STEPS=70 run test_cuda_backend.racecheck 240 "$cs" \
  "${rc_opts[@]}" .devrun/bin/test_cuda_backend
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
