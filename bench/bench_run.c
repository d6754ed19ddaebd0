/* bench_run.c: the backend instances of one grid cell of nosa-bench, one per --devices entry.
 * Puts every slot's context in place (see enum bench_fill), then for each workload and batch
 * size runs warm-up steps and timed decode steps over slots [0, batch) and turns the
 * backend's step statistics into result rows. With several devices each point runs on each
 * device alone, then on all at once (a thread per device), see bench_run_instance.
 *
 * Arena layout (groups): [0, template_groups) the shared template prefix (SHARED, SYNTHETIC),
 * read by every device; then slot_groups private groups per arena slot, holding the blocks
 * that complete after the prefix (or, with PREFILL, every block of the slot); device i's
 * slots use arena slots [i * slots, (i + 1) * slots). Sequences reuse their slot's groups
 * from one instance to the next: an instance rewrites every block it reads. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "bf16.h"
#include "log.h"

double bench_now(void)
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
    /* Every point of an instance decodes warmup + steps tokens on its slots, and each slot
     * settles once. */
    long decode = (long)o->n_workloads * (o->n_batches + 1) * (o->warmup + o->steps) + o->settle;
    long bs = cfg->sparse.block_size;
    long max_ctx = ctx + decode + bs;
    return (int)((max_ctx + bs - 1) / bs * bs);
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
                    size_t row = (size_t)h * (size_t)nkv * (size_t)hd;
                    for (int i = 0; i < nkv * hd; i++)
                        z += nosa_weight_at(lw->evict_delta_w, row + (size_t)i) * vrow[i];
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
        .device = o->devices[0],
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
        rc = nosa_backend_prefill_one(ops, b, 0, tokens, n, &tbl, NULL, err, errlen);
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
    int dev_index, device;         /* index in --devices, the device it runs on */
    int max_seqs, max_context, context, n_table;
    uint32_t *groups;              /* [max_seqs][n_table] */
    struct nosa_seq_blocks *tbl;   /* [max_seqs] */
    int *filled;                   /* slot holds its context */
    int64_t *pos;                  /* tokens each slot holds */
    int32_t *prev;                 /* each slot's last input token */
    uint64_t *rng;                 /* each slot's generator */
    int *slots;
    int32_t *tokens;
    int32_t *argmax; /* each slot's greedy token of the last step (the backend's argmax) */
    float *logits;   /* --logits: every slot's logits of the last step; else NULL */
    struct nosa_row_sampling *sampling; /* --sample: how each slot is drawn; else NULL */
    int32_t *sampled;                   /* --sample: each slot's drawn token */
};

const char *bench_decode_output_desc(const struct bench_opts *o)
{
    if (o->sample_rows)
        return o->logits_to_host
                   ? "each row's argmax, its draw (top-p 0.9, T 0.8) and its logits (--sample "
                     "--logits)"
                   : "each row's argmax and its draw by top-p 0.9, T 0.8 on the backend "
                     "(--sample)";
    return o->logits_to_host ? "each row's argmax and its logits on the host (--logits)"
                             : "each row's argmax only (greedy; no logits to the host)";
}

static void bench_inst_free(struct bench_inst *in)
{
    if (in->ops) in->ops->destroy(in->b);
    free(in->groups);
    free(in->tbl);
    free(in->filled);
    free(in->pos);
    free(in->prev);
    free(in->rng);
    free(in->slots);
    free(in->tokens);
    free(in->argmax);
    free(in->logits);
    free(in->sampling);
    free(in->sampled);
}

/* The backend configuration of a bench instance of mode: the read-ahead where the mode can
 * have it (offloaded, sparse), so one --prefetch applies to every offloaded mode alike. */
static struct nosa_backend_config bench_backend_config(const struct bench_ctx *c,
                                                       const struct bench_mode *mode,
                                                       int max_seqs, int max_context, int device)
{
    int reads_ahead = mode->offload && mode->attn != NOSA_ATTN_DENSE;
    return (struct nosa_backend_config){
        .mode = mode->attn,
        .offload = mode->offload,
        .max_seqs = max_seqs,
        .max_context = max_context,
        .pool_blocks = c->opts->pool_blocks,
        .prefetch_blocks = reads_ahead ? c->opts->prefetch_blocks : 0,
        .arena = bench_arena_view(c->arena),
        .device = device,
    };
}

