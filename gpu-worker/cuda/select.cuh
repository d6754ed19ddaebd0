/* select: block scoring and top-k selection for each (token, KV head) of a step, on the GPU,
 * with the CPU reference's definitions (gpu-worker/cpu/select.h):
 * - Bq: p_g = softmax_i(q_g . kc_i * scale) over the compressed keys so far, s_q = sum_g p_g,
 *   max-pooled to blocks (units [u*m - (r-1), u*m + u - 1] clipped);
 * - Be: the compressed eviction scores, max-pooled the same way;
 * - forced blocks (sink, window) +inf; infllmv2: top(k_total) of Bq; nosa: Sq = top(k_query)
 *   of Bq, Be[Sq] = +inf, S = top(k_total) of Be; dense, or no more complete blocks than
 *   k_total: every complete block.
 * Top-k is exact and deterministic: block m is chosen iff fewer than k blocks j rank before
 * it, where j ranks before m when s[j] > s[m], or s[j] == s[m] and j < m (the CPU's order:
 * higher score first, ties to the lower block). The result goes, ascending, to
 * kv.last_sel / kv.n_sel of the head; it never leaves the GPU on the decode path.
 * One CTA per (token, KV head); scratch is per (token, KV head) of the step. */
#ifndef NOSA_CUDA_SELECT_CUH
#define NOSA_CUDA_SELECT_CUH
#include "cuda_common.cuh"

struct select_params {
    int mode; /* enum nosa_attn_mode */
    int rep, k_total, k_query, sink, window, units, span;
    float scale;
};

/* Floats of scratch one (token, KV head) needs. */
__host__ __device__ size_t select_scratch_floats(const cuda_kv &kv);

void select_launch(cuda_kv kv, cuda_step st, int layer, select_params p, const float *qkv,
                   int ld, float *scratch, cudaStream_t s);
#endif
