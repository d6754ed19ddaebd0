#!/usr/bin/env bash
# The whole system end to end (device `run`, from the repository root): for each model
# configuration named (default: tiny), one nosa-kvhost, nosa-workers and one nosa-coordinator
# in a private run directory, either
#   - started directly with the flags of docs/PROCESSES.md: two workers sharing GPU 0
#     (`--backend cuda --gpu 0`: each registers the arena), what one GPU can show; or
#   - NOSA_E2E_NODE=1: started by `deploy/node.sh start --kvhosts one`: one kv-host and a worker
#     per GPU (every GPU nvidia-smi lists; cpu: NOSA_E2E_CPU_WORKERS, 2), each pinned to its
#     GPU's NUMA node, all on the one kv-host (issue 8; scripts/gpu-multi.sh runs it so);
# then
#   jobs:  20 jobs of mixed prompt and output lengths (the lengths of tests/e2e; even jobs
#          greedy, odd ones seeded top-p) submitted at once with `nosa --json submit`; each
#          job's tokens must equal `nosa-generate`'s (same backend, model, prompt, seed, mode);
#   kill:  6 long jobs; once every worker decodes (or 6 of them), kill -9 the busiest one; every
#          job must finish on the others with the reference tokens and recomputed_tokens <=
#          block_size.
# The peak tokens/s of `nosa --json status` is reported per phase. Exit 1 on any mismatch or
# failure, after a summary table; every process started is killed and the arena removed on
# every exit path. Under $OUT: rows.txt (the device, then a row per phase as measured),
# summary.txt, logs.tar (every process's log; at most 8 files come back from the device).
#
#   scripts/gpu-e2e.sh --pack          # here: build build-gpue2e (sm_90), fill .devrun/e2e/
#                                      # (NOSA_E2E_PACK_EXTRA: more targets to build and carry)
#   scripts/gpu-e2e.sh [CONFIG...]     # there (or here): tiny, 1b, or a config file
#
# Environment: NOSA_E2E_BACKEND (cuda; cpu runs it on a machine without GPU), NOSA_E2E_BIN
# (.devrun/e2e/bin when packed, else build/bin), NOSA_E2E_MODE (nosa), NOSA_E2E_PARALLEL
# (reference runs at once, 4), NOSA_E2E_HEARTBEAT_MS (coordinator --heartbeat-timeout-ms, 3000;
# with NOSA_E2E_NODE node.sh leaves the coordinator's default, also 3000),
# NOSA_E2E_KILL_TOKENS (max tokens of the kill phase's jobs: 3000 tiny, 400 else).
set -uo pipefail
cd "$(dirname "$0")/.."
bins=(nosa-kvhost nosa-worker nosa-coordinator nosa nosa-mkmodel nosa-generate)