/* A slot's input generator at the start. The same on every device: every device decodes the
 * same inputs, so devices do the same work and a device's figures compare with a one-device
 * run of the same seed. */
static uint64_t bench_inst_seed(const struct bench_inst *in, int slot)
{
    return in->c->opts->seed * 1000003u + (uint64_t)slot;
}

static int bench_inst_init(struct bench_inst *in, struct bench_ctx *c,
                           const struct nosa_backend_ops *ops, const struct bench_mode *mode,
                           int context, int max_seqs, int dev_index, char *err, size_t errlen)
{
    const struct nosa_model_config *cfg = &c->model->cfg;
    int bs = cfg->sparse.block_size;
    memset(in, 0, sizeof(*in));
    in->c = c;
    in->ops = ops;
    in->dev_index = dev_index;
    in->device = c->opts->devices[dev_index];
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
    in->argmax = calloc(ms, sizeof(*in->argmax));
    if (c->opts->logits_to_host) {
        in->logits = malloc(ms * (size_t)cfg->vocab_size * sizeof(*in->logits));
        if (!in->logits) {
            nosa_set_error(err, errlen, "instance: out of memory for the logits of %d slots",
                           max_seqs);
            return -ENOMEM;
        }
    }
    if (c->opts->sample_rows) {
        in->sampling = calloc(ms, sizeof(*in->sampling));
        in->sampled = calloc(ms, sizeof(*in->sampled));
    }
    if (!in->groups || !in->tbl || !in->filled || !in->pos || !in->prev || !in->rng ||
        !in->slots || !in->tokens || !in->argmax ||
        (c->opts->sample_rows && (!in->sampling || !in->sampled))) {
        nosa_set_error(err, errlen, "instance: out of memory (%d slots)", max_seqs);
        return -ENOMEM;
    }
    int shared = c->opts->fill != BENCH_FILL_PREFILL;
    int prefix = shared ? context / bs : 0;
    uint64_t need_private = (uint64_t)(in->n_table - prefix);
    /* Device dev_index's slots own arena slots [dev_index * slots, + max_seqs): the devices
     * share the template and nothing else. */
    uint64_t first = (uint64_t)dev_index * (uint64_t)c->slots;
    if (need_private > c->slot_groups || max_seqs > c->slots ||
        (first + (uint64_t)max_seqs) * c->slot_groups + c->template_groups >
            bench_arena_view(c->arena)->n_groups) {
        nosa_set_error(err, errlen, "instance: arena too small for %d slots at context %d "
                       "(device %d)", max_seqs, context, in->device);
        return -ENOSPC;
    }
    for (int s = 0; s < max_seqs; s++) {
        uint32_t *t = in->groups + (size_t)s * in->n_table;
        for (int m = 0; m < in->n_table; m++)
            t[m] = m < prefix ? (uint32_t)m
                              : (uint32_t)(c->template_groups +
                                           (first + (uint64_t)s) * c->slot_groups +
                                           (uint64_t)(m - prefix));
        in->tbl[s].groups = t;
        in->tbl[s].n_groups = (uint32_t)in->n_table;
        in->slots[s] = s;
        in->rng[s] = bench_inst_seed(in, s);
    }
    struct nosa_backend_config bc = bench_backend_config(c, mode, max_seqs, in->max_context,
                                                         in->device);
    return ops->create(c->model, &bc, &in->b, err, errlen);
}

/* Slots [0, n) start again: filled anew by the next bench_inst_fill, inputs from the start. */
static void bench_inst_restart(struct bench_inst *in, int n)
{
    for (int s = 0; s < n; s++) {
        in->filled[s] = 0;
        in->rng[s] = bench_inst_seed(in, s);
    }
}

/* Puts slots [0, n) that do not hold their context yet in place. */
/* Prefills the slots[0 .. n_slots) of random tokens to the context, ops->prefill_lanes slots per
 * call (each slot's tokens from its own generator, so the lanes do not change them). */
