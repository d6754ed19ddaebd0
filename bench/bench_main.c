/* bench_main.c: nosa-bench's command line and the grid loop (backend x context x mode, each
 * cell running every workload and batch on every device), then the outputs. See
 * docs/BENCH.md for the flags, the columns and the workloads. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"
#include "log.h"
#include "parse.h"


static void bench_usage(FILE *f)
{
    fprintf(f,
            "usage: nosa-bench [options]\n"
            "  --backend LIST     cpu,cuda,auto (default auto)\n"
            "  --config NAME      built-in model: tiny | 1b (default 1b), random weights\n"
            "  --model DIR        a model folder instead of --config\n"
            "  --modes LIST       dense-resident,infllmv2-offload,nosa-offload,nosa-resident\n"
            "                     (default: all four; also infllmv2-resident)\n"
            "  --batch LIST       batch sizes (default 8,16,32,64,128)\n"
            "  --context LIST     context lengths, K/M suffixes (default 16K,32K,64K,128K)\n"
            "  --workload LIST    random | correlated:RHO | greedy (each row's argmax fed\n"
            "                     back) (default random,correlated:0.9)\n"
            "  --steps N          timed decode steps per point (default 16)\n"
            "  --warmup N         untimed steps before them (default 4)\n"
            "  --settle N         untimed steps each slot decodes once put in place, before\n"
            "                     the warm-up of its first point (default 0; docs/BENCH.md)\n"
            "  --fill KIND        shared | synthetic | prefill (default shared)\n"
            "  --prefill-chunk N  tokens per prefill call (default 8192)\n"
            "  --prompt KIND      prefill: random (uniform ids, default) | text (printable\n"
            "                     bytes, ids 32..126, as bench/processes.sh submits)\n"
            "  --fill-timeout S   shared: synthesize the template when its prefill would take\n"
            "                     longer than S seconds (default 0: never)\n"
            "  --gpu-mem SIZE     device memory for the dense largest-batch search\n"
            "                     (default: free memory measured at start; cpu: none)\n"
            "  --dense-max N      never run dense above this batch (default 512)\n"
            "  --pool-blocks N    offload pool blocks per (slot, layer, head) (default 2x budget)\n"
            "  --prefetch N       offloaded sparse modes: blocks read ahead per (slot, layer,\n"
            "                     head) and step by the query's block score (default 0)\n"
            "  --budget N         override the model's block budget\n"
            "  --query-aware N    override the model's query-aware blocks\n"
            "  --device N         CUDA device (default 0)\n"
            "  --devices LIST     several devices (e.g. 0,1): one instance each over the one\n"
            "                     arena; every point runs on each alone, then on all at once\n"
            "                     (default: the one --device)\n"
            "  --link-test SIZE   first, copy SIZE bytes of pinned host memory to each device,\n"
            "                     alone and all at once, and print GB/s (cuda; default off)\n"
            "  --logits           every row's logits to the host each step (default: greedy,\n"
            "                     each row's argmax only)\n"
            "  --sample           every row also drawn by top-p 0.9, temperature 0.8 on the\n"
            "                     backend, as a sampled request's row is (the greedy token\n"
            "                     still feeds the next step)\n"
            "  --seed N           (default 1)\n"
            "  --out DIR          write bench.csv, bench.json and PNG plots there\n");
}

static int bench_split(char *s, char **items, int cap, const char *what, char *err,
                       size_t errlen)
{
    int n = 0;
    for (char *save = NULL, *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == cap) {
            nosa_set_error(err, errlen, "%s: more than %d items", what, cap);
            return -EINVAL;
        }
        items[n++] = t;
    }
    if (n == 0) {
        nosa_set_error(err, errlen, "%s: empty list", what);
        return -EINVAL;
    }
    return n;
}

static int bench_parse_mode(const char *s, struct bench_mode *m, char *err, size_t errlen)
{
    char attn[16];
    const char *dash = strchr(s, '-');
    size_t n = dash ? (size_t)(dash - s) : strlen(s);
    const char *place = dash ? dash + 1 : "resident";
    if (n >= sizeof(attn)) goto bad;
    memcpy(attn, s, n);
    attn[n] = '\0';
    if (nosa_attn_mode_parse(attn, &m->attn) != 0) goto bad;
    if (strcmp(place, "offload") == 0)
        m->offload = 1;
    else if (strcmp(place, "resident") == 0)
        m->offload = 0;
    else
        goto bad;
    if (m->attn == NOSA_ATTN_DENSE && m->offload) {
        nosa_set_error(err, errlen, "mode %s: dense attention reads every block; it is only "
                                    "run resident", s);
        return -EINVAL;
    }
    snprintf(m->name, sizeof(m->name), "%s-%s", attn, m->offload ? "offload" : "resident");
    return 0;
bad:
    nosa_set_error(err, errlen, "unknown mode '%s' (dense-resident, infllmv2-offload, "
                                "infllmv2-resident, nosa-offload, nosa-resident)", s);
    return -EINVAL;
}

static int bench_parse_workload(const char *s, struct bench_workload *w, char *err,
                                size_t errlen)
{
    w->greedy = 0;
    if (strcmp(s, "random") == 0 || strcmp(s, "greedy") == 0) {
        w->rho = 0.0;
        w->greedy = strcmp(s, "greedy") == 0;
        snprintf(w->name, sizeof(w->name), "%s", s);
        return 0;
    }
    if (strncmp(s, "correlated:", 11) == 0) {
        int rc = nosa_parse_double(s + 11, 0.0, 1.0, &w->rho, err, errlen);
        if (rc) return rc;
        /* Two decimals as a rule (correlated-0.90); more where two would name another RHO. */
        snprintf(w->name, sizeof(w->name), "correlated-%.2f", w->rho);
        if (strtod(w->name + 11, NULL) != w->rho)
            snprintf(w->name, sizeof(w->name), "correlated-%.6g", w->rho);
        return 0;
    }
    nosa_set_error(err, errlen, "unknown workload '%s' (random, correlated:RHO, greedy)", s);
    return -EINVAL;
}

