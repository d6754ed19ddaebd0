/* kv.c: resident blocks, the offload pool with its eviction order and read-ahead, arena reads
 * and write-back for the CPU reference backend (see kv.h). */
#include "kv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* calloc of a*b*c elements of size sz, NULL on overflow or exhaustion. */
static void *alloc3(size_t a, size_t b, size_t c, size_t sz)
{
    size_t n;
    if (__builtin_mul_overflow(a, b, &n) || __builtin_mul_overflow(n, c, &n)) return NULL;
    if (n == 0) n = 1;
    return calloc(n, sz);
}

void nosa_cpu_kv_free(struct nosa_cpu_kv *kv)
{
    if (!kv) return;
    free(kv->heads);
    free(kv->block_mem);
    free(kv->open_mem);
    free(kv->pool_of_mem);
    free(kv->block_of_mem);
    free(kv->last_sel_mem);
    free(kv->stamp_mem);
    free(kv->key_ring_mem);
    free(kv->cis_ring_mem);
    free(kv->kc_mem);
    free(kv->ce_mem);
    memset(kv, 0, sizeof(*kv));
}

int nosa_cpu_kv_init(struct nosa_cpu_kv *kv, const struct nosa_kv_geometry *geom,
                     const struct nosa_cpu_sel_params *sp, int offload, int max_seqs,
                     int max_context, int pool_blocks, char *err, size_t errlen)
{
    memset(kv, 0, sizeof(*kv));
    kv->geom = *geom;
    kv->block_bytes = nosa_kv_block_bytes(geom);
    kv->offload = offload;
    kv->max_seqs = max_seqs;
    kv->max_blocks = (max_context + (int)geom->block_size - 1) / (int)geom->block_size;
    kv->pool_blocks = offload ? pool_blocks : 0;
    kv->max_compressed = nosa_cpu_sel_compressed_count(sp, max_context);

    size_t n_heads = (size_t)max_seqs * geom->n_layers * geom->n_kv_heads;
    size_t d = geom->head_dim, bb = kv->block_bytes;
    size_t local_blocks = offload ? (size_t)kv->pool_blocks : (size_t)kv->max_blocks;
    kv->heads = alloc3(n_heads, 1, 1, sizeof(*kv->heads));
    kv->block_mem = alloc3(n_heads, local_blocks, bb, 1);
    kv->last_sel_mem = alloc3(n_heads, (size_t)kv->max_blocks, 1, sizeof(int32_t));
    kv->key_ring_mem = alloc3(n_heads, (size_t)sp->kernel, d, sizeof(nosa_bf16));
    kv->cis_ring_mem = alloc3(n_heads, (size_t)sp->kernel, 1, sizeof(float));
    kv->kc_mem = alloc3(n_heads, (size_t)kv->max_compressed, d, sizeof(nosa_bf16));
    kv->ce_mem = alloc3(n_heads, (size_t)kv->max_compressed, 1, sizeof(float));
    int ok = kv->heads && kv->block_mem && kv->last_sel_mem && kv->key_ring_mem &&
             kv->cis_ring_mem && kv->kc_mem && kv->ce_mem;
    if (ok && offload) {
        kv->open_mem = alloc3(n_heads, bb, 1, 1);
        kv->pool_of_mem = alloc3(n_heads, (size_t)kv->max_blocks, 1, sizeof(int32_t));
        kv->block_of_mem = alloc3(n_heads, local_blocks, 1, sizeof(int32_t));
        kv->stamp_mem = alloc3(n_heads, local_blocks, 1, sizeof(uint64_t));
        ok = kv->open_mem && kv->pool_of_mem && kv->block_of_mem && kv->stamp_mem;
    }
    if (!ok) {
        nosa_set_error(err, errlen,
                       "cpu backend: cannot allocate KV storage for %d slots x %d tokens "
                       "(%zu heads, %zu local blocks of %zu bytes each)",
                       max_seqs, max_context, n_heads, local_blocks, bb);
        nosa_cpu_kv_free(kv);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n_heads; i++) {
        struct nosa_cpu_kv_head *h = &kv->heads[i];
        h->blocks = kv->block_mem + i * local_blocks * bb;
        h->last_sel = kv->last_sel_mem + i * (size_t)kv->max_blocks;
        h->sel.key_ring = kv->key_ring_mem + i * (size_t)sp->kernel * d;
        h->sel.cis_ring = kv->cis_ring_mem + i * (size_t)sp->kernel;
        h->sel.kc = kv->kc_mem + i * (size_t)kv->max_compressed * d;
        h->sel.ce = kv->ce_mem + i * (size_t)kv->max_compressed;
        if (offload) {
            h->open = kv->open_mem + i * bb;
            h->pool_of = kv->pool_of_mem + i * (size_t)kv->max_blocks;
            h->block_of = kv->block_of_mem + i * local_blocks;
            h->stamp = kv->stamp_mem + i * local_blocks;
        }
    }
    for (int s = 0; s < max_seqs; s++) nosa_cpu_kv_slot_reset(kv, s);
    return 0;
}

