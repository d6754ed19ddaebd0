/* select.c: incremental block compression, block scoring and the infllmv2 / nosa choice for
 * one (sequence, layer, KV head). Definitions in select.h; no allocation. */
#include "select.h"

#include <math.h>

#include "ops.h"

void nosa_cpu_sel_params_init(struct nosa_cpu_sel_params *p, const struct nosa_model_config *cfg,
                              enum nosa_attn_mode mode)
{
    const struct nosa_sparse_config *sc = &cfg->sparse;
    p->mode = mode;
    p->head_dim = cfg->head_dim;
    p->rep = cfg->n_heads / cfg->n_kv_heads;
    p->block_size = sc->block_size;
    p->kernel = sc->compress_kernel;
    p->stride = sc->compress_stride;
    p->units = sc->block_size / sc->compress_stride;
    p->span = sc->compress_kernel / sc->compress_stride;
    p->k_total = sc->budget_blocks - 1;
    p->k_query = sc->query_aware_blocks - 1;
    p->sink = sc->sink_blocks;
    p->window = sc->window_blocks;
    p->scale = 1.0f / sqrtf((float)cfg->head_dim);
}

int nosa_cpu_sel_compressed_count(const struct nosa_cpu_sel_params *p, int n_tokens)
{
    if (n_tokens < p->kernel) return 0;
    return (n_tokens - p->kernel) / p->stride + 1;
}

void nosa_cpu_sel_push(const struct nosa_cpu_sel_params *p, struct nosa_cpu_sel_state *s, int pos,
                       const nosa_bf16 *key, float cis)
{
    int d = p->head_dim, k = p->kernel;
    int row = pos % k;
    for (int x = 0; x < d; x++) s->key_ring[row * d + x] = key[x];
    s->cis_ring[row] = cis;

    int end = pos + 1; /* tokens pushed so far */
    if (end < k || (end - k) % p->stride != 0) return;
    int start = end - k; /* == stride * n_c */
    nosa_bf16 *kc = s->kc + (size_t)s->n_c * (size_t)d;
    float inv = 1.0f / (float)k;
    for (int x = 0; x < d; x++) {
        float sum = 0.0f;
        for (int j = 0; j < k; j++) sum += nosa_bf16_to_f32(s->key_ring[((start + j) % k) * d + x]);
        kc[x] = nosa_f32_to_bf16(sum * inv);
    }
    float csum = 0.0f;
    for (int j = 0; j < k; j++) csum += s->cis_ring[(start + j) % k];
    s->ce[s->n_c] = csum * inv;
    s->n_c++;
}

void nosa_cpu_sel_score_query(const struct nosa_cpu_sel_params *p,
                              const struct nosa_cpu_sel_state *s, const float *q, int n_blocks,
                              float *bq, float *scratch)
{
    int n_c = s->n_c, d = p->head_dim;
    float *sq = scratch, *pg = scratch + n_c;
    for (int i = 0; i < n_c; i++) sq[i] = 0.0f;
    if (n_c > 0) {
        for (int g = 0; g < p->rep; g++) {
            const float *qg = q + (size_t)g * (size_t)d;
            for (int i = 0; i < n_c; i++)
                pg[i] = nosa_cpu_dot_bf16(qg, s->kc + (size_t)i * (size_t)d, d) * p->scale;
            nosa_cpu_softmax(pg, n_c);
            for (int i = 0; i < n_c; i++) sq[i] += pg[i];
        }
    }
    nosa_cpu_block_max_pool(bq, n_blocks, sq, n_c, p->units, p->span);
}

void nosa_cpu_sel_score_evict(const struct nosa_cpu_sel_params *p,
                              const struct nosa_cpu_sel_state *s, int n_blocks, float *be)
{
    nosa_cpu_block_max_pool(be, n_blocks, s->ce, s->n_c, p->units, p->span);
}

/* Sink and local window: NOSA.md "Forced blocks". */
static void mark_forced(const struct nosa_cpu_sel_params *p, int n_blocks, float *score)
{
    for (int m = 0; m < p->sink && m < n_blocks; m++) score[m] = INFINITY;
    int lo = n_blocks - p->window;
    for (int m = lo < 0 ? 0 : lo; m < n_blocks; m++) score[m] = INFINITY;
}

int nosa_cpu_sel_choose(const struct nosa_cpu_sel_params *p, int n_blocks, float *bq, float *be,
                        int *sel, unsigned char *taken)
{
    if (p->mode == NOSA_ATTN_DENSE) {
        for (int m = 0; m < n_blocks; m++) sel[m] = m;
        return n_blocks;
    }
    /* No shortcut when every block fits: top-k of all n_blocks takes each one, and running
     * it keeps the full-budget == dense tests a test of this code. */
    int k_total = p->k_total < n_blocks ? p->k_total : n_blocks;
    mark_forced(p, n_blocks, bq);
    if (p->mode == NOSA_ATTN_INFLLMV2) {
        nosa_cpu_topk(sel, k_total, bq, n_blocks, taken);
        return k_total;
    }
    /* nosa: the query-aware share first, then the eviction head fills the rest. */
    int k_query = p->k_query < n_blocks ? p->k_query : n_blocks;
    nosa_cpu_topk(sel, k_query, bq, n_blocks, taken);
    mark_forced(p, n_blocks, be);
    for (int i = 0; i < k_query; i++) be[sel[i]] = INFINITY;
    nosa_cpu_topk(sel, k_total, be, n_blocks, taken);
    return k_total;
}
