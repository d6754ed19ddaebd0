/* backend_cpu.c: the plain-C reference backend (nosa_backend_cpu_ops, backend.h).
 *
 * One token at a time, one sequence at a time, one fixed arithmetic order: a prefill of n
 * tokens is literally n single-token steps, and a batched decode step runs its sequences one
 * after the other on the same code path, so chunking and batch composition cannot change a
 * result. Per token and layer: RMSNorm, q/k/v, RoPE, K/V rounded to bf16 and appended to the
 * open block, eviction scores cis from the stored values, then per KV head: compression
 * update, selection (select.c), the delta pulled from the arena when offloading (kv.c),
 * attention over the selected blocks (ascending) and the current block with cis as an
 * additive logit bias, write-back of a completed block, the read-ahead (kv.h); then the
 * output projection, the SwiGLU MLP and, for the last token, the final norm and LM head.
 * docs/CPU_BACKEND.md has the exact definitions. All memory is allocated in create(). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "backend_cpu.h"
#include "kv.h"
#include "log.h"
#include "ops.h"
#include "select.h"

struct nosa_backend {
    const struct nosa_model *model;
    struct nosa_backend_config cfg;
    struct nosa_kv_arena arena; /* valid when have_arena */
    int have_arena;
    struct nosa_backend_limits limits; /* what each call is checked against */
    struct nosa_cpu_sel_params sp;
    struct nosa_cpu_kv kv;
    float *rope_cos, *rope_sin; /* [max_context][head_dim/2] */
    int *len;                   /* [max_seqs] tokens in the slot */
    int *stepped;               /* [max_seqs] a token was processed since reset/resume */
    float *last_q;              /* [max_seqs][n_layers][n_heads*head_dim] after RoPE */
    /* Scratch of one token's forward pass (single-threaded). */
    float *x, *xb, *q, *k, *v, *vr, *cis, *att, *gate, *up, *sq, *bq, *be;
    float *logit;              /* [rep][max_context]: one row per query head of a group */
    float *row_logits;         /* [vocab]: a decode row whose argmax or draw is wanted, not its
                                * logits */
    uint64_t *sample_keys;     /* [2 * vocab]: scratch of nosa_sample_row */
    float *head_mx, *head_sum; /* [rep] */
    nosa_bf16 *kb, *vb;
    int *sel;
    unsigned char *taken, *slot_mark;
    const uint8_t **ptrs;
    struct nosa_step_stats stats;
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void cpu_destroy(struct nosa_backend *b)
{
    if (!b) return;
    nosa_cpu_kv_free(&b->kv);
    free(b->rope_cos);
    free(b->rope_sin);
    free(b->len);
    free(b->stepped);
    free(b->last_q);
    free(b->x);
    free(b->kb);
    free(b->vb);
    free(b->sel);
    free(b->taken);
    free(b->slot_mark);
    free(b->row_logits);
    free(b->sample_keys);
    free(b->ptrs);
    free(b);
}