void nosa_cpu_kv_slot_reset(struct nosa_cpu_kv *kv, int slot)
{
    for (uint32_t l = 0; l < kv->geom.n_layers; l++) {
        for (uint32_t hd = 0; hd < kv->geom.n_kv_heads; hd++) {
            struct nosa_cpu_kv_head *h = nosa_cpu_kv_head_at(kv, slot, (int)l, (int)hd);
            h->sel.n_c = 0;
            h->n_last_sel = 0;
            if (!kv->offload) continue;
            for (int m = 0; m < kv->max_blocks; m++) h->pool_of[m] = -1;
            for (int p = 0; p < kv->pool_blocks; p++) {
                h->block_of[p] = -1;
                h->stamp[p] = 0;
            }
        }
    }
}

uint8_t *nosa_cpu_kv_open_block(const struct nosa_cpu_kv *kv, struct nosa_cpu_kv_head *h, int pos)
{
    if (kv->offload) return h->open;
    return h->blocks + (size_t)(pos / (int)kv->geom.block_size) * kv->block_bytes;
}

void nosa_cpu_kv_append(const struct nosa_cpu_kv *kv, struct nosa_cpu_kv_head *h, int pos,
                        const nosa_bf16 *key, const nosa_bf16 *val, float cis)
{
    const struct nosa_kv_geometry *g = &kv->geom;
    uint8_t *blk = nosa_cpu_kv_open_block(kv, h, pos);
    int t = pos % (int)g->block_size;
    size_t row = (size_t)g->head_dim * sizeof(nosa_bf16);
    if (t == 0) memset(blk, 0, kv->block_bytes);
    memcpy(blk + (size_t)t * row, key, row);
    memcpy(blk + nosa_kv_block_v_offset(g) + (size_t)t * row, val, row);
    memcpy(blk + nosa_kv_block_bias_offset(g) + (size_t)t * sizeof(float), &cis, sizeof(float));
}

/* A pool slot to (re)use (kv.h, "eviction order"): a free one, else the block not in the
 * current gather (stamp below now) whose score is lowest, ties to the least recently
 * selected, then the lower slot; with take_current, the current gather's blocks after those,
 * by slot. score is indexed by logical block (NULL: every block scores the same, i.e. LRU).
 * -1 when none qualifies. */
static int pool_victim(const struct nosa_cpu_kv *kv, const struct nosa_cpu_kv_head *h,
                       uint64_t now, int take_current, const float *score)
{
    int best = -1, best_cur = 0;
    float best_s = 0.0f;
    for (int p = 0; p < kv->pool_blocks; p++) {
        int m = h->block_of[p];
        if (m < 0) return p;
        int cur = h->stamp[p] >= now;
        if (cur && !take_current) continue;
        float sc = score && !cur ? score[m] : 0.0f;
        if (best < 0 || cur < best_cur ||
            (cur == best_cur &&
             (sc < best_s || (sc == best_s && h->stamp[p] < h->stamp[best])))) {
            best = p;
            best_cur = cur;
            best_s = sc;
        }
    }
    return best;
}

static void pool_install(struct nosa_cpu_kv_head *h, int p, int m, uint64_t stamp)
{
    if (h->block_of[p] >= 0) h->pool_of[h->block_of[p]] = -1;
    h->block_of[p] = m;
    h->pool_of[m] = p;
    h->stamp[p] = stamp;
}