static int bench_parse_int(const char *s, long lo, long hi, int *out, char *err, size_t errlen)
{
    long v;
    int rc = nosa_parse_long(s, lo, hi, &v, err, errlen);
    if (!rc) *out = (int)v;
    return rc;
}

/* --devices: distinct device ordinals (two instances on one device would share its memory,
 * which the fit computation does not model). */
static int bench_parse_devices(char *list, struct bench_opts *o, char *err, size_t errlen)
{
    char *items[BENCH_MAX_DEVICES];
    int n = bench_split(list, items, BENCH_MAX_DEVICES, "--devices", err, errlen), rc;
    if (n < 0) return n;
    for (int i = 0; i < n; i++) {
        if ((rc = bench_parse_int(items[i], 0, 1024, &o->devices[i], err, errlen))) return rc;
        for (int j = 0; j < i; j++)
            if (o->devices[j] == o->devices[i]) {
                nosa_set_error(err, errlen, "--devices: device %d listed twice", o->devices[i]);
                return -EINVAL;
            }
    }
    o->n_devices = n;
    return 0;
}

static int bench_parse_args(int argc, char **argv, struct bench_opts *o, char *err,
                            size_t errlen)
{
    static const struct option longopts[] = {
        {"backend", 1, 0, 'b'},  {"config", 1, 0, 'c'},   {"model", 1, 0, 'm'},
        {"modes", 1, 0, 'M'},    {"batch", 1, 0, 'B'},    {"context", 1, 0, 'C'},
        {"workload", 1, 0, 'w'}, {"steps", 1, 0, 's'},    {"warmup", 1, 0, 'W'},
        {"settle", 1, 0, 'e'},
        {"fill", 1, 0, 'f'},     {"prefill-chunk", 1, 0, 'p'}, {"gpu-mem", 1, 0, 'g'},
        {"dense-max", 1, 0, 'D'}, {"pool-blocks", 1, 0, 'P'}, {"prefetch", 1, 0, 'R'},
        {"budget", 1, 0, 'u'},
        {"query-aware", 1, 0, 'q'}, {"device", 1, 0, 'd'}, {"seed", 1, 0, 'S'},
        {"out", 1, 0, 'o'},      {"fill-timeout", 1, 0, 'T'}, {"devices", 1, 0, 'v'},
        {"link-test", 1, 0, 'L'}, {"logits", 0, 0, 'l'}, {"sample", 0, 0, 'Y'},
        {"prompt", 1, 0, 'X'},   {"help", 0, 0, 'h'},
        {0, 0, 0, 0},
    };
    static char backend_buf[64] = "auto", modes_buf[256] =
        "dense-resident,infllmv2-offload,nosa-offload,nosa-resident";
    static char batch_buf[256] = "8,16,32,64,128", ctx_buf[256] = "16K,32K,64K,128K";
    static char wl_buf[256] = "random,correlated:0.9";
    static char dev_buf[256] = "";
    int device = 0;
    memset(o, 0, sizeof(*o));
    o->config_name = "1b";
    o->steps = 16;
    o->warmup = 4;
    o->prefill_chunk = 8192;
    o->dense_max_cap = 512;
    o->seed = 1;
    int c, rc = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1 && !rc) {
        switch (c) {
        case 'b': snprintf(backend_buf, sizeof(backend_buf), "%s", optarg); break;
        case 'c': o->config_name = optarg; break;
        case 'm': o->model_dir = optarg; break;
        case 'M': snprintf(modes_buf, sizeof(modes_buf), "%s", optarg); break;
        case 'B': snprintf(batch_buf, sizeof(batch_buf), "%s", optarg); break;
        case 'C': snprintf(ctx_buf, sizeof(ctx_buf), "%s", optarg); break;
        case 'w': snprintf(wl_buf, sizeof(wl_buf), "%s", optarg); break;
        case 's': rc = bench_parse_int(optarg, 1, 1000000, &o->steps, err, errlen); break;
        case 'W': rc = bench_parse_int(optarg, 0, 1000000, &o->warmup, err, errlen); break;
        case 'e': rc = bench_parse_int(optarg, 0, 1000000, &o->settle, err, errlen); break;
        case 'p': rc = bench_parse_int(optarg, 1, 1 << 24, &o->prefill_chunk, err, errlen); break;
        case 'D': rc = bench_parse_int(optarg, 1, 1 << 20, &o->dense_max_cap, err, errlen); break;
        case 'P': rc = bench_parse_int(optarg, 0, 1 << 20, &o->pool_blocks, err, errlen); break;
        case 'R':
            rc = bench_parse_int(optarg, 0, NOSA_MAX_PREFETCH_BLOCKS, &o->prefetch_blocks, err,
                                 errlen);
            break;
        case 'u': rc = bench_parse_int(optarg, 1, 1 << 20, &o->budget_blocks, err, errlen); break;
        case 'q': rc = bench_parse_int(optarg, 1, 1 << 20, &o->query_aware_blocks, err, errlen); break;
        case 'd': rc = bench_parse_int(optarg, 0, 1024, &device, err, errlen); break;
        case 'v': snprintf(dev_buf, sizeof(dev_buf), "%s", optarg); break;
        case 'L': rc = nosa_parse_size(optarg, &o->link_test_bytes, err, errlen); break;
        case 'S': rc = nosa_parse_u64(optarg, 0, UINT64_MAX, &o->seed, err, errlen); break;
        case 'g': rc = nosa_parse_size(optarg, &o->gpu_mem_limit, err, errlen); break;
        case 'o': o->out_dir = optarg; break;
        case 'l': o->logits_to_host = 1; break;
        case 'Y': o->sample_rows = 1; break;
        case 'X':
            if (!strcmp(optarg, "random")) o->prompt_text = 0;
            else if (!strcmp(optarg, "text")) o->prompt_text = 1;
            else {
                nosa_set_error(err, errlen, "--prompt: '%s' (random, text)", optarg);
                rc = -EINVAL;
            }
            break;
        case 'T': rc = nosa_parse_double(optarg, 0.0, 1e9, &o->fill_timeout, err, errlen); break;
        case 'f':
            if (!strcmp(optarg, "shared")) o->fill = BENCH_FILL_SHARED;
            else if (!strcmp(optarg, "synthetic")) o->fill = BENCH_FILL_SYNTHETIC;
            else if (!strcmp(optarg, "prefill")) o->fill = BENCH_FILL_PREFILL;
            else {
                nosa_set_error(err, errlen, "--fill: '%s' (shared, synthetic, prefill)", optarg);
                rc = -EINVAL;
            }
            break;
        case 'h': bench_usage(stdout); exit(0);
        default: nosa_set_error(err, errlen, "bad arguments (see --help)"); rc = -EINVAL;
        }
    }
    if (rc) return rc;
    if (optind != argc) {
        nosa_set_error(err, errlen, "unexpected argument '%s'", argv[optind]);
        return -EINVAL;
    }
    if (dev_buf[0]) {
        if ((rc = bench_parse_devices(dev_buf, o, err, errlen))) return rc;
    } else {
        o->devices[0] = device;
        o->n_devices = 1;
    }
    char *items[BENCH_MAX_LIST];
    int n;
    if ((n = bench_split(backend_buf, items, 4, "--backend", err, errlen)) < 0) return n;
    /* Looked up now, so that a backend this binary cannot run fails before the model is
     * built. */
    for (int i = 0; i < n; i++)
        if (!(o->backends[o->n_backends++] = nosa_backend_find(items[i], err, errlen)))
            return -EINVAL;
    if ((n = bench_split(modes_buf, items, 8, "--modes", err, errlen)) < 0) return n;
    for (int i = 0; i < n; i++)
        if ((rc = bench_parse_mode(items[i], &o->modes[o->n_modes++], err, errlen))) return rc;
    if ((n = bench_split(wl_buf, items, 8, "--workload", err, errlen)) < 0) return n;
    for (int i = 0; i < n; i++)
        if ((rc = bench_parse_workload(items[i], &o->workloads[o->n_workloads++], err, errlen)))
            return rc;
    if ((n = bench_split(batch_buf, items, BENCH_MAX_LIST, "--batch", err, errlen)) < 0) return n;
    for (int i = 0; i < n; i++)
        if ((rc = bench_parse_int(items[i], 1, 1 << 16, &o->batches[o->n_batches++], err, errlen)))
            return rc;
    if ((n = bench_split(ctx_buf, items, BENCH_MAX_LIST, "--context", err, errlen)) < 0) return n;
    for (int i = 0; i < n; i++) {
        uint64_t v;
        if ((rc = nosa_parse_size(items[i], &v, err, errlen))) return rc;
        if (v < 1 || v > (1u << 24)) {
            nosa_set_error(err, errlen, "--context %s: out of range [1, 16M]", items[i]);
            return -ERANGE;
        }
        o->contexts[o->n_contexts++] = (int)v;
    }
    if (o->prompt_text && o->fill != BENCH_FILL_PREFILL) {
        nosa_set_error(err, errlen, "--prompt text needs --fill prefill (the other fills "
                       "write no prompt of their own)");
        return -EINVAL;
    }
    return 0;
}

