/* swiglu: from the gate/up GEMM output G[2n][2*inter] (gate columns first, two-term rows as
 * gemm.cuh), h = silu(gate) * up, silu(g) = g / (1 + expf(-g)), written as the two-term bf16
 * operand out[2n][inter] of the down projection. */
#ifndef NOSA_CUDA_SWIGLU_CUH
#define NOSA_CUDA_SWIGLU_CUH
#include "cuda_common.cuh"

void swiglu_split_launch(uint16_t *out, const float *G, int n, int inter, cudaStream_t s);
#endif