static int cpu_create(const struct nosa_model *model, const struct nosa_backend_config *cfg,
                      struct nosa_backend **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!model || !cfg) {
        nosa_set_error(err, errlen, "cpu backend: model and config are required");
        return -EINVAL;
    }
    int rc = nosa_backend_config_check(model, cfg, "cpu", 1, err, errlen);
    if (rc) return rc;
    const struct nosa_model_config *mc = &model->cfg;
    int budget = mc->sparse.budget_blocks;
    int pool = cfg->pool_blocks ? cfg->pool_blocks : 2 * budget;
    /* A sparse step's selection must be local at once; dense streams its selection (the
     * whole context) through the pool in chunks (attend_head), so one block is enough. */
    int min_pool = cfg->mode == NOSA_ATTN_DENSE || budget - 1 < 1 ? 1 : budget - 1;
    if (cfg->offload && pool < min_pool) {
        nosa_set_error(err, errlen,
                       "cpu backend: pool_blocks = %d cannot hold one step's selection "
                       "(needs >= %d: budget_blocks %d minus the open block)",
                       pool, min_pool, budget);
        return -EINVAL;
    }

    struct nosa_backend *b = calloc(1, sizeof(*b));
    if (!b) goto oom;
    b->model = model;
    b->cfg = *cfg;
    b->cfg.pool_blocks = cfg->offload ? pool : 0;
    if (cfg->arena) {
        b->arena = *cfg->arena;
        b->have_arena = 1;
    }
    b->cfg.arena = NULL; /* only b->arena is used: the caller's struct may go away */
    nosa_backend_limits_init(&b->limits, "cpu", model, cfg);
    nosa_cpu_sel_params_init(&b->sp, mc, cfg->mode);
    struct nosa_kv_geometry geom = nosa_model_kv_geometry(mc);
    rc = nosa_cpu_kv_init(&b->kv, &geom, &b->sp, cfg->offload, cfg->max_seqs, cfg->max_context,
                          pool, err, errlen);
    if (rc) {
        free(b);
        return rc;
    }

    size_t d = (size_t)mc->head_dim, hid = (size_t)mc->hidden_size;
    size_t qdim = (size_t)mc->n_heads * d, kvdim = (size_t)mc->n_kv_heads * d;
    size_t ctx = (size_t)cfg->max_context, mb = (size_t)b->kv.max_blocks;
    size_t nc = (size_t)b->kv.max_compressed;
    size_t rope_n = ctx * (d / 2);
    b->rope_cos = calloc(rope_n, sizeof(float));
    b->rope_sin = calloc(rope_n, sizeof(float));
    b->len = calloc((size_t)cfg->max_seqs, sizeof(int));
    b->stepped = calloc((size_t)cfg->max_seqs, sizeof(int));
    b->last_q = calloc((size_t)cfg->max_seqs * (size_t)mc->n_layers * qdim, sizeof(float));
    /* One buffer for the f32 scratch, carved below in this order. */
    size_t inter = (size_t)mc->intermediate_size;
    size_t rep = (size_t)b->sp.rep;
    size_t nf = hid * 2 + qdim * 2 + kvdim * 3 + (size_t)mc->n_kv_heads + inter * 2 + rep * ctx +
                2 * rep + 2 * nc + 2 * mb;
    b->x = calloc(nf, sizeof(float));
    b->kb = calloc(kvdim, sizeof(nosa_bf16));
    b->vb = calloc(kvdim, sizeof(nosa_bf16));
    b->sel = calloc(mb + 1, sizeof(int));
    b->taken = calloc(mb + 1, 1);
    b->slot_mark = calloc((size_t)cfg->max_seqs, 1);
    b->row_logits = calloc((size_t)mc->vocab_size, sizeof(float));
    b->sample_keys = calloc(2 * (size_t)mc->vocab_size, sizeof(uint64_t));
    b->ptrs = calloc(mb, sizeof(*b->ptrs));
    if (!b->rope_cos || !b->rope_sin || !b->len || !b->stepped || !b->last_q || !b->x || !b->kb ||
        !b->vb || !b->sel || !b->taken || !b->slot_mark || !b->row_logits || !b->sample_keys ||
        !b->ptrs)
        goto oom;
    float *f = b->x;
    f += hid;
    b->xb = f, f += hid;
    b->q = f, f += qdim;
    b->att = f, f += qdim;
    b->k = f, f += kvdim;
    b->v = f, f += kvdim;
    b->vr = f, f += kvdim;
    b->cis = f, f += mc->n_kv_heads;
    b->gate = f, f += inter;
    b->up = f, f += inter;
    b->logit = f, f += rep * ctx;
    b->head_mx = f, f += rep;
    b->head_sum = f, f += rep;
    b->sq = f, f += 2 * nc;
    b->bq = f, f += mb;
    b->be = f;
    nosa_cpu_rope_table_fill(b->rope_cos, b->rope_sin, cfg->max_context, mc->head_dim,
                             (double)mc->rope_theta);
    b->stats.n_layers = (uint32_t)mc->n_layers;
    LOG_DEBUG("cpu", "backend created mode=%s offload=%d slots=%d max_context=%d pool_blocks=%d",
             nosa_attn_mode_name(cfg->mode), cfg->offload, cfg->max_seqs, cfg->max_context,
             b->cfg.pool_blocks);
    *out = b;
    return 0;
oom:
    nosa_set_error(err, errlen, "cpu backend: out of memory for %d slots x %d tokens",
                   cfg->max_seqs, cfg->max_context);
    cpu_destroy(b);
    return -ENOMEM;
}

/* Logits of query q over the nt tokens of block blk into logit[0 .. nt), with each token's cis
 * as an additive bias on the scaled logit; *mx keeps the running maximum. */
