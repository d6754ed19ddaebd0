#!/usr/bin/env bash
# Plots a nosa-bench CSV (bench.csv) into PNGs next to it: decode tokens/s against batch size,
# a line per backend and mode, one figure per (workload, context). nosa-bench draws the same
# figures itself when gnuplot is installed; this re-draws them from a CSV brought back from a
# machine without gnuplot (the GPU machine).
#   bench/plot-csv.sh bench/results/2026-11-24-h100/bench.csv
set -euo pipefail
csv=${1:?usage: plot-csv.sh BENCH.CSV}
command -v gnuplot >/dev/null || { echo "plot-csv: gnuplot is not installed (apt-get install gnuplot-nox)" >&2; exit 1; }
dir=$(dirname "$csv")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Columns by name, so a reordered CSV still plots right. A run over several devices (a row of
# device "all"; the file is read twice to know) gets a line per device and phase.
awk -F, -v out="$tmp" '
  FNR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
  FNR == NR { if ("device" in col && $col["device"] == "all") multi = 1; next }
  {
    key = $col["workload"] "_" $col["rho"] "_" $col["context"]
    series = $col["backend"] "-" $col["mode"]
    if (multi) series = series "-dev" $col["device"] "-of-" $col["devices"]
    f = out "/" key "__" series ".dat"
    print $col["batch"], $col["tokens_per_s"] > f
    figs[key] = 1
  }
  END { for (k in figs) print k > (out "/figures") }' "$csv" "$csv"
while read -r fig; do
  IFS=_ read -r workload _ ctx <<<"$fig"
  tag=$workload
  png="$dir/tokens_per_s_${tag}_ctx${ctx}.png"
  {
    echo "set terminal pngcairo size 900,600 noenhanced"
    echo "set output '$png'"
    echo "set title 'decode tokens/s, workload $tag, context $ctx'"
    echo "set xlabel 'batch size'; set ylabel 'tokens/s'; set logscale x 2; set grid; set key left top"
    printf "plot "
    sep=""
    for dat in "$tmp/${fig}__"*.dat; do
      series=${dat##*__}; series=${series%.dat}
      sort -n "$dat" -o "$dat"
      printf "%s'%s' using 1:2 with linespoints title '%s'" "$sep" "$dat" "$series"
      sep=", "
    done
    echo
  } >"$tmp/plot.gp"
  gnuplot "$tmp/plot.gp"
  echo "$png"
done <"$tmp/figures"
