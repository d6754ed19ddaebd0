/* score: the query's logits against the compressed keys, the wide first half of NOSA's
 * query-aware scoring: lg[g][c] = (q_g . kc_c) * scale for each query head g of the KV
 * head's group and each compressed key c < n_c of the token's (slot, layer, KV head).
 * Grid: (key chunks, token x KV head), so a long context spreads over many SMs even at
 * batch 1; bf16 tensor-core MMAs with the f32 query split into hi + lo halves (score.cu says
 * why that keeps f32 precision), so the kernel runs at the speed of its key reads. Each CTA
 * also writes its 128-key chunk's softmax statistics per head (max, sum of exp), so the
 * softmax, group sum, pooling and top-k that follow in select (select.cuh) read the logits
 * once; select owns the scratch layout: lg is at select_scratch_logits(), the statistics at
 * select_scratch_stats(). Only heads that select (sparse mode, at least
 * one complete block) are scored. */
#ifndef NOSA_CUDA_SCORE_CUH
#define NOSA_CUDA_SCORE_CUH
#include "cuda_common.cuh"
#include "select.cuh"

/* The kernel is instantiated for head_dim 16, 32, 64, 128 and 256 (create checks it). */
bool score_supported(int head_dim);
void score_launch(cuda_kv kv, cuda_step st, int layer, select_params p, const float *qkv,
                  int ld, float *scratch, int max_nc, cudaStream_t s);
#endif
