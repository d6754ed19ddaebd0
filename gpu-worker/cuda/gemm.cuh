/* gemm: Y = W X for the Hugging Face [out][in] weight layout, bf16 operands, f32
 * accumulation (cublasGemmEx, CUBLAS_COMPUTE_32F), over the two-term operand of
 * rmsnorm.cuh: X is [2n][in] (hi rows, then lo rows), Y is [2n][out] f32. combine_launch
 * then forms y[i] = (Y[i] + Y[n + i]) + bias, optionally added into a residual. */
#ifndef NOSA_CUDA_GEMM_CUH
#define NOSA_CUDA_GEMM_CUH
#include "cuda_common.cuh"

cublasStatus_t gemm_bf16_launch(cublasHandle_t h, float *y, const uint16_t *w,
                                const uint16_t *x, int n2, int out, int in);
/* y[i][o] = Y[i][o] + Y[n+i][o] (+ bias[o]) for o < out; with accumulate, y[i][o] += that.
 * y has row stride ldy, Y row stride out. */
void combine_launch(float *y, int ldy, const float *Y, const float *bias, int n, int out,
                    int accumulate, cudaStream_t s);
#endif
