#!/usr/bin/env bash
# The one script the GPU machine runs (device `run`, from the repository root), over the
# build carried in .devrun/ (bin/, rtlibs/; made here by scripts/gpu-run.sh --pack):
# the GPU tests directly (ctest would need the build's absolute paths), then
# compute-sanitizer memcheck and racecheck over them, logs under $OUT.
#
#   scripts/gpu-run.sh --pack          # here: build build-cuda (sm_90), fill .devrun/
#   scripts/gpu-run.sh [PHASE...]      # there: the phases named (default: all but nosa-bench),
#                                      # summary table last
# Phases: tests, memcheck, bench (decode step; .devrun/base/bin/bench_cuda_decode, when
# packed, is run next to it for a before/after comparison), attention (the attention kernel
# alone against the HBM copy rate: bench_cuda_attention), select (the scoring and top-k
# kernels alone, 128K: bench_cuda_select), racecheck, profile, nosa-bench
# (the benchmark grid of bench/, GRID_ARGS overrides its arguments; .devrun/base/bin/nosa-bench,
# when packed, runs the same grid after it). MEMCHECK_ENV="VAR=value ..." is set for the
# memcheck runs only (e.g. NOSA_TEST_ONLY=nosa-off NOSA_TEST_STEPS=70 for a shorter pass).
set -uo pipefail
cd "$(dirname "$0")/.."
tests=(test_cuda_kernels test_cuda_backend)
bench=bench_cuda_decode
attbench=bench_cuda_attention
selbench=bench_cuda_select

