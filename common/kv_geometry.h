/* kv_geometry.h: the KV block format, the contract between kv-host (which stores blocks) and
 * the worker backends (which write and read them). Header-only.
 *
 * A block is block_size consecutive tokens of one (layer, KV head):
 *   K[block_size][head_dim] bf16, then V[block_size][head_dim] bf16 (keys after RoPE,
 *   values plain), then bias[block_size] f32 (NOSA's per-token eviction score cis, which
 *   every attention mode adds to the logits of a NOSA model, so modes differ only in their
 *   selection), padded to a multiple of NOSA_KV_BLOCK_ALIGN bytes.
 * A group is one logical block of a sequence (block_size token positions) across all layers
 * and KV heads: n_layers * n_kv_heads blocks stored contiguously, layer-major. The allocator
 * hands out groups, so a sequence's block table is one group id per logical block, and the
 * block of (group g, layer l, head h) is block number (g * n_layers + l) * n_kv_heads + h. */
#ifndef NOSA_KV_GEOMETRY_H
#define NOSA_KV_GEOMETRY_H

#include <stddef.h>
#include <stdint.h>

#define NOSA_KV_BLOCK_ALIGN 256u
#define NOSA_KV_DTYPE_BF16 1u

struct nosa_kv_geometry {
    uint32_t n_layers;
    uint32_t n_kv_heads;
    uint32_t block_size; /* tokens per block */
    uint32_t head_dim;
    uint32_t dtype; /* NOSA_KV_DTYPE_BF16: the only one for now */
};

/* 1 when a and b describe the same blocks. */
static inline int nosa_kv_geometry_equal(const struct nosa_kv_geometry *a,
                                         const struct nosa_kv_geometry *b)
{
    return a->n_layers == b->n_layers && a->n_kv_heads == b->n_kv_heads &&
           a->block_size == b->block_size && a->head_dim == b->head_dim &&
           a->dtype == b->dtype;
}

static inline size_t nosa_kv_block_kv_bytes(const struct nosa_kv_geometry *g)
{
    return (size_t)g->block_size * g->head_dim * 2u; /* one of K or V, bf16 */
}

static inline size_t nosa_kv_block_bytes(const struct nosa_kv_geometry *g)
{
    size_t raw = 2u * nosa_kv_block_kv_bytes(g) + (size_t)g->block_size * sizeof(float);
    return (raw + NOSA_KV_BLOCK_ALIGN - 1u) / NOSA_KV_BLOCK_ALIGN * NOSA_KV_BLOCK_ALIGN;
}

static inline size_t nosa_kv_group_bytes(const struct nosa_kv_geometry *g)
{
    return nosa_kv_block_bytes(g) * g->n_layers * g->n_kv_heads;
}

static inline uint64_t nosa_kv_block_index(const struct nosa_kv_geometry *g, uint64_t group,
                                           uint32_t layer, uint32_t head)
{
    return (group * g->n_layers + layer) * g->n_kv_heads + head;
}

/* Offsets inside one block. */
static inline size_t nosa_kv_block_v_offset(const struct nosa_kv_geometry *g)
{
    return nosa_kv_block_kv_bytes(g);
}
static inline size_t nosa_kv_block_bias_offset(const struct nosa_kv_geometry *g)
{
    return 2u * nosa_kv_block_kv_bytes(g);
}

#endif
