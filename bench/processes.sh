#!/usr/bin/env bash
# bench/processes.sh: the benchmark's process driver (issue 6; docs/BENCH.md "Drivers"). For
# each (mode, context, batch) point it starts a real node in a private run directory (one
# nosa-kvhost, one nosa-worker with --max-seqs = batch, one nosa-coordinator; the flags of
# docs/PROCESSES.md), submits `batch` jobs at once through the `nosa` CLI (prompts of
# `context` random bytes, which the byte tokenizer makes `context` tokens after BOS,
# --ignore-eos, --max-tokens --tokens, --no-stream: the coordinator keeps the tokens), waits
# until the coordinator counts them all completed, and reads decode tokens/s from the worker's
# heartbeat counters over the heartbeats during which every job was decoding (nosa --json
# status, polled every 0.2 s: each heartbeat carries the worker's step, generated and
# prefilled token totals and the worker's clock when it took them, stats_taken_s, which
# times the window; the window starts once every prompt is prefilled, and its tokens per
# step must be the batch). Then,
# unless --no-compare, the in-process driver runs the same point with the same workload
# (nosa-bench --fill prefill --prompt text --workload greedy: printable-byte prompts, each
# step's argmax fed back; the same model, backend, mode, batch, context), and one table holds
# both.
# What the process driver adds to the in-process one: prefill through the engine's scheduler,
# the block tables from the kv-host, the worker's heartbeats and the coordinator's batching;
# what it cannot do: the shared synthetic template (every job prefills its own prompt), so
# long contexts cost their prefill.
#
#   bench/processes.sh [--bin DIR] [--backend cpu|cuda] [--model DIR | --config tiny|1b]
#                      [--modes LIST] [--batch LIST] [--context LIST] [--tokens N]
#                      [--heartbeat-timeout-ms N] [--out DIR] [--no-compare]
#
# Defaults: build/bin, cuda when nvidia-smi lists a GPU else cpu, a tiny model made with
# nosa-mkmodel, modes nosa-offload, batch 4, context 512, tokens 256, the coordinator's
# heartbeat timeout 3000 ms (heartbeats every quarter of it; a short decode needs a shorter
# one, but a GPU worker's first steps can be silent for over a second). Output: a table on the
# terminal; with --out, processes.csv (both drivers' rows) and every process's log. Exit 1
# when a point fails (a job errors, or too few heartbeats fall inside the decode window to
# measure: raise --tokens).
set -uo pipefail
cd "$(dirname "$0")/.."

bin=build/bin backend="" model="" config=tiny modes=nosa-offload batches=4 contexts=512
tokens=256 out="" compare=1 hb_timeout=3000
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
  --bin) bin=$2; shift 2 ;;
  --backend) backend=$2; shift 2 ;;
  --model) model=$2; shift 2 ;;
  --config) config=$2; shift 2 ;;
  --modes) modes=$2; shift 2 ;;
  --batch) batches=$2; shift 2 ;;
  --context) contexts=$2; shift 2 ;;
  --tokens) tokens=$2; shift 2 ;;
  --heartbeat-timeout-ms) hb_timeout=$2; shift 2 ;;
  --out) out=$2; shift 2 ;;
  --no-compare) compare=0; shift ;;
  -h | --help) usage; exit 0 ;;
  *) echo "processes.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
num_list() { [[ $1 =~ ^[0-9]+(,[0-9]+)*$ ]]; }
num_list "$batches" || { echo "processes.sh: --batch '$batches': a list of numbers" >&2; exit 2; }
num_list "$contexts" || { echo "processes.sh: --context '$contexts': a list of token counts" >&2; exit 2; }
[[ $tokens =~ ^[0-9]+$ ]] && [ "$tokens" -ge 8 ] ||
  { echo "processes.sh: --tokens '$tokens': a number >= 8" >&2; exit 2; }
[[ $hb_timeout =~ ^[0-9]+$ ]] && [ "$hb_timeout" -ge 100 ] ||
  { echo "processes.sh: --heartbeat-timeout-ms '$hb_timeout': a number >= 100" >&2; exit 2; }
for m in ${modes//,/ }; do
  case $m in
  dense-resident | infllmv2-offload | infllmv2-resident | nosa-offload | nosa-resident) ;;
  *) echo "processes.sh: --modes: '$m' is not one of dense-resident, infllmv2-offload," \
       "infllmv2-resident, nosa-offload, nosa-resident" >&2; exit 2 ;;
  esac
