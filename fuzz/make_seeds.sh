#!/usr/bin/env bash
# make_seeds.sh: (re)writes the committed seed corpora fuzz/corpus/<target>/ from the readable
# descriptions below (protobuf text format through protoc-c --encode; JSON as is). Run it after
# a .proto or format change and commit the result; the fuzzers grow their own corpora from these.
#   fuzz/make_seeds.sh [BUILD_DIR]   (BUILD_DIR/bin/nosa-mkmodel writes the tiny model's header)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
corpus=fuzz/corpus
enc() { # enc TARGET NAME MESSAGE TEXT: one protobuf seed
  mkdir -p "$corpus/$1"
  printf '%s\n' "$4" | protoc-c --proto_path=proto --encode="$3" "proto/$(proto_of "$3")" \
    >"$corpus/$1/$2"
}
proto_of() { case $1 in nosa.kvh.*) echo kvhost.proto ;; *) echo serve.proto ;; esac; }
rm -rf "$corpus" && mkdir -p "$corpus"

kq=nosa.kvh.KvhRequest kr=nosa.kvh.KvhReply
geo='geometry { n_layers: 2 n_kv_heads: 2 block_size: 8 head_dim: 16 dtype: 1 block_bytes: 544 group_bytes: 2176 }'
enc kvh_request attach $kq "version: 1 request_id: 1 client: \"worker-0\" attach { $geo }"
enc kvh_request alloc $kq 'version: 1 request_id: 2 alloc { seqs { seq_id: 7 n_groups: 3 } seqs { seq_id: 9 n_groups: 1 } }'
enc kvh_request free $kq 'version: 1 request_id: 3 free { seq_ids: 7 seq_ids: 9 }'
enc kvh_request stats $kq 'version: 1 request_id: 4 stats { }'
enc kvh_request table $kq 'version: 1 request_id: 5 table { seq_id: 7 }'
enc kvh_reply attach $kr "version: 1 request_id: 1 attach { shm_name: \"/nosa-0-kvh0\" arena_bytes: 1048576 blocks_offset: 4096 n_groups: 400 $geo generation: 3 }"
enc kvh_reply alloc $kr 'version: 1 request_id: 2 alloc { seqs { seq_id: 7 first_index: 0 groups: [4, 5, 6] } }'
enc kvh_reply error $kr 'version: 1 request_id: 3 error { code: ERROR_UNKNOWN_ID message: "unknown sequence 9" }'
enc kvh_reply stats $kr 'version: 1 request_id: 4 stats { n_groups: 400 free_groups: 396 n_seqs: 1 arena_bytes: 1048576 generation: 3 requests: 10 errors: 1 numa_node: -1 }'
enc kvh_reply table $kr 'version: 1 request_id: 5 table { seq_id: 7 groups: [4, 5, 6] }'

wm=nosa.serve.WorkerMsg cm=nosa.serve.CoordMsg
stats='stats { tokens_per_s: 120.5 step_seconds: 0.008 blocks_moved_per_step: 3 bytes_moved_per_step: 6528 cache_hit_rate: 0.9 steps: 100 tokens: 800 }'
enc worker_msg register $wm 'version: 1 register { worker_name: "cpu0" backend: "cpu" mode: "nosa" offload: true max_seqs: 8 max_context: 4096 block_size: 8 kvhost_endpoint: "ipc:///run/nosa/kvh0.sock" model: "tiny" pid: 4242 gpu: -1 numa_node: 0 }'
enc worker_msg heartbeat $wm "version: 1 heartbeat { worker_name: \"cpu0\" running: 2 free_slots: 6 $stats }"
enc worker_msg tokens $wm 'version: 1 tokens { jobs { job_id: 7 tokens { index: 0 id: 72 text: "H" } tokens { index: 1 id: 105 text: "i" } } }'
enc worker_msg finished $wm 'version: 1 finished { job_id: 7 reason: FINISH_LENGTH prompt_tokens: 5 generated_tokens: 2 recomputed_tokens: 1 }'
enc worker_msg error $wm 'version: 1 error { code: ERROR_BAD_VERSION message: "version 2, expected 1" }'
spec='job { job_id: 7 text: "Hello" sampling { max_tokens: 16 temperature: 0.7 top_p: 0.9 seed: 42 stop_at_eos: true } }'
enc coord_msg register_ack $cm 'version: 1 register_ack { worker_name: "cpu0" heartbeat_ms: 500 }'
enc coord_msg assign $cm "version: 1 assign { $spec seq_id: 7 }"
enc coord_msg assign_resume $cm 'version: 1 assign { job { job_id: 8 tokens { ids: [256, 72, 105] } sampling { max_tokens: 4 } } seq_id: 8 generated: [33, 33] }'
enc coord_msg cancel $cm 'version: 1 cancel { job_id: 7 }'
enc coord_msg shutdown $cm 'version: 1 shutdown { }'

