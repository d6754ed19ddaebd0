/* embed: token embedding lookup (see embed.cuh). */
#include "embed.cuh"

static __global__ void embed_kernel(float *x, const float *tok_embed, const int32_t *tokens,
                                    int hidden)
{
    const float *row = tok_embed + (size_t)tokens[blockIdx.x] * (size_t)hidden;
    float *out = x + (size_t)blockIdx.x * (size_t)hidden;
    for (int j = threadIdx.x; j < hidden; j += blockDim.x) out[j] = row[j];
}

void embed_launch(float *x, const float *tok_embed, const int32_t *tokens, int n, int hidden,
                  cudaStream_t s)
{
    embed_kernel<<<n, 256, 0, s>>>(x, tok_embed, tokens, hidden);
}
