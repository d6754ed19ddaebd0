/* kv_resume: seq_resume's rebuild of a slot from n_blocks complete blocks in the arena, in
 * parallel (three launches per slot, whatever the context):
 * - resident KV: every block copied from the arena into its local block (a CTA per block);
 * - compressed key c and its compressed eviction score for every window complete in
 *   [0, n_blocks * block_size) (a CTA per (window, layer x KV head), cu_window_mean as when
 *   appending, so the result is bit-identical to a prefilled slot's), read from the local
 *   blocks when resident, else from the arena (mapped, device-visible pointer);
 * - the ring of the last `kernel` keys and scores, which the next appends complete.
 * groups: the slot's block table on the device (groups[m] = arena group of block m). */
#ifndef NOSA_CUDA_KV_RESUME_CUH
#define NOSA_CUDA_KV_RESUME_CUH
#include "cuda_common.cuh"

void kv_resume_launch(cuda_kv kv, int slot, int n_blocks, const uint8_t *arena_dev,
                      const uint32_t *groups, cudaStream_t s);
#endif