static int bench_inst_prefill(struct bench_inst *in, const int *slots, int n_slots, char *err,
                              size_t errlen)
{
    const struct bench_opts *o = in->c->opts;
    int vocab = in->c->model->cfg.vocab_size, chunk = o->prefill_chunk;
    int lanes = in->ops->prefill_lanes < 1 ? 1 : in->ops->prefill_lanes;
    int32_t *toks = malloc((size_t)lanes * (size_t)chunk * sizeof(*toks));
    struct nosa_prefill_req *reqs = malloc((size_t)lanes * sizeof(*reqs));
    int rc = 0;
    if (!toks || !reqs) {
        nosa_set_error(err, errlen, "fill: out of memory");
        rc = -ENOMEM;
    }
    for (int g = 0; g < n_slots && !rc; g += lanes) {
        int n_g = n_slots - g < lanes ? n_slots - g : lanes;
        for (int pos = 0; pos < in->context && !rc; pos += chunk) {
            int k = in->context - pos < chunk ? in->context - pos : chunk;
            for (int j = 0; j < n_g; j++) {
                int s = slots[g + j];
                int32_t *t = toks + (size_t)j * (size_t)chunk;
                for (int i = 0; i < k; i++)
                    t[i] = o->prompt_text
                               ? BENCH_TEXT_FIRST +
                                     bench_rng_token(&in->rng[s],
                                                     BENCH_TEXT_LAST - BENCH_TEXT_FIRST + 1)
                               : bench_rng_token(&in->rng[s], vocab);
                reqs[j] = (struct nosa_prefill_req){s, t, k, &in->tbl[s], NULL};
                in->prev[s] = t[k - 1];
            }
            rc = in->ops->prefill(in->b, reqs, n_g, err, errlen);
        }
    }
    free(reqs);
    free(toks);
    return rc;
}

static int bench_inst_fill(struct bench_inst *in, int n, char *err, size_t errlen)
{
    const struct bench_opts *o = in->c->opts;
    int bs = in->c->model->cfg.sparse.block_size;
    int *slots = malloc((size_t)n * sizeof(*slots)), n_slots = 0;
    int rc = 0;
    if (!slots) {
        nosa_set_error(err, errlen, "fill: out of memory");
        return -ENOMEM;
    }
    for (int s = 0; s < n && !rc; s++) {
        if (in->filled[s]) continue;
        rc = in->ops->seq_reset(in->b, s, err, errlen);
        if (rc) break;
        if (o->fill == BENCH_FILL_PREFILL) {
            slots[n_slots++] = s;
            continue;
        }
        rc = in->ops->seq_resume(in->b, s, &in->tbl[s], (uint32_t)(in->context / bs), err,
                                 errlen);
        in->prev[s] = in->c->last_template_token;
    }
    if (!rc && n_slots) rc = bench_inst_prefill(in, slots, n_slots, err, errlen);
    for (int s = 0; s < n && !rc; s++) {
        in->pos[s] = in->context;
        in->filled[s] = 1;
    }
    free(slots);
    return rc;
}

static void bench_inst_next_tokens(struct bench_inst *in, int a, int n,
                                   const struct bench_workload *w)
{
    int vocab = in->c->model->cfg.vocab_size;
    double rho = w->rho;
    for (int s = a; s < n; s++) {
        if (w->greedy) { /* prev: the last prompt token, then each step's argmax */
            in->tokens[s] = in->prev[s];
            continue;
        }
        int repeat = rho > 0.0 && bench_rng_unit(&in->rng[s]) < rho;
        in->tokens[s] = repeat ? in->prev[s] : bench_rng_token(&in->rng[s], vocab);
        in->prev[s] = in->tokens[s];
    }
}

