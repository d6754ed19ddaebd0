#!/usr/bin/env bash
# Issue 8 on one machine with N GPUs, in one device `run` (from the repository root), over the
# build carried in .devrun/e2e/ (bin/ with nosa-bench, rtlibs/; made here by
# scripts/gpu-multi.sh --pack). Phases, each under its own time limit so that the whole run
# stays under 9 minutes:
#   topo:   nvidia-smi -L, `nvidia-smi topo -m`, each GPU's PCIe link and NUMA node, the
#           host's NUMA nodes and CPUs;
#   bench:  nosa-bench --devices 0,..,N-1 (docs/BENCH.md, "Several devices"): first the link
#           test (pinned host-to-device GB/s of each GPU alone and of all at once), then the 1B
#           model, nosa offload, at a few (batch, context) points: every GPU alone, then all at
#           once, at the same per-GPU batch and context over one host arena; the scaling table
#           (goal: all GPUs >= 1.9x one GPU with two) and each GPU's copy bandwidth alone and
#           together;
#   e2e:    scripts/gpu-e2e.sh with NOSA_E2E_NODE=1: deploy/node.sh --kvhosts one starts one
#           kv-host and a worker per GPU (pinned to its GPU's NUMA node); 20 jobs against
#           nosa-generate; kill -9 of the busiest worker mid-run: every job finishes on the
#           others with the reference tokens. Models tiny and 1b.
# Under $OUT, written as they come (at most 8 files come back from the device): multi.txt (the
# topology, then the summary), bench.log, bench/bench.csv and bench/bench.json (rewritten after
# every grid cell), e2e/rows.txt, e2e/summary.txt, e2e/logs.tar. Exit 1 when a phase failed.
#
#   scripts/gpu-multi.sh --pack        # here: scripts/gpu-e2e.sh --pack with nosa-bench too
#   scripts/gpu-multi.sh [PHASE...]    # there: topo bench e2e (default: all three)
#
# Environment: NOSA_MULTI_BACKEND (cuda; cpu: a dry run on a machine without GPU: two cpu
# "devices", the tiny model, small points, the e2e part with two CPU workers),
# NOSA_MULTI_DEVICES (every GPU nvidia-smi lists, e.g. 0,1; cpu: 0,1), NOSA_MULTI_BENCH_ARGS
# (replaces the bench grid's arguments), NOSA_MULTI_BENCH_SECONDS (240),
# NOSA_MULTI_E2E_SECONDS (240), NOSA_MULTI_E2E_CONFIGS ("tiny 1b"; cpu: tiny).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--pack" ]; then
  NOSA_E2E_PACK_EXTRA=nosa-bench exec scripts/gpu-e2e.sh --pack
fi

