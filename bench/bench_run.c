/* bench_run.c: one backend instance of nosa-bench. Puts every slot's context in place (see
 * enum bench_fill), then for each workload and batch size runs warm-up steps and timed decode
 * steps over slots [0, batch) and turns the backend's step statistics into a result row.
 *
 * Arena layout (groups): [0, template_groups) the shared template prefix (SHARED, SYNTHETIC);
 * then slot_groups private groups per slot, holding the blocks that complete after the prefix
 * (or, with PREFILL, every block of the slot). Sequences reuse their slot's groups from one
 * instance to the next: an instance rewrites every block it reads. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "bf16.h"
#include "log.h"

static double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: small, fast and good enough for token ids and synthetic KV. */
static uint64_t bench_rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double bench_rng_unit(uint64_t *s)
{
    return (double)(bench_rng_next(s) >> 11) * 0x1.0p-53;
}

static int32_t bench_rng_token(uint64_t *s, int vocab)
{
    return (int32_t)(bench_rng_next(s) % (uint64_t)vocab);
}

int bench_run_max_context(const struct bench_opts *o, const struct nosa_model_config *cfg,
                          int ctx)
{
    /* Every point of an instance decodes warmup + steps tokens on its slots. */
    long decode = (long)o->n_workloads * (o->n_batches + 1) * (o->warmup + o->steps);
    long bs = cfg->sparse.block_size;
    long max_ctx = ctx + decode + bs;
    return (int)((max_ctx + bs - 1) / bs * bs);
}

static struct nosa_kv_geometry bench_geometry(const struct nosa_model_config *cfg)
{
    struct nosa_kv_geometry g = {
        .n_layers = (uint32_t)cfg->n_layers,
        .n_kv_heads = (uint32_t)cfg->n_kv_heads,
        .block_size = (uint32_t)cfg->sparse.block_size,
        .head_dim = (uint32_t)cfg->head_dim,
        .dtype = NOSA_KV_DTYPE_BF16,
    };
    return g;
}

static float bench_softplus(float x)
{
    return x > 20.0f ? x : log1pf(expf(x));
}

/* SYNTHETIC: K and V uniform in [-1, 1) (bf16), cis from V with the model's eviction head, so
 * the query-agnostic scores follow the model as they would after a real prefill. */
static void bench_template_blocks(struct bench_ctx *c, uint64_t n_groups)
{
    const struct nosa_model_config *cfg = &c->model->cfg;
    const struct nosa_kv_arena *ar = bench_arena_view(c->arena);
    struct nosa_kv_geometry g = ar->geom;
    size_t bb = nosa_kv_block_bytes(&g);
    int bs = (int)g.block_size, hd = (int)g.head_dim, nkv = (int)g.n_kv_heads;
    uint64_t rng = c->opts->seed ^ 0x5157a7e5ull;
    float vrow[4096];
    for (uint64_t grp = 0; grp < n_groups; grp++) {
        for (int l = 0; l < cfg->n_layers; l++) {
            const struct nosa_layer_weights *lw = &c->model->layers[l];
            for (int h = 0; h < nkv; h++) {
                uint8_t *blk = ar->base + nosa_kv_block_index(&g, grp, (uint32_t)l,
                                                              (uint32_t)h) * bb;
                nosa_bf16 *k = (nosa_bf16 *)blk;
                nosa_bf16 *v = (nosa_bf16 *)(blk + nosa_kv_block_v_offset(&g));
                for (int i = 0; i < bs * hd; i++) {
                    k[i] = nosa_f32_to_bf16((float)(2.0 * bench_rng_unit(&rng) - 1.0));
                    v[i] = nosa_f32_to_bf16((float)(2.0 * bench_rng_unit(&rng) - 1.0));
                }
            }
            for (int t = 0; t < bs; t++) {
                /* v_t of all KV heads, concatenated, as the eviction head reads it. */
                for (int h = 0; h < nkv; h++) {
                    const uint8_t *blk = ar->base + nosa_kv_block_index(&g, grp, (uint32_t)l,
                                                                        (uint32_t)h) * bb;
                    const nosa_bf16 *v = (const nosa_bf16 *)(blk + nosa_kv_block_v_offset(&g));
                    for (int d = 0; d < hd; d++) vrow[h * hd + d] = nosa_bf16_to_f32(v[t * hd + d]);
                }
                for (int h = 0; h < nkv; h++) {
                    float z = lw->evict_delta_b ? lw->evict_delta_b[h] : 0.0f;
                    const float *w = lw->evict_delta_w + (size_t)h * nkv * hd;
                    for (int i = 0; i < nkv * hd; i++) z += w[i] * vrow[i];
                    uint8_t *blk = ar->base + nosa_kv_block_index(&g, grp, (uint32_t)l,
                                                                  (uint32_t)h) * bb;
                    float *bias = (float *)(blk + nosa_kv_block_bias_offset(&g));
                    bias[t] = lw->evict_A[h] * bench_softplus(z);
                }
            }
        }
    }
}

