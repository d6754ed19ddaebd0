/* gather: pulls the missed blocks of a step (pool.cuh lists) from the host arena into the
 * GPU pool: one kernel per step and layer, zero-copy over the mapped, cudaHostRegister'ed
 * arena pointer, 16-byte loads, one CTA per (block, token x KV head). CTAs past a head's
 * miss count exit at once. */
#ifndef NOSA_CUDA_GATHER_CUH
#define NOSA_CUDA_GATHER_CUH
#include "cuda_common.cuh"

void gather_launch(const uint8_t *const *src, uint8_t *const *dst, const int32_t *n_miss,
                   int n_heads, int max_miss, int list_ld, size_t block_bytes, cudaStream_t s);
#endif
