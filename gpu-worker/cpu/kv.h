/* kv.h: KV storage of the CPU reference backend, per (slot, layer, KV head).
 *
 * Blocks are kept in the arena block format (kv_geometry.h: K bf16, V bf16, cis f32, padding
 * zeroed), so writing a completed block to the arena and reading one back are plain copies
 * and a block's bytes are the same wherever it lives. Two placements:
 * - resident: every logical block of the context has its own local block; the open block is
 *   the local block of the current position.
 * - offload: a separate open block plus a bounded pool of pool_blocks local blocks with a
 *   logical block -> pool slot map. A gather's blocks (a step's selection, or a chunk of it
 *   when it exceeds the pool) that the pool lacks are read from the arena (the delta). A
 *   block that completes is written to the arena and moved into the pool (the next steps
 *   select it as local window).
 * Eviction order (the same on the GPU, gpu-worker/cuda/pool.cu): a free slot first; else
 * among the blocks not in the current gather the one with the lowest score, ties to the
 * least recently selected, then to the lower pool slot (a completing block, which may take
 * a slot of the current gather when nothing else is left, takes the lowest). The sparse modes score a block by
 * its query-aware block score of this step (Bq as selection leaves it: forced blocks
 * +inf), so the pool keeps the blocks the query ranks closest to the selection, which are
 * the likeliest to enter it again; dense has no scores, so its pool is LRU (bench/RESULTS.md,
 * sixth session, has the hit rates of both orders).
 * Prefetch (offload, sparse modes, cfg.prefetch_blocks = X): after a head's step (its gather
 * and any completion), the complete blocks the pool lacks are taken by descending score (ties:
 * the lower block), at most X, each read into the slot the eviction order gives outside the
 * step's gather (a free slot, else the lowest score...) only while it scores strictly higher
 * than the block there; the first that does not stops the read. A block read ahead takes the
 * step's stamp, so a later read of the same step cannot evict it.
 * Everything is allocated once at init; nothing here allocates afterwards. */
#ifndef NOSA_CPU_KV_H
#define NOSA_CPU_KV_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "select.h"

struct nosa_cpu_kv_head {
    uint8_t *blocks;    /* resident: [max_blocks] blocks; offload: the pool [pool_blocks] */
    uint8_t *open;      /* offload: the open block; resident: NULL (it is blocks[current]) */
    int32_t *pool_of;   /* offload: [max_blocks] pool slot of a logical block, -1 if absent */
    int32_t *block_of;  /* offload: [pool_blocks] logical block in a pool slot, -1 if free */
    uint64_t *stamp;    /* offload: [pool_blocks] clock of the last step that selected it */
    struct nosa_cpu_sel_state sel;
    int32_t *last_sel;  /* [max_blocks] the last token's selection, ascending */
    int n_last_sel;
};

struct nosa_cpu_kv {
    struct nosa_kv_geometry geom;
    size_t block_bytes;
    int offload;
    int max_seqs;
    int max_blocks;  /* blocks of a max_context sequence */
    int pool_blocks; /* offload only */
    int max_compressed;
    uint64_t clock;  /* advanced once per gather: the stamps' order */
    struct nosa_cpu_kv_head *heads; /* [max_seqs][n_layers][n_kv_heads] */
    /* One allocation per array kind; the heads point into them. */
    uint8_t *block_mem, *open_mem;
    int32_t *pool_of_mem, *block_of_mem, *last_sel_mem;
    uint64_t *stamp_mem;
    nosa_bf16 *key_ring_mem, *kc_mem;
    float *cis_ring_mem, *ce_mem;
};

/* Allocates the storage of max_seqs slots of max_context tokens each. pool_blocks is used
 * with offload only (>= 1; a gather makes at most pool_blocks blocks local at once). */
int nosa_cpu_kv_init(struct nosa_cpu_kv *kv, const struct nosa_kv_geometry *geom,
                     const struct nosa_cpu_sel_params *sp, int offload, int max_seqs,
                     int max_context, int pool_blocks, char *err, size_t errlen);
void nosa_cpu_kv_free(struct nosa_cpu_kv *kv); /* accepts a zeroed or freed kv */

static inline struct nosa_cpu_kv_head *nosa_cpu_kv_head_at(const struct nosa_cpu_kv *kv, int slot,
                                                           int layer, int head)
{
    return &kv->heads[((size_t)slot * kv->geom.n_layers + (size_t)layer) * kv->geom.n_kv_heads +
                      (size_t)head];
}

/* Empties every (layer, head) of slot: no blocks, no compressed keys, empty pool. */
void nosa_cpu_kv_slot_reset(struct nosa_cpu_kv *kv, int slot);

/* The block that holds position pos while it is open (the current block). */
uint8_t *nosa_cpu_kv_open_block(const struct nosa_cpu_kv *kv, struct nosa_cpu_kv_head *h, int pos);

/* Stores token pos's key, value (bf16, head_dim each) and eviction score in the open block;
 * the first token of a block zeroes it first. */
void nosa_cpu_kv_append(const struct nosa_cpu_kv *kv, struct nosa_cpu_kv_head *h, int pos,
                        const nosa_bf16 *key, const nosa_bf16 *val, float cis);

/* The arena block of (group, layer, head). */
static inline uint8_t *nosa_cpu_kv_arena_block(const struct nosa_kv_arena *a, uint32_t group,
                                               int layer, int head)
{
    return a->base + nosa_kv_block_index(&a->geom, group, (uint32_t)layer, (uint32_t)head) *
                         nosa_kv_block_bytes(&a->geom);
}

/* Makes the selected complete blocks sel[0 .. n) local and writes their addresses to ptrs.
 * Offload: n <= pool_blocks; misses are read from the arena (groups[m] is logical block m's
 * group) into the slots the eviction order gives, score[m] being block m's score (NULL:
 * dense, LRU). Adds to *hits and *transferred. */
void nosa_cpu_kv_gather(struct nosa_cpu_kv *kv, struct nosa_cpu_kv_head *h, const int *sel, int n,
                        const struct nosa_kv_arena *arena, const uint32_t *groups, int layer,
                        int head, const float *score, const uint8_t **ptrs, uint64_t *hits,
                        uint64_t *transferred);

/* Called after token pos was fully processed for this head: when it completed its block,
 * writes the block to the arena (when arena is set; group is its group) and, with offload,
 * moves it into the pool (the slot by the eviction order; score as for the step's gather).
 * Returns 1 when a block was written to the arena, else 0. */
int nosa_cpu_kv_finish_token(struct nosa_cpu_kv *kv, struct nosa_cpu_kv_head *h, int pos,
                             const struct nosa_kv_arena *arena, uint32_t group, int layer,
                             int head, const float *score);

/* Prefetch of up to x blocks among the complete blocks [0, n_blocks) after the head's step
 * (see above; score indexed by logical block, as for the step's gather). Call after
 * nosa_cpu_kv_finish_token. Returns the number of blocks read from the arena. */
int nosa_cpu_kv_prefetch(struct nosa_cpu_kv *kv, struct nosa_cpu_kv_head *h, int n_blocks, int x,
                         const struct nosa_kv_arena *arena, const uint32_t *groups, int layer,
                         int head, const float *score);

/* Resume: installs a complete block read from the arena as logical block m (resident: copied
 * into its local block; offload: nothing is kept, the pool starts empty) and replays its
 * tokens' keys and scores into the selection state. */
void nosa_cpu_kv_restore_block(const struct nosa_cpu_kv *kv, const struct nosa_cpu_sel_params *sp,
                               struct nosa_cpu_kv_head *h, int m, const uint8_t *src);

#endif