/* One decode step over slots [a, n); adds its statistics to acc and its wall time to *wall. */
static int bench_inst_step(struct bench_inst *in, int a, int n, const struct bench_workload *w,
                           struct nosa_step_stats *acc, struct nosa_step_stats *st, double *wall,
                           char *err, size_t errlen)
{
    bench_inst_next_tokens(in, a, n, w);
    double t0 = bench_now();
    /* Greedy, as a worker's greedy rows: the backend returns each row's argmax; with
     * --logits every row's logits too, with --sample every row's draw (docs/BENCH.md). */
    if (in->sampling)
        for (int s = a; s < n; s++)
            in->sampling[s] = (struct nosa_row_sampling){0.8f, 0.9f, (uint64_t)s,
                                                         (uint64_t)in->pos[s]};
    struct nosa_decode_out out = {
        .argmax = in->argmax + a,
        .logits = in->logits ? in->logits + (size_t)a * (size_t)in->c->model->cfg.vocab_size
                             : NULL,
        .sampling = in->sampling ? in->sampling + a : NULL,
        .sampled = in->sampled ? in->sampled + a : NULL};
    int rc = in->ops->decode(in->b, n - a, in->slots + a, in->tokens + a, in->tbl + a, &out, err,
                             errlen);
    double dt = bench_now() - t0;
    if (rc) return rc;
    for (int s = a; s < n; s++) in->pos[s]++;
    if (w->greedy)
        for (int s = a; s < n; s++) in->prev[s] = in->argmax[s];
    if (!acc) return 0;
    in->ops->stats(in->b, st);
    *wall += dt;
    acc->blocks_selected += st->blocks_selected;
    acc->blocks_transferred += st->blocks_transferred;
    acc->block_hits += st->block_hits;
    acc->blocks_prefetched += st->blocks_prefetched;
    acc->bytes_h2d += st->bytes_h2d;
    acc->bytes_d2h += st->bytes_d2h;
    acc->seconds += st->seconds;
    acc->tokens += st->tokens;
    acc->gemm_s += st->gemm_s, acc->attn_s += st->attn_s;
    acc->select_s += st->select_s, acc->copy_s += st->copy_s;
    return 0;
}

/* Several instances start their timed steps together: each fills its slots and runs its
 * warm-up steps, then waits here; the driver opens the gate once all are ready, or calls the
 * phase off when one failed or could not be started (nobody waits for a thread that never
 * comes). */
struct bench_gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int ready, open, cancel;
};

/* One instance's part of a phase of a point: fill, warm-up, timed steps, and what it measured. */
struct bench_phase {
    struct bench_inst *in;
    int n;                  /* the point's batch */
    const struct bench_workload *w;
    int fresh;              /* restart slots [0, n) first (bench_inst_restart) */
    struct bench_gate *gate; /* NULL: the instance runs alone */
    struct nosa_step_stats acc;
    double wall, ctx_sum, fill_s;
    double t_begin, t_end;  /* when its timed steps began, when the last returned */
    int rc;
    char err[256];
};

static void bench_phase_run(struct bench_phase *ph)
{
    struct bench_inst *in = ph->in;
    const struct bench_opts *o = in->c->opts;
    struct nosa_step_stats st;
    memset(&ph->acc, 0, sizeof(ph->acc));
    ph->wall = ph->ctx_sum = 0.0;
    if (ph->fresh) bench_inst_restart(in, ph->n);
    /* Slots are put in place in order, so those this point adds are [first_new, n). */
    int first_new = 0;
    while (first_new < ph->n && in->filled[first_new]) first_new++;
    double t0 = bench_now();
    ph->rc = bench_inst_fill(in, ph->n, ph->err, sizeof(ph->err));
    ph->fill_s = bench_now() - t0;
    /* The new slots alone first: their hit rate rises for a while after a fill. */
    for (int i = 0; i < o->settle && first_new < ph->n && !ph->rc; i++)
        ph->rc = bench_inst_step(in, first_new, ph->n, ph->w, NULL, &st, &ph->wall,
                                 ph->err, sizeof(ph->err));
    for (int i = 0; i < o->warmup && !ph->rc; i++)
        ph->rc = bench_inst_step(in, 0, ph->n, ph->w, NULL, &st, &ph->wall, ph->err,
                                 sizeof(ph->err));
    if (ph->gate) {
        struct bench_gate *g = ph->gate;
        pthread_mutex_lock(&g->lock);
        g->ready++;
        g->cancel |= ph->rc != 0;
        pthread_cond_broadcast(&g->cond);
        while (!g->open && !g->cancel) pthread_cond_wait(&g->cond, &g->lock);
        int go = !g->cancel;
        pthread_mutex_unlock(&g->lock);
        if (!go) {
            if (!ph->rc) {
                ph->rc = -ECANCELED;
                snprintf(ph->err, sizeof(ph->err), "called off: another device failed");
            }
            return;
        }
    }
    ph->t_begin = bench_now();
    for (int i = 0; i < o->steps && !ph->rc; i++) {
        for (int s = 0; s < ph->n; s++) ph->ctx_sum += (double)in->pos[s];
        ph->rc = bench_inst_step(in, 0, ph->n, ph->w, &ph->acc, &st, &ph->wall, ph->err,
                                 sizeof(ph->err));
    }
    ph->t_end = bench_now();
}