static void bench_template_synthesize(struct bench_ctx *c, int max_ctx, double t0,
                                      double *seconds)
{
    const struct nosa_model_config *cfg = &c->model->cfg;
    bench_template_blocks(c, (uint64_t)(max_ctx / cfg->sparse.block_size));
    uint64_t rng = c->opts->seed ^ 0x7e3ull;
    c->last_template_token = bench_rng_token(&rng, cfg->vocab_size);
    c->template_tokens = max_ctx;
    c->fill_used = BENCH_FILL_SYNTHETIC;
    *seconds = bench_now() - t0;
}

int bench_template_fill(struct bench_ctx *c, const struct nosa_backend_ops *ops, int max_ctx,
                        double *seconds, char *err, size_t errlen)
{
    const struct bench_opts *o = c->opts;
    const struct nosa_model_config *cfg = &c->model->cfg;
    int bs = cfg->sparse.block_size;
    *seconds = 0.0;
    if (o->fill == BENCH_FILL_PREFILL) {
        c->fill_used = BENCH_FILL_PREFILL;
        snprintf(c->fill_note, sizeof(c->fill_note), "every sequence prefilled (chunks of %d)",
                 o->prefill_chunk);
        return 0;
    }
    if (c->template_tokens >= max_ctx) return 0;
    if ((uint64_t)(max_ctx / bs) > c->template_groups) {
        nosa_set_error(err, errlen, "template: %d tokens need %d groups, arena has %llu",
                       max_ctx, max_ctx / bs, (unsigned long long)c->template_groups);
        return -ENOSPC;
    }
    if (cfg->n_kv_heads * cfg->head_dim > 4096) {
        nosa_set_error(err, errlen, "template: n_kv_heads * head_dim > 4096 unsupported");
        return -EINVAL;
    }
    double t0 = bench_now();
    if (o->fill == BENCH_FILL_SYNTHETIC) {
        bench_template_synthesize(c, max_ctx, t0, seconds);
        snprintf(c->fill_note, sizeof(c->fill_note), "synthetic template (%d tokens, %.1f s)",
                 max_ctx, *seconds);
        return 0;
    }
    /* SHARED: prefill one sequence on a filler backend (nosa, offloaded: the product path). */
    struct nosa_backend_config bc = {
        .mode = NOSA_ATTN_NOSA,
        .offload = 1,
        .max_seqs = 1,
        .max_context = max_ctx,
        .pool_blocks = o->pool_blocks,
        .arena = bench_arena_view(c->arena),
        .device = o->device,
    };
    struct nosa_backend *b = NULL;
    int32_t *tokens = NULL;
    uint32_t *groups = NULL;
    int rc = ops->create(c->model, &bc, &b, err, errlen);
    if (rc) goto out;
    tokens = malloc((size_t)o->prefill_chunk * sizeof(*tokens));
    groups = malloc((size_t)(max_ctx / bs) * sizeof(*groups));
    if (!tokens || !groups) {
        nosa_set_error(err, errlen, "template: out of memory");
        rc = -ENOMEM;
        goto out;
    }
    for (int m = 0; m < max_ctx / bs; m++) groups[m] = (uint32_t)m;
    struct nosa_seq_blocks tbl = {.groups = groups, .n_groups = (uint32_t)(max_ctx / bs)};
    rc = ops->seq_reset(b, 0, err, errlen);
    if (rc) goto out;
    uint64_t rng = o->seed ^ 0x7e3ull;
    for (int pos = 0; pos < max_ctx; pos += o->prefill_chunk) {
        int n = max_ctx - pos < o->prefill_chunk ? max_ctx - pos : o->prefill_chunk;
        for (int i = 0; i < n; i++) tokens[i] = bench_rng_token(&rng, cfg->vocab_size);
        rc = ops->prefill(b, 0, tokens, n, &tbl, NULL, err, errlen);
        if (rc) goto out;
        c->last_template_token = tokens[n - 1];
        double el = bench_now() - t0, projected = el * max_ctx / (pos + n);
        if (pos == 0 && n < max_ctx && o->fill_timeout > 0.0 && projected > o->fill_timeout) {
            /* Too slow to finish in the run's time: keep the run, change how it fills. */
            printf("template: prefill would take %.1f s (%.0f tokens/s) > --fill-timeout %.1f s:"
                   " synthesizing the template instead\n", projected, (pos + n) / el,
                   o->fill_timeout);
            bench_template_synthesize(c, max_ctx, bench_now(), seconds);
            snprintf(c->fill_note, sizeof(c->fill_note),
                     "synthetic template (%d tokens, %.1f s): prefill too slow (%.0f tokens/s)",
                     max_ctx, *seconds, (pos + n) / el);
            goto out;
        }
    }
    c->template_tokens = max_ctx;
    c->fill_used = BENCH_FILL_SHARED;
    *seconds = bench_now() - t0;
    snprintf(c->fill_note, sizeof(c->fill_note),
             "shared template prefilled by %s (%d tokens, %.1f s, %.0f tokens/s)", ops->name,
             max_ctx, *seconds, max_ctx / *seconds);
    LOG_INFO("bench", "template prefilled tokens=%d seconds=%.2f", max_ctx, *seconds);
out:
    ops->destroy(b);
    free(tokens);
    free(groups);
    return rc;
}

