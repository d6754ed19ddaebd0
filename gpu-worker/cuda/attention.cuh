/* attention: sparse decode attention, flash-decoding style, on the tensor cores. For each
 * (token, KV head) the block list of pool.cuh (ptrs[0 .. n_ent), the last entry the open
 * block holding pos % block_size + 1 tokens) is split into chunks of `chunk` blocks; one
 * CTA per (chunk, token x KV head, group of up to 8 query heads), of two warps that each
 * take half of every block's tokens (one warp where the halves are not whole 8-token
 * tiles), streams its blocks through shared memory with cp.async (the V rows of a block and
 * the K rows of the next in flight while the previous half computes) and computes, for the
 * group's query heads, the partial softmax state (max, sum, weighted V) with logit =
 * (q . k) * scale + cis (the eviction score as an additive bias after the 1/sqrt(d) scaling,
 * as the CPU reference); the warps' states merge at the end. QK and PV are bf16 MMAs with
 * f32 accumulation; the f32 query and the f32 softmax weights enter as bf16 hi + lo halves,
 * so the products are those of f32 operands (~2^-17 relative).
 * attention_combine merges the chunks into out[token][q head * d]. q is read from the qkv
 * buffer (row stride ld). */
#ifndef NOSA_CUDA_ATTENTION_CUH
#define NOSA_CUDA_ATTENTION_CUH
#include "cuda_common.cuh"

/* The shapes the kernel is built for: head_dim 16, 32, 64, 128 or 256; block_size a
 * multiple of 8 up to 64, or of 16 up to 128 (a warp holds at most 64 tokens of a block in
 * registers, and above 64 two warps share a block only in whole 8-token tiles). The backend
 * refuses others at create. */
bool attention_supported(int head_dim, int block_size);
/* Shared memory one CTA needs (one block staged whole, rows padded). The caller checks it
 * against the device limit at create. part holds rep * (head_dim + 2) floats per
 * (token x KV head, chunk). */
size_t attention_smem_bytes(const cuda_kv &kv);
/* Raises the kernel's dynamic shared memory limit to that size (once, before launches) and
 * returns in *resident_ctas how many of its CTAs the device runs at once. */
cudaError_t attention_init(const cuda_kv &kv, int device, int *resident_ctas);
/* Blocks per chunk for n_lists block lists of up to max_entries entries: about four waves of
 * CTAs, at least 4 and at most 16 blocks, or one wave where up to twice that many blocks per
 * chunk get there; then the fewest blocks that keep that many chunks. */
int attention_chunk_for(int n_lists, int max_entries, int resident_ctas);
/* The most chunks a block list of max_entries entries splits into (chunks of >= 4 blocks):
 * what the partial-output buffer is sized for. */
int attention_max_chunks(int max_entries);
/* miss_src (offload; NULL when resident): [n * n_kv][max_blocks], entry e's arena block
 * (device address of the mapped arena) when e missed the pool, else NULL (pool.cuh). A CTA
 * staging a missed block reads it over PCIe (plain loads) and writes it into its pool slot
 * ptrs[e] as it stages it: the delta copy runs inside attention, so the PCIe reads of some
 * CTAs overlap the HBM reads and arithmetic of the others. */
void attention_launch(float *out, float *part, const float *qkv, int ld,
                      const uint8_t *const *ptrs, const uint8_t *const *miss_src,
                      const int32_t *n_ent, cuda_kv kv, cuda_step st, int rep, float scale,
                      int chunk, int n_chunks, cudaStream_t s);
/* attention_launch's two kernels one at a time (bench_cuda_attention times them apart):
 * the chunks' partial states into part, then their merge into out. */
void attention_partial_launch(float *part, const float *qkv, int ld,
                              const uint8_t *const *ptrs, const uint8_t *const *miss_src,
                              const int32_t *n_ent, cuda_kv kv, cuda_step st, int rep,
                              float scale, int chunk, int n_chunks, cudaStream_t s);
void attention_combine_launch(float *out, const float *part, cuda_kv kv, int n, int rep,
                              int n_chunks, cudaStream_t s);
#endif
