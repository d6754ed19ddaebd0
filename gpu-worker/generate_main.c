/* nosa-generate: the single-process reference decode (docs/ENGINE.md). Loads a model (or
 * makes a random one in memory), runs the engine over one backend for one prompt or a batch
 * of prompts, and prints the generated tokens. The end-to-end tests compare every served job
 * with this tool's --json output, so that output is exact and stable: the token ids, their
 * text (text_json.h), the prompt length and the finish reason; timings only under "stats". */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "engine.h"
#include "local_blocks.h"
#include "log.h"
#include "model.h"
#include "parse.h"
#include "text_json.h"
#include "tokenizer.h"

#define GEN_EXIT_USAGE 2
#define GEN_MAX_PROMPTS 1024
#define GEN_MAX_FILE_BYTES (64u << 20)

struct gen_args {
    const char *model_dir, *config_name;
    uint64_t model_seed;
    const char *prompt, *prompt_file, *tokens, *batch_file;
    struct nosa_sampling sampling;
    enum nosa_attn_mode mode;
    int offload;
    const char *backend;
    int gpu;
    int max_context; /* 0: the longest prompt + max_tokens */
    int prefill_chunk;
    int budget_blocks, query_aware_blocks; /* 0: the model's */
    int json;
};

/* One prompt and what became of it. */
struct gen_job {
    int32_t *prompt;
    uint32_t n_prompt;
    int32_t *out; /* [max_tokens] */
    uint32_t n_out;
    int finished;
    enum nosa_finish_reason reason;
    char error[256];
};

struct gen_run {
    struct gen_job *jobs;
    int n_jobs;
};

static void usage(FILE *out)
{
    fputs("usage: nosa-generate (--model DIR | --config tiny|1b [--model-seed N])\n"
          "                     (--prompt TEXT | --prompt-file F | --tokens 1,2,3 | --batch-file F)\n"
          "                     [options]\n"
          "  --model DIR            Hugging Face style folder (config.json + *.safetensors)\n"
          "  --config NAME          a random model made in memory (nosa-mkmodel's configs)\n"
          "  --model-seed N         its weights' seed (default 0, as nosa-mkmodel --seed)\n"
          "  --prompt TEXT          a text prompt (byte tokenizer, BOS first, as nosa-worker)\n"
          "  --prompt-file F        the whole file is the text prompt\n"
          "  --tokens 1,2,3         token ids, used as given\n"
          "  --batch-file F         one text prompt per non-empty line, decoded in one batch\n"
          "  --max-tokens N         tokens to generate per prompt (default 32)\n"
          "  --temperature T        0 = greedy (default 0)\n"
          "  --top-p P              nucleus in (0, 1] (default 1)\n"
          "  --seed N               sampling seed (default 0)\n"
          "  --ignore-eos           keep generating after the model's EOS\n"
          "  --mode dense|infllmv2|nosa  attention mode (default nosa)\n"
          "  --offload              complete KV blocks live in a host arena (dense: cpu only)\n"
          "  --backend cpu|cuda|auto     compute backend (default auto)\n"
          "  --gpu N                CUDA device (default 0)\n"
          "  --max-context N        tokens per sequence (default: longest prompt + max-tokens)\n"
          "  --prefill-chunk N      prompt tokens prefilled per step (default 256)\n"
          "  --budget-blocks N      selected blocks per (seq, layer, KV head) (default: model)\n"
          "  --query-aware-blocks N NOSA's query-aware share (default: model)\n"
          "  --json                 one JSON object per prompt on stdout:\n"
          "                         {\"index\",\"prompt_tokens\",\"tokens\",\"text\","
          "\"finish_reason\",\"stats\"}\n",
          out);
}

enum {
    OPT_MODEL = 1000, OPT_CONFIG, OPT_MODEL_SEED, OPT_PROMPT, OPT_PROMPT_FILE, OPT_TOKENS,
    OPT_BATCH_FILE, OPT_MAX_TOKENS, OPT_TEMPERATURE, OPT_TOP_P, OPT_SEED, OPT_IGNORE_EOS,
    OPT_MODE, OPT_OFFLOAD, OPT_BACKEND, OPT_GPU, OPT_MAX_CONTEXT, OPT_PREFILL_CHUNK,
    OPT_BUDGET, OPT_QUERY_AWARE, OPT_JSON, OPT_HELP,
};

