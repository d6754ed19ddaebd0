/* argmax: greedy sampling on the GPU: out[i] = nosa_logits_argmax of logits[i][0 .. vocab)
 * (backend.h): the index of the largest (ties: the lowest index, as a sequential scan keeping
 * the first maximum), -1 when a logit is NaN or the largest is not finite. The decode step's
 * argmax output, so a greedy row needs no logits copied to the host. */
#ifndef NOSA_CUDA_ARGMAX_CUH
#define NOSA_CUDA_ARGMAX_CUH
#include "cuda_common.cuh"

void argmax_launch(int32_t *out, const float *logits, int n, int vocab, cudaStream_t s);
#endif