/* The state of one instance: slots, their tables and workload generators. */
struct bench_inst {
    struct bench_ctx *c;
    const struct nosa_backend_ops *ops;
    struct nosa_backend *b;
    int max_seqs, max_context, context, n_table;
    uint32_t *groups;              /* [max_seqs][n_table] */
    struct nosa_seq_blocks *tbl;   /* [max_seqs] */
    int *filled;                   /* slot holds its context */
    int64_t *pos;                  /* tokens each slot holds */
    int32_t *prev;                 /* each slot's last input token */
    uint64_t *rng;                 /* each slot's generator */
    int *slots;
    int32_t *tokens;
    float *logits;
};

static void bench_inst_free(struct bench_inst *in)
{
    in->ops->destroy(in->b);
    free(in->groups);
    free(in->tbl);
    free(in->filled);
    free(in->pos);
    free(in->prev);
    free(in->rng);
    free(in->slots);
    free(in->tokens);
    free(in->logits);
}

static int bench_inst_init(struct bench_inst *in, struct bench_ctx *c,
                           const struct nosa_backend_ops *ops, const struct bench_mode *mode,
                           int context, int max_seqs, char *err, size_t errlen)
{
    const struct nosa_model_config *cfg = &c->model->cfg;
    int bs = cfg->sparse.block_size;
    memset(in, 0, sizeof(*in));
    in->c = c;
    in->ops = ops;
    in->max_seqs = max_seqs;
    in->context = context;
    in->max_context = bench_run_max_context(c->opts, cfg, context);
    in->n_table = in->max_context / bs + 1;
    size_t ms = (size_t)max_seqs;
    in->groups = malloc(ms * (size_t)in->n_table * sizeof(*in->groups));
    in->tbl = calloc(ms, sizeof(*in->tbl));
    in->filled = calloc(ms, sizeof(*in->filled));
    in->pos = calloc(ms, sizeof(*in->pos));
    in->prev = calloc(ms, sizeof(*in->prev));
    in->rng = calloc(ms, sizeof(*in->rng));
    in->slots = calloc(ms, sizeof(*in->slots));
    in->tokens = calloc(ms, sizeof(*in->tokens));
    in->logits = malloc(ms * (size_t)cfg->vocab_size * sizeof(*in->logits));
    if (!in->groups || !in->tbl || !in->filled || !in->pos || !in->prev || !in->rng ||
        !in->slots || !in->tokens || !in->logits) {
        nosa_set_error(err, errlen, "instance: out of memory (%d slots)", max_seqs);
        return -ENOMEM;
    }
    int shared = c->opts->fill != BENCH_FILL_PREFILL;
    int prefix = shared ? context / bs : 0;
    uint64_t need_private = (uint64_t)(in->n_table - prefix);
    if (need_private > c->slot_groups || (uint64_t)max_seqs * c->slot_groups + c->template_groups >
                                             bench_arena_view(c->arena)->n_groups) {
        nosa_set_error(err, errlen, "instance: arena too small for %d slots at context %d",
                       max_seqs, context);
        return -ENOSPC;
    }
    for (int s = 0; s < max_seqs; s++) {
        uint32_t *t = in->groups + (size_t)s * in->n_table;
        for (int m = 0; m < in->n_table; m++)
            t[m] = m < prefix ? (uint32_t)m
                              : (uint32_t)(c->template_groups + (uint64_t)s * c->slot_groups +
                                           (uint64_t)(m - prefix));
        in->tbl[s].groups = t;
        in->tbl[s].n_groups = (uint32_t)in->n_table;
        in->slots[s] = s;
        in->rng[s] = c->opts->seed * 1000003u + (uint64_t)s;
    }
    struct nosa_backend_config bc = {
        .mode = mode->attn,
        .offload = mode->offload,
        .max_seqs = max_seqs,
        .max_context = in->max_context,
        .pool_blocks = c->opts->pool_blocks,
        .arena = bench_arena_view(c->arena),
        .device = c->opts->device,
    };
    return ops->create(c->model, &bc, &in->b, err, errlen);
}