static void *bench_phase_thread(void *arg)
{
    bench_phase_run(arg);
    return NULL;
}

/* Runs phases ph[0, k) at once, one thread each, free-running (no step waits for another
 * device: workers of a node do not synchronise their steps either) from a common start. */
static int bench_phases_together(struct bench_phase *ph, int k, char *err, size_t errlen)
{
    struct bench_gate g = {.ready = 0};
    pthread_t th[BENCH_MAX_DEVICES];
    int launched = 0, rc = pthread_mutex_init(&g.lock, NULL);
    if (rc) {
        nosa_set_error(err, errlen, "pthread_mutex_init: %s", strerror(rc));
        return -rc;
    }
    if ((rc = pthread_cond_init(&g.cond, NULL))) {
        pthread_mutex_destroy(&g.lock);
        nosa_set_error(err, errlen, "pthread_cond_init: %s", strerror(rc));
        return -rc;
    }
    for (; launched < k; launched++) {
        ph[launched].gate = &g;
        if ((rc = pthread_create(&th[launched], NULL, bench_phase_thread, &ph[launched]))) {
            nosa_set_error(err, errlen, "pthread_create (device %d): %s",
                           ph[launched].in->device, strerror(rc));
            rc = -rc;
            break;
        }
    }
    pthread_mutex_lock(&g.lock);
    g.cancel |= rc != 0;
    while (g.ready < launched && !g.cancel) pthread_cond_wait(&g.cond, &g.lock);
    g.open = !g.cancel;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
    for (int i = 0; i < launched; i++) {
        int e = pthread_join(th[i], NULL);
        if (e && !rc) {
            nosa_set_error(err, errlen, "pthread_join (device %d): %s", ph[i].in->device,
                           strerror(e));
            rc = -e;
        }
    }
    /* The first real failure, not the -ECANCELED of the devices it called off. */
    for (int i = 0; i < launched && !rc; i++)
        if (ph[i].rc && ph[i].rc != -ECANCELED) {
            rc = ph[i].rc;
            nosa_set_error(err, errlen, "device %d: %s", ph[i].in->device, ph[i].err);
        }
    pthread_cond_destroy(&g.cond);
    pthread_mutex_destroy(&g.lock);
    return rc;
}

/* FNV-1a over each slot's argmax token of the last step: equal hashes mean equal greedy
 * continuations, so two devices (or phases) can be seen to compute the same. */
static void bench_greedy_hash(const struct bench_inst *in, int n, char *out, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int s = 0; s < n; s++) {
        uint32_t best = (uint32_t)in->argmax[s];
        for (int k = 0; k < 4; k++) {
            h ^= (best >> (8 * k)) & 0xffu;
            h *= 0x100000001b3ull;
        }
    }
    snprintf(out, len, "%016llx", (unsigned long long)h);
}

/* The row of one instance's phase: devices is the label of the devices decoding at the same
 * time, n_together their count. */