static void block_logits(const struct nosa_backend *b, const float *q, const uint8_t *blk, int nt,
                         float *logit, float *mx)
{
    const struct nosa_kv_geometry *g = &b->kv.geom;
    int d = (int)g->head_dim;
    const nosa_bf16 *kp = (const nosa_bf16 *)(const void *)blk;
    const float *bias = (const float *)(const void *)(blk + nosa_kv_block_bias_offset(g));
    for (int t = 0; t < nt; t++) {
        float l = nosa_cpu_dot_bf16(q, kp + (size_t)t * (size_t)d, d) * b->sp.scale + bias[t];
        logit[t] = l;
        if (l > *mx) *mx = l;
    }
}

/* Adds the softmax weights e_t = expf(logit[t] - mx) of block blk's nt tokens to *sum and
 * e_t v_t to out[head_dim], tokens in order. */
static void block_values(const struct nosa_backend *b, const float *logit, float mx,
                         const uint8_t *blk, int nt, float *out, float *sum)
{
    const struct nosa_kv_geometry *g = &b->kv.geom;
    int d = (int)g->head_dim;
    const nosa_bf16 *vp = (const nosa_bf16 *)(const void *)(blk + nosa_kv_block_v_offset(g));
    for (int t = 0; t < nt; t++) {
        float e = expf(logit[t] - mx);
        *sum += e;
        const nosa_bf16 *vt = vp + (size_t)t * (size_t)d;
        for (int x = 0; x < d; x++) out[x] += e * nosa_bf16_to_f32(vt[x]);
    }
}

/* The pool's eviction scores of this step's (slot, layer, head) (kv.h): the query-aware
 * block scores as the selection left them; dense has none (NULL: LRU). */
static const float *pool_scores(const struct nosa_backend *b)
{
    return b->sp.mode == NOSA_ATTN_DENSE ? NULL : b->bq;
}

/* Makes the selected blocks sel[first .. first + n) local in ptrs[0 .. n) and counts them. */
static void stage_blocks(struct nosa_backend *b, struct nosa_cpu_kv_head *kh, int first, int n,
                         const uint32_t *groups, int layer, int head, struct nosa_layer_stats *ls)
{
    ls->selected += (uint64_t)n;
    nosa_cpu_kv_gather(&b->kv, kh, b->sel + first, n, b->have_arena ? &b->arena : NULL, groups,
                       layer, head, pool_scores(b), b->ptrs, &ls->hits, &ls->transferred);
}

/* Attention of KV head `head`'s rep query heads q[rep][head_dim] over the tokens of its
 * n_sel selected blocks (b->sel, ascending) then the current block's tokens up to pos:
 * o = softmax_j(q . k_j * scale + cis_j) applied to v_j, into out[rep][head_dim]. Two
 * passes: the logits and their maximum, then the weights and the weighted values in token
 * order. A selection larger than the offload pool (dense offloaded: the whole context)
 * cannot be local at once, so each pass pulls it through the pool in chunks of
 * pool_blocks; pass 1 goes from the last chunk down, so pass 2 starts on the chunks still in
 * the pool (the maximum does not depend on the order). The arithmetic of each query head
 * is the same as with one chunk, so dense offloaded == dense resident bit for bit. */
static void attend_head(struct nosa_backend *b, struct nosa_cpu_kv_head *kh, int pos, int n_sel,
                        const float *q, float *out, const uint32_t *groups, int layer, int head,
                        struct nosa_layer_stats *ls)
{
    int d = (int)b->kv.geom.head_dim, bs = (int)b->kv.geom.block_size, rep = b->sp.rep;
    int chunk = b->kv.offload && n_sel > b->kv.pool_blocks ? b->kv.pool_blocks : n_sel;
    int n_chunks = n_sel > chunk ? (n_sel + chunk - 1) / chunk : 1;
    const uint8_t *open = nosa_cpu_kv_open_block(&b->kv, kh, pos);
    int n_open = pos % bs + 1;
    size_t row = (size_t)b->cfg.max_context; /* logits of one query head */
    float *mx = b->head_mx, *sum = b->head_sum;