static int bench_build_model(const struct bench_opts *o, struct nosa_model **out, char *desc,
                             size_t desc_len, char *err, size_t errlen)
{
    int rc, max_ctx = 0;
    if (o->model_dir) {
        rc = nosa_model_load(o->model_dir, out, err, errlen);
        if (rc) return rc;
        snprintf(desc, desc_len, "folder %s", o->model_dir);
    } else {
        struct nosa_model_config cfg;
        if ((rc = nosa_model_config_builtin(o->config_name, &cfg, err, errlen))) return rc;
        if (o->budget_blocks) cfg.sparse.budget_blocks = o->budget_blocks;
        if (o->query_aware_blocks) cfg.sparse.query_aware_blocks = o->query_aware_blocks;
        if ((rc = nosa_model_config_validate(&cfg, err, errlen))) return rc;
        LOG_INFO("bench", "generating random weights config=%s seed=%llu", o->config_name,
                 (unsigned long long)o->seed);
        if ((rc = nosa_model_init_random(&cfg, o->seed, out, err, errlen))) return rc;
        snprintf(desc, desc_len, "built-in %s, random weights (seed %llu)", o->config_name,
                 (unsigned long long)o->seed);
    }
    struct nosa_model_config *cfg = &(*out)->cfg;
    if (o->model_dir && o->budget_blocks) cfg->sparse.budget_blocks = o->budget_blocks;
    if (o->model_dir && o->query_aware_blocks) cfg->sparse.query_aware_blocks = o->query_aware_blocks;
    /* The grid may decode past the configured context limit (128K + steps): RoPE has no
     * limit of its own, so the benchmark raises it rather than shorten the contexts. */
    for (int i = 0; i < o->n_contexts; i++) {
        int m = bench_run_max_context(o, cfg, o->contexts[i]);
        if (m > max_ctx) max_ctx = m;
    }
    if (cfg->max_position < max_ctx) {
        LOG_INFO("bench", "raising max_position from %d to %d", cfg->max_position, max_ctx);
        cfg->max_position = max_ctx;
    }
    return nosa_model_config_validate(cfg, err, errlen);
}

