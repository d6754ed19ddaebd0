# node-procs.sh, sourced by scripts/gpu-e2e.sh and bench/processes.sh: the helpers both use to
# run a node's processes by hand in a private run directory. The caller sets run (the
# directory), bin (the binaries' folder) and pids (an array: start appends each background
# pid, the caller's cleanup stops them), and defines node_timeout MESSAGE (what a wait that
# ran out does: count a failure, or print it).

start() { # name argv...: in the background, log run/name.log, pid into pids
  local name=$1; shift
  echo "== $*" >>"$run/$name.log"
  "$@" >>"$run/$name.log" 2>&1 </dev/null &
  pids+=($!)
}

cli() { "$bin/nosa" --coordinator "ipc://$run/coord.sock" --run-dir "$run" --json "$@"; }

wait_until() { # seconds description command...: until the command succeeds, every 0.2 s
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { node_timeout "$what not within ${limit}s"; return 1; }
    sleep 0.2
  done
}