static const struct option g_options[] = {
    {"model", required_argument, NULL, OPT_MODEL},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"model-seed", required_argument, NULL, OPT_MODEL_SEED},
    {"prompt", required_argument, NULL, OPT_PROMPT},
    {"prompt-file", required_argument, NULL, OPT_PROMPT_FILE},
    {"tokens", required_argument, NULL, OPT_TOKENS},
    {"batch-file", required_argument, NULL, OPT_BATCH_FILE},
    {"max-tokens", required_argument, NULL, OPT_MAX_TOKENS},
    {"temperature", required_argument, NULL, OPT_TEMPERATURE},
    {"top-p", required_argument, NULL, OPT_TOP_P},
    {"seed", required_argument, NULL, OPT_SEED},
    {"ignore-eos", no_argument, NULL, OPT_IGNORE_EOS},
    {"mode", required_argument, NULL, OPT_MODE},
    {"offload", no_argument, NULL, OPT_OFFLOAD},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"gpu", required_argument, NULL, OPT_GPU},
    {"max-context", required_argument, NULL, OPT_MAX_CONTEXT},
    {"prefill-chunk", required_argument, NULL, OPT_PREFILL_CHUNK},
    {"budget-blocks", required_argument, NULL, OPT_BUDGET},
    {"query-aware-blocks", required_argument, NULL, OPT_QUERY_AWARE},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, OPT_HELP},
    {NULL, 0, NULL, 0},
};

static int parse_int_flag(const char *flag, const char *val, long min, long max, int *out,
                          char *err, size_t errlen)
{
    long v;
    char why[160];
    if (nosa_parse_long(val, min, max, &v, why, sizeof(why))) {
        nosa_set_error(err, errlen, "--%s '%s': %s", flag, val, why);
        return -EINVAL;
    }
    *out = (int)v;
    return 0;
}

static int parse_float_flag(const char *flag, const char *val, double min, double max,
                            float *out, char *err, size_t errlen)
{
    double v;
    char why[160];
    if (nosa_parse_double(val, min, max, &v, why, sizeof(why))) {
        nosa_set_error(err, errlen, "--%s '%s': %s", flag, val, why);
        return -EINVAL;
    }
    *out = (float)v;
    return 0;
}

static int parse_u64_flag(const char *flag, const char *val, uint64_t *out, char *err,
                          size_t errlen)
{
    char why[160];
    if (nosa_parse_u64(val, 0, UINT64_MAX, out, why, sizeof(why))) {
        nosa_set_error(err, errlen, "--%s '%s': %s", flag, val, why);
        return -EINVAL;
    }
    return 0;
}

/* One option; returns 0, 1 for --help, or -EINVAL with err. */
static int apply_option(struct gen_args *a, int opt, const char *val, char *err, size_t errlen)
{
    int max_tokens = 0;
    switch (opt) {
    case OPT_MODEL: a->model_dir = val; return 0;
    case OPT_CONFIG: a->config_name = val; return 0;
    case OPT_MODEL_SEED: return parse_u64_flag("model-seed", val, &a->model_seed, err, errlen);
    case OPT_PROMPT: a->prompt = val; return 0;
    case OPT_PROMPT_FILE: a->prompt_file = val; return 0;
    case OPT_TOKENS: a->tokens = val; return 0;
    case OPT_BATCH_FILE: a->batch_file = val; return 0;
    case OPT_MAX_TOKENS: {
        int rc = parse_int_flag("max-tokens", val, 1, 1L << 30, &max_tokens, err, errlen);
        a->sampling.max_tokens = (uint32_t)max_tokens;
        return rc;
    }
    case OPT_TEMPERATURE:
        return parse_float_flag("temperature", val, 0.0, 1e6, &a->sampling.temperature, err,
                                errlen);
    case OPT_TOP_P: {
        int rc = parse_float_flag("top-p", val, 0.0, 1.0, &a->sampling.top_p, err, errlen);
        if (rc == 0 && a->sampling.top_p <= 0.0f) {
            nosa_set_error(err, errlen, "--top-p '%s': must be in (0, 1]", val);
            return -EINVAL;
        }
        return rc;
    }
    case OPT_SEED: return parse_u64_flag("seed", val, &a->sampling.seed, err, errlen);
    case OPT_IGNORE_EOS: a->sampling.stop_at_eos = 0; return 0;
    case OPT_MODE:
        if (nosa_attn_mode_parse(val, &a->mode)) {
            nosa_set_error(err, errlen, "--mode '%s': expected dense, infllmv2 or nosa", val);
            return -EINVAL;
        }
        return 0;
    case OPT_OFFLOAD: a->offload = 1; return 0;
    case OPT_BACKEND:
        if (strcmp(val, "cpu") && strcmp(val, "cuda") && strcmp(val, "auto")) {
            nosa_set_error(err, errlen, "--backend '%s': expected cpu, cuda or auto", val);
            return -EINVAL;
        }
        a->backend = val;
        return 0;
    case OPT_GPU: return parse_int_flag("gpu", val, 0, 1023, &a->gpu, err, errlen);
    case OPT_MAX_CONTEXT:
        return parse_int_flag("max-context", val, 1, 1L << 30, &a->max_context, err, errlen);
    case OPT_PREFILL_CHUNK:
        return parse_int_flag("prefill-chunk", val, 1, 1L << 24, &a->prefill_chunk, err, errlen);
    case OPT_BUDGET:
        return parse_int_flag("budget-blocks", val, 1, 1L << 20, &a->budget_blocks, err, errlen);
    case OPT_QUERY_AWARE:
        return parse_int_flag("query-aware-blocks", val, 1, 1L << 20, &a->query_aware_blocks,
                              err, errlen);
    case OPT_JSON: a->json = 1; return 0;
    case OPT_HELP: return 1;
    }
    nosa_set_error(err, errlen, "unknown option");
    return -EINVAL;
}

