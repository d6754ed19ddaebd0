#!/usr/bin/env bash
# systemd_units.sh REPO BIN_DIR: the units of deploy/systemd/.
# - `systemd-analyze verify` on each (templates as instances), with ExecStart pointed at this
#   checkout's node.sh instead of /opt/nosa: no error and no warning (skipped, with a message,
#   where systemd-analyze is not installed).
# - node.env: the run directory is the units' RuntimeDirectory (/run/...), the model and the
#   job journal lie in their StateDirectory (/var/lib/..., kept across reboots).
# - what the units run, `node.sh exec ...`, with node.env: `node.sh plan` (the same argv) gives
#   the coordinator `--journal $NOSA_JOURNAL`, and every flag of every process is one its
#   binary's --help lists.
set -uo pipefail
repo=$1 bin=$2
units=$repo/deploy/systemd
for b in nosa-kvhost nosa-worker nosa-coordinator; do
  [ -x "$bin/$b" ] || { echo "systemd_units: skipped: $b is not built"; exit 77; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nosa-units-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# unit_value FILE KEY: the value of KEY= in FILE ("" when absent).
unit_value() { sed -nE "s/^$2=(.*)$/\\1/p" "$1" | tail -n 1; }

for u in "$units"/*.service; do
  grep -q '^ExecStart=/opt/nosa/deploy/node.sh exec ' "$u" || fail "$(basename "$u"): ExecStart is not node.sh exec"
  [ "$(unit_value "$u" StateDirectory)" = nosa ] || fail "$(basename "$u"): no StateDirectory=nosa"
  [ "$(unit_value "$u" RuntimeDirectory)" = nosa ] || fail "$(basename "$u"): no RuntimeDirectory=nosa"
done

if command -v systemd-analyze >/dev/null 2>&1; then
  cp "$units"/* "$tmp/"
  sed -i "s|/opt/nosa/deploy/node.sh|$repo/deploy/node.sh|" "$tmp"/*.service
  out=$(cd "$tmp" && systemd-analyze verify ./nosa.target ./nosa-coordinator.service ./nosa-kvhost@0.service \
        ./nosa-kvhost@1.service ./nosa-worker@gpu0.service ./nosa-worker@cpu0.service 2>&1)
  rc=$?
  [ $rc = 0 ] && [ -z "$out" ] || fail "systemd-analyze verify (exit $rc): $out"
else
  echo "systemd_units: systemd-analyze is not installed: the units' syntax is not verified"
fi

# node.env, read as the units read it (EnvironmentFile: KEY=VALUE lines).
env_file=$units/node.env
env_value() { sed -nE "s/^$1=(.*)$/\\1/p" "$env_file" | tail -n 1; }
[ "$(env_value NOSA_RUN_DIR)" = /run/nosa ] || fail "node.env: NOSA_RUN_DIR is not /run/nosa (RuntimeDirectory)"
journal=$(env_value NOSA_JOURNAL)
[ "$journal" = /var/lib/nosa/coordinator.journal ] ||
  fail "node.env: NOSA_JOURNAL '$journal' is not in /var/lib/nosa (StateDirectory, persistent)"
[[ $(env_value NOSA_MODEL) == /var/lib/nosa/* ]] || fail "node.env: NOSA_MODEL is not in /var/lib/nosa"

# The plan under node.env (binaries, run dir and model of this test: nothing is written there).
mapfile -t env_lines < <(grep -E '^NOSA_[A-Z_]+=' "$env_file")
plan=$(env -i PATH="$PATH" HOME="$tmp" "${env_lines[@]}" NOSA_BIN="$bin" NOSA_RUN_DIR="$tmp/run" \
       NOSA_MODEL="$tmp/model" "$repo/deploy/node.sh" plan 2>&1) || fail "node.sh plan with node.env: $plan"
grep -qE "^coordinator: .*/nosa-coordinator .*--journal $journal( |$)" <<<"$plan" ||
  fail "the coordinator is not given --journal $journal: $plan"
checked=0
while read -r line; do
  [[ $line =~ (/[^ ]*/(nosa-[a-z]+))\ (.*)$ ]] || continue
  exe=${BASH_REMATCH[1]} name=${BASH_REMATCH[2]} rest=${BASH_REMATCH[3]}
  help=$("$exe" --help 2>&1) || fail "$name --help exits non-zero"
  for f in $(grep -oE '(^| )--[a-z][a-z-]*' <<<"$rest"); do
    grep -qE -- "(^|[ [])$f( |=|\]|$)" <<<"$help" || fail "$name: flag $f (node.sh plan) is not in its --help"
    checked=$((checked + 1))
  done
done <<<"$plan"
[ $checked -ge 10 ] || fail "only $checked flags checked in: $plan"

echo "systemd_units: $checked flags checked against --help; $fails failed"
[ $fails = 0 ]