clm=nosa.serve.ClientMsg crp=nosa.serve.ClientReply
enc client_msg submit $clm 'version: 1 request_id: 1 submit { job { text: "Once upon a time" sampling { max_tokens: 32 seed: 1 } } stream: true }'
enc client_msg submit_tokens $clm 'version: 1 request_id: 2 submit { job { tokens { ids: [256, 1, 2, 3] } sampling { max_tokens: 1 } } }'
enc client_msg status $clm 'version: 1 request_id: 3 status { }'
enc client_msg cancel $clm 'version: 1 request_id: 4 cancel { job_id: 7 }'
enc client_msg drain $clm 'version: 1 request_id: 5 drain { }'
enc client_reply submitted $crp 'version: 1 request_id: 1 submitted { job_id: 7 queue_position: 2 }'
enc client_reply tokens $crp 'version: 1 request_id: 1 tokens { job_id: 7 tokens { index: 0 id: 72 text: "H" } }'
enc client_reply finished $crp 'version: 1 request_id: 1 finished { job_id: 7 reason: FINISH_EOS prompt_tokens: 4 generated_tokens: 9 }'
enc client_reply status $crp "version: 1 request_id: 3 status { workers { worker_name: \"cpu0\" backend: \"cpu\" mode: \"nosa\" alive: true running: 1 max_seqs: 8 last_heartbeat_age_s: 0.2 $stats gpu: -1 } queued: 3 running: 1 completed: 10 failed: 1 arena_groups: 400 arena_free_groups: 300 tokens_per_s: 99.5 }"
enc client_reply error $crp 'version: 1 request_id: 4 error { code: ERROR_UNKNOWN_ID message: "unknown job 99" }'
enc client_reply drain $crp 'version: 1 request_id: 5 drain { remaining: 4 }'

# nosa command lines: each word followed by a NUL (fuzz/fuzz_argv.c splits the input there).
args_target=cli
args() { # args NAME WORD...: one seed of $args_target
  local name=$1
  shift
  mkdir -p "$corpus/$args_target"
  printf '%s\0' "$@" >"$corpus/$args_target/$name"
}
args submit_prompt submit --prompt "Once upon a time" --max-tokens 32
args submit_every_flag --coordinator ipc:///tmp/nosa/coord.sock --run-dir /tmp/nosa --json \
  --timeout-ms 2000 --insecure submit --prompt "Hello" --max-tokens 16 --temperature 0.7 \
  --top-p 0.9 --seed 42 --ignore-eos --no-stream