if [ "${1:-}" = "--pack" ]; then
  set -e
  read -r -a extra <<<"${NOSA_E2E_PACK_EXTRA:-}"
  bins+=("${extra[@]}")
  # -Wno-error=stringop-overflow: gcc's -O3 flags common/nosa_msg.c's explicit_bzero (a false
  # positive through inlining) and the release build would stop there.
  cmake -S . -B build-gpue2e -G Ninja -DNOSA_CUDA_ARCH=90 -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_C_FLAGS=-Wno-error=stringop-overflow >/dev/null
  ninja -C build-gpue2e -j "$(nproc)" "${bins[@]}"
  rm -rf .devrun/e2e && mkdir -p .devrun/e2e/bin
  for b in "${bins[@]}"; do cp build-gpue2e/bin/"$b" .devrun/e2e/bin/; done
  strip .devrun/e2e/bin/*
  /work/shared/device/pack-runtime-libs .devrun/e2e/rtlibs .devrun/e2e/bin/* >/dev/null
  du -sh .devrun/e2e
  exit 0
fi

backend=${NOSA_E2E_BACKEND:-cuda}
node=${NOSA_E2E_NODE:-0}
mode=${NOSA_E2E_MODE:-nosa}
parallel=${NOSA_E2E_PARALLEL:-4}
kill_tokens=${NOSA_E2E_KILL_TOKENS:-}
. scripts/devrun-e2e.sh
. scripts/node-procs.sh
node_timeout() { fail "$*"; }
bin=${NOSA_E2E_BIN:-$(devrun_e2e_bin nosa)}
bin=$(cd "$bin" && pwd) || exit 1
for b in "${bins[@]}"; do [ -x "$bin/$b" ] || { echo "gpu-e2e: $bin/$b is not built" >&2; exit 1; }; done
configs=("$@"); [ ${#configs[@]} -gt 0 ] || configs=(tiny)
out=${OUT:-/tmp/gpu-e2e-out}
mkdir -p "$out"
dev_flags=(--backend "$backend"); [ "$backend" != cuda ] || dev_flags+=(--gpu 0)
if [ "$backend" = cuda ]; then
  nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader |
    sed 's/^/device: /' | tee "$out/rows.txt"
else
  : >"$out/rows.txt"
fi

tag=gpue2e-$$
run=$(mktemp -d "${TMPDIR:-/tmp}/nosa-$tag-XXXXXX")
pids=()
declare -A wpid # worker name -> pid
node_flags=()   # NOSA_E2E_NODE: deploy/node.sh's flags for the current configuration
cleanup() {
  local p
  [ ${#node_flags[@]} = 0 ] || deploy/node.sh stop "${node_flags[@]}" --fresh >/dev/null 2>&1
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -f /dev/shm/nosa-"$(id -u)"-kvh*-"$tag"*
  tar -C "$run" -cf "$out/logs.tar" $(cd "$run" && ls ./*.log ./*/*.log 2>/dev/null) 2>/dev/null
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

