/* embed: x[i] = tok_embed[tokens[i]] (f32 rows), the first op of a forward pass. */
#ifndef NOSA_CUDA_EMBED_CUH
#define NOSA_CUDA_EMBED_CUH
#include "cuda_common.cuh"

void embed_launch(float *x, const float *tok_embed, const int32_t *tokens, int n, int hidden,
                  cudaStream_t s);
#endif
