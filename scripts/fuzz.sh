#!/usr/bin/env bash
# Short fixed-time fuzz run of every target in fuzz/targets.cmake over its committed seed corpus
# (fuzz/corpus/<target>/) and its regression inputs (tests/regress/<target>/). Builds the
# libFuzzer binaries with clang into build-fuzz (ASan + UBSan). A finding stops the run with
# exit 1 and leaves the input in build-fuzz/findings/<target>/ (docs/FUZZ.md: what to do next).
#   scripts/fuzz.sh                 every target, FUZZ_SECONDS each (default 12), 2 at a time
#   scripts/fuzz.sh TARGET...       only these
# Environment: FUZZ_SECONDS, FUZZ_SEED (default 1), FUZZ_JOBS (targets run at once, default
# 2), BUILD_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-fuzz}
seconds=${FUZZ_SECONDS:-12} # 11 targets, 2 at a time: 6 rounds (docs/FUZZ.md)
# A fixed seed (CI's runs repeat: a finding shows again on the same build); FUZZ_SEED=0 lets
# libFuzzer draw one, for exploring by hand.
seed=${FUZZ_SEED:-1}
jobs=${FUZZ_JOBS:-2}
CC=clang cmake -S . -B "$build" -G Ninja -DNOSA_FUZZ=ON -DNOSA_SANITIZE=ON -DNOSA_CUDA=OFF \
  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-g -O1" >/dev/null # asserts on, faster than -O0
cmake --build "$build" --target nosa_fuzz -j "$(nproc)"
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets <"$build/fuzz/targets.txt" # written by fuzz/CMakeLists.txt
fi
run_one() { # run_one TARGET: fuzz it for $seconds; the grown corpus stays in the build dir
  local t=$1 # its own line: the words of one local are expanded before any is assigned
  local work=$build/fuzz-work/$t findings=$build/findings/$t
  mkdir -p "$work" "$findings"
  local seeds=(fuzz/corpus/"$t")
  [ -d tests/regress/"$t" ] && seeds+=(tests/regress/"$t")
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$build/bin/fuzz_$t" -seed="$seed" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$findings/" "$work" "${seeds[@]}" \
    >"$build/findings/$t.log" 2>&1; then
    echo "fuzz $t: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$build/findings/$t.log" |
      grep -o '[0-9]*$') runs, no finding"
  else
    echo "fuzz $t: FINDING (input in $findings/, log $build/findings/$t.log):"
    grep -E 'ERROR|SUMMARY|invariant|runtime error' "$build/findings/$t.log" | head -5
    return 1
  fi
}
export -f run_one
export build seconds seed
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'