/* Writes bench.csv and bench.json (and, at the end, the plots) into --out. Called after every
 * instance too, so that a run stopped by a time limit keeps what it measured. */
static int bench_write_files(const struct bench_results *res, const struct bench_opts *o,
                             const char *desc, const char *fill_note,
                             const struct bench_json_extra *extra, int plots, char *err,
                             size_t errlen)
{
    char tmp[4096], path[4096];
    int rc;
    /* Written aside and renamed: a run killed mid-write leaves the previous complete file. */
    snprintf(tmp, sizeof(tmp), "%s/bench.csv.tmp", o->out_dir);
    snprintf(path, sizeof(path), "%s/bench.csv", o->out_dir);
    if ((rc = bench_output_csv(res, tmp, err, errlen))) return rc;
    if (rename(tmp, path) != 0) goto rename_failed;
    snprintf(tmp, sizeof(tmp), "%s/bench.json.tmp", o->out_dir);
    snprintf(path, sizeof(path), "%s/bench.json", o->out_dir);
    if ((rc = bench_output_json(res, o, desc, fill_note, extra, tmp, err, errlen))) return rc;
    if (rename(tmp, path) != 0) goto rename_failed;
    if (!plots) return 0;
    rc = bench_output_plots(res, o->out_dir, err, errlen);
    return rc == -ENOENT ? 0 : rc;
rename_failed:
    rc = -errno;
    nosa_set_error(err, errlen, "rename %s: %s", tmp, strerror(errno));
    return rc;
}