args submit_tokens submit --tokens 256,72,105 --max-tokens 4 --json
args submit_prompt_file submit --prompt-file prompt.txt --max-tokens 8 --seed 18446744073709551615
args submit_flags_after submit --max-tokens 1 --prompt x --coordinator tcp://127.0.0.1:5555 --json
args status status
args status_job_json --json status --job 7
args cancel cancel 7
args cancel_json cancel 12 --json --timeout-ms 100
args drain drain
args drain_insecure --insecure drain --coordinator ipc:///run/nosa/coord.sock
args keygen keygen --run-dir /tmp/nosa
args help --help
args help_command help
args bad_max_tokens submit --prompt hi --max-tokens 0
args bad_max_tokens_big submit --prompt hi --max-tokens 4294967296
args bad_temperature submit --prompt hi --max-tokens 4 --temperature nan
args bad_top_p submit --prompt hi --max-tokens 4 --top-p 0
args bad_seed submit --prompt hi --max-tokens 4 --seed -1
args bad_tokens submit --tokens 1,,2 --max-tokens 4
args bad_tokens_negative submit --tokens 1,-2 --max-tokens 4
args bad_timeout --timeout-ms 1e3 status
args bad_job status --job 0x
args bad_cancel cancel abc
args bad_two_prompts submit --prompt a --tokens 1 --max-tokens 2
args bad_flag_on_status status --max-tokens 3
args bad_missing_value submit --prompt
args bad_unknown_flag --verbose drain
args bad_command launch

# The daemons' command lines (fuzz/daemon_args.c runs each parser on every one).
args_target=daemon_args
args coordinator --run-dir /tmp/nosa --workers ipc:///tmp/nosa/w.sock --clients \
  ipc:///tmp/nosa/c.sock --kvhost ipc:///tmp/nosa/kvh0.sock --kvhost tcp://10.0.0.2:5600 \
  --journal /tmp/nosa/j --metrics-port 0 --metrics-address 0.0.0.0 --heartbeat-timeout-ms 500 \
  --journal-compact-bytes 65536 --insecure
args kvhost --run-dir /tmp/nosa --name kvh1 --arena 64M --config tiny --numa-node 0 --huge-pages \
  --remove --endpoint ipc:///tmp/nosa/kvh1.sock
args kvhost_recover --model /models/tiny --recover --insecure
args kvhost_destroy --destroy kvh0
args worker --model /models/tiny --backend cpu --name cpu1 --coordinator \
  ipc:///tmp/nosa/w.sock --kvhost ipc:///tmp/nosa/kvh0.sock --max-seqs 4 --max-context 2048 \
  --budget-blocks 64 --query-aware-blocks 16 --pool-blocks 128 --prefetch-blocks 2 \
  --heartbeat-ms 200 \
  --register-timeout-ms 5000 --max-stall-ms 1000 --numa-node 1
args worker_cuda --model=/models/1b --backend cuda --gpu 1 --mode dense --resident
args help -h
args bad_value --metrics-port 70000 --arena 12Q --max-seqs 0
args bad_grouped -hh --model

# config.json: the tiny model's (as nosa-mkmodel writes it), the required keys alone, and the
# optional forms (token id lists and null, no sparse_config, Hugging Face defaults).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$build/bin/nosa-mkmodel" --config tiny --out "$tmp/tiny" --dtype bf16 >/dev/null 2>&1
mkdir -p "$corpus/config_json" "$corpus/safetensors"
cp "$tmp/tiny/config.json" "$corpus/config_json/tiny.json"
printf '%s' '{"vocab_size": 300, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4}' \
  >"$corpus/config_json/required.json"
printf '%s' '{"vocab_size": 300, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1, "bos_token_id": null, "eos_token_id": [2, 7], "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": true, "attention_bias": true, "hidden_act": "silu", "rope_scaling": null, "sparse_config": {"block_size": 16, "topk": 8, "kernel_size": 8, "kernel_stride": 4, "init_blocks": 1, "window_size": 32, "select_blocks": 2}}' \
  >"$corpus/config_json/optional.json"

# safetensors headers: the tiny model's (bf16) and small hand-written ones.
python3 - "$tmp/tiny/model.safetensors" "$corpus/safetensors/tiny_bf16.json" <<'PY'
import struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
open(sys.argv[2], 'wb').write(b[8:8 + n])
PY
printf '%s' '{"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, "b": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 32]}}' \
  >"$corpus/safetensors/two.json"