    for (int g = 0; g < rep; g++) mx[g] = -INFINITY;
    for (int c = n_chunks - 1; c >= 0; c--) {
        int first = c * chunk, n = n_sel - first < chunk ? n_sel - first : chunk;
        stage_blocks(b, kh, first, n, groups, layer, head, ls);
        for (int g = 0; g < rep; g++)
            for (int i = 0; i < n; i++)
                block_logits(b, q + (size_t)g * (size_t)d, b->ptrs[i], bs,
                             b->logit + (size_t)g * row + (size_t)(first + i) * (size_t)bs,
                             &mx[g]);
    }
    for (int g = 0; g < rep; g++) {
        block_logits(b, q + (size_t)g * (size_t)d, open, n_open,
                     b->logit + (size_t)g * row + (size_t)n_sel * (size_t)bs, &mx[g]);
        sum[g] = 0.0f;
        for (int x = 0; x < d; x++) out[(size_t)g * (size_t)d + (size_t)x] = 0.0f;
    }
    for (int c = 0; c < n_chunks; c++) {
        int first = c * chunk, n = n_sel - first < chunk ? n_sel - first : chunk;
        if (n_chunks > 1) stage_blocks(b, kh, first, n, groups, layer, head, ls);
        for (int g = 0; g < rep; g++)
            for (int i = 0; i < n; i++)
                block_values(b, b->logit + (size_t)g * row + (size_t)(first + i) * (size_t)bs,
                             mx[g], b->ptrs[i], bs, out + (size_t)g * (size_t)d, &sum[g]);
    }
    for (int g = 0; g < rep; g++) {
        float *o = out + (size_t)g * (size_t)d;
        block_values(b, b->logit + (size_t)g * row + (size_t)n_sel * (size_t)bs, mx[g], open,
                     n_open, o, &sum[g]);
        for (int x = 0; x < d; x++) o[x] = o[x] / sum[g];
    }
}

/* Attention of one layer for token pos of slot: append K/V/cis, select, gather, attend,
 * write back. q/k/v are in b->q, b->k, b->v (RoPE applied); output in b->att. */
static void layer_attention(struct nosa_backend *b, int slot, int layer, int pos,
                            const uint32_t *groups)
{
    const struct nosa_model_config *mc = &b->model->cfg;
    const struct nosa_layer_weights *w = &b->model->layers[layer];
    int d = mc->head_dim, n_kv = mc->n_kv_heads, kvdim = n_kv * d, rep = b->sp.rep;
    int bs = mc->sparse.block_size;
    struct nosa_layer_stats *ls = &b->stats.layer[layer];

    /* K/V as stored; the eviction head reads the stored values (NOSA.md step 3). */
    for (int i = 0; i < kvdim; i++) {
        b->kb[i] = nosa_f32_to_bf16(b->k[i]);
        b->vb[i] = nosa_f32_to_bf16(b->v[i]);
        b->vr[i] = nosa_bf16_to_f32(b->vb[i]);
    }
    nosa_cpu_matvec_weight(b->cis, w->evict_delta_w, w->evict_delta_b, b->vr, n_kv, kvdim);
    for (int h = 0; h < n_kv; h++) b->cis[h] = w->evict_A[h] * nosa_cpu_softplus(b->cis[h]);

    int n_blocks = pos / bs; /* complete blocks: those before the current one */
    for (int h = 0; h < n_kv; h++) {
        struct nosa_cpu_kv_head *kh = nosa_cpu_kv_head_at(&b->kv, slot, layer, h);
        const nosa_bf16 *key = b->kb + (size_t)h * (size_t)d;
        size_t qi = (size_t)h * (size_t)rep * (size_t)d; /* the group's first query head */
        const float *qh = b->q + qi;
        nosa_cpu_kv_append(&b->kv, kh, pos, key, b->vb + (size_t)h * (size_t)d, b->cis[h]);
        nosa_cpu_sel_push(&b->sp, &kh->sel, pos, key, b->cis[h]);

        /* Scored and chosen even when every block fits the budget (the choice then takes
         * them all), so the full-budget == dense tests run the real selection. */
        if (b->sp.mode != NOSA_ATTN_DENSE) {
            nosa_cpu_sel_score_query(&b->sp, &kh->sel, qh, n_blocks, b->bq, b->sq);
            if (b->sp.mode == NOSA_ATTN_NOSA)
                nosa_cpu_sel_score_evict(&b->sp, &kh->sel, n_blocks, b->be);
        }
        int n_sel = nosa_cpu_sel_choose(&b->sp, n_blocks, b->bq, b->be, b->sel, b->taken);
        for (int i = 0; i < n_sel; i++) kh->last_sel[i] = b->sel[i];
        kh->n_last_sel = n_sel;
        attend_head(b, kh, pos, n_sel, qh, b->att + qi, groups, layer, h, ls);
        /* Read only when the block completes: the table need not cover the open block. */
        uint32_t group = b->have_arena && (pos + 1) % bs == 0 ? groups[pos / bs] : 0;
        if (nosa_cpu_kv_finish_token(&b->kv, kh, pos, b->have_arena ? &b->arena : NULL, group,
                                     layer, h, pool_scores(b)))
            ls->bytes_d2h += b->kv.block_bytes;
        if (b->cfg.prefetch_blocks > 0)
            ls->prefetched += (uint64_t)nosa_cpu_kv_prefetch(&b->kv, kh, n_blocks,
                                                             b->cfg.prefetch_blocks, &b->arena,
                                                             groups, layer, h, b->bq);
    }
}