if [ "${1:-}" = "--pack" ]; then
  set -e
  # Only the targets that travel (the rest of the tree may be mid-edit by others).
  cmake -S . -B build-cuda -G Ninja -DNOSA_CUDA_ARCH=90 -DCMAKE_BUILD_TYPE=Release \
    >/dev/null
  ninja -C build-cuda "${tests[@]}" "$bench" "$attbench" "$selbench" nosa-bench
  rm -rf .devrun && mkdir -p .devrun/bin
  for t in "${tests[@]}" "$bench" "$attbench" "$selbench" nosa-bench; do cp build-cuda/bin/"$t" .devrun/bin/; done
  # A build of another tree (BASE_BUILD=dir with bin/bench_cuda_decode, and bin/nosa-bench
  # where built) to compare against.
  if [ -n "${BASE_BUILD:-}" ]; then
    mkdir -p .devrun/base/bin && cp "$BASE_BUILD/bin/$bench" .devrun/base/bin/
    if [ -x "$BASE_BUILD/bin/nosa-bench" ]; then cp "$BASE_BUILD/bin/nosa-bench" .devrun/base/bin/; fi
  fi
  strip .devrun/bin/* .devrun/base/bin/* 2>/dev/null || true
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

phases=("$@")
[ ${#phases[@]} -gt 0 ] || phases=(tests memcheck bench racecheck profile)
want() { [[ " ${phases[*]} " == *" $1 "* ]]; }
cs=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)

if want tests; then
  for t in "${tests[@]}"; do run "$t" 240 .devrun/bin/"$t"; done
fi
if want memcheck; then
  for t in "${tests[@]}"; do
    # shellcheck disable=SC2086 # MEMCHECK_ENV is a list of assignments
    run "$t.memcheck" 200 env ${MEMCHECK_ENV:-} "$cs" --tool memcheck --error-exitcode 9 \
      .devrun/bin/"$t"
  done
fi
if want bench; then
  # Decode-step timing, 1B shape: batch 16 and 1 at 16K context (and the base build's).
  for bin in .devrun/bin .devrun/base/bin; do
    [ -x "$bin/$bench" ] || continue
    tag=${bin#.devrun/}; tag=${tag%bin}; tag=${tag%/}
    run "bench_b16${tag:+_$tag}" 240 "$bin/$bench" 1b 16 16384 30
    run "bench_b1${tag:+_$tag}" 120 "$bin/$bench" 1b 1 16384 30
  done
  # The same without CUDA graphs (every kernel launched by the host each step).
  NOSA_CUDA_GRAPHS=0 run bench_b1.nograph 120 .devrun/bin/"$bench" 1b 1 16384 30
  NOSA_CUDA_GRAPHS=0 run bench_b16.nograph 120 .devrun/bin/"$bench" 1b 16 16384 30 nosa-offload
fi
if want attention; then
  run "$attbench" 200 .devrun/bin/"$attbench" 1b
fi
if want select; then
  run "$selbench" 120 .devrun/bin/"$selbench" 1b 131072 16,64,256
fi
# racecheck over everything (kernel filters made the sanitizer fail here); hazards inside
# cuBLAS's own kernels (nvjet*) are counted apart: racecheck does not follow their
# asynchronous-copy barriers. One configuration that reaches every kernel of ours (nosa,
# offloaded) against the CPU, RACECHECK_STEPS steps (default 70), and its prompts prefilled
# side by side; RACECHECK_SECONDS (default 300) per binary. RACECHECK_TESTS="..." picks the
# binaries (default both).
for t in ${RACECHECK_TESTS:-test_cuda_kernels test_cuda_backend}; do
  want racecheck || break
  NOSA_TEST_ONLY=nosa-off NOSA_TEST_STEPS=${RACECHECK_STEPS:-70} run "$t.racecheck" \
    "${RACECHECK_SECONDS:-300}" "$cs" --tool racecheck --print-limit 100000 .devrun/bin/"$t"
  log=/tmp/gpu-run.$t.racecheck.log
  ours=$(grep -E 'Race reported|Error:' "$log" | grep -vc nvjet)
  theirs=$(grep -E 'Race reported|Error:' "$log" | grep -c nvjet)
  # A run cut off by its limit reported only the hazards of what it reached.
  done_note=$(grep -q 'RACECHECK SUMMARY' "$log" && echo "" || echo " (did not finish: so far)")
  summary+=("$(printf '%-34s hazards in our kernels: %s, in cuBLAS nvjet kernels: %s%s' \
    "$t.racecheck" "$ours" "$theirs" "$done_note")")
done
# Per-kernel GPU time (Nsight Compute, one metric): one batch-1 decode step at 16K, or with
# PROFILE_ARGS="..." the kernels of `nosa-bench PROFILE_ARGS` after the first PROFILE_SKIP
# (default 400) launches that are not the fill's kv_resume kernels.
if want profile && command -v ncu >/dev/null; then
  prof=(ncu --clock-control none --metrics gpu__time_duration.sum --csv -k 'regex:^(?!kv_res).*')
  if [ -n "${PROFILE_ARGS:-}" ]; then
    read -r -a pargs <<<"$PROFILE_ARGS"
    run profile_b1 400 "${prof[@]}" --launch-skip "${PROFILE_SKIP:-400}" --launch-count 400 \
      .devrun/bin/nosa-bench "${pargs[@]}"
  else
    run profile_b1 240 "${prof[@]}" --launch-count 320 .devrun/bin/"$bench" 1b 1 16384 1 nosa-resident
  fi
  python3 - "/tmp/gpu-run.profile_b1.log" <<'PY' | tee -a "$out/profile_b1.log"
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr = rows[0]; k = hdr.index("Kernel Name"); v = hdr.index("Metric Value")
tot = collections.Counter(); cnt = collections.Counter()
for r in rows[1:]:
    name = r[k].split("(")[0][:60]
    try: tot[name] += float(r[v].replace(",", "")); cnt[name] += 1
    except ValueError: pass
all_ns = sum(tot.values())
print(f"kernels {sum(cnt.values())}, total {all_ns/1e6:.3f} ms")
for n, t in tot.most_common(20): print(f"{t/1e6:9.3f} ms {cnt[n]:5d}x {n}")
PY
fi
if want nosa-bench; then
  # The benchmark grid (docs/BENCH.md), nosa-bench built here and carried in .devrun/bin.
  read -r -a grid <<<"${GRID_ARGS:---backend cuda --config 1b --modes dense-resident,infllmv2-offload,nosa-offload,nosa-resident --batch 8,16,32,64,128 --context 16K,32K,64K,128K --workload random,correlated:0.9 --steps 16 --warmup 4 --fill synthetic --dense-max 512}"
  # CSV, JSON and a PNG per (workload, context): one tar comes back (at most 8 files do).
  for bin in .devrun/bin .devrun/base/bin; do
    [ -x "$bin/nosa-bench" ] || continue
    tag=${bin#.devrun/}; tag=${tag%bin}; tag=${tag%/}
    name=grid${tag:+_$tag}
    timeout -s INT "${GRID_SECONDS:-500}" "$bin/nosa-bench" "${grid[@]}" --out /tmp/"$name" \
      >"$out/$name.log" 2>&1
    summary+=("nosa-bench${tag:+ ($tag)} rc=$? $(grep -c '^cuda ' "$out/$name.log") table lines")
    tail -n 60 "$out/$name.log"
    tar -C /tmp -cf "$out/$name.tar" "$name"
  done
fi
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