done
if [ -z "$backend" ]; then
  if nvidia-smi -L >/dev/null 2>&1; then backend=cuda; else backend=cpu; fi
fi
case $backend in cpu | cuda) ;; *) echo "processes.sh: --backend '$backend': cpu or cuda" >&2; exit 2 ;; esac
bin=$(cd "$bin" 2>/dev/null && pwd) || { echo "processes.sh: --bin: no such folder" >&2; exit 2; }
for b in nosa-kvhost nosa-worker nosa-coordinator nosa nosa-mkmodel nosa-bench; do
  [ -x "$bin/$b" ] || { echo "processes.sh: $bin/$b is not built" >&2; exit 2; }
done

tag=bench-$$
run=$(mktemp -d "${TMPDIR:-/tmp}/nosa-$tag-XXXXXX")
pids=()
stop_node() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  [ ${#pids[@]} = 0 ] || wait "${pids[@]}" 2>/dev/null
  pids=()
  rm -f /dev/shm/nosa-"$(id -u)"-kvh-"$tag"*
}
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  stop_node
  if [ -n "$out" ]; then
    mkdir -p "$out/logs" && cp "$run"/*.log "$run"/beats-*.csv "$out/logs/" 2>/dev/null
  fi
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. scripts/node-procs.sh
node_timeout() { echo "processes.sh: $*" >&2; }
worker_alive() { cli status | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if any(w["alive"] for w in s["workers"]) else 1)'; }

if [ -z "$model" ]; then
  model=$run/model
  "$bin/nosa-mkmodel" --config "$config" --out "$model" >"$run/mkmodel.log" 2>&1 ||
    { echo "processes.sh: nosa-mkmodel --config $config failed:" >&2; tail -n 5 "$run/mkmodel.log" >&2; exit 1; }
fi
[ -f "$model/config.json" ] || { echo "processes.sh: --model $model has no config.json" >&2; exit 2; }
model=$(cd "$model" && pwd)
# The block size, and the bytes of one arena group (every layer and KV head of one block)
# over-estimated by the block's padding: the arena is sized from it.
read -r block group_bytes <<<"$(python3 - "$model/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
bs = c["sparse_config"]["block_size"]
layers, kv = c["num_hidden_layers"], c.get("num_key_value_heads", c["num_attention_heads"])
d = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
print(bs, layers * kv * (2 * bs * d * 2 + 4 * bs + 4096))
PY
)"
[ -n "$group_bytes" ] || { echo "processes.sh: cannot read the geometry of $model/config.json" >&2; exit 2; }

rows=$run/rows.csv
echo "driver,backend,mode,context,batch,context_mean,tokens_per_s,hit_rate,blocks_per_step,step_ms,tokens_per_step,heartbeats,note" >"$rows"

# One point through the processes: measures, appends a row to $rows.
point_processes() { # mode context batch
  local mode=$1 ctx=$2 b=$3 attn=${1%-*} place=${1#*-}
  local max_ctx=$((ctx + tokens + 2 * block))
  local groups=$(((max_ctx / block + 2) * b + 16))
  local arena=$((groups * group_bytes + (16 << 20)))
  local wflags=(--mode "$attn" --backend "$backend" --max-seqs "$b" --max-context "$max_ctx")
  [ "$place" = resident ] && wflags+=(--resident)
  [ "$backend" = cuda ] && wflags+=(--gpu 0)
  rm -f "$run"/*.sock
  start kvh-"$mode-$ctx-$b" "$bin/nosa-kvhost" --run-dir "$run" --name "kvh-$tag" \
    --endpoint "ipc://$run/kvh0.sock" --arena "$arena" --model "$model" --remove
  wait_until 120 "kv-host socket" test -S "$run/kvh0.sock" || return 1
  start coord-"$mode-$ctx-$b" "$bin/nosa-coordinator" --run-dir "$run" \
    --workers "ipc://$run/coord-workers.sock" --clients "ipc://$run/coord.sock" \
    --kvhost "ipc://$run/kvh0.sock" --journal "$run/coordinator-$mode-$ctx-$b.journal" \
    --metrics-port 0 --heartbeat-timeout-ms "$hb_timeout"
  wait_until 30 "coordinator answering" cli status || return 1
  start worker-"$mode-$ctx-$b" "$bin/nosa-worker" --run-dir "$run" --name "w0" \
    --coordinator "ipc://$run/coord-workers.sock" --kvhost "ipc://$run/kvh0.sock" \
    --model "$model" "${wflags[@]}"
  wait_until 300 "worker alive" worker_alive || return 1
  python3 - "$bin/nosa" "$run" "$mode" "$ctx" "$b" "$tokens" "$backend" >>"$rows" <<'PY'
import json, os, random, subprocess, sys, time
nosa, run, mode, ctx, b, tokens, backend = sys.argv[1:8]
ctx, b, tokens = int(ctx), int(b), int(tokens)
base = [nosa, "--coordinator", f"ipc://{run}/coord.sock", "--run-dir", run, "--json"]
rng = random.Random(1)
jobs = []
for i in range(b):
    path = f"{run}/prompt-{i}"
    with open(path, "wb") as f:  # printable bytes: one token each
        f.write(bytes(rng.randrange(32, 127) for _ in range(ctx)))
    log = open(f"{run}/job-{mode}-{ctx}-{b}-{i}.log", "w")
    jobs.append(subprocess.Popen(base + ["submit", "--prompt-file", path, "--max-tokens",
                                          str(tokens), "--ignore-eos", "--no-stream"],
                                 stdout=log, stderr=subprocess.STDOUT))
submit_failed = sum(j.wait() != 0 for j in jobs)
# Heartbeats with statistics, keyed by the worker's step total (the same heartbeat seen by
# several polls is one entry): step total -> (time, running, generated, hit, moved, step s,
# prefilled, tok/s, taken, then the totals since start of step seconds, blocks selected,
# blocks moved and hits). Its time is when the coordinator received it (stats_age_s: the
# pulse thread's heartbeats and the Tokens messages do not move it); taken is the worker's
# clock when its window ended, which times the window; running is the coordinator's count at
# the first poll that saw it (jobs only leave once all are assigned, so all b running then
# means all b ran until it). Polls miss heartbeats (one every 0.2 s against one per quarter
# of the timeout), so the window's figures come from differences of totals, never from the
# per-heartbeat means, which cover only the steps since the heartbeat just before.
beats = {}
done = failed = 0
deadline = time.time() + 3600
while not submit_failed and done + failed < b and time.time() < deadline:
    try:
        s = json.loads(subprocess.run(base + ["status"], capture_output=True, timeout=10).stdout)
        now = time.time()
        done, failed = s["completed"], s["failed"]
        w = s["workers"][0]
        if "steps" in w and w["stats_age_s"] >= 0 and w["steps"] not in beats:
            beats[w["steps"]] = (round(now - w["stats_age_s"], 3), w["running"], w["tokens"],
                                 w["cache_hit_rate"], w["blocks_moved_per_step"],
                                 w["step_seconds"], w["prefill_tokens"], w["tokens_per_s"],
                                 w["stats_taken_s"], w["step_seconds_total"],
                                 w["blocks_selected_total"], w["blocks_moved_total"],
                                 w["block_hits_total"])
    except (ValueError, KeyError, IndexError, subprocess.TimeoutExpired):
        pass
    time.sleep(0.2)
with open(f"{run}/beats-{mode}-{ctx}-{b}.csv", "w") as f:  # every heartbeat, for a look later
    f.write("steps,time,running,tokens,hit_rate,blocks_moved_per_step,step_seconds,"
            "prefill_tokens,tokens_per_s,taken_s,step_seconds_total,blocks_selected_total,"
            "blocks_moved_total,block_hits_total\n")
    for n in sorted(beats):
        f.write(",".join(str(x) for x in (n,) + beats[n]) + "\n")
errors = submit_failed + failed + (b - done - failed if not submit_failed else 0)
# The decode window: from the first heartbeat by which every prompt (and its BOS) was
# prefilled to the last one while all b jobs still ran.
full = [(n, v) for n, v in sorted(beats.items()) if v[1] == b and v[6] >= b * (ctx + 1)]
note = ""
if errors:
    note = f"{errors} of {b} jobs failed or unfinished (job and worker logs)"
elif len(full) < 3 or full[-1][0] <= full[0][0]:
    note = f"{len(full)} heartbeats in the decode window: raise --tokens"
if note:
    print(f"processes,{backend},{mode},{ctx},{b},,,,,,,{len(full)},{note}")
    sys.exit(0)
(n0, v0), (n1, v1) = full[0], full[-1]
# Timed on the worker's clock (taken_s): the coordinator's receipt of a heartbeat (time)
# lags by however long the message waited, which on a busy machine is a good part of a
# short window.
tps = (v1[2] - v0[2]) / (v1[8] - v0[8])
steps = n1 - n0
tokens_per_step = (v1[2] - v0[2]) / steps  # b in a window of decode steps only
selected = v1[10] - v0[10]
hit = (v1[12] - v0[12]) / selected if selected else 0.0
moved = (v1[11] - v0[11]) / steps
step_ms = 1e3 * (v1[9] - v0[9]) / steps
# The same window timed by the coordinator's receipt of the two heartbeats: a second
# estimate, which should agree unless messages waited long.
tps_coord = (v1[2] - v0[2]) / (v1[0] - v0[0])
notes = []
if abs(tps - tps_coord) > 0.2 * tps:
    notes.append(f"timed by the coordinator's receipt, tokens/s is {tps_coord:.0f} (beats csv)")
if tokens_per_step != b:
    notes.append(f"{tokens_per_step:.2f} tokens per step, not {b}: not all decode")
# The prompt and BOS, plus the tokens each job had generated, midway through the window.
ctx_mean = ctx + 1 + (v0[2] + v1[2]) / (2 * b)
print(f"processes,{backend},{mode},{ctx},{b},{ctx_mean:.0f},{tps:.1f},{hit:.4f},{moved:.1f},"
      f"{step_ms:.3f},{tokens_per_step:.2f},{len(full)},{'; '.join(notes)}")
PY
}

# The same point in process (nosa-bench: every slot prefilled with its own printable-byte
# prompt, decoding greedily on its own argmax, as the jobs above).
point_inprocess() { # mode context batch
  local mode=$1 ctx=$2 b=$3 d=$run/inproc-$1-$2-$3
  "$bin/nosa-bench" --backend "$backend" --model "$model" --modes "$mode" --batch "$b" \
    --context "$ctx" --workload greedy --fill prefill --prompt text --steps 16 --warmup 4 \
    --out "$d" >"$run/inproc-$mode-$ctx-$b.log" 2>&1 ||
    { echo "inprocess,$backend,$mode,$ctx,$b,,,,,,,,nosa-bench failed (log)" >>"$rows"; return 1; }
  python3 - "$d/bench.csv" "$backend" >>"$rows" <<'PY'
import csv, sys
r = next(csv.DictReader(open(sys.argv[1])))
print(f"inprocess,{sys.argv[2]},{r['mode']},{r['context']},{r['batch']},"
      f"{float(r['context_mean']):.0f},{float(r['tokens_per_s']):.1f},{float(r['hit_rate']):.4f},"
      f"{float(r['blocks_per_step']):.1f},{float(r['step_ms']):.3f},,,")
PY
}

for mode in ${modes//,/ }; do
  for ctx in ${contexts//,/ }; do
    for b in ${batches//,/ }; do
      echo "== $mode context $ctx batch $b: processes"
      point_processes "$mode" "$ctx" "$b" ||
        echo "processes,$backend,$mode,$ctx,$b,,,,,,,,the node did not start (logs)" >>"$rows"
      stop_node
      if [ "$compare" = 1 ]; then
        echo "== $mode context $ctx batch $b: in process"
        point_inprocess "$mode" "$ctx" "$b"
      fi
    done
  done
done

python3 - "$rows" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print(f"{'driver':10} {'backend':7} {'mode':17} {'context':>7} {'batch':>5} {'ctx mean':>8} "
      f"{'tok/s':>9} {'hit':>6} {'blk/step':>9} {'step_ms':>8} {'tok/step':>8}  note")
for r in rows:
    print(f"{r['driver']:10} {r['backend']:7} {r['mode']:17} {r['context']:>7} {r['batch']:>5} "
          f"{r['context_mean'] or '-':>8} {r['tokens_per_s'] or '-':>9} {r['hit_rate'] or '-':>6} "
          f"{r['blocks_per_step'] or '-':>9} {r['step_ms'] or '-':>8} {r['tokens_per_step'] or '-':>8}  "
          f"{r['note']}")
PY
if [ -n "$out" ]; then mkdir -p "$out" && cp "$rows" "$out/processes.csv"; fi
failures=$(python3 -c 'import csv,sys; print(sum(1 for r in csv.DictReader(open(sys.argv[1])) if not r["tokens_per_s"]))' "$rows")
[ "$failures" = 0 ] || { echo "processes.sh: $failures points without a figure" >&2; exit 1; }
