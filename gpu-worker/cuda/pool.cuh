/* pool: the block delta against the GPU block pool, per (token, KV head) of a step, and the
 * pool install of a block that completes. All on the GPU: the host never sees indices.
 *
 * pool_delta_launch, after select: for each selected block, the address of its local copy
 * goes to ptrs[ih'][e] (ih' = token * n_kv + head, e < n_sel; entry n_sel is the open
 * block, so n_ent = n_sel + 1). Resident: every block is local. Offload (the CPU
 * reference's policy in gpu-worker/cpu/kv.c, so hits and transfers match it exactly):
 * still-selected blocks stay in their slots (stamp = pos + 1); each miss takes a free slot
 * (lowest first), else, of the slots not selected by this step, the block with the lowest
 * query-aware score of the step (the selection's bq, select_scratch_bq; ties: the least
 * recently selected, then the lower slot); its arena address goes to miss_src[ih'][e] (NULL
 * for a hit) and attention copies the block into the slot as it reads it (attention.cuh).
 * Counts go to stats[POOL_STATS * layer + {0, 1, 2}] = {selected, transferred, hits}.
 * Offload is sparse only (create refuses dense offloaded), so there are always scores.
 *
 * pool_complete_launch, after attention, for tokens whose block completes (offload): the
 * open block is copied into the pool at the slot the same order gives (with the scores
 * pool_delta read, kv.slot_score), the step's own blocks last (the step is done with them),
 * with stamp pos + 1.
 *
 * The read-ahead (offload, kv.prefetch > 0; the CPU's nosa_cpu_kv_prefetch, gpu-worker/cpu/kv.h):
 * pool_prefetch_plan_launch, after pool_complete and before the next layer's scoring reuses
 * the scratch: per (token, KV head), the complete blocks the pool lacks by descending bq
 * (ties: the lower block), at most kv.prefetch, each into the slot the eviction order gives
 * outside the step's own (stamp pos + 1) only while it scores strictly higher than the block
 * there; the pool maps, stamps and slot scores change here, the slots go to kv.ahead, the
 * count to stats[layer][3]. pool_prefetch_copy_launch then reads those blocks from the arena
 * into their slots; it may run on another stream, as long as it finishes before the layer's
 * next pool_delta (nothing else reads or writes those slots until then). */
#ifndef NOSA_CUDA_POOL_CUH
#define NOSA_CUDA_POOL_CUH
#include "cuda_common.cuh"

struct pool_lists {
    const uint8_t **ptrs;  /* [n * n_kv][max_blocks + 1] */
    int32_t *n_ent;        /* [n * n_kv] */
    const uint8_t **miss_src; /* [n * n_kv][max_blocks] per entry: its arena block (device
                               * address) when it missed, else NULL; offload only */
};

/* scratch, rep: the selection's scratch of the step (select.cuh), whose bq are the scores. */
void pool_delta_launch(cuda_kv kv, cuda_step st, int layer, pool_lists pl,
                       const uint8_t *arena_dev, const uint32_t *groups, int groups_ld,
                       float *scratch, int rep, unsigned long long *stats, cudaStream_t s);
void pool_complete_launch(cuda_kv kv, cuda_step st, int layer, cudaStream_t s);
void pool_prefetch_plan_launch(cuda_kv kv, cuda_step st, int layer, float *scratch, int rep,
                               unsigned long long *stats, cudaStream_t s);
void pool_prefetch_copy_launch(cuda_kv kv, cuda_step st, int layer, const uint8_t *arena_dev,
                               const uint32_t *groups, int groups_ld, cudaStream_t s);

/* Counters per layer in the stats array: selected, transferred, hits, prefetched. */
#define POOL_STATS 4
#endif
