#!/usr/bin/env bash
set -u
export LD_LIBRARY_PATH=$PWD/.devrun/rtlibs
o=$OUT/c6; mkdir -p $o; SECONDS=0
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $o/device.txt
timeout 150 ncu --clock-control none --metrics gpu__time_duration.sum --csv -k 'regex:^(?!kv_res).*' --launch-skip 400 --launch-count 400 \
  .devrun/bin/nosa-bench --backend cuda --config 1b --modes nosa-offload --context 128K --batch 256 --workload correlated:0.99 --fill synthetic --steps 1 --warmup 1 > $o/prof.csv 2>$o/prof.err
echo "prof rc=$? ${SECONDS}s" >> $o/times.txt
python3 - $o/prof.csv > $o/prof.txt <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr = rows[0]; k = hdr.index("Kernel Name"); v = hdr.index("Metric Value")
tot = collections.Counter(); cnt = collections.Counter()
for r in rows[1:]:
    name = r[k].split("(")[0][:70]
    try: tot[name] += float(r[v].replace(",", "")); cnt[name] += 1
    except ValueError: pass
print(f"kernels {sum(cnt.values())}, total {sum(tot.values())/1e6:.3f} ms")
for n, t in tot.most_common(40): print(f"{t/1e6:9.3f} ms {cnt[n]:5d}x {n}")
PY
timeout 330 .devrun/bin/nosa-bench --backend cuda --config 1b --modes dense-resident,infllmv2-offload,nosa-offload,nosa-resident --batch 64,256 --context 64K,128K --workload correlated:0.99 --steps 12 --warmup 3 --settle 200 --fill synthetic --dense-max 512 --out $o/grid > $o/grid.log 2>&1
echo "grid rc=$? ${SECONDS}s" >> $o/times.txt
tar -C $o -czf $OUT/c6.tgz .
cat $o/times.txt $o/prof.txt; tail -45 $o/grid.log | cut -c1-170