/* Arena layout from the grid (see bench_run.c) and the arena itself. *slots: the slots it has
 * room for per device: the grid's largest batch, or dense's cap when dense may run larger
 * (address space only: the mapping is NORESERVE). */
static int bench_ctx_setup(struct bench_ctx *c, int *slots, char *err, size_t errlen)
{
    const struct bench_opts *o = c->opts;
    const struct nosa_model_config *cfg = &c->model->cfg;
    int bs = cfg->sparse.block_size, lmax = 0, min_ctx = INT_MAX, max_batch = 0, dense = 0;
    for (int i = 0; i < o->n_contexts; i++) {
        if (o->fill != BENCH_FILL_PREFILL && o->contexts[i] % bs) {
            nosa_set_error(err, errlen, "context %d is not a multiple of the block size %d "
                           "(needed by --fill shared/synthetic)", o->contexts[i], bs);
            return -EINVAL;
        }
        lmax = o->contexts[i] > lmax ? o->contexts[i] : lmax;
        min_ctx = o->contexts[i] < min_ctx ? o->contexts[i] : min_ctx;
    }
    for (int i = 0; i < o->n_batches; i++)
        max_batch = o->batches[i] > max_batch ? o->batches[i] : max_batch;
    for (int i = 0; i < o->n_modes; i++) dense |= o->modes[i].attn == NOSA_ATTN_DENSE;
    if (o->prompt_text && cfg->vocab_size <= BENCH_TEXT_LAST) {
        nosa_set_error(err, errlen, "--prompt text: the vocabulary (%d) does not hold the "
                       "printable bytes %d..%d", cfg->vocab_size, BENCH_TEXT_FIRST,
                       BENCH_TEXT_LAST);
        return -EINVAL;
    }
    if (o->fill == BENCH_FILL_PREFILL) {
        c->slot_groups = (uint64_t)bench_run_max_context(o, cfg, lmax) / bs + 1;
    } else {
        c->template_groups = (uint64_t)lmax / bs;
        c->slot_groups = (uint64_t)(bench_run_max_context(o, cfg, min_ctx) - min_ctx) / bs + 2;
    }
    *slots = dense && o->dense_max_cap > max_batch ? o->dense_max_cap : max_batch;
    c->slots = *slots;
    struct nosa_kv_geometry geom = nosa_model_kv_geometry(cfg);
    uint64_t arena_slots = (uint64_t)o->n_devices * (uint64_t)*slots;
    return bench_arena_create(&geom, c->template_groups + arena_slots * c->slot_groups,
                              &c->arena, err, errlen);
}

