#!/usr/bin/env bash
# node_sh.sh NODE_SH BIN_DIR: deploy/node.sh on CPU workers in a private run directory:
# the plan on a made-up two-NUMA-node, two-GPU machine (a stand-in nvidia-smi and sysfs),
# with a kv-host per NUMA node and with --kvhosts one; a GPU's NUMA node read from its PCI
# device in sysfs before `nvidia-smi topo -m`; a machine without NUMA in sysfs: nothing pinned
# (plan, and a real start whose numactl would fail), said in each log;
# start (model generated, every process ready), status, one job through `nosa submit`,
# stop and start again with --kvhosts one (the kv-host recovers its arena),
# stop (every process exits on SIGTERM), status after; a second start refuses a running node;
# the plan on two NUMA nodes with CPU workers: a kv-host each, the coordinator follows both.
# Nothing may be left running or in /dev/shm on any exit path.
set -uo pipefail
node_sh=$1 bin=$2
for b in nosa-kvhost nosa-worker nosa-coordinator nosa nosa-mkmodel; do
  [ -x "$bin/$b" ] || { echo "node_sh: skipped: $b is not built"; exit 77; }
done
tag=nodesh-$$
run=$(mktemp -d "${TMPDIR:-/tmp}/nosa-$tag-XXXXXX")
export NOSA_NODE_TAG=$tag
flags=(--run-dir "$run" --bin "$bin" --model "$run/model" --cpu-workers 2 --arena 64M
       --metrics-port 0 --ready-timeout 30 --stop-timeout 5)
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# Alive and not a zombie (an orphan may wait for a reaper that is slow, or absent in a container).
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
cleanup() {
  "$node_sh" stop "${flags[@]}" >/dev/null 2>&1
  for f in "$run"/*.pid; do [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
  rm -f /dev/shm/nosa-"$(id -u)"-*"$tag"*
  rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

plan=$("$node_sh" plan "${flags[@]}" 2>&1) || fail "plan: $plan"
for n in kvh0 coordinator cpu0 cpu1; do
  grep -q "^$n.*nosa-" <<<"$plan" || fail "plan does not show $n: $plan"
done

grep -q "^coordinator: .* --journal $run/coordinator.journal " <<<"$plan" || fail "plan: journal not in D: $plan"
plan=$("$node_sh" plan "${flags[@]}" --journal "$run/state/jobs.journal" 2>&1)
grep -q "^coordinator: .* --journal $run/state/jobs.journal " <<<"$plan" || fail "plan --journal: $plan"

# The plan on a made-up machine: NUMA nodes 0 and 1 (sysfs, NOSA_SYSFS), GPU0 on node 0 and
# GPU1 on node 1 (a stand-in nvidia-smi; this sysfs has no PCI devices, so `topo -m` says where).
fake=$run/fake
mkdir -p "$fake/bin" "$fake/sys/devices/system/node/node0" "$fake/sys/devices/system/node/node1"
echo 0-1 >"$fake/sys/devices/system/node/has_memory"
echo 0 >"$fake/sys/devices/system/node/node0/cpulist"
echo 1 >"$fake/sys/devices/system/node/node1/cpulist"
cat >"$fake/bin/nvidia-smi" <<'EOF'
#!/bin/sh
case "$*" in
  *--query-gpu=index,pci.bus_id*) printf '0, 00000000:AA:00.0\n1, 00000000:BB:00.0\n' ;;
  "topo -m") printf '\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\n'
             printf 'GPU0\t X \tNV18\t0\t0\t\tN/A\nGPU1\tNV18\t X \t1\t1\t\tN/A\n' ;;
  *) exit 1 ;;
esac
EOF
chmod +x "$fake/bin/nvidia-smi"
fake_plan() { PATH="$fake/bin:$PATH" NOSA_SYSFS="$fake/sys" "$node_sh" plan "${flags[@]}" --backend cuda "$@" 2>&1; }
# Here-strings, not `echo | grep -q`: under pipefail an echo that grep -q leaves early dies of
# SIGPIPE and fails the pipeline (a line that matched read as a miss, in CI).
has() { grep -qE -- "$2" <<<"$1" || fail "$3: no line matching '$2' in: $1"; }
plan=$(fake_plan) || fail "plan per-numa: $plan"
has "$plan" "^kvh0: .*nosa-kvhost .*--numa-node 0" "per-numa"
has "$plan" "^kvh1: .*nosa-kvhost .*--numa-node 1" "per-numa"
has "$plan" "^gpu0 \(NUMA node 0\): .*--kvhost ipc://$run/kvh0.sock .*--gpu 0" "per-numa"
has "$plan" "^gpu1 \(NUMA node 1\): (taskset -c 1|numactl --cpunodebind=1 --preferred=1) .*--kvhost ipc://$run/kvh1.sock .*--numa-node 1 .*--gpu 1" "per-numa"
for how in flag env; do
  if [ $how = flag ]; then plan=$(fake_plan --kvhosts one) || fail "plan one: $plan"
  else plan=$(NOSA_KVHOSTS=one fake_plan) || fail "plan NOSA_KVHOSTS=one: $plan"; fi
  has "$plan" "^kv-hosts: one, on NUMA node\(s\) 0 " "one ($how)"
  has "$plan" "^kvh0: .*nosa-kvhost .*--numa-node 0" "one ($how)"
  grep -q "^kvh1" <<<"$plan" && fail "one ($how): a second kv-host planned: $plan"
  # Each worker still runs on its GPU's NUMA node; both attach to the one kv-host.
  has "$plan" "^gpu0 \(NUMA node 0\): .*--kvhost ipc://$run/kvh0.sock .*--gpu 0" "one ($how)"
  has "$plan" "^gpu1 \(NUMA node 1\): (taskset -c 1|numactl --cpunodebind=1 --preferred=1) .*--kvhost ipc://$run/kvh0.sock .*--numa-node 1 .*--gpu 1" "one ($how)"
  has "$plan" "^coordinator: .*--kvhost ipc://$run/kvh0.sock" "one ($how)"
done
bad=$(fake_plan --kvhosts two) && fail "--kvhosts two accepted"
grep -q "expected one or per-numa" <<<"$bad" || fail "--kvhosts two: $bad"
bad=$(PATH="$fake/bin:$PATH" NOSA_SYSFS="$fake/sys" "$node_sh" exec kvhost 1 "${flags[@]}" --kvhosts one 2>&1) &&
  fail "exec kvhost 1 with --kvhosts one succeeded"
grep -q "no kv-host on NUMA node 1" <<<"$bad" || fail "exec kvhost 1 with --kvhosts one: $bad"
[ -e "$run/model" ] && fail "a refused exec generated the model"
has "$(fake_plan)" "^coordinator: .*--kvhost ipc://$run/kvh0.sock --kvhost ipc://$run/kvh1.sock" \
  "per-numa: the coordinator follows both kv-hosts"
# The same machine whose sysfs has the GPUs' PCI devices (bus ids in sysfs's form: a 4-digit
# domain, lower case): GPU0's device says node 1, against `topo -m`'s 0, and sysfs wins; GPU1's
# says -1 (what a kernel writes when it does not know), so `topo -m`'s 1 is used.
cp -r "$fake/sys" "$fake/sys-pci"
mkdir -p "$fake/sys-pci/bus/pci/devices/0000:aa:00.0" "$fake/sys-pci/bus/pci/devices/0000:bb:00.0"
echo 1 >"$fake/sys-pci/bus/pci/devices/0000:aa:00.0/numa_node"
echo -1 >"$fake/sys-pci/bus/pci/devices/0000:bb:00.0/numa_node"
plan=$(PATH="$fake/bin:$PATH" NOSA_SYSFS="$fake/sys-pci" "$node_sh" plan "${flags[@]}" --backend cuda 2>&1) ||
  fail "plan with PCI devices: $plan"
has "$plan" "^gpu0 \(NUMA node 1\): (taskset -c 1|numactl --cpunodebind=1 --preferred=1) .*--kvhost ipc://$run/kvh1.sock .*--numa-node 1 .*--gpu 0" \
  "sysfs PCI device: gpu0 on node 1"
has "$plan" "^gpu1 \(NUMA node 1\): .*--numa-node 1 .*--gpu 1" "PCI numa_node -1: topo -m's node 1"

# A kernel without NUMA in sysfs (no devices/system/node) and a numactl that fails there, as
# it may: one kv-host on node 0 without --numa-node, nothing pinned, and the plan says why.
mkdir -p "$fake/nonuma-bin" "$fake/sys-nonuma/devices/system"
printf '#!/bin/sh\necho "numactl: This system does not support NUMA policy" >&2\nexit 1\n' >"$fake/nonuma-bin/numactl"
chmod +x "$fake/nonuma-bin/numactl"
nonuma=(env "PATH=$fake/nonuma-bin:$PATH" "NOSA_SYSFS=$fake/sys-nonuma")
plan=$("${nonuma[@]}" "$node_sh" plan "${flags[@]}" 2>&1) || fail "plan without NUMA: $plan"
grep -qE "numactl|taskset|^kvh0: .*--numa-node" <<<"$plan" && fail "plan without NUMA pins: $plan"
has "$plan" "^kvh0: [^ ]*nosa-kvhost .*\(not pinned: no NUMA nodes in $fake/sys-nonuma/devices/system/node\)$" \
  "plan without NUMA: kvh0 unpinned"
has "$plan" "^cpu1 \(NUMA node 0\): [^ ]*nosa-worker .*\(not pinned: no NUMA nodes" "plan without NUMA: cpu1 unpinned"

# Two NUMA nodes (the made-up sysfs) with CPU workers: kv-host N bound to node N, cpu1 on
# node 1 with kvh1, and the coordinator given both kv-hosts.
plan2=$(NOSA_SYSFS="$fake/sys" "$node_sh" plan "${flags[@]}" 2>&1) ||
  fail "plan on two NUMA nodes: $plan2"
has "$plan2" "^kvh1: .*--endpoint ipc://$run/kvh1.sock .*--numa-node 1" \
  "plan on two NUMA nodes: kvh1 on node 1"
has "$plan2" "^cpu1 \(NUMA node 1\): .*--kvhost ipc://$run/kvh1.sock" \
  "plan on two NUMA nodes: cpu1 on kvh1"
has "$plan2" "^coordinator: .*--kvhost ipc://$run/kvh0.sock --kvhost ipc://$run/kvh1.sock" \
  "plan on two NUMA nodes: the coordinator follows both kv-hosts"

out=$("$node_sh" start "${flags[@]}" 2>&1) || fail "start: $out"
echo "$out"
[ -f "$run/model/config.json" ] || fail "start did not generate the model"
for n in kvh0 coordinator cpu0 cpu1; do
  [ -s "$run/$n.pid" ] && [ -s "$run/$n.log" ] || fail "no pid file or log for $n"
done
st=$("$node_sh" status "${flags[@]}" 2>&1) || fail "status exit $?: $st"
for n in kvh0 coordinator cpu0 cpu1; do
  grep -E "^$n +[0-9]+ +running" >/dev/null <<<"$st" || fail "status does not show $n running: $st"
done
again=$("$node_sh" start "${flags[@]}" 2>&1) && fail "a second start succeeded"
grep -q "already runs" <<<"$again" || fail "second start: $again"

job=$("$bin/nosa" --run-dir "$run" submit --prompt "hello node" --max-tokens 8 2>&1) ||
  fail "nosa submit: $job"
echo "$job"
# On a terminal (script(1) gives it a pty) submit shows a progress line until the text begins
# (tests/cli checks the text stays whole).
if command -v script >/dev/null; then
  tty_out=$(script -qec "'$bin/nosa' --run-dir '$run' submit --prompt 'hello tty' --max-tokens 40" \
            /dev/null 2>&1) || fail "nosa submit on a terminal: $tty_out"
  grep -qE '\[job [0-9]+\] [0-9]+/40 tokens, [0-9.]+ tokens/s' <<<"$tty_out" ||
    fail "no progress line on a terminal: $tty_out"
else
  echo "node_sh: the progress line not checked: no script(1) here"
fi

# A stop keeps the arena and the journal; the next start recovers them (kv-host --recover).
"$node_sh" stop "${flags[@]}" >/dev/null 2>&1 || fail "stop (keeping state) failed"
[ -e /dev/shm/nosa-"$(id -u)"-kvh0-"$tag" ] || fail "stop removed the arena"
out=$("$node_sh" start "${flags[@]}" --kvhosts one 2>&1) || fail "restart: $out"
grep -q "kv-hosts (one) on 0," <<<"$out" || fail "restart with --kvhosts one: $out"
grep '^==' "$run/kvh0.log" | tail -n 1 | grep -q -- "--recover" ||
  fail "the restarted kv-host was not given --recover: $(grep '^==' "$run/kvh0.log" | tail -n 1)"

pids=$(cat "$run"/*.pid)
stop=$("$node_sh" stop "${flags[@]}" --fresh 2>&1) || fail "stop: $stop"
echo "$stop"
for n in kvh0 coordinator cpu0 cpu1; do
  grep -q "$n (pid [0-9]*) stopped" <<<"$stop" || fail "stop did not report $n stopped"
done
for p in $pids; do alive "$p" && fail "pid $p still runs after stop"; done
ls "$run"/*.pid >/dev/null 2>&1 && fail "pid files left after stop"
[ -e /dev/shm/nosa-"$(id -u)"-kvh0-"$tag" ] && fail "stop --fresh left the arena"
[ -e "$run/coordinator.journal" ] && fail "stop --fresh left the journal"
"$node_sh" status "${flags[@]}" >/dev/null 2>&1; [ $? = 3 ] || fail "status after stop is not 3"

# The same machine for real: every process starts (the failing numactl is not used) and its
# log says it is not pinned (the log's last start: logs are appended to).
last_start() { awk '/^== /{s = ""} {s = s $0 "\n"} END {printf "%s", s}' "$run/$1.log"; }
out=$("${nonuma[@]}" "$node_sh" start "${flags[@]}" 2>&1) || fail "start without NUMA: $out"
for n in kvh0 coordinator cpu0 cpu1; do
  grep -q "numactl" <<<"$(last_start "$n")" && fail "start without NUMA: $n ran numactl: $(last_start "$n")"
done
for n in kvh0 cpu0 cpu1; do
  grep -q "^node.sh: $n: not pinned: no NUMA nodes in " <<<"$(last_start "$n")" ||
    fail "start without NUMA: the log of $n does not say it is not pinned: $(last_start "$n" | head -n 3)"
done
grep -q "not pinned" "$run/coordinator.log" && fail "the coordinator (never pinned) logged a pinning note"
pids=$(cat "$run"/*.pid)
stop=$("${nonuma[@]}" "$node_sh" stop "${flags[@]}" --fresh 2>&1) || fail "stop without NUMA: $stop"
for p in $pids; do alive "$p" && fail "without NUMA: pid $p still runs after stop"; done

# A process that cannot start: a clear error naming its log, and nothing left running.
bad=$("$node_sh" start "${flags[@]}" --model "$run/not-a-model" --model-config /nonexistent.json 2>&1) &&
  fail "start with a bad model succeeded"
grep -q "nosa-mkmodel" <<<"$bad" || fail "bad model: no clear error: $bad"
ls "$run"/*.pid >/dev/null 2>&1 && fail "pid files left after a failed start"

echo "node_sh: $fails failed"
[ $fails = 0 ]
