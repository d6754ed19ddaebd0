/* score: the query's logits against the compressed keys, the wide first half of NOSA's
 * query-aware scoring: lg[g][c] = (q_g . kc_c) * scale for each query head g of the KV
 * head's group and each compressed key c < n_c of the token's (slot, layer, KV head).
 * Grid: (key chunks, token x KV head), so a long context spreads over many SMs even at
 * batch 1; in a CTA, head_dim / 16 lanes per key with the query slices in registers. The softmax,
 * group sum, pooling and top-k follow in select (select.cuh), which owns the scratch
 * layout: lg is at select_scratch_logits(). Only heads that will select (sparse mode,
 * more complete blocks than k_total) are scored. */
#ifndef NOSA_CUDA_SCORE_CUH
#define NOSA_CUDA_SCORE_CUH
#include "cuda_common.cuh"
#include "select.cuh"

/* The kernel's lane split needs head_dim = 16 x a power of two <= 32 (create checks it). */
bool score_supported(int head_dim);
void score_launch(cuda_kv kv, cuda_step st, int layer, select_params p, const float *qkv,
                  int ld, float *scratch, int max_nc, cudaStream_t s);
#endif
