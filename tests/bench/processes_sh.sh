#!/usr/bin/env bash
# processes_sh.sh PROCESSES_SH BIN_DIR: the benchmark's process driver (bench/processes.sh) on
# CPU with the tiny model, nosa offloaded and resident, batch 2, context 256: it exits 0 and
# processes.csv holds both drivers' row for each point, the process rows measured over at
# least three heartbeats with every prompt prefilled, 2 tokens per step in that window and
# tokens/s within batch / step time (no note), tokens/s > 0, the mean context past the
# prompt, the resident rows hitting every block and moving none, the offloaded ones moving
# some with a hit rate in (0, 1); nothing is left running or in /dev/shm afterwards.
set -uo pipefail
script=$1 bin=$2
for b in nosa-kvhost nosa-worker nosa-coordinator nosa nosa-mkmodel nosa-bench; do
  [ -x "$bin/$b" ] || { echo "processes_sh: skipped: $b is not built"; exit 77; }
done
out=$(mktemp -d "${TMPDIR:-/tmp}/nosa-processes-sh-XXXXXX")
trap 'rm -rf "$out"' EXIT
"$script" --bin "$bin" --backend cpu --modes nosa-offload,nosa-resident --batch 2 \
  --context 256 --tokens 3500 --heartbeat-timeout-ms 400 --out "$out" >"$out/run.log" 2>&1
rc=$?
cat "$out/run.log"
[ $rc = 0 ] || { echo "FAIL: bench/processes.sh exited $rc"; exit 1; }
python3 - "$out/processes.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
fails = []
def check(ok, what):
    if not ok: fails.append(what)
for mode in ("nosa-offload", "nosa-resident"):
    for driver in ("processes", "inprocess"):
        r = [x for x in rows if x["mode"] == mode and x["driver"] == driver]
        check(len(r) == 1, f"{driver} {mode}: {len(r)} rows")
        if len(r) != 1: continue
        r = r[0]
        tps, hit, moved = float(r["tokens_per_s"]), float(r["hit_rate"]), float(r["blocks_per_step"])
        check(tps > 0, f"{driver} {mode}: tokens/s {tps}")
        check(float(r["context_mean"]) > 257, f"{driver} {mode}: mean context {r['context_mean']}")
        if driver == "processes":
            check(int(r["heartbeats"]) >= 3, f"{mode}: {r['heartbeats']} heartbeats")
            # Every step of the window decodes both jobs, and tokens/s cannot beat the batch
            # over the mean step (the worker also spends time between steps).
            check(float(r["tokens_per_step"]) == 2.0, f"{mode}: {r['tokens_per_step']} tokens per step")
            bound = 2 / (float(r["step_ms"]) / 1e3)
            check(tps <= 1.05 * bound, f"{mode}: tokens/s {tps} above batch / step {bound:.1f}")
            check(r["note"] == "", f"{mode}: note '{r['note']}'")
        if mode.endswith("resident"):
            check(hit == 1.0 and moved == 0.0, f"{driver} {mode}: hit {hit}, moved {moved}")
        else:
            check(0.0 < hit < 1.0 and moved > 0.0, f"{driver} {mode}: hit {hit}, moved {moved}")
for f in fails: print("FAIL:", f)
print(f"processes_sh: {len(rows)} rows, {len(fails)} failures")
sys.exit(1 if fails else 0)
PY
rc=$?
left=$(ls /dev/shm 2>/dev/null | grep -c -- "-kvh-bench-" || true)
[ "$left" = 0 ] || { echo "FAIL: $left arenas left in /dev/shm"; rc=1; }
# The driver's run directories are ${TMPDIR:-/tmp}/nosa-bench-<pid>-*.
if pgrep -f -- "--run-dir [^ ]*/nosa-bench-[0-9]+-" >/dev/null 2>&1; then
  echo "FAIL: processes left running"; rc=1
fi
exit $rc