/* Puts slots [0, n) that do not hold their context yet in place. */
static int bench_inst_fill(struct bench_inst *in, int n, char *err, size_t errlen)
{
    const struct bench_opts *o = in->c->opts;
    const struct nosa_model_config *cfg = &in->c->model->cfg;
    int bs = cfg->sparse.block_size;
    int32_t *toks = NULL;
    int rc = 0;
    for (int s = 0; s < n; s++) {
        if (in->filled[s]) continue;
        rc = in->ops->seq_reset(in->b, s, err, errlen);
        if (rc) break;
        if (o->fill != BENCH_FILL_PREFILL) {
            rc = in->ops->seq_resume(in->b, s, &in->tbl[s], (uint32_t)(in->context / bs), err,
                                     errlen);
            if (rc) break;
            in->prev[s] = in->c->last_template_token;
        } else {
            if (!toks && !(toks = malloc((size_t)o->prefill_chunk * sizeof(*toks)))) {
                nosa_set_error(err, errlen, "fill: out of memory");
                rc = -ENOMEM;
                break;
            }
            for (int pos = 0; pos < in->context && !rc; pos += o->prefill_chunk) {
                int k = in->context - pos < o->prefill_chunk ? in->context - pos
                                                              : o->prefill_chunk;
                for (int i = 0; i < k; i++) toks[i] = bench_rng_token(&in->rng[s], cfg->vocab_size);
                rc = in->ops->prefill(in->b, s, toks, k, &in->tbl[s], NULL, err, errlen);
                in->prev[s] = toks[k - 1];
            }
            if (rc) break;
        }
        in->pos[s] = in->context;
        in->filled[s] = 1;
    }
    free(toks);
    return rc;
}

static void bench_inst_next_tokens(struct bench_inst *in, int n, double rho)
{
    int vocab = in->c->model->cfg.vocab_size;
    for (int s = 0; s < n; s++) {
        int repeat = rho > 0.0 && bench_rng_unit(&in->rng[s]) < rho;
        in->tokens[s] = repeat ? in->prev[s] : bench_rng_token(&in->rng[s], vocab);
        in->prev[s] = in->tokens[s];
    }
}

