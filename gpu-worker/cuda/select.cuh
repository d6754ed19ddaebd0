/* select: block scoring and top-k selection for each (token, KV head) of a step, on the GPU,
 * with the CPU reference's definitions (gpu-worker/cpu/select.h):
 * - Bq: p_g = softmax_i(q_g . kc_i * scale) over the compressed keys so far, s_q = sum_g p_g,
 *   max-pooled to blocks (units [u*m - (r-1), u*m + u - 1] clipped);
 * - Be: the compressed eviction scores, max-pooled the same way;
 * - forced blocks (sink, window) +inf; infllmv2: top(k_total) of Bq; nosa: Sq = top(k_query)
 *   of Bq, Be[Sq] = +inf, S = top(k_total) of Be (with no more complete blocks than k_total
 *   the top-k takes them all); dense: every complete block.
 * Top-k is exact and deterministic: block m is chosen iff fewer than k blocks j rank before
 * it, where j ranks before m when s[j] > s[m], or s[j] == s[m] and j < m (the CPU's order:
 * higher score first, ties to the lower block). The result goes, ascending, to
 * kv.last_sel / kv.n_sel of the head; it never leaves the GPU on the decode path.
 * One CTA per (token, KV head), after score_launch (score.cuh) wrote the query logits and
 * their chunks' softmax statistics. */
#ifndef NOSA_CUDA_SELECT_CUH
#define NOSA_CUDA_SELECT_CUH
#include "cuda_common.cuh"

extern "C" {
#include "model.h"
}

struct select_params {
    int mode; /* enum nosa_attn_mode */
    int rep, k_total, k_query, sink, window, units, span;
    float scale;
};

/* The parameters of a model's sparse settings: k_total and k_query leave out the open block,
 * which every selection holds; units and span are a block's and a compression window's
 * width in compressed keys. */
select_params select_params_of(const struct nosa_sparse_config *sc, int mode, int rep,
                               float scale);

/* Compressed keys per softmax-statistics chunk: the scoring kernel's CTA (score.cu). */
#define SELECT_STAT_KEYS 128

/* Scratch of one (token, KV head) of the step, li = token * n_kv + head: the query logits
 * over the compressed keys lg[rep][max_c] (written by score.cuh), then the group score
 * sq[max_c], bq, be and flags [max_blocks] each, then (8-byte aligned) the softmax
 * statistics of each chunk of SELECT_STAT_KEYS keys, stat[chunk][rep] = (max of the chunk's
 * logits, sum of exp(logit - that max)), also written by score.cuh, so that select reads
 * the logits once. The stride is a multiple of 4 floats. */
__host__ __device__ __forceinline__ size_t select_scratch_stats_offset(const cuda_kv &kv,
                                                                       int rep)
{
    size_t off = (size_t)(rep + 1) * (size_t)kv.max_c + 3u * (size_t)kv.max_blocks;
    return (off + 1u) & ~(size_t)1u;
}
__host__ __device__ __forceinline__ size_t select_scratch_floats(const cuda_kv &kv, int rep)
{
    size_t chunks = ((size_t)kv.max_c + SELECT_STAT_KEYS - 1) / SELECT_STAT_KEYS;
    size_t n = select_scratch_stats_offset(kv, rep) + 2u * chunks * (size_t)rep;
    return (n + 3u) & ~(size_t)3u;
}
__device__ __forceinline__ float *select_scratch_logits(const cuda_kv &kv, float *scratch,
                                                        int li)
{
    return scratch + (size_t)li * (size_t)kv.scratch_stride;
}
/* bq of (token, KV head) li as the selection leaves it (forced blocks +inf): the pool's
 * eviction scores (pool.cuh). */
__device__ __forceinline__ float *select_scratch_bq(const cuda_kv &kv, float *scratch, int li,
                                                    int rep)
{
    return select_scratch_logits(kv, scratch, li) + (size_t)(rep + 1) * (size_t)kv.max_c;
}
/* A float's bits as an unsigned key with the same order (-0 taken as +0, as == does). */
__device__ __forceinline__ uint32_t order_key(float f)
{
    uint32_t u = __float_as_uint(f == 0.0f ? 0.0f : f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float2 *select_scratch_stats(const cuda_kv &kv, float *scratch,
                                                        int li, int rep)
{
    return (float2 *)(select_scratch_logits(kv, scratch, li) +
                      select_scratch_stats_offset(kv, rep));
}

void select_launch(cuda_kv kv, cuda_step st, int layer, select_params p, float *scratch,
                   cudaStream_t s);
#endif
