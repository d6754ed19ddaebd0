/* score: the query's logits against the compressed keys, the wide first half of NOSA's
 * query-aware scoring: lg[g][c] = (q_g . kc_c) * scale for each query head g of the KV
 * head's group and each compressed key c < n_c of the token's (slot, layer, KV head).
 * Grid: (key chunks, token x KV head), a warp per key, lanes over dimensions (coalesced
 * reads of kc), so a long context spreads over many SMs even at batch 1. The softmax,
 * group sum, pooling and top-k follow in select (select.cuh), which owns the scratch
 * layout: lg is at select_scratch_logits(). Only heads that will select (sparse mode,
 * more complete blocks than k_total) are scored. */
#ifndef NOSA_CUDA_SCORE_CUH
#define NOSA_CUDA_SCORE_CUH
#include "cuda_common.cuh"
#include "select.cuh"

void score_launch(cuda_kv kv, cuda_step st, int layer, select_params p, const float *qkv,
                  int ld, float *scratch, int max_nc, cudaStream_t s);
#endif