static int parse_args(int argc, char **argv, struct gen_args *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    a->sampling = (struct nosa_sampling){.max_tokens = 32, .temperature = 0.0f, .top_p = 1.0f,
                                         .seed = 0, .stop_at_eos = 1};
    a->mode = NOSA_ATTN_NOSA;
    a->backend = "auto";
    opterr = 0;
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, "", g_options, NULL)) != -1) {
        if (opt == '?' || opt == ':') {
            const char *bad = argv[optind - 1];
            nosa_set_error(err, errlen, "%s: %s", bad,
                           optopt ? "needs a value" : "unknown option (see --help)");
            return -EINVAL;
        }
        int rc = apply_option(a, opt, optarg, err, errlen);
        if (rc) return rc;
    }
    if (optind < argc) {
        nosa_set_error(err, errlen, "unexpected argument '%s'", argv[optind]);
        return -EINVAL;
    }
    if (!!a->model_dir + !!a->config_name != 1) {
        nosa_set_error(err, errlen, "give exactly one of --model DIR and --config NAME");
        return -EINVAL;
    }
    if (!!a->prompt + !!a->prompt_file + !!a->tokens + !!a->batch_file != 1) {
        nosa_set_error(err, errlen, "give exactly one of --prompt, --prompt-file, --tokens and "
                       "--batch-file");
        return -EINVAL;
    }
    return 0;
}

/* ------------------------------------------------------------------ prompts */

/* Reads a whole file into a NUL-terminated buffer (the caller frees it). */
static int read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        nosa_set_error(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        return -errno;
    }
    char *buf = malloc(GEN_MAX_FILE_BYTES + 1u);
    size_t n = buf ? fread(buf, 1, GEN_MAX_FILE_BYTES + 1u, f) : 0;
    int rc = 0;
    if (!buf) {
        nosa_set_error(err, errlen, "out of memory reading '%s'", path);
        rc = -ENOMEM;
    } else if (ferror(f)) {
        nosa_set_error(err, errlen, "cannot read '%s'", path);
        rc = -EIO;
    } else if (n > GEN_MAX_FILE_BYTES) {
        nosa_set_error(err, errlen, "'%s' is larger than %u bytes", path, GEN_MAX_FILE_BYTES);
        rc = -EFBIG;
    } else if (memchr(buf, '\0', n)) {
        nosa_set_error(err, errlen, "'%s' contains a NUL byte: not a text prompt", path);
        rc = -EINVAL;
    }
    fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static int add_text_job(struct gen_run *run, const struct nosa_tokenizer *tok, const char *text,
                        size_t len, char *err, size_t errlen)
{
    if (run->n_jobs >= GEN_MAX_PROMPTS) {
        nosa_set_error(err, errlen, "more than %d prompts", GEN_MAX_PROMPTS);
        return -E2BIG;
    }
    struct gen_job *j = &run->jobs[run->n_jobs];
    j->prompt = malloc((len + 1) * sizeof(int32_t));
    if (!j->prompt) {
        nosa_set_error(err, errlen, "out of memory for a %zu-byte prompt", len);
        return -ENOMEM;
    }
    run->n_jobs++;
    size_t n = 0;
    int rc = nosa_tokenizer_encode(tok, text, len, 1, j->prompt, len + 1, &n, err, errlen);
    j->n_prompt = (uint32_t)n;
    if (rc == 0 && n == 0) {
        nosa_set_error(err, errlen, "prompt %d is empty", run->n_jobs - 1);
        rc = -EINVAL;
    }
    return rc;
}