printf '%s' '{"scalar": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}, "empty": {"dtype": "BF16", "shape": [0, 5], "data_offsets": [4, 4]}}' \
  >"$corpus/safetensors/edge_shapes.json"
# Coordinator journals (coordinator/journal.h): records of every type, as the coordinator
# writes them (payloads through protoc-c --encode), a torn tail, and unreadable payloads.
mkdir -p "$corpus/coord_journal"
python3 - "$corpus/coord_journal" <<'PY'
import struct, subprocess, sys, zlib
out = sys.argv[1]
META, ACCEPT, TOKENS, FINISH, KVFREE, PLACE = 1, 2, 3, 4, 5, 6
def enc(msg, text):
    return subprocess.run(["protoc-c", "--proto_path=proto", "--encode=nosa.serve." + msg,
                           "proto/serve.proto"], input=text.encode(), capture_output=True,
                          check=True).stdout
def rec(typ, job, payload=b""):  # u32 len | u32 crc32 | u8 type | 3 zero | u64 job_id | payload
    body = struct.pack("<B3xQ", typ, job) + payload
    return struct.pack("<II", len(payload), zlib.crc32(body)) + body
def place(kind, fresh_from, prompt_done, endpoint=b""):
    return struct.pack("<B3xII", kind, fresh_from, prompt_done) + endpoint
kvh = b"ipc:///run/nosa/kvh0.sock"
spec1 = enc("JobSpec", 'job_id: 1 text: "Hello" sampling { max_tokens: 8 seed: 1 } client_key: 77')
spec2 = enc("JobSpec", "job_id: 2 tokens { ids: [256, 72, 105] } sampling { max_tokens: 4 }")
toks1 = enc("JobTokens", 'job_id: 1 tokens { index: 0 id: 72 text: "H" } tokens { index: 1 id: 105 text: "i" }')
done1 = enc("JobFinished", "job_id: 1 reason: FINISH_LENGTH prompt_tokens: 6 generated_tokens: 2")
prefill2 = enc("JobTokens", "job_id: 2 prompt_done: 2")
every = (rec(META, 0, struct.pack("<Q", 3)) + rec(ACCEPT, 1, spec1) + rec(PLACE, 1, place(2, 0, 0, kvh)) +
         rec(TOKENS, 1, toks1) + rec(FINISH, 1, done1) + rec(KVFREE, 1, b"\x01" + kvh) +
         rec(KVFREE, 1, b"\x00" + kvh) + rec(ACCEPT, 2, spec2) + rec(TOKENS, 2, prefill2) +
         rec(PLACE, 2, place(1, 0, 2)))
seeds = {
    "every_record": every,
    "unfinished": rec(ACCEPT, 1, spec1) + rec(TOKENS, 1, toks1) + rec(PLACE, 1, place(0, 2, 0)),
    "torn_tail": every[:-7],
    "bad_payloads": (rec(ACCEPT, 5, b"\xff\xff\x0f") + rec(ACCEPT, 1, spec1) +
                     rec(PLACE, 1, place(2, 0, 0)) + rec(PLACE, 1, place(0, 0, 0, b"x\x00")) +
                     rec(KVFREE, 9, b"\x02" + kvh) + rec(TOKENS, 1, b"\x12\x05") +
                     rec(META, 0, b"\x01") + rec(FINISH, 1, b"\x10\xff")),
    "bad_checksum": rec(ACCEPT, 1, spec1)[:4] + b"\0\0\0\0" + rec(ACCEPT, 1, spec1)[8:],
}
for name, data in seeds.items():
    open(f"{out}/{name}", "wb").write(data)
PY
echo "make_seeds: wrote $(find "$corpus" -type f | wc -l) seeds under $corpus"
