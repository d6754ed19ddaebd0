/* argmax: greedy sampling on the GPU: out[i] = the index of the largest logits[i][0 .. vocab)
 * (ties: the lowest index, as a sequential scan keeping the first maximum). For an engine
 * that samples greedily without copying logits to the host. */
#ifndef NOSA_CUDA_ARGMAX_CUH
#define NOSA_CUDA_ARGMAX_CUH
#include "cuda_common.cuh"

void argmax_launch(int32_t *out, const float *logits, int n, int vocab, cudaStream_t s);
#endif
