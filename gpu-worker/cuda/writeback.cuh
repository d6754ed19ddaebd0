/* writeback: a block that completes (its token at pos with (pos + 1) % block_size == 0) is
 * written to its arena group, all KV heads of the layer, by SM stores through the mapped
 * arena pointer. The kernel looks at positions and the block table on the device and does
 * nothing for tokens whose block stays open, so one launch per layer serves every step and
 * the step stays capturable as a CUDA graph (the host chooses nothing per token). Runs on
 * the side stream after the layer's attention (the open block is final by then); the step
 * joins it before the next step's appends reuse the open blocks. One CTA per (token, KV
 * head). groups: [slot][groups_ld] arena group of each logical block. */
#ifndef NOSA_CUDA_WRITEBACK_CUH
#define NOSA_CUDA_WRITEBACK_CUH
#include "cuda_common.cuh"

void writeback_launch(cuda_kv kv, cuda_step st, int layer, uint8_t *arena_dev,
                      const uint32_t *groups, int groups_ld, cudaStream_t s);
#endif
