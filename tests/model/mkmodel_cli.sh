#!/bin/sh
# mkmodel_cli.sh MKMODEL WORKDIR: nosa-mkmodel's command line: usage, strict flags, exit codes
# (0 ok, 2 usage, 1 failure), determinism in the seed, both dtypes, a config.json input.
set -u
mk=$1
work=$2
rm -rf "$work" && mkdir -p "$work"
fails=0
expect() { # expect RC PATTERN ARGS...: exit status RC and stderr+stdout matching PATTERN
  want=$1 pat=$2
  shift 2
  out=$("$mk" "$@" 2>&1)
  rc=$?
  if [ "$rc" != "$want" ] || ! printf '%s' "$out" | grep -q -- "$pat"; then
    echo "FAIL: nosa-mkmodel $*: rc $rc (want $want), output: $out"
    fails=$((fails + 1))
  fi
}
expect 0 "usage:" --help
expect 2 "required" --out "$work/a"
expect 2 "required" --config tiny
expect 2 "unknown argument '--bogus'" --config tiny --out "$work/a" --bogus
expect 2 "needs a value" --config tiny --out
expect 2 "given twice" --config tiny --config tiny --out "$work/a"
expect 2 "expected bf16 or f32" --config tiny --out "$work/a" --dtype f16
expect 2 "seed" --config tiny --out "$work/a" --seed -3
expect 2 "seed" --config tiny --out "$work/a" --seed 12x
expect 2 "no-such.json" --config "$work/no-such.json" --out "$work/a"
printf '{"vocab_size": 300}' >"$work/bad.json"
expect 2 "hidden_size" --config "$work/bad.json" --out "$work/a"
: >"$work/file"
expect 1 "cannot create directory" --config tiny --out "$work/file"
expect 0 "" --config tiny --out "$work/s1" --seed 7
expect 0 "" --config tiny --out "$work/s2" --seed 7
expect 0 "" --config tiny --out "$work/s3" --seed 8 --dtype f32
cmp -s "$work/s1/model.safetensors" "$work/s2/model.safetensors" ||
  { echo "FAIL: same seed, different files"; fails=$((fails + 1)); }
cmp -s "$work/s1/model.safetensors" "$work/s3/model.safetensors" &&
  { echo "FAIL: different seed/dtype, same file"; fails=$((fails + 1)); }
# A written config.json is a valid --config input and reproduces the same model.
expect 0 "" --config "$work/s1/config.json" --out "$work/s4" --seed 7
cmp -s "$work/s1/model.safetensors" "$work/s4/model.safetensors" ||
  { echo "FAIL: config.json input differs from the built-in"; fails=$((fails + 1)); }
rm -rf "$work"
echo "mkmodel_cli: $fails failed"
[ "$fails" = 0 ]