/* One token through the whole model for slot; logits (when not NULL) get [vocab]. */
static void forward_token(struct nosa_backend *b, int slot, int32_t token, const uint32_t *groups,
                          float *logits)
{
    const struct nosa_model *m = b->model;
    const struct nosa_model_config *mc = &m->cfg;
    int hid = mc->hidden_size, d = mc->head_dim, half = d / 2;
    int qdim = mc->n_heads * d, kvdim = mc->n_kv_heads * d, inter = mc->intermediate_size;
    int pos = b->len[slot];
    const float *cos_row = b->rope_cos + (size_t)pos * (size_t)half;
    const float *sin_row = b->rope_sin + (size_t)pos * (size_t)half;

    nosa_weight_read_f32(m->tok_embed, (size_t)token * (size_t)hid, (size_t)hid, b->x);
    for (int l = 0; l < mc->n_layers; l++) {
        const struct nosa_layer_weights *w = &m->layers[l];
        nosa_cpu_rmsnorm(b->xb, b->x, w->attn_norm, hid, mc->rms_eps);
        nosa_cpu_matvec_weight(b->q, w->wq, w->bq, b->xb, qdim, hid);
        nosa_cpu_matvec_weight(b->k, w->wk, w->bk, b->xb, kvdim, hid);
        nosa_cpu_matvec_weight(b->v, w->wv, w->bv, b->xb, kvdim, hid);
        for (int h = 0; h < mc->n_heads; h++) nosa_cpu_rope_apply(b->q + h * d, cos_row, sin_row, d);
        for (int h = 0; h < mc->n_kv_heads; h++)
            nosa_cpu_rope_apply(b->k + h * d, cos_row, sin_row, d);
        memcpy(b->last_q + ((size_t)slot * (size_t)mc->n_layers + (size_t)l) * (size_t)qdim, b->q,
               (size_t)qdim * sizeof(float));
        layer_attention(b, slot, l, pos, groups);
        nosa_cpu_matvec_weight(b->xb, w->wo, NULL, b->att, hid, qdim);
        for (int i = 0; i < hid; i++) b->x[i] += b->xb[i];

        nosa_cpu_rmsnorm(b->xb, b->x, w->mlp_norm, hid, mc->rms_eps);
        nosa_cpu_matvec_weight(b->gate, w->w_gate, NULL, b->xb, inter, hid);
        nosa_cpu_matvec_weight(b->up, w->w_up, NULL, b->xb, inter, hid);
        nosa_cpu_swiglu(b->gate, b->gate, b->up, inter);
        nosa_cpu_matvec_weight(b->xb, w->w_down, NULL, b->gate, hid, inter);
        for (int i = 0; i < hid; i++) b->x[i] += b->xb[i];
    }
    b->len[slot] = pos + 1;
    b->stepped[slot] = 1;
    b->stats.tokens++;
    if (!logits) return;
    nosa_cpu_rmsnorm(b->xb, b->x, m->final_norm, hid, mc->rms_eps);
    nosa_cpu_matvec_weight(logits, m->lm_head, NULL, b->xb, mc->vocab_size, hid);
}

static void stats_begin(struct nosa_backend *b)
{
    memset(&b->stats, 0, sizeof(b->stats));
    b->stats.n_layers = (uint32_t)b->model->cfg.n_layers;
    b->stats.seconds = now_seconds();
}