void nosa_cpu_kv_gather(struct nosa_cpu_kv *kv, struct nosa_cpu_kv_head *h, const int *sel, int n,
                        const struct nosa_kv_arena *arena, const uint32_t *groups, int layer,
                        int head, const float *score, const uint8_t **ptrs, uint64_t *hits,
                        uint64_t *transferred)
{
    size_t bb = kv->block_bytes;
    if (!kv->offload) {
        for (int i = 0; i < n; i++) ptrs[i] = h->blocks + (size_t)sel[i] * bb;
        *hits += (uint64_t)n;
        return;
    }
    uint64_t now = ++kv->clock;
    /* Hits first, so that no block this step selects can be chosen as a victim. */
    for (int i = 0; i < n; i++) {
        int p = h->pool_of[sel[i]];
        ptrs[i] = NULL;
        if (p < 0) continue;
        h->stamp[p] = now;
        ptrs[i] = h->blocks + (size_t)p * bb;
        (*hits)++;
    }
    for (int i = 0; i < n; i++) {
        if (ptrs[i]) continue;
        int p = pool_victim(kv, h, now, 0, score);
        /* n <= pool_blocks (kv.h) and hits hold their slots, so a victim exists. */
        if (p < 0) abort();
        pool_install(h, p, sel[i], now);
        uint8_t *dst = h->blocks + (size_t)p * bb;
        memcpy(dst, nosa_cpu_kv_arena_block(arena, groups[sel[i]], layer, head), bb);
        ptrs[i] = dst;
        (*transferred)++;
    }
}

int nosa_cpu_kv_finish_token(struct nosa_cpu_kv *kv, struct nosa_cpu_kv_head *h, int pos,
                             const struct nosa_kv_arena *arena, uint32_t group, int layer,
                             int head, const float *score)
{
    int bs = (int)kv->geom.block_size;
    if ((pos + 1) % bs != 0) return 0;
    uint8_t *blk = nosa_cpu_kv_open_block(kv, h, pos);
    if (arena) memcpy(nosa_cpu_kv_arena_block(arena, group, layer, head), blk, kv->block_bytes);
    if (kv->offload) {
        /* The step is done with every pool block, so any slot may be reused here (the
         * current gather's last). */
        int p = pool_victim(kv, h, kv->clock, 1, score);
        pool_install(h, p, pos / bs, kv->clock);
        memcpy(h->blocks + (size_t)p * kv->block_bytes, blk, kv->block_bytes);
    }
    return arena ? 1 : 0;
}

int nosa_cpu_kv_prefetch(struct nosa_cpu_kv *kv, struct nosa_cpu_kv_head *h, int n_blocks, int x,
                         const struct nosa_kv_arena *arena, const uint32_t *groups, int layer,
                         int head, const float *score)
{
    int n = 0;
    for (; n < x; n++) {
        int m = -1;
        for (int j = 0; j < n_blocks; j++)
            if (h->pool_of[j] < 0 && (m < 0 || score[j] > score[m])) m = j;
        if (m < 0) break;
        int p = pool_victim(kv, h, kv->clock, 0, score);
        if (p < 0 || (h->block_of[p] >= 0 && !(score[m] > score[h->block_of[p]]))) break;
        pool_install(h, p, m, kv->clock);
        memcpy(h->blocks + (size_t)p * kv->block_bytes,
               nosa_cpu_kv_arena_block(arena, groups[m], layer, head), kv->block_bytes);
    }
    return n;
}

void nosa_cpu_kv_restore_block(const struct nosa_cpu_kv *kv, const struct nosa_cpu_sel_params *sp,
                               struct nosa_cpu_kv_head *h, int m, const uint8_t *src)
{
    const struct nosa_kv_geometry *g = &kv->geom;
    int bs = (int)g->block_size;
    if (!kv->offload) memcpy(h->blocks + (size_t)m * kv->block_bytes, src, kv->block_bytes);
    for (int t = 0; t < bs; t++) {
        const nosa_bf16 *key = (const nosa_bf16 *)(const void *)(src + (size_t)t * g->head_dim *
                                                                        sizeof(nosa_bf16));
        float cis;
        memcpy(&cis, src + nosa_kv_block_bias_offset(g) + (size_t)t * sizeof(float), sizeof(cis));
        nosa_cpu_sel_push(sp, &h->sel, m * bs + t, key, cis);
    }
}
