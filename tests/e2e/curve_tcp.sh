#!/usr/bin/env bash
# curve_tcp.sh BIN_DIR: the processes over tcp with CURVE (docs/SECURITY.md), for real: keys
# from `nosa keygen`; the coordinator's worker and client links on tcp://0.0.0.0 (allowed:
# it holds server keys, no --insecure); a worker holding the keys connects over tcp and
# serves a job that `nosa` submits over tcp, with nosa-generate's text; `nosa` from a run
# directory with no keys, and from one with a keypair the coordinator does not authorize,
# is refused at the handshake (exit 3, naming the keys) and the job count does not move.
set -uo pipefail
[ -n "${CURVE_TCP_TRACE:-}" ] && set -x
bin=$1
for b in nosa-kvhost nosa-worker nosa-coordinator nosa nosa-mkmodel nosa-generate; do
  [ -x "$bin/$b" ] || { echo "curve_tcp: skipped: $b is not built"; exit 77; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nosa-curve-XXXXXX")
run=$tmp/run tag=curve-$$ fails=0 pids=()
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -f /dev/shm/nosa-"$(id -u)"-"$tag"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two free loopback ports (nothing answers a connect to them).
free_port() {
  local p
  for ((p = 20000 + ($$ * 7 + $1 * 101) % 30000; ; p++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}
pw=$(free_port 1) pc=$(free_port 2)
[ "$pw" != "$pc" ] || pc=$((pc + 1))

mkdir -m 0700 "$run" || exit 1
"$bin/nosa" --run-dir "$run" keygen >"$tmp/keygen" 2>&1 || { cat "$tmp/keygen"; exit 1; }
"$bin/nosa-mkmodel" --config tiny --out "$tmp/model" --seed 3 >/dev/null || exit 1
kvh=ipc://$run/$tag.sock
"$bin/nosa-kvhost" --run-dir "$run" --name "$tag" --model "$tmp/model" --arena 64M --remove \
  >"$tmp/kvhost.log" 2>&1 &
pids+=($!)
"$bin/nosa-coordinator" --run-dir "$run" --workers "tcp://0.0.0.0:$pw" \
  --clients "tcp://0.0.0.0:$pc" --kvhost "$kvh" --metrics-port 0 >"$tmp/coord.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$run/$tag.sock" ] && break; sleep 0.1; done
"$bin/nosa-worker" --run-dir "$run" --model "$tmp/model" --backend cpu --kvhost "$kvh" \
  --coordinator "tcp://127.0.0.1:$pw" --max-seqs 2 >"$tmp/worker.log" 2>&1 &
pids+=($!)

cli() { "$bin/nosa" --run-dir "$run" --coordinator "tcp://127.0.0.1:$pc" "$@"; }
up=0
for _ in $(seq 100); do
  cli --json status 2>/dev/null | grep -q '"alive":true' && { up=1; break; }
  sleep 0.1
done
[ $up = 1 ] || fail "no live worker over tcp+CURVE: $(tail -n 3 "$tmp/coord.log" "$tmp/worker.log")"
grep -q "insecure" "$tmp/coord.log" && fail "the coordinator ran insecure: $(grep insecure "$tmp/coord.log")"

prompt="over tcp, with CURVE"
cli submit --prompt "$prompt" --max-tokens 10 >"$tmp/text" 2>"$tmp/submit.err" ||
  fail "submit over tcp+CURVE: exit $?: $(cat "$tmp/submit.err")"
"$bin/nosa-generate" --model "$tmp/model" --prompt "$prompt" --max-tokens 10 >"$tmp/ref" 2>/dev/null ||
  fail "nosa-generate failed"
[ -s "$tmp/ref" ] && cmp -s <(head -c "$(stat -c %s "$tmp/ref")" "$tmp/text") "$tmp/ref" ||
  fail "the job's text is not nosa-generate's: '$(cat "$tmp/text")' vs '$(cat "$tmp/ref")'"

# Clients the coordinator must not hear: no keys at all, and a keypair it never authorized.
mkdir -m 0700 "$tmp/nokeys" "$tmp/otherkeys"
"$bin/nosa" --run-dir "$tmp/otherkeys" keygen >/dev/null 2>&1 || fail "second keygen"
for d in nokeys otherkeys; do
  "$bin/nosa" --run-dir "$tmp/$d" --coordinator "tcp://127.0.0.1:$pc" --timeout-ms 1000 \
    submit --prompt "must not run" --max-tokens 2 >"$tmp/$d.out" 2>&1
  rc=$?
  [ $rc = 3 ] || fail "a client with $d: exit $rc, want 3 (unreachable): $(cat "$tmp/$d.out")"
  grep -q "refused this client's security handshake" "$tmp/$d.out" ||
    fail "a client with $d: no clear error: $(cat "$tmp/$d.out")"
done
jobs=$(cli --json status | grep -o '"completed":[0-9]*' | head -1)
[ "$jobs" = '"completed":1' ] || fail "jobs completed: $jobs, want 1 (only the keyed client's)"

echo "curve_tcp: $fails failed"
[ $fails = 0 ]