static void bench_phase_row(const struct bench_phase *ph, const struct bench_instance_spec *sp,
                            const struct bench_workload *w, const char *devices,
                            int n_together, double gpu_used, struct bench_point *p)
{
    const struct bench_inst *in = ph->in;
    const struct nosa_step_stats *acc = &ph->acc;
    const struct bench_ctx *c = in->c;
    const struct nosa_model_config *cfg = &c->model->cfg;
    struct nosa_kv_geometry g = nosa_model_kv_geometry(cfg);
    int bs = cfg->sparse.block_size, steps = c->opts->steps, n = ph->n;
    double group_bytes = (double)nosa_kv_group_bytes(&g), wall = ph->wall;
    memset(p, 0, sizeof(*p));
    snprintf(p->backend, sizeof(p->backend), "%s", sp->backend_name);
    snprintf(p->mode, sizeof(p->mode), "%s", sp->mode->name);
    snprintf(p->workload, sizeof(p->workload), "%s", w->name);
    p->rho = w->rho;
    snprintf(p->device, sizeof(p->device), "%d", in->device);
    snprintf(p->devices, sizeof(p->devices), "%s", devices);
    p->dev_index = in->dev_index;
    p->n_together = n_together;
    p->batch = n;
    p->context = in->context;
    p->context_mean = ph->ctx_sum / ((double)n * steps);
    p->steps = steps;
    p->tokens_per_s = wall > 0.0 ? (double)n * steps / wall : NAN;
    p->scaling = NAN; /* set by the caller for the rows of devices run together */
    p->step_ms = wall * 1e3 / steps;
    p->gemm_ms = p->attn_ms = p->select_ms = p->copy_ms = p->other_ms = NAN;
    p->blocks_selected = acc->blocks_selected;
    p->blocks_transferred = acc->blocks_transferred;
    p->block_hits = acc->block_hits;
    p->blocks_prefetched = acc->blocks_prefetched;
    p->bytes_h2d = acc->bytes_h2d;
    p->bytes_d2h = acc->bytes_d2h;
    p->block_bytes = nosa_kv_block_bytes(&g);
    p->blocks_per_step = (double)acc->blocks_transferred / steps;
    p->prefetch_per_step = (double)acc->blocks_prefetched / steps;
    p->bytes_h2d_per_step = (double)acc->bytes_h2d / steps;
    p->bytes_d2h_per_step = (double)acc->bytes_d2h / steps;
    p->hit_rate = acc->blocks_selected ? (double)acc->block_hits / acc->blocks_selected : NAN;
    p->copy_gbps = NAN; /* filled in by bench_main.c where a resident twin exists */
    p->link_gbps = NAN;
    double split_s = acc->gemm_s + acc->attn_s + acc->select_s + acc->copy_s;
    if (split_s > 0.0) { /* the backend times its phases (cuda: CUDA events) */
        p->gemm_ms = acc->gemm_s * 1e3 / steps, p->attn_ms = acc->attn_s * 1e3 / steps;
        p->select_ms = acc->select_s * 1e3 / steps, p->copy_ms = acc->copy_s * 1e3 / steps;
        p->other_ms = p->step_ms - split_s * 1e3 / steps;
        if (acc->copy_s > 0.0) p->copy_gbps = (double)acc->bytes_h2d / acc->copy_s / 1e9;
        /* cuda reads the missed blocks inside attention (copy_s 0): the attention time then
         * holds the copy, and the rate is a lower bound of the link's. */
        double carrier = acc->copy_s > 0.0 ? acc->copy_s : acc->attn_s;
        double delta = (double)acc->blocks_transferred * (double)p->block_bytes;
        if (delta > 0.0 && carrier > 0.0) p->link_gbps = delta / carrier / 1e9;
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
    p->fill_s = ph->fill_s;
    bench_greedy_hash(in, n, p->greedy_hash, sizeof(p->greedy_hash));
}

/* The aggregate of the rows of k devices run together: tokens/s is every device's tokens over
 * the span from the first device's first timed step to the last device's end; counters and
 * bytes are sums; the shared prefix is counted once in the arena bytes. */
static void bench_aggregate_row(const struct bench_point *rows, const struct bench_phase *ph,
                                int k, double alone_tps_mean, struct bench_point *p)
{
    const struct nosa_model_config *cfg = &ph[0].in->c->model->cfg;
    struct nosa_kv_geometry g = nosa_model_kv_geometry(cfg);
    int prefix = ph[0].in->c->opts->fill != BENCH_FILL_PREFILL
                     ? rows[0].context / cfg->sparse.block_size : 0;
    double t_start = ph[0].t_begin, t_end = ph[0].t_end, ctx = 0.0;
    *p = rows[0];
    snprintf(p->device, sizeof(p->device), "all");
    p->dev_index = -1;
    p->blocks_selected = p->blocks_transferred = p->block_hits = p->blocks_prefetched = 0;
    p->bytes_h2d = p->bytes_d2h = 0;
    p->gpu_mem_bytes = p->host_arena_bytes = p->host_kv_bytes = p->fill_s = 0.0;
    for (int d = 0; d < k; d++) {
        const struct bench_point *q = &rows[d];
        t_start = ph[d].t_begin < t_start ? ph[d].t_begin : t_start;
        t_end = ph[d].t_end > t_end ? ph[d].t_end : t_end;
        ctx += q->context_mean / k;
        p->blocks_selected += q->blocks_selected;
        p->blocks_transferred += q->blocks_transferred;
        p->block_hits += q->block_hits;
        p->blocks_prefetched += q->blocks_prefetched;
        p->bytes_h2d += q->bytes_h2d;
        p->bytes_d2h += q->bytes_d2h;
        p->gpu_mem_bytes += q->gpu_mem_bytes;
        p->host_arena_bytes += q->host_arena_bytes;
        p->host_kv_bytes += q->host_kv_bytes;
        p->fill_s = q->fill_s > p->fill_s ? q->fill_s : p->fill_s;
    }
    p->host_arena_bytes -= (double)(k - 1) * prefix * (double)nosa_kv_group_bytes(&g);
    double span = t_end - t_start;
    p->context_mean = ctx;
    p->tokens_per_s = span > 0.0 ? (double)k * p->batch * p->steps / span : NAN;
    p->scaling = p->tokens_per_s / alone_tps_mean;
    p->step_ms = span * 1e3 / p->steps;
    p->gemm_ms = p->attn_ms = p->select_ms = p->copy_ms = p->other_ms = NAN;
    p->copy_gbps = p->link_gbps = NAN;
    p->blocks_per_step = (double)p->blocks_transferred / p->steps;
    p->prefetch_per_step = (double)p->blocks_prefetched / p->steps;
    p->bytes_h2d_per_step = (double)p->bytes_h2d / p->steps;
    p->bytes_d2h_per_step = (double)p->bytes_d2h / p->steps;
    p->hit_rate = p->blocks_selected ? (double)p->block_hits / p->blocks_selected : NAN;
    p->greedy_hash[0] = '\0';
}

static int bench_add_row(struct bench_results *res, const struct bench_point *p, char *err,
                         size_t errlen)
{
    if (bench_results_add(res, p)) {
        nosa_set_error(err, errlen, "results: out of memory");
        return -ENOMEM;
    }
    LOG_INFO("bench", "point backend=%s mode=%s workload=%s ctx=%d batch=%d device=%s "
             "devices=%s tok/s=%.1f hit=%.3f blocks/step=%.1f", p->backend, p->mode,
             p->workload, p->context, p->batch, p->device, p->devices, p->tokens_per_s,
             p->hit_rate, p->blocks_per_step);
    return 0;
}

/* Device memory instance d holds now (NAN where it cannot be measured). */
static double bench_gpu_used(int on_device, int device, uint64_t free0)
{
    uint64_t free1, total;
    if (!on_device || bench_mem_device_info(device, &free1, &total, NULL, 0) != 0) return NAN;
    return (double)free0 - (double)free1;
}

int bench_run_instance(struct bench_ctx *c, const struct nosa_backend_ops *ops,
                       const struct bench_instance_spec *sp, struct bench_results *res,
                       char *err, size_t errlen)
{
    const struct bench_opts *o = c->opts;
    int nd = o->n_devices, max_seqs = 0, made = 0, rc = 0;
    for (int i = 0; i < sp->n_batches; i++)
        if (sp->batches[i] > max_seqs) max_seqs = sp->batches[i];
    int on_device = strcmp(ops->name, "cpu") != 0;
    uint64_t free0[BENCH_MAX_DEVICES] = {0}, total = 0;
    char all[64] = "";
    struct bench_inst in[BENCH_MAX_DEVICES];
    for (int d = 0; d < nd; d++) {
        size_t len = strlen(all);
        snprintf(all + len, sizeof(all) - len, "%s%d", d ? "+" : "", o->devices[d]);
        if (on_device && bench_mem_device_info(o->devices[d], &free0[d], &total, NULL, 0) != 0)
            on_device = 0;
        made = d + 1;
        rc = bench_inst_init(&in[d], c, ops, sp->mode, sp->context, max_seqs, d, err, errlen);
        if (rc) goto out;
    }
    for (int wi = 0; wi < o->n_workloads; wi++) {
        const struct bench_workload *w = &o->workloads[wi];
        for (int bi = 0; bi < sp->n_batches; bi++) {
            struct bench_phase ph[BENCH_MAX_DEVICES];
            struct bench_point rows[BENCH_MAX_DEVICES], agg;
            double alone[BENCH_MAX_DEVICES], alone_mean = 0.0;
            char one[8];
            /* One device: the sequences go on from the previous point, as they always did.
             * Several: every phase (each device alone, then all) starts from the same fresh
             * slots and inputs, so alone and together do exactly the same work. */
            for (int d = 0; d < nd; d++) {
                ph[d] = (struct bench_phase){.in = &in[d], .n = sp->batches[bi],
                                             .w = w, .fresh = nd > 1};
                bench_phase_run(&ph[d]);
                if ((rc = ph[d].rc)) {
                    nosa_set_error(err, errlen, "device %d: %s", in[d].device, ph[d].err);
                    goto out;
                }
                snprintf(one, sizeof(one), "%d", in[d].device);
                bench_phase_row(&ph[d], sp, w, one, 1,
                                bench_gpu_used(on_device, in[d].device, free0[d]), &rows[d]);
                if ((rc = bench_add_row(res, &rows[d], err, errlen))) goto out;
                alone[d] = rows[d].tokens_per_s;
                alone_mean += alone[d] / nd;
            }
            if (nd == 1) continue;
            if ((rc = bench_phases_together(ph, nd, err, errlen))) goto out;
            for (int d = 0; d < nd; d++) {
                bench_phase_row(&ph[d], sp, w, all, nd,
                                bench_gpu_used(on_device, in[d].device, free0[d]), &rows[d]);
                rows[d].scaling = rows[d].tokens_per_s / alone[d];
                if ((rc = bench_add_row(res, &rows[d], err, errlen))) goto out;
            }
            bench_aggregate_row(rows, ph, nd, alone_mean, &agg);
            if ((rc = bench_add_row(res, &agg, err, errlen))) goto out;
        }
    }
out:
    /* Last created first: the first instance registered the arena with CUDA (the others
     * found it registered) and unregisters it when destroyed. */
    for (int d = made - 1; d >= 0; d--) bench_inst_free(&in[d]);
    return rc;
}

/* Device memory the backend holds when created with `slots` slots: free memory before the
 * create minus free memory after it. */
static int bench_probe_slots(struct bench_ctx *c, const struct nosa_backend_ops *ops,
                             const struct bench_mode *mode, int max_context, int device,
                             int slots, double *used, char *err, size_t errlen)
{
    uint64_t f0, f1, t;
    int rc = bench_mem_device_info(device, &f0, &t, err, errlen);
    if (rc) return rc;
    struct nosa_backend_config bc = bench_backend_config(c, mode, slots, max_context, device);
    struct nosa_backend *b = NULL;
    if ((rc = ops->create(c->model, &bc, &b, err, errlen))) return rc;
    rc = bench_mem_device_info(device, &f1, &t, err, errlen);
    ops->destroy(b);
    *used = (double)f0 - (double)f1;
    return rc;
}

int bench_run_probe_memory(struct bench_ctx *c, const struct nosa_backend_ops *ops,
                           const struct bench_mode *mode, int max_context, int device,
                           double *fixed_b, double *per_seq_b, char *err, size_t errlen)
{
    if (strcmp(ops->name, "cpu") == 0) {
        nosa_set_error(err, errlen, "backend cpu holds no device memory");
        return -ENOTSUP;
    }
    /* A backend sizes its prefill buffers for min(slots, prefill_lanes) prompts, so from 1 to
     * 2 slots it also adds a lane's activations (~15 MB at the 1B shape), which batches past
     * the lanes do not pay again: the slope is taken where the lanes are all there. Where
     * that many slots do not fit (dense at long contexts on a small device), 1 and 2, saying
     * so. */
    int lo = ops->prefill_lanes > 1 ? ops->prefill_lanes : 1;
    double used[2] = {0.0, 0.0};
    int rc = bench_probe_slots(c, ops, mode, max_context, device, lo, &used[0], err, errlen);
    if (!rc) rc = bench_probe_slots(c, ops, mode, max_context, device, lo + 1, &used[1], err,
                                    errlen);
    if (rc == -ENOMEM && lo > 1) {
        LOG_WARN("bench", "memory probe: %d slots of %s at %d tokens do not fit (%s); probing "
                 "1 and 2 slots, whose difference also holds one prefill lane's buffers",
                 lo + 1, mode->name, max_context, err);
        lo = 1;
        rc = bench_probe_slots(c, ops, mode, max_context, device, 1, &used[0], err, errlen);
        if (!rc) rc = bench_probe_slots(c, ops, mode, max_context, device, 2, &used[1], err,
                                        errlen);
    }
    if (rc) return rc;
    *per_seq_b = used[1] - used[0];
    *fixed_b = used[0] - (double)lo * *per_seq_b;
    return 0;
}
