#!/usr/bin/env bash
# The main job: installs what it needs, builds, starts a node (kv-host, workers, coordinator)
# with deploy/node.sh on a small default model (generated with nosa-mkmodel when missing; CPU
# workers when there is no GPU), submits one job, prints the generated text and the
# throughput, and stops the node, whatever happens.
#   scripts/demo.sh [--prompt TEXT] [--max-tokens N] [node.sh start flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
prompt="NOSA keeps the KV cache in host memory and moves only the block delta."
max_tokens=64
start_flags=()
while [ $# -gt 0 ]; do
  case $1 in
    --prompt) prompt=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    *) start_flags+=("$1"); shift ;;
  esac
done

scripts/install-deps.sh
BUILD_DIR=build scripts/build.sh
bin=$PWD/build/bin
run_dir=${NOSA_RUN_DIR:-${TMPDIR:-/tmp}/nosa-demo-$(id -u)}
export NOSA_NODE_TAG=demo # its own arena names: a node already running here is not touched

stop_node() { deploy/node.sh stop --run-dir "$run_dir" --bin "$bin" --fresh || true; }
deploy/node.sh start --run-dir "$run_dir" --bin "$bin" --fresh --metrics-port 0 "${start_flags[@]}"
trap stop_node EXIT

echo
echo "demo: nosa submit --prompt \"$prompt\" --max-tokens $max_tokens"
t0=$(date +%s.%N)
out=$("$bin/nosa" --run-dir "$run_dir" --json submit --prompt "$prompt" --max-tokens "$max_tokens")
t1=$(date +%s.%N)
final=$(printf '%s\n' "$out" | grep '"reason"' | tail -n 1)
[ -n "$final" ] || { echo "demo: no result from nosa submit:"; printf '%s\n' "$out"; exit 1; }
field() { printf '%s' "$final" | sed -nE "s/.*\"$1\" *: *(\"([^\"\\\\]|\\\\.)*\"|[0-9.]+).*/\\1/p"; }
n=$(field generated_tokens)
echo "demo: generated text (random weights, so the words are noise; the path is real):"
echo "  $(field text)"
echo "demo: finish $(field reason), $n tokens in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s:" \
     "$(awk -v n="${n:-0}" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }') tokens/s end to end (prefill included)"
echo
"$bin/nosa" --run-dir "$run_dir" status || true
