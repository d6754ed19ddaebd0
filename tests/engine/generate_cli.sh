#!/bin/sh
# nosa-generate's command line: bad flags exit 2 with a message naming the flag; --json gives
# one object per prompt with the exact tokens; the output is stable across runs, equal with
# and without --offload (dense too, moving blocks), equal alone and in a --batch-file batch,
# and --tokens takes ids.
# usage: generate_cli.sh NOSA_GENERATE WORKDIR
set -u
GEN=$1
WORK=$2
rm -rf "$WORK" && mkdir -p "$WORK" || exit 1
trap 'rm -rf "$WORK"' EXIT INT TERM
fail=0
pass=0
check() { # check DESCRIPTION CONDITION-EXIT-STATUS
    if [ "$2" -eq 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi
}

# expect_usage_error PATTERN ARGS...: exit 2 and PATTERN on stderr.
expect_usage_error() {
    pat=$1
    shift
    "$GEN" "$@" >"$WORK/out" 2>"$WORK/err"
    rc=$?
    grep -q -- "$pat" "$WORK/err"
    found=$?
    [ $rc -eq 2 ] && [ $found -eq 0 ]
    check "'$*': exit $rc (want 2), stderr '$(head -c 200 "$WORK/err")' (want '$pat')" $?
}

M="--config tiny"
expect_usage_error "exactly one of --model" --prompt hi
expect_usage_error "exactly one of --model" --model x $M --prompt hi
expect_usage_error "exactly one of --prompt" $M
expect_usage_error "exactly one of --prompt" $M --prompt a --tokens 1
expect_usage_error "--max-tokens 'abc'" $M --prompt hi --max-tokens abc
expect_usage_error "--max-tokens '0'" $M --prompt hi --max-tokens 0
expect_usage_error "--top-p '0'" $M --prompt hi --top-p 0
expect_usage_error "--top-p '1.5'" $M --prompt hi --top-p 1.5
expect_usage_error "--temperature '-1'" $M --prompt hi --temperature -1
expect_usage_error "--seed 'x'" $M --prompt hi --seed x
expect_usage_error "--mode 'sparse'" $M --prompt hi --mode sparse
expect_usage_error "--backend 'gpu'" $M --prompt hi --backend gpu
expect_usage_error "--bogus" $M --prompt hi --bogus
expect_usage_error "needs a value" $M --prompt
expect_usage_error "unexpected argument" $M --prompt hi extra

# Runtime errors exit 1 with the reason.
"$GEN" --config huge --prompt hi >/dev/null 2>"$WORK/err"
[ $? -eq 1 ] && grep -q huge "$WORK/err"
check "unknown --config: exit 1 naming it" $?
"$GEN" --model "$WORK/nope" --prompt hi >/dev/null 2>"$WORK/err"
[ $? -eq 1 ] && grep -q nope "$WORK/err"
check "missing --model dir: exit 1 naming it" $?
"$GEN" $M --tokens 1,99999 >/dev/null 2>"$WORK/err"
[ $? -eq 1 ] && grep -q -- "--tokens" "$WORK/err"
check "--tokens outside the vocabulary" $?
"$GEN" $M --prompt hi --max-tokens 5000 >/dev/null 2>"$WORK/err"
[ $? -eq 1 ] && grep -q "max_context" "$WORK/err"
check "longer than the model's context" $?
"$GEN" $M --prompt-file "$WORK/none.txt" >/dev/null 2>"$WORK/err"
[ $? -eq 1 ] && grep -q none.txt "$WORK/err"
check "missing --prompt-file" $?
"$GEN" --help >"$WORK/out" 2>&1
[ $? -eq 0 ] && grep -q "usage: nosa-generate" "$WORK/out"
check "--help" $?

tokens_of() { sed -n 's/.*"tokens":\[\([^]]*\)\].*/\1/p' "$1"; }

# --json: one object, the fields the end-to-end test reads.
A="$M --prompt The_quick_brown_fox_jumps_over_the_lazy_dog_again_and_again_and_again_until_the_context_is_long --max-tokens 24 --backend cpu --json"
"$GEN" $A --temperature 0.8 --top-p 0.9 --seed 5 >"$WORK/a1" 2>"$WORK/err"
check "json run exit 0: $(cat "$WORK/err")" $?
[ "$(wc -l <"$WORK/a1")" -eq 1 ] && grep -q '^{"index":0,"prompt_tokens":96,"tokens":\[' "$WORK/a1" &&
    grep -q '"text":"' "$WORK/a1" && grep -q '"finish_reason":"length"' "$WORK/a1"
check "json fields: $(cat "$WORK/a1")" $?
[ "$(tokens_of "$WORK/a1" | tr ',' '\n' | wc -l)" -eq 24 ]
check "24 tokens" $?
"$GEN" $A --temperature 0.8 --top-p 0.9 --seed 5 >"$WORK/a2" 2>/dev/null
[ "$(tokens_of "$WORK/a1")" = "$(tokens_of "$WORK/a2")" ]
check "stable across runs" $?
"$GEN" $A --temperature 0.8 --top-p 0.9 --seed 5 --offload >"$WORK/a3" 2>/dev/null
[ "$(tokens_of "$WORK/a1")" = "$(tokens_of "$WORK/a3")" ] && grep -q '"offload":true' "$WORK/a3"
check "offload gives the resident tokens" $?
# Dense offloaded: 15 blocks of context through a pool of 2 x 4 blocks, the resident tokens.
D="$A --mode dense --budget-blocks 4 --query-aware-blocks 4"
"$GEN" $D >"$WORK/d1" 2>"$WORK/err"
check "dense resident exit 0: $(cat "$WORK/err")" $?
"$GEN" $D --offload >"$WORK/d2" 2>"$WORK/err"
check "dense --offload exit 0: $(cat "$WORK/err")" $?
moved=$(sed -n 's/.*"blocks_transferred":\([0-9]*\).*/\1/p' "$WORK/d2")
[ -n "$(tokens_of "$WORK/d1")" ] && [ "$(tokens_of "$WORK/d1")" = "$(tokens_of "$WORK/d2")" ] &&
    grep -q '"offload":true' "$WORK/d2" && [ "${moved:-0}" -gt 0 ]
check "dense --offload gives the resident tokens and moves blocks ($moved)" $?
"$GEN" $A --temperature 0.8 --top-p 0.9 --seed 6 >"$WORK/a4" 2>/dev/null
[ "$(tokens_of "$WORK/a1")" != "$(tokens_of "$WORK/a4")" ]
check "another seed, other tokens" $?

# A batch: each line's tokens equal that prompt alone.
printf 'first prompt\n\nThe_quick_brown_fox_jumps_over_the_lazy_dog_again_and_again_and_again_until_the_context_is_long\nz\n' >"$WORK/batch"
"$GEN" $M --batch-file "$WORK/batch" --max-tokens 24 --backend cpu --json --temperature 0.8 \
    --top-p 0.9 --seed 5 --prefill-chunk 5 >"$WORK/b" 2>"$WORK/err"
check "batch exit 0: $(cat "$WORK/err")" $?
[ "$(wc -l <"$WORK/b")" -eq 3 ]
check "batch: one line per non-empty prompt" $?
sed -n 2p "$WORK/b" >"$WORK/b2"
[ "$(tokens_of "$WORK/a1")" = "$(tokens_of "$WORK/b2")" ] && grep -q '"index":1' "$WORK/b2"
check "batch member == alone" $?

# --tokens: ids as given (no BOS), and the human output is the text.
"$GEN" $M --tokens 72,105 --max-tokens 3 --json >"$WORK/t" 2>/dev/null
grep -q '"prompt_tokens":2,' "$WORK/t"
check "--tokens prompt length" $?
"$GEN" $M --tokens 72,105 --max-tokens 3 >"$WORK/h" 2>"$WORK/err"
[ $? -eq 0 ] && grep -q "generated=3" "$WORK/err"
check "human output and summary" $?

echo "generate_cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