int main(int argc, char **argv)
{
    char err[512] = "", desc[512] = "", devname[256];
    struct bench_opts o;
    struct nosa_model *model = NULL;
    struct bench_results res = {0};
    struct bench_ctx ctx = {.opts = &o};
    cJSON *ratios = NULL, *scaling = NULL, *link = NULL;
    struct bench_json_extra extra = {0};
    int rc, slots = 0, lmax = 0, failed = 0;
    nosa_log_init_from_env();
    if ((rc = bench_parse_args(argc, argv, &o, err, sizeof(err)))) goto fail;
    printf("nosa-bench: driver: in-process (the backend is called directly; no engine, "
           "coordinator or kv-host process in the loop); decode returns %s\n",
           bench_decode_output_desc(&o));
    for (int i = 0; i < o.n_workloads; i++)
        if (o.workloads[i].rho > 0.0 && o.settle + o.warmup < BENCH_SETTLE_ADVISED) {
            printf("nosa-bench: note: with %s the hit rate keeps rising after a slot is put "
                   "in place (for about %d steps with the 1B model at 64K-128K; docs/BENCH.md): "
                   "--settle N has each new slot decode N steps first\n",
                   o.workloads[i].name, BENCH_SETTLE_ADVISED);
            break;
        }
    if (o.out_dir && mkdir(o.out_dir, 0755) != 0 && errno != EEXIST) {
        rc = -errno;
        nosa_set_error(err, sizeof(err), "mkdir %s: %s", o.out_dir, strerror(errno));
        goto fail;
    }
    if ((rc = bench_build_model(&o, &model, desc, sizeof(desc), err, sizeof(err)))) goto fail;
    ctx.model = model;
    const struct nosa_model_config *cfg = &model->cfg;
    printf("model: %s; layers %d, kv heads %d, head_dim %d, block %d, budget %d blocks "
           "(%d query-aware)\n", desc, cfg->n_layers, cfg->n_kv_heads, cfg->head_dim,
           cfg->sparse.block_size, cfg->sparse.budget_blocks, cfg->sparse.query_aware_blocks);
    if ((rc = bench_ctx_setup(&ctx, &slots, err, sizeof(err)))) goto fail;
    for (int d = 0; d < o.n_devices; d++)
        if (bench_mem_device_name(o.devices[d], devname, sizeof(devname)) == 0)
            printf("device %d: %s\n", o.devices[d], devname);
    if (o.link_test_bytes) {
        rc = bench_link_test(&o, &link, err, sizeof(err));
        if (rc == -ENOTSUP) {
            printf("link test: skipped: %s\n", err);
        } else if (rc) {
            /* The grid still runs: its figures do not depend on the link test. */
            fprintf(stderr, "nosa-bench: link test failed: %s\n", err);
            failed++;
        }
        extra.link_test = link;
    }
    for (int i = 0; i < o.n_contexts; i++) lmax = o.contexts[i] > lmax ? o.contexts[i] : lmax;
    for (int bi = 0; bi < o.n_backends; bi++) {
        const struct nosa_backend_ops *ops = o.backends[bi];
        double fill_s = 0.0;
        if ((rc = bench_template_fill(&ctx, ops, lmax, &fill_s, err, sizeof(err)))) goto fail;
        printf("fill: %s\n", ctx.fill_note);
        for (int ci = 0; ci < o.n_contexts; ci++) {
            for (int mi = 0; mi < o.n_modes; mi++) {
                rc = bench_grid_instance(&ctx, ops, &o.modes[mi], o.contexts[ci], slots, &res,
                                         err, sizeof(err));
                if (rc) {
                    /* One failing (mode, context) must not cost the rest of a timed run. */
                    fprintf(stderr, "nosa-bench: %s %s context %d failed: %s\n", ops->name,
                            o.modes[mi].name, o.contexts[ci], err);
                    failed++;
                }
                if (o.out_dir && (rc = bench_write_files(&res, &o, desc, ctx.fill_note, &extra,
                                                         0, err, sizeof(err))))
                    goto fail;
            }
        }
    }
    bench_output_table(&res);
    if (!(ratios = bench_ratios(&res)) || !(scaling = bench_scaling(&res))) {
        rc = -ENOMEM;
        nosa_set_error(err, sizeof(err), "ratios: out of memory");
        goto fail;
    }
    extra.ratios = ratios;
    extra.scaling = scaling;
    if (o.out_dir) {
        if ((rc = bench_write_files(&res, &o, desc, ctx.fill_note, &extra, 1, err,
                                    sizeof(err))))
            goto fail;
        printf("wrote %s/bench.csv, %s/bench.json and the plots\n", o.out_dir, o.out_dir);
    }
    if (failed) {
        rc = -EIO;
        nosa_set_error(err, sizeof(err), "%d grid instance(s) or the link test failed (see "
                                         "above)", failed);
        goto fail;
    }
    goto out;
fail:
    fprintf(stderr, "nosa-bench: %s\n", err);
out:
    cJSON_Delete(link);
    cJSON_Delete(scaling);
    cJSON_Delete(ratios);
    bench_results_free(&res);
    bench_arena_destroy(ctx.arena);
    nosa_model_free(model);
    return rc ? 1 : 0;
}