/* One decode step over slots [0, n); adds its statistics to acc and its wall time to *wall. */
static int bench_inst_step(struct bench_inst *in, int n, double rho, struct nosa_step_stats *acc,
                           struct nosa_step_stats *st, double *wall, char *err, size_t errlen)
{
    bench_inst_next_tokens(in, n, rho);
    double t0 = bench_now();
    int rc = in->ops->decode(in->b, n, in->slots, in->tokens, in->tbl, in->logits, err, errlen);
    double dt = bench_now() - t0;
    if (rc) return rc;
    for (int s = 0; s < n; s++) in->pos[s]++;
    if (!acc) return 0;
    in->ops->stats(in->b, st);
    *wall += dt;
    acc->blocks_selected += st->blocks_selected;
    acc->blocks_transferred += st->blocks_transferred;
    acc->block_hits += st->block_hits;
    acc->bytes_h2d += st->bytes_h2d;
    acc->bytes_d2h += st->bytes_d2h;
    acc->seconds += st->seconds;
    acc->tokens += st->tokens;
    acc->gemm_s += st->gemm_s, acc->attn_s += st->attn_s;
    acc->select_s += st->select_s, acc->copy_s += st->copy_s;
    return 0;
}

static void bench_inst_row(const struct bench_inst *in, const struct bench_instance_spec *sp,
                           const struct bench_workload *w, int n, double ctx_sum,
                           const struct nosa_step_stats *acc, double wall, double fill_s,
                           double gpu_used, struct bench_point *p)
{
    const struct bench_ctx *c = in->c;
    const struct nosa_model_config *cfg = &c->model->cfg;
    struct nosa_kv_geometry g = bench_geometry(cfg);
    int bs = cfg->sparse.block_size, steps = c->opts->steps;
    double group_bytes = (double)nosa_kv_group_bytes(&g);
    memset(p, 0, sizeof(*p));
    snprintf(p->backend, sizeof(p->backend), "%s", sp->backend_name);
    snprintf(p->mode, sizeof(p->mode), "%s", sp->mode->name);
    snprintf(p->workload, sizeof(p->workload), "%s", w->name);
    p->rho = w->rho;
    p->batch = n;
    p->context = in->context;
    p->context_mean = ctx_sum / ((double)n * steps);
    p->steps = steps;
    p->tokens_per_s = wall > 0.0 ? (double)n * steps / wall : NAN;
    p->step_ms = wall * 1e3 / steps;
    p->gemm_ms = p->attn_ms = p->select_ms = p->copy_ms = p->other_ms = NAN;
    p->blocks_selected = acc->blocks_selected;
    p->blocks_transferred = acc->blocks_transferred;
    p->block_hits = acc->block_hits;
    p->bytes_h2d = acc->bytes_h2d;
    p->bytes_d2h = acc->bytes_d2h;
    p->block_bytes = nosa_kv_block_bytes(&g);
    p->blocks_per_step = (double)acc->blocks_transferred / steps;
    p->bytes_h2d_per_step = (double)acc->bytes_h2d / steps;
    p->bytes_d2h_per_step = (double)acc->bytes_d2h / steps;
    p->hit_rate = acc->blocks_selected ? (double)acc->block_hits / acc->blocks_selected : NAN;
    p->copy_gbps = NAN; /* filled in by bench_main.c where a resident twin exists */
    double split_s = acc->gemm_s + acc->attn_s + acc->select_s + acc->copy_s;
    if (split_s > 0.0) { /* the backend times its phases (cuda: CUDA events) */
        p->gemm_ms = acc->gemm_s * 1e3 / steps, p->attn_ms = acc->attn_s * 1e3 / steps;
        p->select_ms = acc->select_s * 1e3 / steps, p->copy_ms = acc->copy_s * 1e3 / steps;
        p->other_ms = p->step_ms - split_s * 1e3 / steps;
        if (acc->copy_s > 0.0) p->copy_gbps = (double)acc->bytes_h2d / acc->copy_s / 1e9;
    }
    p->gpu_mem_bytes = gpu_used;
    p->gpu_mem_per_seq = sp->gpu_per_seq;
    p->gpu_mem_source = sp->gpu_mem_source;
    double shared = 0.0, priv = 0.0;
    int prefix = c->opts->fill != BENCH_FILL_PREFILL ? in->context / bs : 0;
    for (int s = 0; s < n; s++) {
        double complete = (double)(in->pos[s] / bs);
        shared = prefix;
        priv += complete - prefix;
    }
    p->host_arena_bytes = (shared + priv) * group_bytes;
    p->host_kv_bytes = (shared * n + priv) * group_bytes;
    p->dense_max_batch = sp->dense_max_batch;
    p->fill_s = fill_s;
}

