#!/usr/bin/env bash
# The test command: installs what it needs, builds, runs every test with ctest; then builds
# the C code again under AddressSanitizer + UndefinedBehaviorSanitizer and runs the tests
# there too, and fuzzes every decoder and loader briefly (scripts/fuzz.sh, clang + libFuzzer).
# GPU tests skip with a message where there is no GPU.
#   scripts/test.sh            all three passes
#   scripts/test.sh --fast     the plain pass only
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)
echo "== build (release)"
BUILD_DIR=build scripts/build.sh
echo "== ctest (release)"
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 600
if [ "${1:-}" != "--fast" ]; then
  echo "== build (ASan + UBSan, C code; CUDA off: the sanitizers do not cover device code)"
  BUILD_DIR=build-asan scripts/build.sh -DNOSA_SANITIZE=ON -DNOSA_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug
  echo "== ctest (ASan + UBSan)"
  # Every C test but those labelled slow: more fault points and seeds of kinds this pass runs
  # once each, and the soak; under the sanitizers they add about 11 minutes on 2 cores, so
  # they run in the release pass above.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 900 -LE slow
  echo "== fuzz (libFuzzer + ASan + UBSan, clang; a short run over the committed corpora)"
  scripts/fuzz.sh
fi
