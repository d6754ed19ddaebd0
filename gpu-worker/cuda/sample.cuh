/* sample: top-p sampling with temperature on the GPU, by the sampling rule of
 * sample_rule.h: out[i] = nosa_sample_row of logits[i][0 .. vocab) for the rows with
 * rs[i].temperature > 0 (the same token the host draws), -1 where a logit is NaN or none is
 * finite; rows with temperature 0 are not written (the argmax kernel serves them). The
 * decode step's sampled output, so a sampled row needs no logits copied to the host. */
#ifndef NOSA_CUDA_SAMPLE_CUH
#define NOSA_CUDA_SAMPLE_CUH
#include "cuda_common.cuh"

extern "C" {
#include "backend.h"
}

/* keys: scratch of n * vocab entries. */
void sample_launch(int32_t *out, uint64_t *keys, const float *logits, int n, int vocab,
                   const struct nosa_row_sampling *rs, cudaStream_t s);
#endif
