/* kv_append: stores each token's key (after RoPE) and value as bf16 and its eviction score
 * in the open block of its (slot, layer, KV head) (the block is zeroed by its first token,
 * as on the CPU), and updates the selection state incrementally: the ring of the last
 * `kernel` keys and scores, and, when a window [stride*c, stride*c + kernel) completes,
 * compressed key c (mean of the stored keys, ascending f32 sum times 1/kernel) and its
 * compressed eviction score. One CTA per (token, KV head).
 *
 * kv_replay_launch is the same state update for seq_resume: it pushes the block_size
 * tokens of complete block m, read from the arena (device-visible pointer), and with
 * resident KV also copies the block into its local block. */
#ifndef NOSA_CUDA_KV_APPEND_CUH
#define NOSA_CUDA_KV_APPEND_CUH
#include "cuda_common.cuh"

void kv_append_launch(cuda_kv kv, cuda_step st, int layer, const float *qkv, int ld, int k_off,
                      int v_off, const float *cis, cudaStream_t s);
/* src[h] for h < n_kv: the arena blocks of (group of block m, layer, h) */
void kv_replay_launch(cuda_kv kv, int slot, int layer, int m, const uint8_t *arena_dev,
                      uint64_t first_block_index, cudaStream_t s);
#endif
