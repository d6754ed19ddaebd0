/* backend_cpu.h: what the CPU reference backend offers beyond backend.h, for tests and for
 * checking the CUDA backend's intermediate results: the block scores behind the last
 * selection, the offload pool's contents. The backend itself is nosa_backend_cpu_ops (backend.h). */
#ifndef NOSA_BACKEND_CPU_H
#define NOSA_BACKEND_CPU_H

#include "backend.h"

/* The block scores of (slot, layer, KV head) for the last token processed, over its complete
 * blocks (those before the token's own block), before forced blocks are set to +inf: the
 * query-aware Bq (NOSA.md step 2, from that token's query) when bq is not NULL, and the
 * query-agnostic Be (step 4) when be is not NULL. Returns the number of complete blocks

 * (scores written when <= cap), or -EINVAL for a bad slot/layer/head or an empty slot. */
int nosa_backend_cpu_block_scores(struct nosa_backend *b, int slot, int layer, int kv_head,
                                  float *bq, float *be, int cap);

/* The logical blocks in the offload pool of (slot, layer, KV head), in pool-slot order,
 * free slots left out. Returns how many (written when <= cap), or -EINVAL for a bad
 * slot/layer/head or a backend without offload. */
int nosa_backend_cpu_pool_blocks(const struct nosa_backend *b, int slot, int layer, int kv_head,
                                 int32_t *out, int cap);

#endif
