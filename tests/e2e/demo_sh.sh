#!/usr/bin/env bash
# demo_sh.sh DEMO_SH BIN_DIR: the README's main command, scripts/demo.sh, on an existing build
# (NOSA_DEMO_BIN: no install, no build) in a private run directory and model cache:
# the default model is generated, the printed text is nosa-generate's for the same prompt
# (greedy, the reference decode), the finish line gives a tokens/s figure, and the node is
# stopped afterwards (no process, pid file or /dev/shm arena left); a job the coordinator
# refuses makes the demo fail, and it still stops the node.
set -uo pipefail
demo_sh=$1 bin=$2
for b in nosa-kvhost nosa-worker nosa-coordinator nosa nosa-mkmodel nosa-generate; do
  [ -x "$bin/$b" ] || { echo "demo_sh: skipped: $b is not built"; exit 77; }
done
tag=demosh-$$
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nosa-$tag-XXXXXX")
run=$tmp/run
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
cleanup() {
  for f in "$run"/*.pid; do [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
  rm -f /dev/shm/nosa-"$(id -u)"-*"$tag"*
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

demo() { # out-file demo-args...: runs the demo on this build, in the private run dir and cache
  local out=$1; shift
  NOSA_DEMO_BIN=$bin NOSA_RUN_DIR=$run NOSA_NODE_TAG=$tag XDG_CACHE_HOME=$tmp/cache \
    "$demo_sh" --cpu-workers 1 --arena 64M --ready-timeout 30 --stop-timeout 5 "$@" >"$out" 2>&1
}
stopped() { # out-file what: every process the demo started has exited, nothing left behind
  local p
  for p in $(sed -nE 's/^node.sh: started +[a-z0-9]+ +pid ([0-9]+) .*/\1/p' "$1"); do
    alive "$p" && fail "$2: pid $p still runs after the demo"
  done
  grep -q '^node.sh: started' "$1" || fail "$2: no process started: $(cat "$1")"
  ls "$run"/*.pid >/dev/null 2>&1 && fail "$2: pid files left in $run"
  ls /dev/shm/nosa-"$(id -u)"-*"$tag"* >/dev/null 2>&1 && fail "$2: arenas left in /dev/shm"
}

prompt="demo test: the KV cache lives in host memory"
demo "$tmp/out" --prompt "$prompt" --max-tokens 12 || fail "demo exit $?: $(cat "$tmp/out")"
cat "$tmp/out"
model=$tmp/cache/nosa/model-tiny
[ -f "$model/config.json" ] || fail "the demo did not generate the default model in $model"
# The text between the two demo lines, byte for byte, against the reference decode.
awk '/^demo: finish /{f=0} f{print} /^demo: generated text/{f=1}' "$tmp/out" >"$tmp/text"
"$bin/nosa-generate" --model "$model" --prompt "$prompt" --max-tokens 12 >"$tmp/ref" 2>"$tmp/ref.err" ||
  fail "nosa-generate: $(cat "$tmp/ref.err")"
[ -s "$tmp/ref" ] && cmp -s "$tmp/text" "$tmp/ref" ||
  fail "the demo's text is not nosa-generate's: $(od -c "$tmp/text" | head -5) vs $(od -c "$tmp/ref" | head -5)"
re='^demo: finish (length|eos), ([0-9]+) tokens in [0-9.]+ s: ([0-9.]+) tokens/s end to end'
line=$(grep -E "$re" "$tmp/out") || fail "no finish line with a tokens/s figure"
if [[ $line =~ $re ]]; then
  [ "${BASH_REMATCH[2]}" -ge 1 ] && [ "${BASH_REMATCH[2]}" -le 12 ] || fail "token count: $line"
  awk -v t="${BASH_REMATCH[3]}" 'BEGIN { exit !(t > 0) }' || fail "tokens/s is not > 0: $line"
fi
stopped "$tmp/out" "demo"

# A job the coordinator refuses (more tokens than any worker's context): the demo says so,
# exits 1, and stops the node all the same.
demo "$tmp/bad" --max-tokens 4000000000 && fail "the demo succeeded with a refused job"
grep -q '^demo: nosa submit failed (exit 4)' "$tmp/bad" && grep -q '^nosa: refused: ' "$tmp/bad" ||
  fail "refused job: no clear error: $(tail -n 5 "$tmp/bad")"
stopped "$tmp/bad" "refused job"

bad=$(NOSA_DEMO_BIN=$tmp/nonexistent "$demo_sh" 2>&1) && fail "NOSA_DEMO_BIN of no directory accepted"
grep -q "NOSA_DEMO_BIN=$tmp/nonexistent is not a directory" <<<"$bad" || fail "bad NOSA_DEMO_BIN: $bad"

echo "demo_sh: $fails failed"
[ $fails = 0 ]
