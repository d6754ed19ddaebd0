#!/usr/bin/env bash
# The main job: installs what it needs, builds, starts a node (kv-host, workers, coordinator)
# with deploy/node.sh on a small default model (generated with nosa-mkmodel when missing; CPU
# workers when there is no GPU), submits one job, prints the generated text and the
# throughput, and stops the node, whatever happens.
#   scripts/demo.sh [--prompt TEXT] [--max-tokens N] [node.sh start flags...]
# NOSA_DEMO_BIN=DIR uses the binaries of an existing build (tests/e2e/demo_sh.sh): no install,
# no build. NOSA_RUN_DIR and NOSA_NODE_TAG (default demo) say where the node runs.
set -euo pipefail
cd "$(dirname "$0")/.."
prompt="NOSA keeps the KV cache in host memory and moves only the block delta."
max_tokens=64
start_flags=()
while [ $# -gt 0 ]; do
  case $1 in
    --prompt|--max-tokens)
      [ $# -ge 2 ] || { echo "demo: $1 needs a value" >&2; exit 2; }
      if [ "$1" = --prompt ]; then prompt=$2; else max_tokens=$2; fi
      shift 2 ;;
    *) start_flags+=("$1"); shift ;;
  esac
done

if [ -n "${NOSA_DEMO_BIN:-}" ]; then
  bin=$(cd "$NOSA_DEMO_BIN" && pwd) || { echo "demo: NOSA_DEMO_BIN=$NOSA_DEMO_BIN is not a directory" >&2; exit 1; }
else
  scripts/install-deps.sh
  BUILD_DIR=build scripts/build.sh
  bin=$PWD/build/bin
fi
run_dir=${NOSA_RUN_DIR:-${TMPDIR:-/tmp}/nosa-demo-$(id -u)}
# Its own arena names: a node already running here is not touched.
export NOSA_NODE_TAG=${NOSA_NODE_TAG:-demo}

stop_node() { deploy/node.sh stop --run-dir "$run_dir" --bin "$bin" --fresh || true; }
deploy/node.sh start --run-dir "$run_dir" --bin "$bin" --fresh --metrics-port 0 "${start_flags[@]}"
trap stop_node EXIT

echo
echo "demo: nosa submit --prompt \"$prompt\" --max-tokens $max_tokens"
echo "demo: generated text (random weights, so the words are noise; the path is real):"
# The CLI's text output: the text on stdout as it comes, then on stderr
# "nosa: job ID: REASON, N tokens in S s (T tokens/s)"; stderr is kept to read that line.
rc=0
exec 3>&1
summary=$("$bin/nosa" --run-dir "$run_dir" submit --prompt "$prompt" --max-tokens "$max_tokens" \
          2>&1 1>&3 3>&-) || rc=$?
exec 3>&-
line=$(grep -E '^nosa: job [0-9]+: ' <<<"$summary" | tail -n 1 || true)
re='^nosa: job [0-9]+: ([a-z]+)(: .*)?, ([0-9]+) tokens in ([0-9.]+) s \(([0-9.]+) tokens/s\)$'
if [ $rc != 0 ] || ! [[ $line =~ $re ]]; then
  echo "demo: nosa submit failed (exit $rc):" >&2
  printf '%s\n' "$summary" >&2
  exit 1
fi
echo "demo: finish ${BASH_REMATCH[1]}, ${BASH_REMATCH[3]} tokens in ${BASH_REMATCH[4]} s:" \
     "${BASH_REMATCH[5]} tokens/s end to end (prefill included)"
echo
"$bin/nosa" --run-dir "$run_dir" status || true
