#!/usr/bin/env bash
# node.sh: starts, stops and shows one nosa-serve node (docs/DEPLOY.md, docs/PROCESSES.md):
# one nosa-kvhost per NUMA node (pinned there; --kvhosts one: a single one that every worker
# attaches to), one nosa-worker per GPU (pinned to its GPU's NUMA node) or, with no GPU,
# --cpu-workers N CPU workers, and one nosa-coordinator. Logs and pid files live in the run
# directory next to the sockets.
#
#   deploy/node.sh start  [flags]     start everything, wait until each process is ready
#   deploy/node.sh stop   [flags]     SIGTERM, then SIGKILL after --stop-timeout; reports
#   deploy/node.sh status [flags]     what runs (pid files) and `nosa status`
#   deploy/node.sh plan   [flags]     what start would run (topology, pinning, argv), nothing started
#   deploy/node.sh exec kvhost N | worker NAME | coordinator
#                                     runs one process in the foreground, pinned (systemd)
#   deploy/node.sh ensure-model [flags]
#                                     generates the model when missing, as start does (systemd:
#                                     the kv-hosts' ExecStartPre, before anything loads it)
#
# Every flag has an environment default (NOSA_*), so systemd units read one file. The
# topology is read under $NOSA_SYSFS (default /sys; tests point it at a stand-in tree).
set -euo pipefail
# nvidia-smi numbers GPUs in PCI bus order, the CUDA runtime fastest first unless told so: one
# order for both, so that worker gpuN (--gpu N) runs on the GPU whose NUMA node it is pinned to.
export CUDA_DEVICE_ORDER=PCI_BUS_ID

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

usage() {
  cat <<EOF
usage: deploy/node.sh start|stop|status|plan|ensure-model [flags]
       deploy/node.sh exec kvhost NUMA_NODE | worker gpuN|cpuN | coordinator [flags]
  --run-dir D        run directory (\$NOSA_RUN_DIR, else \$XDG_RUNTIME_DIR/nosa, else /tmp/nosa-\$UID)
  --bin DIR          where the nosa-* binaries are (\$NOSA_BIN, else build/bin, else PATH)
  --journal FILE     the coordinator's job journal (\$NOSA_JOURNAL, default D/coordinator.journal;
                     systemd: /var/lib/nosa/coordinator.journal, so jobs survive a reboot)
  --model DIR        model folder (\$NOSA_MODEL, default \$XDG_CACHE_HOME/nosa/model-CONFIG);
                     generated with nosa-mkmodel when it has no config.json
  --model-config C   configuration nosa-mkmodel uses when it generates it (\$NOSA_MODEL_CONFIG, tiny)
  --mode M           dense|infllmv2|nosa (\$NOSA_MODE, default nosa)
  --arena SIZE       arena size per kv-host, e.g. 256M, 64G (\$NOSA_ARENA, default 256M)
  --kvhosts K        per-numa: a kv-host per NUMA node, each worker on its node's; one: a
                     single kv-host on the first NUMA node serving every worker
                     (\$NOSA_KVHOSTS, default per-numa)
  --cpu-workers N    CPU workers when there is no GPU (\$NOSA_CPU_WORKERS, default 2)
  --backend B        auto|cpu|cuda (\$NOSA_BACKEND, default auto: cuda when nvidia-smi lists a GPU)
  --metrics-port P   coordinator's Prometheus port, 0 = off (\$NOSA_METRICS_PORT, default 9464)
  --ready-timeout S  seconds to wait for each process to be ready (default 60)
  --stop-timeout S   seconds between SIGTERM and SIGKILL (default 10)
  \$NOSA_NODE_TAG     appended to the kv-host names (arenas): several nodes of one user
  \$NOSA_SYSFS        where the topology is read (default /sys): tests describe a machine with it
  --fresh            start: remove the arenas and the job journal first (else a kv-host
                     re-opens its arena with --recover and the coordinator its journal);
                     stop: remove them after a clean stop
EOF
}

die() { echo "node.sh: $*" >&2; exit 1; }