static void stats_end(struct nosa_backend *b)
{
    struct nosa_step_stats *s = &b->stats;
    for (uint32_t l = 0; l < s->n_layers; l++) {
        struct nosa_layer_stats *ls = &s->layer[l];
        ls->bytes_h2d = (ls->transferred + ls->prefetched) * b->kv.block_bytes;
        s->blocks_selected += ls->selected;
        s->blocks_transferred += ls->transferred;
        s->blocks_prefetched += ls->prefetched;
        s->block_hits += ls->hits;
        s->bytes_h2d += ls->bytes_h2d;
        s->bytes_d2h += ls->bytes_d2h;
    }
    s->seconds = now_seconds() - s->seconds;
}

/* One sequence after another: a lane. */
static int cpu_prefill(struct nosa_backend *b, const struct nosa_prefill_req *reqs, int n_reqs,
                       char *err, size_t errlen)
{
    int rc = nosa_backend_check_prefill(&b->limits, b->len, reqs, n_reqs, err, errlen);
    if (rc) return rc;
    stats_begin(b);
    for (int k = 0; k < n_reqs; k++) {
        const struct nosa_prefill_req *r = &reqs[k];
        const uint32_t *groups = r->blocks ? r->blocks->groups : NULL;
        for (int i = 0; i < r->n; i++)
            forward_token(b, r->slot, r->tokens[i], groups, i == r->n - 1 ? r->logits : NULL);
    }
    stats_end(b);
    return 0;
}

static int cpu_decode(struct nosa_backend *b, int n, const int *slots, const int32_t *tokens,
                      const struct nosa_seq_blocks *blocks, const struct nosa_decode_out *out,
                      char *err, size_t errlen)
{
    if (n < 1 || n > b->cfg.max_seqs || !slots || !tokens) {
        nosa_set_error(err, errlen, "cpu backend: decode of %d sequences (1 .. %d)", n,
                       b->cfg.max_seqs);
        return -EINVAL;
    }
    int rc = 0;
    memset(b->slot_mark, 0, (size_t)b->cfg.max_seqs);
    for (int i = 0; i < n && !rc; i++) {
        rc = nosa_backend_check_append(&b->limits, slots[i], b->len, tokens + i, 1,
                                       blocks ? blocks + i : NULL, err, errlen);
        if (!rc && b->slot_mark[slots[i]]) {
            nosa_set_error(err, errlen, "cpu backend: slot %d appears twice in one decode step",
                           slots[i]);
            rc = -EINVAL;
        }
        if (!rc) b->slot_mark[slots[i]] = 1;
    }
    if (rc) return rc;
    size_t vocab = (size_t)b->model->cfg.vocab_size;
    stats_begin(b);
    for (int i = 0; i < n; i++) {
        float *row = NULL;
        int draw = out && out->sampling && out->sampled && out->sampling[i].temperature > 0.0f;
        if (out && out->logits && (!out->want_logits || out->want_logits[i]))
            row = out->logits + (size_t)i * vocab;
        else if (out && (out->argmax || draw))
            row = b->row_logits;
        forward_token(b, slots[i], tokens[i], blocks ? blocks[i].groups : NULL, row);
        if (out && out->argmax) out->argmax[i] = nosa_logits_argmax(row, (int)vocab);
        if (draw)
            out->sampled[i] = nosa_sample_row(row, (int)vocab, &out->sampling[i], b->sample_keys);
    }
    stats_end(b);
    return 0;
}

static int cpu_seq_reset(struct nosa_backend *b, int slot, char *err, size_t errlen)
{
    int rc = nosa_backend_check_slot(&b->limits, slot, err, errlen);
    if (rc) return rc;
    nosa_cpu_kv_slot_reset(&b->kv, slot);
    b->len[slot] = 0;
    b->stepped[slot] = 0;
    return 0;
}

