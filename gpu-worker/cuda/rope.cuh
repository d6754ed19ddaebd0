/* rope: rotates the q heads and k heads of each token in place, Hugging Face "rotate_half"
 * pairs (i, i + head_dim/2), with the f32 tables of nosa_cpu_rope_table_fill (uploaded).
 * qk is [n][ld], q heads at columns [0, n_q*d), k heads right after them. */
#ifndef NOSA_CUDA_ROPE_CUH
#define NOSA_CUDA_ROPE_CUH
#include "cuda_common.cuh"

void rope_launch(float *qk, int ld, int n_heads_total, int head_dim, const float *cos_t,
                 const float *sin_t, const int32_t *pos, int n, cudaStream_t s);
#endif