# ---------------------------------------------------------------- flags
cmd=${1:-}
[ -n "$cmd" ] || { usage >&2; exit 2; }
shift
exec_args=()
if [ "$cmd" = exec ]; then
  [ $# -ge 1 ] || die "exec needs kvhost N | worker NAME | coordinator"
  exec_args+=("$1"); shift
  if [ "${exec_args[0]}" != coordinator ]; then
    [ $# -ge 1 ] || die "exec ${exec_args[0]} needs its instance"
    exec_args+=("$1"); shift
  fi
fi

run_dir=${NOSA_RUN_DIR:-}
bin_dir=${NOSA_BIN:-}
journal=${NOSA_JOURNAL:-}
model=${NOSA_MODEL:-}
model_config=${NOSA_MODEL_CONFIG:-tiny}
mode=${NOSA_MODE:-nosa}
arena=${NOSA_ARENA:-256M}
kvhosts=${NOSA_KVHOSTS:-per-numa}
# The topology is read from sysfs; a test points this at a made-up machine.
sysfs=${NOSA_SYSFS:-/sys}
cpu_workers=${NOSA_CPU_WORKERS:-2}
backend=${NOSA_BACKEND:-auto}
metrics_port=${NOSA_METRICS_PORT:-9464}
# Suffix of the kv-host names (so of the /dev/shm arenas): two nodes of one user on one
# machine (tests) need different ones.
kvh_suffix=${NOSA_NODE_TAG:+-$NOSA_NODE_TAG}
ready_timeout=60
stop_timeout=10
fresh=0
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --fresh) fresh=1; shift; continue ;;
    --run-dir|--bin|--journal|--model|--model-config|--mode|--arena|--kvhosts|--cpu-workers|--backend|\
    --metrics-port|--ready-timeout|--stop-timeout)
      [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"
      case $1 in
        --run-dir) run_dir=$2 ;; --bin) bin_dir=$2 ;; --journal) journal=$2 ;; --model) model=$2 ;;
        --model-config) model_config=$2 ;; --mode) mode=$2 ;; --arena) arena=$2 ;;
        --kvhosts) kvhosts=$2 ;; --cpu-workers) cpu_workers=$2 ;; --backend) backend=$2 ;;
        --metrics-port) metrics_port=$2 ;; --ready-timeout) ready_timeout=$2 ;;
        --stop-timeout) stop_timeout=$2 ;;
      esac
      shift 2 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done
case $mode in dense|infllmv2|nosa) ;; *) die "--mode '$mode': expected dense, infllmv2 or nosa" ;; esac
case $backend in auto|cpu|cuda) ;; *) die "--backend '$backend': expected auto, cpu or cuda" ;; esac
case $kvhosts in one|per-numa) ;; *) die "--kvhosts '$kvhosts': expected one or per-numa" ;; esac
for n in cpu_workers metrics_port ready_timeout stop_timeout; do
  [[ ${!n} =~ ^[0-9]+$ ]] || die "--${n//_/-} '${!n}': expected a non-negative integer"
done
[ "$cpu_workers" -ge 1 ] || die "--cpu-workers must be at least 1"

if [ -z "$run_dir" ]; then
  if [ -n "${XDG_RUNTIME_DIR:-}" ]; then run_dir=$XDG_RUNTIME_DIR/nosa; else run_dir=/tmp/nosa-$(id -u); fi
fi
if [ -z "$bin_dir" ]; then
  if [ -x "$repo/build/bin/nosa-coordinator" ]; then bin_dir=$repo/build/bin
  else bin_dir=$(dirname "$(command -v nosa-coordinator || echo /usr/local/bin/x)"); fi
fi
[ ! -d "$bin_dir" ] || bin_dir=$(cd "$bin_dir" && pwd)
[ -n "$journal" ] || journal=$run_dir/coordinator.journal
[ -n "$model" ] || model=${XDG_CACHE_HOME:-$HOME/.cache}/nosa/model-$model_config
coord_ep=ipc://$run_dir/coord.sock
workers_ep=ipc://$run_dir/coord-workers.sock

binary() { # binary NAME: the path of a nosa binary, or an error naming where it looked
  local p=$bin_dir/$1
  [ -x "$p" ] || die "$1 not found in $bin_dir (build with scripts/build.sh, or pass --bin DIR)"
  echo "$p"
}