int bench_run_instance(struct bench_ctx *c, const struct nosa_backend_ops *ops,
                       const struct bench_instance_spec *sp, struct bench_results *res,
                       char *err, size_t errlen)
{
    const struct bench_opts *o = c->opts;
    int max_seqs = 0;
    for (int i = 0; i < sp->n_batches; i++)
        if (sp->batches[i] > max_seqs) max_seqs = sp->batches[i];
    int on_device = strcmp(ops->name, "cpu") != 0;
    uint64_t free0 = 0, total = 0, free1 = 0;
    if (on_device && bench_mem_device_info(o->device, &free0, &total, NULL, 0) != 0)
        on_device = 0;
    struct bench_inst in;
    int rc = bench_inst_init(&in, c, ops, sp->mode, sp->context, max_seqs, err, errlen);
    if (rc) goto out;
    for (int wi = 0; wi < o->n_workloads; wi++) {
        const struct bench_workload *w = &o->workloads[wi];
        for (int bi = 0; bi < sp->n_batches; bi++) {
            int n = sp->batches[bi];
            double t0 = bench_now();
            rc = bench_inst_fill(&in, n, err, errlen);
            if (rc) goto out;
            double fill_s = bench_now() - t0;
            struct nosa_step_stats acc, st;
            memset(&acc, 0, sizeof(acc));
            double wall = 0.0, ctx_sum = 0.0;
            for (int i = 0; i < o->warmup && !rc; i++)
                rc = bench_inst_step(&in, n, w->rho, NULL, &st, &wall, err, errlen);
            for (int i = 0; i < o->steps && !rc; i++) {
                for (int s = 0; s < n; s++) ctx_sum += (double)in.pos[s];
                rc = bench_inst_step(&in, n, w->rho, &acc, &st, &wall, err, errlen);
            }
            if (rc) goto out;
            double gpu_used = NAN;
            if (on_device && bench_mem_device_info(o->device, &free1, &total, NULL, 0) == 0)
                gpu_used = (double)free0 - (double)free1;
            struct bench_point p;
            bench_inst_row(&in, sp, w, n, ctx_sum, &acc, wall, fill_s, gpu_used, &p);
            rc = bench_results_add(res, &p);
            if (rc) {
                nosa_set_error(err, errlen, "results: out of memory");
                goto out;
            }
            LOG_INFO("bench", "point backend=%s mode=%s workload=%s ctx=%d batch=%d tok/s=%.1f "
                     "hit=%.3f blocks/step=%.1f", p.backend, p.mode, p.workload, p.context,
                     p.batch, p.tokens_per_s, p.hit_rate, p.blocks_per_step);
        }
    }
out:
    bench_inst_free(&in);
    return rc;
}

int bench_run_probe_memory(struct bench_ctx *c, const struct nosa_backend_ops *ops,
                           const struct bench_mode *mode, int max_context, double *fixed_b,
                           double *per_seq_b, char *err, size_t errlen)
{
    if (strcmp(ops->name, "cpu") == 0) {
        nosa_set_error(err, errlen, "backend cpu holds no device memory");
        return -ENOTSUP;
    }
    double used[2] = {0.0, 0.0};
    for (int k = 0; k < 2; k++) {
        uint64_t f0, f1, t;
        int rc = bench_mem_device_info(c->opts->device, &f0, &t, err, errlen);
        if (rc) return rc;
        struct nosa_backend_config bc = {
            .mode = mode->attn,
            .offload = mode->offload,
            .max_seqs = k + 1,
            .max_context = max_context,
            .pool_blocks = c->opts->pool_blocks,
            .arena = bench_arena_view(c->arena),
            .device = c->opts->device,
        };
        struct nosa_backend *b = NULL;
        rc = ops->create(c->model, &bc, &b, err, errlen);
        if (rc) return rc;
        rc = bench_mem_device_info(c->opts->device, &f1, &t, err, errlen);
        ops->destroy(b);
        if (rc) return rc;
        used[k] = (double)f0 - (double)f1;
    }
    *per_seq_b = used[1] - used[0];
    *fixed_b = used[0] - *per_seq_b;
    return 0;
}