backend=${NOSA_MULTI_BACKEND:-cuda}
# CUDA numbers the GPUs as nvidia-smi does (deploy/node.sh sets the same), so --devices and
# the workers' --gpu name the GPUs the topology lists.
export CUDA_DEVICE_ORDER=PCI_BUS_ID
out=${OUT:-/tmp/gpu-multi-out}
mkdir -p "$out"
. scripts/devrun-e2e.sh
bin=$(devrun_e2e_bin nosa-bench)
phases=("$@"); [ ${#phases[@]} -gt 0 ] || phases=(topo bench e2e)
want() { [[ " ${phases[*]} " == *" $1 "* ]]; }
report=$out/multi.txt
summary=()
failures=0
note() { echo "$*" | tee -a "$report"; }

if [ "$backend" = cuda ]; then
  devices=${NOSA_MULTI_DEVICES:-$(nvidia-smi --query-gpu=index --format=csv,noheader | paste -sd, -)}
  configs=${NOSA_MULTI_E2E_CONFIGS:-tiny 1b}
  # The 1B model at 16K and 64K, batches 16 to 128 per GPU: each point runs N + 1 phases
  # (every GPU alone, then all), about 2 minutes in all with the fill and the model.
  grid=(--backend cuda --config 1b --modes nosa-offload --batch 16,64,128 --context 16K,64K
        --workload random --steps 16 --warmup 4 --fill synthetic --link-test 4G)
else
  devices=${NOSA_MULTI_DEVICES:-0,1}
  configs=${NOSA_MULTI_E2E_CONFIGS:-tiny}
  grid=(--backend cpu --config tiny --modes nosa-offload,nosa-resident --batch 2,4
        --context 128,256 --workload random --steps 6 --warmup 2 --fill synthetic --link-test 64M)
fi
[ -z "${NOSA_MULTI_BENCH_ARGS:-}" ] || read -r -a grid <<<"$NOSA_MULTI_BENCH_ARGS"
n_devices=$(echo "$devices" | tr , '\n' | grep -c .)
note "== gpu-multi $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)," \
     "backend $backend, devices $devices"

if want topo; then
  {
    echo "== topology"
    if command -v nvidia-smi >/dev/null; then
      nvidia-smi -L
      nvidia-smi --query-gpu=index,name,pci.bus_id,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max,memory.total,driver_version --format=csv
      nvidia-smi topo -m
      for bus in $(nvidia-smi --query-gpu=pci.bus_id --format=csv,noheader); do
        b=$(echo "$bus" | tr 'A-F' 'a-f' | sed -E 's/^[0-9a-f]{4}([0-9a-f]{4}:)/\1/')
        echo "GPU $bus: NUMA node $(cat "/sys/bus/pci/devices/$b/numa_node" 2>/dev/null || echo '?')"
      done
    else
      echo "no nvidia-smi (dry run: cpu)"
    fi
    echo "host NUMA nodes with memory: $(cat /sys/devices/system/node/has_memory 2>/dev/null || echo none)"
    for f in /sys/devices/system/node/node*/cpulist; do
      [ -e "$f" ] && echo "$(basename "$(dirname "$f")") CPUs $(cat "$f")"
    done
    echo "CPUs $(nproc), memory $(free -g | awk '/^Mem:/ {print $2 " GiB"}')," \
         "/dev/shm $(df -h /dev/shm | awk 'NR == 2 {print $2}')"
  } 2>&1 | tee -a "$report"
  summary+=("topo: see multi.txt")
fi

if want bench; then
  limit=${NOSA_MULTI_BENCH_SECONDS:-240}
  echo "== bench: $bin/nosa-bench ${grid[*]} --devices $devices (limit ${limit}s)" | tee -a "$report"
  t0=$SECONDS
  # SIGINT at the limit: nosa-bench has written CSV and JSON after every grid cell.
  timeout -s INT "$limit" "$bin/nosa-bench" "${grid[@]}" --devices "$devices" --out "$out/bench" \
    2>&1 | grep --line-buffered -v ' INFO ' | tee "$out/bench.log"
  rc=${PIPESTATUS[0]}
  [ $rc = 0 ] || failures=$((failures + 1))
  # Plots, where gnuplot exists, stay behind (at most 8 files come back): bench/plot-csv.sh
  # draws them from the CSV.
  rm -f "$out"/bench/plot_* "$out"/bench/*.png
  scaling=$(python3 - "$out/bench/bench.json" <<'PY'
import json, sys
try: j = json.load(open(sys.argv[1]))
except (OSError, ValueError) as e: print(f"no bench.json: {e}"); sys.exit()
for r in j.get("link_test") or []:
    print(f"link: device {r['device']:>3} with {r['devices']:<8} {r['gbps']:7.2f} GB/s")
for s in j.get("scaling") or []:
    f = lambda v, p=1: "-" if v is None else f"{v:.{p}f}"
    print(f"scaling: {s['mode']} ctx {s['context']} b{s['batch']} dev {s['device']}: "
          f"all/alone {f(s['aggregate_over_alone'], 3)} (target {s['target']:.2f}, "
          f"{'met' if s['met'] else 'NOT met'}), tok/s alone {f(s['alone_tokens_per_s'])} "
          f"together {f(s['together_tokens_per_s'])} all {f(s['aggregate_tokens_per_s'])}, "
          f"copy GB/s alone {f(s['alone_link_gbps'], 2)} together {f(s['together_link_gbps'], 2)}, "
          f"same greedy {'yes' if s['same_greedy'] else 'NO'}")
if not j.get("scaling"): print(f"no scaling table (run cut short?); rows: {len(j.get('rows', []))}")
PY
)
  echo "$scaling"
  summary+=("bench: rc=$rc $((SECONDS - t0))s, $n_devices devices" "$scaling")
fi

if want e2e; then
  limit=${NOSA_MULTI_E2E_SECONDS:-240}
  read -r -a cfgs <<<"$configs"
  echo "== e2e: scripts/gpu-e2e.sh ${cfgs[*]}, deploy/node.sh --kvhosts one (limit ${limit}s)" |
    tee -a "$report"
  t0=$SECONDS
  OUT=$out/e2e NOSA_E2E_NODE=1 NOSA_E2E_BACKEND=$backend NOSA_E2E_BIN=$bin \
    NOSA_E2E_CPU_WORKERS=$n_devices timeout "$limit" scripts/gpu-e2e.sh "${cfgs[@]}"
  rc=$?
  [ $rc = 0 ] || failures=$((failures + 1))
  if [ -s "$out/e2e/summary.txt" ]; then e2e=$(cat "$out/e2e/summary.txt")
  else e2e="no summary (cut short?); rows so far: $(cat "$out/e2e/rows.txt" 2>/dev/null)"; fi
  summary+=("e2e: rc=$rc $((SECONDS - t0))s" "$e2e")
fi

note "== summary"
for line in "${summary[@]}"; do note "$line"; done
note "gpu-multi: $failures phase(s) failed"
[ $failures = 0 ]