static int load_batch_file(struct gen_run *run, const struct nosa_tokenizer *tok,
                           const char *path, char *err, size_t errlen)
{
    char *buf;
    size_t len;
    int rc = read_file(path, &buf, &len, err, errlen);
    if (rc) return rc;
    for (char *line = buf; rc == 0 && line < buf + len;) {
        char *nl = memchr(line, '\n', (size_t)(buf + len - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(buf + len - line);
        if (n > 0) rc = add_text_job(run, tok, line, n, err, errlen);
        line += n + 1;
    }
    free(buf);
    if (rc == 0 && run->n_jobs == 0) {
        nosa_set_error(err, errlen, "'%s' holds no prompt", path);
        rc = -EINVAL;
    }
    return rc;
}

static int load_prompts(const struct gen_args *a, const struct nosa_tokenizer *tok,
                        struct gen_run *run, char *err, size_t errlen)
{
    run->jobs = calloc(GEN_MAX_PROMPTS, sizeof(*run->jobs));
    if (!run->jobs) {
        nosa_set_error(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (a->prompt) return add_text_job(run, tok, a->prompt, strlen(a->prompt), err, errlen);
    if (a->batch_file) return load_batch_file(run, tok, a->batch_file, err, errlen);
    if (a->prompt_file) {
        char *buf;
        size_t len;
        int rc = read_file(a->prompt_file, &buf, &len, err, errlen);
        if (rc) return rc;
        rc = add_text_job(run, tok, buf, len, err, errlen);
        free(buf);
        return rc;
    }
    size_t cap = strlen(a->tokens) / 2 + 1, n = 0;
    struct gen_job *j = &run->jobs[0];
    j->prompt = malloc(cap * sizeof(int32_t));
    if (!j->prompt) {
        nosa_set_error(err, errlen, "out of memory");
        return -ENOMEM;
    }
    run->n_jobs = 1;
    char why[200];
    int rc = nosa_tokenizer_parse_ids(a->tokens, tok->vocab_size, j->prompt, cap, &n, why,
                                      sizeof(why));
    if (rc) nosa_set_error(err, errlen, "--tokens: %s", why);
    j->n_prompt = (uint32_t)n;
    return rc;
}

static void free_run(struct gen_run *run)
{
    if (!run->jobs) return;
    for (int i = 0; i < GEN_MAX_PROMPTS; i++) {
        free(run->jobs[i].prompt);
        free(run->jobs[i].out);
    }
    free(run->jobs);
    run->jobs = NULL;
}

/* ------------------------------------------------------------------ model */

static int load_model(const struct gen_args *a, struct nosa_model **model, char *err,
                      size_t errlen)
{
    int rc;
    if (a->model_dir) {
        rc = nosa_model_load(a->model_dir, model, err, errlen);
    } else {
        struct nosa_model_config cfg;
        rc = nosa_model_config_builtin(a->config_name, &cfg, err, errlen);
        if (rc == 0) rc = nosa_model_init_random(&cfg, a->model_seed, model, err, errlen);
    }
    if (rc) return rc;
    struct nosa_sparse_config *sp = &(*model)->cfg.sparse;
    if (a->budget_blocks) sp->budget_blocks = a->budget_blocks;
    if (a->query_aware_blocks) sp->query_aware_blocks = a->query_aware_blocks;
    char why[200];
    if ((rc = nosa_model_config_validate(&(*model)->cfg, why, sizeof(why))) != 0)
        nosa_set_error(err, errlen, "--budget-blocks/--query-aware-blocks: %s", why);
    return rc;
}

/* ------------------------------------------------------------------ the run */

static void on_event(void *user, const struct nosa_engine_event *ev)
{
    struct gen_run *run = user;
    struct gen_job *j = &run->jobs[ev->seq_id - 1];
    if (ev->type == NOSA_ENGINE_EVENT_TOKEN) {
        j->out[ev->index] = ev->token;
        j->n_out = ev->index + 1;
        return;
    }
    if (ev->type != NOSA_ENGINE_EVENT_FINISHED) return; /* prefill progress: nothing to move */
    j->finished = 1;
    j->reason = ev->reason;
    snprintf(j->error, sizeof(j->error), "%s", ev->error);
}

static int decode_all(const struct gen_args *a, const struct nosa_model *model,
                      const struct nosa_backend_ops *ops, struct gen_run *run,
                      struct nosa_engine_totals *totals, char *err, size_t errlen)
{
    int max_context = a->max_context;
    for (int i = 0; i < run->n_jobs && !a->max_context; i++) {
        int need = (int)run->jobs[i].n_prompt + (int)a->sampling.max_tokens;
        if (need > max_context) max_context = need;
    }
    struct nosa_engine_config cfg = {
        .backend = {.mode = a->mode, .offload = a->offload, .max_seqs = run->n_jobs,
                    .max_context = max_context, .device = a->gpu},
        .prefill_chunk = a->prefill_chunk,
    };
    struct nosa_local_blocks *lb = NULL;
    struct nosa_engine *e = NULL;
    int rc = 0;
    if (a->offload) {
        struct nosa_kv_geometry geom = nosa_model_kv_geometry(&model->cfg);
        uint32_t per_seq = ((uint32_t)max_context + geom.block_size - 1) / geom.block_size;
        rc = nosa_local_blocks_create(&geom, (uint64_t)per_seq * (uint64_t)run->n_jobs,
                                      run->n_jobs, per_seq, &lb, err, errlen);
        if (rc) goto out;
    }
    struct nosa_block_source src;
    if (lb) src = nosa_local_blocks_source(lb);
    rc = nosa_engine_create(model, ops, &cfg, lb ? &src : NULL, on_event, run, &e, err, errlen);
    if (rc) goto out;
    for (int i = 0; i < run->n_jobs; i++) {
        struct gen_job *j = &run->jobs[i];
        j->out = calloc(a->sampling.max_tokens, sizeof(int32_t));
        if (!j->out) {
            nosa_set_error(err, errlen, "out of memory for %u tokens", a->sampling.max_tokens);
            rc = -ENOMEM;
            goto out;
        }
        struct nosa_engine_seq_params p = {.seq_id = (uint64_t)i + 1, .prompt = j->prompt,
                                           .n_prompt = j->n_prompt, .sampling = a->sampling};
        if ((rc = nosa_engine_add(e, &p, err, errlen)) != 0) goto out;
    }
    while ((rc = nosa_engine_step(e, err, errlen)) > 0) {
        const struct nosa_engine_step_stats *st = nosa_engine_last_step(e);
        if (st->prefill_tokens == 0 && st->decoded == 0 && st->finished == 0) {
            nosa_set_error(err, errlen, "no progress: the arena cannot hold the prompts");
            rc = -ENOSPC;
            break;
        }
    }
    *totals = *nosa_engine_totals(e);
out:
    nosa_engine_destroy(e);
    nosa_local_blocks_destroy(lb);
    return rc < 0 ? rc : 0;
}

/* ------------------------------------------------------------------ output */

static void print_json_job(const struct gen_args *a, int batch, const struct gen_job *j,
                           int index, const char *text, size_t len,
                           const struct nosa_engine_totals *t, const char *backend)
{
    printf("{\"index\":%d,\"prompt_tokens\":%u,\"tokens\":[", index, j->n_prompt);
    for (uint32_t k = 0; k < j->n_out; k++) printf(k ? ",%d" : "%d", (int)j->out[k]);
    printf("],\"text\":");
    nosa_json_write_string(stdout, text, len);
    printf(",\"finish_reason\":\"%s\"", nosa_finish_reason_name(j->reason));
    if (j->reason == NOSA_FINISH_ERROR) {
        printf(",\"error\":");
        nosa_json_write_string(stdout, j->error, strlen(j->error));
    }
    double tps = t->seconds > 0 ? (double)t->generated / t->seconds : 0.0;
    printf(",\"stats\":{\"backend\":\"%s\",\"mode\":\"%s\",\"offload\":%s,\"batch\":%d,"
           "\"steps\":%" PRIu64 ",\"generated\":%" PRIu64 ",\"prefill_tokens\":%" PRIu64
           ",\"seconds\":%.6f,\"tokens_per_s\":%.3f,\"blocks_selected\":%" PRIu64
           ",\"blocks_transferred\":%" PRIu64 ",\"block_hits\":%" PRIu64
           ",\"bytes_h2d\":%" PRIu64 ",\"bytes_d2h\":%" PRIu64 "}}\n",
           backend, nosa_attn_mode_name(a->mode), a->offload ? "true" : "false",
           batch, t->steps, t->generated, t->prefill_tokens, t->seconds, tps,
           t->blocks_selected, t->blocks_transferred, t->block_hits, t->bytes_h2d, t->bytes_d2h);
}

static int print_results(const struct gen_args *a, const struct nosa_tokenizer *tok,
                         const struct gen_run *run, const struct nosa_engine_totals *t,
                         const char *backend, char *err, size_t errlen)
{
    int failed = 0;
    for (int i = 0; i < run->n_jobs; i++) {
        const struct gen_job *j = &run->jobs[i];
        size_t cap = (size_t)j->n_out * NOSA_TOKEN_TEXT_MAX + 1, len = 0;
        char *text = malloc(cap);
        if (!text) {
            nosa_set_error(err, errlen, "out of memory");
            return -ENOMEM;
        }
        int rc = nosa_tokenizer_decode(tok, j->out, j->n_out, text, cap, &len, err, errlen);
        if (rc) {
            free(text);
            return rc;
        }
        if (a->json) {
            print_json_job(a, run->n_jobs, j, i, text, len, t, backend);
        } else {
            if (run->n_jobs > 1) printf("--- prompt %d ---\n", i);
            fwrite(text, 1, len, stdout);
            fputc('\n', stdout);
        }
        free(text);
        if (j->reason == NOSA_FINISH_ERROR || !j->finished) {
            fprintf(stderr, "nosa-generate: prompt %d failed: %s\n", i,
                    j->finished ? j->error : "did not finish");
            failed = 1;
        }
    }
    if (!a->json)
        fprintf(stderr, "nosa-generate: backend=%s mode=%s prompts=%d generated=%" PRIu64
                " seconds=%.3f tokens_per_s=%.1f blocks_transferred=%" PRIu64 "\n", backend,
                nosa_attn_mode_name(a->mode), run->n_jobs, t->generated, t->seconds,
                t->seconds > 0 ? (double)t->generated / t->seconds : 0.0, t->blocks_transferred);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        nosa_set_error(err, errlen, "cannot write the output");
        return -EIO;
    }
    if (failed) {
        nosa_set_error(err, errlen, "some prompts failed");
        return -EIO;
    }
    return 0;
}

int main(int argc, char **argv)
{
    nosa_log_init_from_env();
    char err[512] = "";
    struct gen_args a;
    int rc = parse_args(argc, argv, &a, err, sizeof(err));
    if (rc == 1) {
        usage(stdout);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "nosa-generate: %s\n", err);
        usage(stderr);
        return GEN_EXIT_USAGE;
    }
    struct nosa_model *model = NULL;
    struct gen_run run = {0};
    struct nosa_tokenizer tok;
    struct nosa_engine_totals totals = {0};
    const struct nosa_backend_ops *ops = nosa_backend_find(a.backend, err, sizeof(err));
    if (!ops) goto fail;
    LOG_INFO("generate", "backend=%s (asked %s) mode=%s offload=%d", ops->name, a.backend,
             nosa_attn_mode_name(a.mode), a.offload);
    if (load_model(&a, &model, err, sizeof(err))) goto fail;
    if (nosa_tokenizer_init(&tok, &model->cfg, err, sizeof(err))) goto fail;
    if (load_prompts(&a, &tok, &run, err, sizeof(err))) goto fail;
    if (decode_all(&a, model, ops, &run, &totals, err, sizeof(err))) goto fail;
    if (print_results(&a, &tok, &run, &totals, ops->name, err, sizeof(err))) goto fail;
    free_run(&run);
    nosa_model_free(model);
    return 0;
fail:
    fprintf(stderr, "nosa-generate: %s\n", err);
    free_run(&run);
    nosa_model_free(model);
    return 1;
}
