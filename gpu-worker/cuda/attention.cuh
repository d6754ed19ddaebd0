/* attention: sparse decode attention, flash-decoding style. For each (token, KV head) the
 * block list of pool.cuh (ptrs[0 .. n_ent), the last entry the open block holding
 * pos % block_size + 1 tokens) is split into chunks of `chunk` blocks; one CTA per (chunk,
 * token x KV head) stages its blocks in shared memory (16-byte loads, four in flight per
 * thread, K rows padded against bank conflicts) and computes, for the rep query heads of the
 * group, the partial softmax state
 * (max, sum, weighted V) with logit = (q . k) * scale + cis (the eviction score as an
 * additive bias after the 1/sqrt(d) scaling, as the CPU reference); attention_combine merges
 * the chunks into out[token][q head * d]. q is read from the qkv buffer (row stride ld). */
#ifndef NOSA_CUDA_ATTENTION_CUH
#define NOSA_CUDA_ATTENTION_CUH
#include "cuda_common.cuh"

/* Shared memory one CTA needs (the chunk's blocks are staged there whole). The caller
 * checks it against the device limit at create. part holds rep * (head_dim + 2) floats per
 * (token x KV head, chunk). */
size_t attention_smem_bytes(const cuda_kv &kv, int rep, int chunk);
/* Raises the kernel's dynamic shared memory limit to that size; once, before launches. */
cudaError_t attention_init(const cuda_kv &kv, int rep, int chunk);
/* miss_src (offload; NULL when resident): [n * n_kv][max_blocks], entry e's arena block
 * (device address of the mapped arena) when e missed the pool, else NULL (pool.cuh). A CTA
 * staging a missed block reads it over PCIe and writes it into its pool slot ptrs[e] as it
 * stages it: the delta copy runs inside attention, so the PCIe reads of some CTAs overlap
 * the HBM reads and arithmetic of the others. */
void attention_launch(float *out, float *part, const float *qkv, int ld,
                      const uint8_t *const *ptrs, const uint8_t *const *miss_src,
                      const int32_t *n_ent, cuda_kv kv, cuda_step st, int rep, float scale,
                      int chunk, int n_chunks, cudaStream_t s);
#endif
