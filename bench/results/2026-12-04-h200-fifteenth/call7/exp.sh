#!/usr/bin/env bash
# Fifteenth session, call 7: is the cuda backend's output batch-dependent? One prompt P
# (the e2e's 137-token shape) alone and in a two-prompt batch (P, Q), seeded top-p and greedy,
# nosa-generate --config 1b (random weights in memory), HEAD 1397335's build.
set -uo pipefail
export LD_LIBRARY_PATH=$PWD/.devrun/e2e/rtlibs
out=${OUT:-/tmp/out}; mkdir -p "$out"
P="the cache lives in host memory and blocks move when selected. the cache lives in host memory and blocks move when selected. the cache li"
Q="blocks move when selected. the cache lives in host memory and blocks move"
printf '%s\n%s\n' "$P" "$Q" > /tmp/batch.txt
g() { timeout 60 .devrun/e2e/bin/nosa-generate --backend cuda --gpu 0 --config 1b --mode nosa --max-tokens 8 --json "$@"; }
for s in "0.8 0.9" "0 1"; do
  set -- $s
  echo "== T $1 top-p $2: alone" >> "$out/bi.log"
  g --prompt "$P" --temperature $1 --top-p $2 --seed 13 >> "$out/bi.log" 2>&1
  echo "== T $1 top-p $2: batch (P, Q)" >> "$out/bi.log"
  g --batch-file /tmp/batch.txt --temperature $1 --top-p $2 --seed 13 >> "$out/bi.log" 2>&1
  echo "== T $1 top-p $2: alone, offloaded" >> "$out/bi.log"
  g --prompt "$P" --temperature $1 --top-p $2 --seed 13 --offload >> "$out/bi.log" 2>&1
done
grep -E '^==|"tokens"' "$out/bi.log" | sed -E 's/"text".*//'
