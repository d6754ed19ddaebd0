#!/usr/bin/env bash
# systemd_units.sh REPO BIN_DIR: the units of deploy/systemd/.
# - `systemd-analyze verify` on each (templates as instances), with ExecStart pointed at this
#   checkout's node.sh instead of /opt/nosa: no error and no warning (skipped, with a message,
#   where systemd-analyze is not installed).
# - first start: nosa-kvhost@ generates the model in ExecStartPre (`node.sh ensure-model`) and
#   the coordinator and the workers are ordered after nosa-kvhost@0, so none loads a model that
#   is not there yet; ensure-model, run twice at once with no model (as kv-hosts of two NUMA
#   nodes are), leaves one whole model where `node.sh start` would look, and nothing beside it.
# - node.env: the run directory is the units' RuntimeDirectory (/run/...), the model and the
#   job journal lie in their StateDirectory (/var/lib/..., kept across reboots).
# - what the units run, `node.sh exec ...`, with node.env: `node.sh plan` (the same argv) gives
#   the coordinator `--journal $NOSA_JOURNAL`, and every flag of every process is one its
#   binary's --help lists.
set -uo pipefail
repo=$1 bin=$2
units=$repo/deploy/systemd
for b in nosa-kvhost nosa-worker nosa-coordinator nosa-mkmodel; do
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

# The model before anything loads it (first start of a fresh node).
kvh_unit=$units/nosa-kvhost@.service
[ "$(unit_value "$kvh_unit" ExecStartPre)" = "/opt/nosa/deploy/node.sh ensure-model" ] ||
  fail "nosa-kvhost@.service: no ExecStartPre=/opt/nosa/deploy/node.sh ensure-model"
for u in nosa-coordinator nosa-worker@; do
  grep -qE '^After=(.* )?nosa-kvhost@0\.service( |$)' "$units/$u.service" ||
    fail "$u.service is not ordered After=nosa-kvhost@0.service (the model)"
done
grep -qE '^After=(.* )?nosa-coordinator\.service( |$)' "$units/nosa-worker@.service" ||
  fail "nosa-worker@.service is not ordered After=nosa-coordinator.service"
# ensure-model with node.sh's defaults (no NOSA_MODEL): the model `start` uses,
# $XDG_CACHE_HOME/nosa/model-tiny; two at once: both succeed, one model, no leftovers.
home=$tmp/home
mkdir -p "$home"
ensure() { env -i PATH="$PATH" HOME="$home" NOSA_BIN="$bin" "$repo/deploy/node.sh" ensure-model; }
ensure >"$tmp/em1.log" 2>&1 & p1=$!
ensure >"$tmp/em2.log" 2>&1 & p2=$!
wait $p1 || fail "node.sh ensure-model (first of two at once) failed: $(cat "$tmp/em1.log")"
wait $p2 || fail "node.sh ensure-model (second of two at once) failed: $(cat "$tmp/em2.log")"
model=$home/.cache/nosa/model-tiny
"$bin/nosa-mkmodel" --config tiny --out "$tmp/want" >/dev/null 2>&1 || fail "nosa-mkmodel --config tiny failed"
for f in "$tmp"/want/*; do
  cmp -s "$f" "$model/$(basename "$f")" || fail "ensure-model: $model/$(basename "$f") is not nosa-mkmodel --config tiny's"
done
left=$(find "$(dirname "$model")" -mindepth 1 -maxdepth 1 ! -name model-tiny)
[ -z "$left" ] || fail "ensure-model left beside the model: $left"
out=$(ensure 2>&1) && [ -z "$out" ] || fail "ensure-model with the model present is not silent: $out"

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
