/* evict_cis: NOSA's eviction head for each token: cis[i][h] = A[h] * softplus(delta(v))[h],
 * delta(v) = W v (+ b), over the stored (bf16-rounded) values of all KV heads, as the CPU
 * reference computes it (ascending f32 sum, no fused multiply-add). v is row i of the
 * qkv buffer at column v_off. Query-independent: fixed once a token is appended. */
#ifndef NOSA_CUDA_EVICT_CIS_CUH
#define NOSA_CUDA_EVICT_CIS_CUH
#include "cuda_common.cuh"

/* The kernel stages a token's kvdim products in shared memory: kvdim is bounded. */
int evict_cis_max_kvdim(void);
bool evict_cis_supported(int kvdim);
void evict_cis_launch(float *cis, const float *qkv, int ld, int v_off, const float *w,
                      const float *b, const float *A, int n, int n_kv, int kvdim, cudaStream_t s);
#endif
