/* cpu_harness.h: drives one backend over the in-test arena the way the worker does (block
 * tables covered before each call), for the CPU backend tests. Header-only; any failure of
 * the backend is fatal to the test (REQUIRE), since later checks would be meaningless. */
#ifndef NOSA_CPU_HARNESS_H
#define NOSA_CPU_HARNESS_H

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "model.h"
#include "test_arena.h"
#include "test_util.h"

#define HARNESS_MAX_SEQS 4

struct harness {
    const struct nosa_backend_ops *ops;
    struct nosa_backend *b;
    const struct nosa_model *model;
    struct test_arena *ta;
    struct test_seq_table tables[HARNESS_MAX_SEQS];
    int len[HARNESS_MAX_SEQS];
};

/* The tiny model with its sparse settings replaced where the arguments are > 0. */
static inline struct nosa_model *harness_model(int budget, int query_aware, uint64_t seed)
{
    struct nosa_model_config cfg;
    char err[256];
    struct nosa_model *m = NULL;
    REQUIRE(nosa_model_config_builtin("tiny", &cfg, err, sizeof(err)) == 0, "%s", err);
    if (budget > 0) cfg.sparse.budget_blocks = budget;
    if (query_aware > 0) cfg.sparse.query_aware_blocks = query_aware;
    REQUIRE(nosa_model_init_random(&cfg, seed, &m, err, sizeof(err)) == 0, "%s", err);
    return m;
}

/* Opens a cpu backend on model with cfg, whose arena is ta's (ta may be shared by several
 * harnesses). */
static inline void harness_create(struct harness *h, const struct nosa_model *m,
                                  struct nosa_backend_config cfg, struct test_arena *ta)
{
    char err[256];
    memset(h, 0, sizeof(*h));
    REQUIRE(cfg.max_seqs <= HARNESS_MAX_SEQS, "too many slots");
    h->ops = &nosa_backend_cpu_ops;
    h->model = m;
    h->ta = ta;
    cfg.arena = &ta->arena;
    REQUIRE(h->ops->create(m, &cfg, &h->b, err, sizeof(err)) == 0, "create: %s", err);
    for (int s = 0; s < HARNESS_MAX_SEQS; s++) test_seq_table_init(&h->tables[s]);
}

/* harness_create with ta attached as the arena in every mode, so resident runs write their
 * blocks too. */
static inline void harness_open(struct harness *h, const struct nosa_model *m,
                                enum nosa_attn_mode mode, int offload, int max_seqs,
                                int max_context, int pool_blocks, struct test_arena *ta)
{
    struct nosa_backend_config cfg = {.mode = mode, .offload = offload, .max_seqs = max_seqs,
                                      .max_context = max_context, .pool_blocks = pool_blocks};
    harness_create(h, m, cfg, ta);
}

static inline void harness_close(struct harness *h)
{
    h->ops->destroy(h->b);
    h->b = NULL;
}

static inline void harness_prefill(struct harness *h, int slot, const int32_t *tok, int n,
                                   float *logits)
{
    char err[256];
    test_seq_table_cover(h->ta, &h->tables[slot], h->len[slot] + n);
    int rc = nosa_backend_prefill_one(h->ops, h->b, slot, tok, n, &h->tables[slot].blocks, logits,
                                      err, sizeof(err));
    REQUIRE(rc == 0, "prefill: %s", err);
    h->len[slot] += n;
}

/* One decode step handing back what out asks (NULL: nothing). */
static inline void harness_decode_out(struct harness *h, int n, const int *slots,
                                      const int32_t *tok, const struct nosa_decode_out *out)
{
    char err[256];
    struct nosa_seq_blocks blocks[HARNESS_MAX_SEQS] = {{0}};
    for (int i = 0; i < n; i++) {
        test_seq_table_cover(h->ta, &h->tables[slots[i]], h->len[slots[i]] + 1);
        blocks[i] = h->tables[slots[i]].blocks;
    }
    int rc = h->ops->decode(h->b, n, slots, tok, blocks, out, err, sizeof(err));
    REQUIRE(rc == 0, "decode: %s", err);
    for (int i = 0; i < n; i++) h->len[slots[i]]++;
}

/* One decode step; every row's logits to logits[i * vocab] when logits is not NULL. */
static inline void harness_decode(struct harness *h, int n, const int *slots, const int32_t *tok,
                                  float *logits)
{
    struct nosa_decode_out out = {.logits = logits};
    harness_decode_out(h, n, slots, tok, &out);
}

/* Greedy choice: the largest logit, the lowest token on a tie. */
static inline int32_t harness_argmax(const float *logits, int vocab)
{
    int32_t best = 0;
    for (int i = 1; i < vocab; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* A deterministic prompt: byte-like tokens from an LCG. */
static inline void harness_prompt(int32_t *tok, int n, uint32_t seed, int vocab)
{
    uint32_t s = seed * 2654435761u + 12345u;
    for (int i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        tok[i] = (int32_t)((s >> 8) % (uint32_t)vocab);
    }
}

#endif