summary=()
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# The processes of one configuration, started directly: kv-host, coordinator, two workers on
# the one device. Sets n_workers and wpid.
node_up_direct() { # cfg model arena
  local cfg=$1 model=$2 arena=$3 w name
  rm -f "$run"/*.sock
  start kvh "$bin/nosa-kvhost" --run-dir "$run" --name "kvh-$tag-$cfg" --endpoint "ipc://$run/kvh0.sock" \
    --arena "$arena" --model "$model"
  wait_until 60 "$cfg: kv-host socket" test -S "$run/kvh0.sock" || return 1
  start coord "$bin/nosa-coordinator" --run-dir "$run" --workers "ipc://$run/coord-workers.sock" \
    --clients "ipc://$run/coord.sock" --kvhost "ipc://$run/kvh0.sock" \
    --journal "$dir/coordinator.journal" --metrics-port 0 \
    --heartbeat-timeout-ms "${NOSA_E2E_HEARTBEAT_MS:-3000}"
  wait_until 30 "$cfg: coordinator answering" cli status || return 1
  for w in 0 1; do
    name=${backend}0-w$w
    start "$name" "$bin/nosa-worker" --run-dir "$run" --name "$name" \
      --coordinator "ipc://$run/coord-workers.sock" --kvhost "ipc://$run/kvh0.sock" \
      --model "$model" --mode "$mode" "${dev_flags[@]}"
    wpid[$name]=${pids[-1]}
  done
  n_workers=2
}

# NOSA_E2E_NODE: the node of deploy/node.sh with one kv-host for every worker. Sets
# n_workers and wpid from its pid files.
node_up_sh() { # cfg model arena
  local cfg=$1 model=$2 arena=$3 f name
  export NOSA_NODE_TAG=$tag-$cfg # the arena's name, so cleanup finds it
  node_flags=(--run-dir "$run" --bin "$bin" --model "$model" --arena "$arena" --kvhosts one
              --backend "$backend" --cpu-workers "${NOSA_E2E_CPU_WORKERS:-2}" --metrics-port 0
              --ready-timeout 120 --stop-timeout 10)
  deploy/node.sh plan "${node_flags[@]}" >"$run/node-$cfg.log" 2>&1
  deploy/node.sh start "${node_flags[@]}" --fresh >>"$run/node-$cfg.log" 2>&1 ||
    { fail "$cfg: deploy/node.sh start failed (node-$cfg.log)"; tail -n 20 "$run/node-$cfg.log"; return 1; }
  cat "$run/node-$cfg.log"
  n_workers=0
  for f in "$run"/gpu*.pid "$run"/cpu*.pid; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .pid)
    wpid[$name]=$(cat "$f")
    n_workers=$((n_workers + 1))
  done
  # No pids of ours: node.sh stops its processes (and checks a pid is still a nosa binary).
  [ "$n_workers" -ge 2 ] || { fail "$cfg: $n_workers workers; the kill phase needs two"; return 1; }
}

node_down() { # the processes of the configuration just measured
  local p
  if [ ${#node_flags[@]} -gt 0 ]; then
    deploy/node.sh stop "${node_flags[@]}" --fresh >>"$run/node-$cfg.log" 2>&1
    node_flags=()
  fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  [ ${#pids[@]} = 0 ] || wait "${pids[@]}" 2>/dev/null
  pids=()
  wpid=()
}

# How many of these pids still run (not exited, not a zombie).
alive_count() {
  local p n=0
  for p; do
    [ -r "/proc/$p/status" ] && ! grep -qs '^State:[[:space:]]*Z' "/proc/$p/status" && n=$((n + 1))
  done
  echo $n
}

# One field of `nosa --json status` (python expression over s, the status object).
status_py() { cli status 2>/dev/null | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }

all_alive() { [ "$(status_py 'sum(w["alive"] for w in s["workers"])')" = "$n_workers" ]; }
# Every worker (or 6, one per kill job) holds jobs (their heartbeats say) and the clients got 4
# blocks' worth of tokens.
all_decoding() {
  [ "$(cat "$dir"/kill.served.* | grep -c '"tokens":\[{')" -ge $((4 * block)) ] &&
    [ "$(status_py "int(sum(w['running'] > 0 for w in s['workers']) >= min($n_workers, 6))")" = 1 ]
}

# The prompt of tests/e2e: words from a list starting at salt, cut to len bytes.
make_prompt() { # len salt
  local words=("the " "cache " "lives " "in " "host " "memory " "and " "blocks " "move " "when " "selected. ")
  local s="" w=$2
  while [ ${#s} -lt "$1" ]; do s+=${words[$((w % 11))]}; w=$((w + 1)); done
  printf '%s' "${s:0:$1}"
}

# Jobs of a phase: lines "i prompt_len max_tokens temperature top_p seed" in run/cfg/phase.jobs.
write_jobs() { # dir phase lens maxes
  local dir=$1 phase=$2 i=0 len
  local -a lens maxes
  read -r -a lens <<<"$3"; read -r -a maxes <<<"$4"
  : >"$dir/$phase.jobs"
  for len in "${lens[@]}"; do
    if ((i % 2)); then t=0.8 p=0.9; else t=0 p=1; fi
    echo "$i $len ${maxes[$i]} $t $p $((1000 + i))" >>"$dir/$phase.jobs"
    i=$((i + 1))
  done
}

submit_all() { # dir phase: one `nosa --json submit` per job, in the background
  local dir=$1 phase=$2 i len max t p seed
  sub_pids=()
  while read -r i len max t p seed; do
    cli submit --prompt "$(make_prompt "$len" "$i")" --max-tokens "$max" --temperature "$t" \
      --top-p "$p" --seed "$seed" >"$dir/$phase.served.$i" 2>&1 </dev/null &
    sub_pids+=($!)
  done <"$dir/$phase.jobs"
}

references() { # dir phase model: nosa-generate for each job, $parallel at a time
  local dir=$1 phase=$2 model=$3 i len max t p seed ref_pids=()
  while read -r i len max t p seed; do
    while [ "$(alive_count "${ref_pids[@]}")" -ge "$parallel" ]; do sleep 0.05; done
    "$bin/nosa-generate" "${dev_flags[@]}" --model "$model" --mode "$mode" \
      --prompt "$(make_prompt "$len" "$i")" --max-tokens "$max" --temperature "$t" --top-p "$p" \
      --seed "$seed" --json >"$dir/$phase.ref.$i" 2>"$dir/$phase.ref.$i.err" </dev/null &
    ref_pids+=($!)
  done <"$dir/$phase.jobs"
  wait "${ref_pids[@]}"
}

# Compares served and reference tokens; prints one line per job and a last line
# "jobs matched mismatched max_recomputed generated".
compare() { # dir phase block
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
d, phase, block = sys.argv[1], sys.argv[2], int(sys.argv[3])
def last_tokens(path):
    obj = None
    try:
        for line in open(path):
            line = line.strip()
            if not line.startswith("{"): continue
            try: o = json.loads(line)
            except ValueError: continue
            if "tokens" in o or "reason" in o: obj = o
    except OSError: pass
    return obj
n = ok = bad = maxrec = gen = 0
for line in open(f"{d}/{phase}.jobs"):
    i, plen, mt, t, p, seed = line.split()
    n += 1
    s, r = last_tokens(f"{d}/{phase}.served.{i}"), last_tokens(f"{d}/{phase}.ref.{i}")
    why = ""
    if not s or s.get("reason") not in ("length", "eos"):
        why = f"served: {s.get('reason') if s else 'no result'} {s.get('error', '') if s else ''}"
    elif not r or "tokens" not in r: why = "reference: no result"
    elif s["tokens"] != r["tokens"]:
        k = next((k for k, (a, b) in enumerate(zip(s["tokens"], r["tokens"])) if a != b),
                 min(len(s["tokens"]), len(r["tokens"])))
        why = f"tokens differ at {k}: served {len(s['tokens'])}, reference {len(r['tokens'])}"
    rec = s.get("recomputed_tokens", 0) if s else 0
    if rec > block: why += f" recomputed {rec} > block {block}"
    maxrec = max(maxrec, rec)
    gen += len(s["tokens"]) if s and "tokens" in s else 0
    mode = "greedy" if float(t) == 0 else "top-p"
    print(f"  {phase} job {i:>2} prompt {plen:>4} max {mt:>4} {mode:6} recomputed {rec:>3} "
          + ("ok" if not why else "MISMATCH " + why))
    if why: bad += 1
    else: ok += 1
print(n, ok, bad, maxrec, gen)
PY
}

# Polls status until the submits end; keeps the peak tokens/s. Sets peak_tps.
watch_jobs() {
  local tps
  peak_tps=0
  while [ "$(alive_count "${sub_pids[@]}")" -gt 0 ]; do
    tps=$(status_py 's["tokens_per_s"]' 2>/dev/null) || tps=0
    peak_tps=$(python3 -c "print(max(float('$peak_tps'), float('${tps:-0}')))")
    sleep 0.2
  done
  wait "${sub_pids[@]}" 2>/dev/null
}

record() { # config phase seconds comparison-last-line
  local n ok bad maxrec gen
  read -r n ok bad maxrec gen <<<"$4"
  local tps; tps=$(python3 -c "print(${gen:-0} / max($3, 0.001))")
  [ "${bad:-1}" = 0 ] && [ "${n:-0}" -gt 0 ] || fail "$1 $2: ${bad:-?} of ${n:-?} jobs mismatched"
  summary+=("$(printf '%-6s %-5s %-5s jobs %3s ok %3s bad %3s tokens %6s  %6.2fs  %8.1f tok/s (status peak %.1f)  max recomputed %s (block %s)' \
    "$1" "$2" "$backend" "$n" "$ok" "$bad" "$gen" "$3" "$tps" "$peak_tps" "$maxrec" "$block")")
  echo "${summary[-1]}" >>"$out/rows.txt" # survives a run cut short
}

for cfg in "${configs[@]}"; do
  dir=$run/$cfg; mkdir -p "$dir"
  model=$dir/model
  echo "== $cfg: model"
  "$bin/nosa-mkmodel" --config "$cfg" --out "$model" >"$run/mkmodel-$cfg.log" 2>&1 ||
    { fail "$cfg: nosa-mkmodel failed (see mkmodel-$cfg.log)"; continue; }
  block=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['sparse_config']['block_size'])" "$model/config.json") ||
    { fail "$cfg: no block_size in $model/config.json"; continue; }
  # The kill phase's jobs must outlive a few status polls: tiny decodes thousands of tokens/s.
  arena=64M kt=${kill_tokens:-3000}; [ "$cfg" = tiny ] || arena=2G kt=${kill_tokens:-400}
  if [ "$node" = 1 ]; then node_up_sh "$cfg" "$model" "$arena" || { node_down; continue; }
  else node_up_direct "$cfg" "$model" "$arena" || { node_down; continue; }; fi
  wait_until 90 "$cfg: $n_workers workers alive" all_alive || { node_down; continue; }
  echo "== $cfg: workers ${!wpid[*]}"

  # ---- 20 jobs at once against the single-process reference
  echo "== $cfg: 20 jobs"
  write_jobs "$dir" jobs "1 3 7 8 9 15 16 17 40 63 64 65 100 130 200 257 5 33 90 150" \
    "1 2 5 8 9 16 17 24 31 40 48 64 7 12 20 33 60 3 25 50"
  t0=$(date +%s.%N)
  submit_all "$dir" jobs
  watch_jobs
  secs=$(python3 -c "import time; print(round(time.time() - $t0, 2))")
  cli status >"$dir/status-after-jobs.json" 2>&1
  references "$dir" jobs "$model"
  res=$(compare "$dir" jobs "$block"); echo "$res" | head -n -1
  record "$cfg" jobs "$secs" "$(echo "$res" | tail -n 1)"

  # ---- kill -9 of the busier worker mid-run
  echo "== $cfg: kill one worker mid-run"
  write_jobs "$dir" kill "12 30 57 64 90 121" \
    "$kt $((kt + 200)) $((kt - 100)) $((kt + 300)) $kt $((kt + 100))"
  t0=$(date +%s.%N)
  submit_all "$dir" kill
  wait_until 60 "$cfg: the workers decoding" all_decoding
  # The busiest live worker, by name, and its running jobs, from one status.
  read -r victim running <<<"$(status_py '" ".join(map(str, max((w["running"], w["name"])
    for w in s["workers"] if w["alive"])[::-1]))')"
  vpid=${wpid[${victim:-?}]:-}
  [ -n "$vpid" ] || { fail "$cfg: no pid for the busiest worker '$victim'"; node_down; continue; }
  echo "kill -9 worker $victim (pid $vpid, $running jobs running)"
  kill -KILL "$vpid"
  watch_jobs
  secs=$(python3 -c "import time; print(round(time.time() - $t0, 2))")
  cli status >"$dir/status-after-kill.json" 2>&1
  alive=$(python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(sum(w['alive'] for w in s['workers']))" "$dir/status-after-kill.json")
  [ "$alive" = $((n_workers - 1)) ] || fail "$cfg: after the kill $alive workers alive, want $((n_workers - 1))"
  [ "${running:-0}" -gt 0 ] || fail "$cfg: the killed worker ran no job"
  references "$dir" kill "$model"
  res=$(compare "$dir" kill "$block"); echo "$res" | head -n -1
  record "$cfg" kill "$secs" "$(echo "$res" | tail -n 1)"
  summary[-1]+="  (killed $victim of $n_workers with $running jobs)"
  echo "  killed $victim of $n_workers with $running jobs" >>"$out/rows.txt"

  node_down
  rm -f /dev/shm/nosa-"$(id -u)"-kvh*-"$tag"-"$cfg"
done

echo "== summary ($(date -u +%F), backend $backend, mode $mode, $([ "$node" = 1 ] && echo "deploy/node.sh --kvhosts one" || echo "two workers on one device"))"
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
echo "gpu-e2e: $failures failures" | tee -a "$out/summary.txt"
[ $failures = 0 ]