# ---------------------------------------------------------------- topology
# NUMA nodes with memory, from sysfs; "" when the kernel has no NUMA support (one node, unbound).
numa_nodes() {
  local f=$sysfs/devices/system/node/has_memory list="" part
  [ -r "$f" ] || f=$sysfs/devices/system/node/online
  [ -r "$f" ] || return 0
  IFS=, read -ra parts <"$f"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then list+=" $(seq -s ' ' "${part%-*}" "${part#*-}")"; else list+=" $part"; fi
  done
  echo $list
}

# GPUs as "index bus_id" lines (empty without nvidia-smi or without GPUs).
gpu_list() {
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  nvidia-smi --query-gpu=index,pci.bus_id --format=csv,noheader 2>/dev/null | tr -d ' ' | tr , ' ' || true
}

# The NUMA node of a GPU: sysfs of its PCI device, else `nvidia-smi topo -m`, else 0.
gpu_numa_node() { # index bus_id
  local bus node=""
  bus=$(echo "$2" | tr 'A-F' 'a-f' | sed -E 's/^[0-9a-f]{4}([0-9a-f]{4}:)/\1/')
  [ -r "$sysfs/bus/pci/devices/$bus/numa_node" ] && node=$(cat "$sysfs/bus/pci/devices/$bus/numa_node")
  if ! [[ $node =~ ^[0-9]+$ ]]; then
    # topo -m: a row per device: its name, one column per device (GPUn, NICn headers), then
    # CPU Affinity, then NUMA Affinity.
    node=$(nvidia-smi topo -m 2>/dev/null | awk -v g="GPU$1" '
      NR == 1 { for (i = 1; i <= NF; i++) if ($i ~ /^(GPU|NIC)[0-9]+$/) ndev++; next }
      $1 == g && ndev { print $(ndev + 3); exit }' || true)
  fi
  [[ $node =~ ^[0-9]+$ ]] && echo "$node" || echo 0
}

# Sets pin=(the command prefix that pins a process's CPUs, and preferred memory, to NUMA node
# N) and pin_note (why there is none; empty when pinned). A kernel without NUMA in sysfs gets
# no pinning: numactl --cpunodebind=0 can fail there.
set_pin() { # node
  local cpus=$sysfs/devices/system/node/node$1/cpulist
  pin=() pin_note=""
  if [ -z "$(numa_nodes)" ]; then
    pin_note="not pinned: no NUMA nodes in $sysfs/devices/system/node"
  elif command -v numactl >/dev/null 2>&1; then
    pin=(numactl "--cpunodebind=$1" "--preferred=$1")
  elif [ -s "$cpus" ]; then
    pin=(taskset -c "$(cat "$cpus")")
  else
    pin_note="not pinned: no numactl, and no CPU list in $cpus for taskset"
  fi
}

# The worker plan, one "name gpu numa_node" line per worker.
worker_plan() {
  local nodes gpus want=$backend i=0 n
  nodes=($(numa_nodes)); [ ${#nodes[@]} -gt 0 ] || nodes=(0)
  gpus=$(gpu_list)
  [ "$want" != auto ] || { [ -n "$gpus" ] && want=cuda || want=cpu; }
  if [ "$want" = cuda ]; then
    [ -n "$gpus" ] || die "--backend cuda: nvidia-smi lists no GPU"
    while read -r idx bus; do echo "gpu$idx $idx $(gpu_numa_node "$idx" "$bus")"; done <<<"$gpus"
  else
    for ((i = 0; i < cpu_workers; i++)); do
      n=${nodes[$((i % ${#nodes[@]}))]}
      echo "cpu$i -1 $n"
    done
  fi
}

# The NUMA nodes that run a kv-host: every node (per-numa), or the first (one).
kvhost_nodes() {
  local nodes; nodes=($(numa_nodes)); [ ${#nodes[@]} -gt 0 ] || nodes=(0)
  if [ "$kvhosts" = one ]; then echo "${nodes[0]}"; else echo "${nodes[@]}"; fi
}

kvhost_of_node() { # node: the endpoint of the kv-host serving it (its own, else the first)
  local hosts; hosts=($(kvhost_nodes))
  for n in "${hosts[@]}"; do [ "$n" = "$1" ] && { echo "ipc://$run_dir/kvh$1.sock"; return; }; done
  echo "ipc://$run_dir/kvh${hosts[0]}.sock"
}

# ---------------------------------------------------------------- one process
# argv of each process (printed into an array by name, so `exec` and `start` share it), and
# pin_note: why it is not pinned (set_pin), for its log.
proc_argv() { # kvhost N | worker NAME | coordinator  -> sets argv=() and pin_note
  local exe
  pin=() pin_note=""
  case $1 in kvhost|worker|coordinator) exe=$(binary "nosa-$1") || exit 1 ;; esac
  case $1 in
    kvhost)
      [[ " $(kvhost_nodes) " == *" $2 "* ]] ||
        die "no kv-host on NUMA node $2 with --kvhosts $kvhosts (kv-hosts on: $(kvhost_nodes))"
      set_pin "$2"
      argv=("${pin[@]}" "$exe" --run-dir "$run_dir" --name "kvh$2$kvh_suffix"
            --endpoint "ipc://$run_dir/kvh$2.sock" --arena "$arena" --model "$model")
      [ -z "$(numa_nodes)" ] || argv+=(--numa-node "$2")
      # An arena left by a crash (or a stop) holds every sequence's KV: re-open it.
      [ ! -e "$(arena_path "kvh$2")" ] || argv+=(--recover) ;;
    worker)
      local line name gpu node
      line=$(worker_plan | awk -v w="$2" '$1 == w') || true
      [ -n "$line" ] || die "no worker '$2' on this node (plan: $(worker_plan | awk '{print $1}' | xargs))"
      read -r name gpu node <<<"$line"
      set_pin "$node"
      argv=("${pin[@]}" "$exe" --run-dir "$run_dir" --name "$name"
            --coordinator "$workers_ep" --kvhost "$(kvhost_of_node "$node")" --model "$model"
            --mode "$mode" --numa-node "$node")
      if [ "$gpu" -ge 0 ]; then argv+=(--backend cuda --gpu "$gpu"); else argv+=(--backend cpu); fi ;;
    coordinator)
      # Every kv-host: admission, frees and moves follow each worker's own arena.
      local n
      argv=("$exe" --run-dir "$run_dir" --workers "$workers_ep" --clients "$coord_ep"
            --journal "$journal" --metrics-port "$metrics_port")
      for n in $(kvhost_nodes); do argv+=(--kvhost "ipc://$run_dir/kvh$n.sock"); done ;;
    *) die "unknown process kind '$1' (kvhost, worker, coordinator)" ;;
  esac
}

# docs/PROCESSES.md: the arena of kv-host NAME is the shm object /nosa-<uid>-NAME.
arena_path() { echo "/dev/shm/nosa-$(id -u)-$1$kvh_suffix"; }

ensure_run_dir() {
  mkdir -p "$run_dir" && chmod 0700 "$run_dir" || die "cannot create run directory $run_dir"
  [ -O "$run_dir" ] || die "run directory $run_dir is not owned by $(id -un)"
}

# Written beside $model and renamed into place: a process never sees half a model, and the
# kv-hosts of a node (systemd starts their ExecStartPre at once) may all generate it: the
# first rename wins, the others find it there.
ensure_model() {
  [ -f "$model/config.json" ] && return 0
  [ ! -e "$model" ] || [ -z "$(ls -A "$model" 2>/dev/null)" ] ||
    die "$model has no config.json but is not empty: remove it or pass a model folder (--model)"
  echo "node.sh: no model in $model: generating one (nosa-mkmodel --config $model_config)"
  mkdir -p "$(dirname "$model")" || die "cannot create $(dirname "$model")"
  local tmp
  tmp=$(mktemp -d "$model.new-XXXXXX") || die "cannot create a folder beside $model"
  if ! "$(binary nosa-mkmodel)" --config "$model_config" --out "$tmp"; then
    rm -rf "$tmp"; die "nosa-mkmodel --config $model_config --out $tmp failed"
  fi
  chmod 0755 "$tmp"
  [ ! -d "$model" ] || rmdir "$model" 2>/dev/null || true # an empty folder (a StateDirectory)
  mv -T "$tmp" "$model" 2>/dev/null || rm -rf "$tmp"
  [ -f "$model/config.json" ] || die "cannot move the generated model into $model"
}

# ---------------------------------------------------------------- pid files
pid_alive() { # name: 0 when name.pid names a live process running a nosa binary
  local f=$run_dir/$1.pid pid
  [ -r "$f" ] || return 1
  pid=$(cat "$f")
  [[ $pid =~ ^[0-9]+$ ]] && grep -qa 'nosa-' "/proc/$pid/cmdline" 2>/dev/null
}

# A process we just started (a child of this shell): alive and not a zombie. Its cmdline is
# not checked: it changes while numactl/taskset/setsid exec the binary.
child_alive() { # name
  local pid
  pid=$(cat "$run_dir/$1.pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}

started_names() { # names with a pid file, workers first (stop order), kv-hosts last
  local f names=() kinds=(gpu cpu coordinator kvh)
  for k in "${kinds[@]}"; do
    for f in "$run_dir"/$k*.pid; do [ -e "$f" ] && names+=("$(basename "$f" .pid)"); done
  done
  echo "${names[@]:-}"
}

launch() { # name argv...: starts it detached, logs to name.log (with pin_note), pid in name.pid
  local name=$1; shift
  local log=$run_dir/$name.log
  echo "== $(date -Is) $*" >>"$log"
  [ -z "$pin_note" ] || echo "node.sh: $name: $pin_note" >>"$log"
  ( exec setsid "$@" >>"$log" 2>&1 </dev/null ) &
  echo $! >"$run_dir/$name.pid"
  printf 'node.sh: started %-12s pid %-7s log %s\n' "$name" "$!" "$log"
}

fail_start() { # name why: reports with the log's tail, stops what started, exits 1
  local log=$run_dir/$1.log
  echo "node.sh: $1 did not become ready: $2" >&2
  echo "node.sh: see $log; its last lines:" >&2
  tail -n 15 "$log" 2>/dev/null | sed 's/^/    /' >&2 || true
  do_stop >&2 || true
  exit 1
}

wait_ready() { # name check-command...: polls until check succeeds, the process dies or time runs out
  local name=$1; shift
  local deadline=$((SECONDS + ready_timeout))
  while :; do
    child_alive "$name" || fail_start "$name" "the process exited"
    if "$@" >/dev/null 2>&1; then return 0; fi
    [ $SECONDS -lt $deadline ] || fail_start "$name" "not ready after ${ready_timeout}s"
    sleep 0.2
  done
}

nosa_cli() { "$(binary nosa)" --run-dir "$run_dir" --coordinator "$coord_ep" "$@"; }
# The status read whole first: grep -q leaving a pipe early could SIGPIPE the CLI (pipefail).
worker_registered() {
  local st
  st=$(nosa_cli status 2>/dev/null) && grep -qw -- "$1" <<<"$st"
}

# ---------------------------------------------------------------- commands
do_start() {
  ensure_run_dir
  local n
  for n in $(started_names); do
    pid_alive "$n" && die "$n already runs (pid $(cat "$run_dir/$n.pid")) in $run_dir: deploy/node.sh stop first"
    rm -f "$run_dir/$n.pid"
  done
  for b in nosa-kvhost nosa-worker nosa-coordinator nosa; do binary "$b" >/dev/null; done
  ensure_model
  local nodes hosts plan name gpu node
  nodes=($(numa_nodes)); [ ${#nodes[@]} -gt 0 ] || nodes=(0)
  hosts=($(kvhost_nodes))
  [ $fresh = 0 ] || remove_state
  plan=$(worker_plan)
  echo "node.sh: run dir $run_dir, model $model, mode $mode, NUMA nodes ${nodes[*]}," \
       "kv-hosts ($kvhosts) on ${hosts[*]}, workers $(echo "$plan" | awk '{print $1}' | xargs)"
  for n in "${hosts[@]}"; do
    proc_argv kvhost "$n"; launch "kvh$n" "${argv[@]}"
  done
  for n in "${hosts[@]}"; do wait_ready "kvh$n" test -S "$run_dir/kvh$n.sock"; done
  proc_argv coordinator; launch coordinator "${argv[@]}"
  wait_ready coordinator nosa_cli status
  while read -r name gpu node; do
    proc_argv worker "$name"; launch "$name" "${argv[@]}"
  done <<<"$plan"
  while read -r name gpu node; do wait_ready "$name" worker_registered "$name"; done <<<"$plan"
  echo "node.sh: node ready; submit with: $(binary nosa) --run-dir $run_dir submit --prompt TEXT --max-tokens N"
}

remove_state() { # the arenas and the journal: what a restart would recover
  # Every node's arena, whatever --kvhosts says now: a run with the other choice left them.
  local n nodes; nodes=($(numa_nodes)); [ ${#nodes[@]} -gt 0 ] || nodes=(0)
  for n in "${nodes[@]}"; do rm -f "$(arena_path "kvh$n")"; done
  rm -f "$journal"
}

do_stop() {
  local names pid n t0 deadline status=0
  names=$(started_names)
  [ -n "$names" ] || { echo "node.sh: nothing runs in $run_dir"; return 0; }
  for n in $names; do # stop order: workers, coordinator, kv-hosts
    if ! pid_alive "$n"; then
      echo "node.sh: $n was not running (stale pid file removed)"; rm -f "$run_dir/$n.pid"; continue
    fi
    pid=$(cat "$run_dir/$n.pid"); t0=$SECONDS; deadline=$((SECONDS + stop_timeout))
    kill -TERM "$pid" 2>/dev/null || true
    while pid_alive "$n" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    if pid_alive "$n"; then
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 50); do pid_alive "$n" || break; sleep 0.1; done
      echo "node.sh: $n (pid $pid) ignored SIGTERM for ${stop_timeout}s: killed (SIGKILL); see $run_dir/$n.log"
      status=1
    else
      echo "node.sh: $n (pid $pid) stopped after $((SECONDS - t0))s"
    fi
    rm -f "$run_dir/$n.pid"
  done
  if [ $fresh = 1 ]; then
    if [ $status = 0 ]; then remove_state; echo "node.sh: arenas and journal removed"
    else echo "node.sh: arenas and journal kept: a process did not stop cleanly"; fi
  fi
  return $status
}

do_status() {
  local names n pid any=0
  names=$(started_names)
  [ -n "$names" ] || { echo "node.sh: nothing runs in $run_dir"; return 3; }
  printf '%-12s %-8s %-8s %s\n' PROCESS PID STATE LOG
  for n in $names; do
    pid=$(cat "$run_dir/$n.pid")
    if pid_alive "$n"; then printf '%-12s %-8s %-8s %s\n' "$n" "$pid" running "$run_dir/$n.log"; any=1
    else printf '%-12s %-8s %-8s %s\n' "$n" "$pid" dead "$run_dir/$n.log"; fi
  done
  if pid_alive coordinator; then echo; nosa_cli status || true; fi
  [ $any = 1 ] || return 3
}

plan_line() { echo "$1: ${argv[*]}${pin_note:+  ($pin_note)}"; } # what: one process of the plan

do_plan() {
  local n name gpu node
  echo "kv-hosts: $kvhosts, on NUMA node(s) $(kvhost_nodes) (NUMA nodes: $(numa_nodes | grep . || echo 'none, one unbound kv-host'))"
  for n in $(kvhost_nodes); do proc_argv kvhost "$n"; plan_line "kvh$n"; done
  proc_argv coordinator; plan_line coordinator
  while read -r name gpu node; do
    proc_argv worker "$name"; plan_line "$name (NUMA node $node)"
  done <<<"$(worker_plan)"
}

case $cmd in
  start) do_start ;;
  plan) do_plan ;;
  stop) do_stop ;;
  status) do_status ;;
  ensure-model) ensure_model ;;
  exec) ensure_run_dir; proc_argv "${exec_args[@]}"
        [ -z "$pin_note" ] || echo "node.sh: ${exec_args[*]}: $pin_note" >&2
        exec "${argv[@]}" ;;
  *) usage >&2; die "unknown command '$cmd'" ;;
esac