static int cpu_seq_resume(struct nosa_backend *b, int slot, const struct nosa_seq_blocks *blocks,
                          uint32_t n_blocks, char *err, size_t errlen)
{
    int rc = nosa_backend_check_slot(&b->limits, slot, err, errlen);
    if (rc) return rc;
    int bs = b->model->cfg.sparse.block_size;
    if (!b->have_arena) {
        nosa_set_error(err, errlen, "cpu backend: seq_resume needs a host arena");
        return -EINVAL;
    }
    if (n_blocks > (uint32_t)(b->cfg.max_context / bs)) {
        nosa_set_error(err, errlen, "cpu backend: resuming %u blocks exceeds max_context %d",
                       n_blocks, b->cfg.max_context);
        return -ENOSPC;
    }
    rc = nosa_backend_check_blocks(&b->limits, slot, (int)n_blocks * bs, blocks, err, errlen);
    if (rc) return rc;
    nosa_cpu_kv_slot_reset(&b->kv, slot);
    for (uint32_t m = 0; m < n_blocks; m++) {
        for (int l = 0; l < b->model->cfg.n_layers; l++) {
            for (int h = 0; h < b->model->cfg.n_kv_heads; h++) {
                struct nosa_cpu_kv_head *kh = nosa_cpu_kv_head_at(&b->kv, slot, l, h);
                const uint8_t *src = nosa_cpu_kv_arena_block(&b->arena, blocks->groups[m], l, h);
                nosa_cpu_kv_restore_block(&b->kv, &b->sp, kh, (int)m, src);
            }
        }
    }
    b->len[slot] = (int)n_blocks * bs;
    b->stepped[slot] = 0;
    return 0;
}

static int check_head(const struct nosa_backend *b, int slot, int layer, int kv_head)
{
    if (slot < 0 || slot >= b->cfg.max_seqs || layer < 0 || layer >= b->model->cfg.n_layers ||
        kv_head < 0 || kv_head >= b->model->cfg.n_kv_heads)
        return -EINVAL;
    return 0;
}

static int cpu_last_selection(const struct nosa_backend *b, int slot, int layer, int kv_head,
                              int32_t *out, int cap)
{
    if (check_head(b, slot, layer, kv_head)) return -EINVAL;
    const struct nosa_cpu_kv_head *kh = nosa_cpu_kv_head_at(&b->kv, slot, layer, kv_head);
    if (kh->n_last_sel > cap) return -ENOSPC;
    memcpy(out, kh->last_sel, (size_t)kh->n_last_sel * sizeof(int32_t));
    return kh->n_last_sel;
}

static void cpu_stats(const struct nosa_backend *b, struct nosa_step_stats *out)
{
    *out = b->stats;
}

int nosa_backend_cpu_block_scores(struct nosa_backend *b, int slot, int layer, int kv_head,
                                  float *bq, float *be, int cap)
{
    if (check_head(b, slot, layer, kv_head) || !b->stepped[slot]) return -EINVAL;
    const struct nosa_model_config *mc = &b->model->cfg;
    int n_blocks = (b->len[slot] - 1) / mc->sparse.block_size;
    if (n_blocks > cap) return n_blocks;
    const struct nosa_cpu_kv_head *kh = nosa_cpu_kv_head_at(&b->kv, slot, layer, kv_head);
    size_t qdim = (size_t)mc->n_heads * (size_t)mc->head_dim;
    const float *q = b->last_q + ((size_t)slot * (size_t)mc->n_layers + (size_t)layer) * qdim +
                     (size_t)kv_head * (size_t)b->sp.rep * (size_t)mc->head_dim;
    if (bq) nosa_cpu_sel_score_query(&b->sp, &kh->sel, q, n_blocks, bq, b->sq);
    if (be) nosa_cpu_sel_score_evict(&b->sp, &kh->sel, n_blocks, be);
    return n_blocks;
}

int nosa_backend_cpu_pool_blocks(const struct nosa_backend *b, int slot, int layer, int kv_head,
                                 int32_t *out, int cap)
{
    if (check_head(b, slot, layer, kv_head) || !b->kv.offload) return -EINVAL;
    const struct nosa_cpu_kv_head *kh = nosa_cpu_kv_head_at(&b->kv, slot, layer, kv_head);
    int n = 0;
    for (int p = 0; p < b->kv.pool_blocks; p++) {
        if (kh->block_of[p] < 0) continue;
        if (n < cap) out[n] = kh->block_of[p];
        n++;
    }
    return n;
}

const struct nosa_backend_ops nosa_backend_cpu_ops = {
    .name = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .seq_reset = cpu_seq_reset,
    .prefill = cpu_prefill,
    .prefill_lanes = 1,
    .decode = cpu_decode,
    .seq_resume = cpu_seq_resume,
    .last_selection = cpu_last_selection,
    .stats = cpu_stats,
};
