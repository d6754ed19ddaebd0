/* rmsnorm: y = (x * r) * w, r = 1 / sqrtf(mean(x^2) + eps) (Llama RMSNorm, as
 * nosa_cpu_rmsnorm), written as the two-term bf16 GEMM operand: hi = bf16(y) in row i,
 * lo = bf16(y - hi) in row n + i of out[2n][dim]. Also split_launch, the same split without
 * the norm (attention output before the output projection).
 *
 * Why two terms: the weights are bf16 (a checkpoint's own precision), and hi + lo carries
 * the activation to ~2^-17 relative, so a GEMM over [hi; lo] (2n columns, weights read once)
 * differs from the f32 reference by the accumulation order only. Decode GEMMs are bound by
 * weight reads, so the doubled columns cost almost nothing. */
#ifndef NOSA_CUDA_RMSNORM_CUH
#define NOSA_CUDA_RMSNORM_CUH
#include "cuda_common.cuh"

void rmsnorm_split_launch(uint16_t *out, const float *x, const float *w, int n, int dim,
                          float eps, cudaStream_t s);
void split_launch(uint16_t *out, const float *x, int n, int dim, cudaStream_t s);
#endif
