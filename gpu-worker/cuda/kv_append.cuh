/* kv_append: stores each token's key (after RoPE) and value as bf16 and its eviction score
 * in the open block of its (slot, layer, KV head) (the block is zeroed by its first token,
 * as on the CPU), and updates the selection state incrementally: the ring of the last
 * `kernel` keys and scores, and, when a window [stride*c, stride*c + kernel) completes,
 * compressed key c (mean of the stored keys, ascending f32 sum times 1/kernel, stored as
 * bf16) and its compressed eviction score. One CTA per (token, KV head).
 * seq_resume rebuilds the same state in parallel (kv_resume.cuh). */
#ifndef NOSA_CUDA_KV_APPEND_CUH
#define NOSA_CUDA_KV_APPEND_CUH
#include "cuda_common.cuh"

void kv_append_launch(cuda_kv kv, cuda_step st, int layer, const float *qkv, int ld, int k_off,
                      int v_off, const float *cis, cudaStream_t s);

/* The mean of a compression window: value_at(j) for j < kernel summed in ascending order in
 * f32, times 1/kernel (rounded as the CPU does). Appending and resuming both use it, so a
 * resumed sequence's compressed keys are bit-identical to a prefilled one's. */
template <class ValueAt>
__device__ __forceinline__ float cu_window_mean(ValueAt value_at, int kernel)
{
    float sum = 0.0f;
    for (int j = 0; j < kernel; j++) sum = __fadd_rn(sum, value_at(j));
    return __fmul_rn(sum, 1.0f / (float)kernel);
}
#endif
