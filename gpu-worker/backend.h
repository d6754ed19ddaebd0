/* backend.h: the narrow interface every compute backend implements (cpu: the plain-C
 * reference; cuda: the product). The engine above it owns sequences, tokens, sampling and
 * the block tables; a backend owns the model's device-side state, each slot's KV (the open
 * block, the local block pool, compressed keys, eviction scores), selection, the block delta
 * and the copies to and from the host arena.
 *
 * Semantics every backend must follow, so that backends, modes and placements compare
 * exactly:
 * - A sequence lives in a slot [0, max_seqs). prefill(n tokens) == n single-token steps: the
 *   same per-token block selection, the same KV, so chunking never changes a result.
 * - K and V are stored in bf16 (kv_geometry.h) whether resident or offloaded; arithmetic is
 *   f32 (cpu) or bf16 operands with f32 accumulation (cuda).
 * - When cfg.arena is set, each block is written to its arena group once, when it completes
 *   (its last token is appended); the caller must have put that group into the sequence's
 *   block table before the call. With offload, complete blocks that a step selects and the
 *   local pool lacks are read from the arena (the delta); the pool evicts what it must. */
#ifndef NOSA_BACKEND_H
#define NOSA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "kv_geometry.h"
#include "model.h"

/* The host arena's block array as mapped in this process. */
struct nosa_kv_arena {
    uint8_t *base;     /* block 0 of group 0 */
    uint64_t n_groups; /* groups the arena holds */
    struct nosa_kv_geometry geom;
};

#define NOSA_MAX_PREFETCH_BLOCKS 16

struct nosa_backend_config {
    enum nosa_attn_mode mode;
    int offload;     /* 1: complete blocks live in the arena, a bounded pool holds selections */
    int max_seqs;    /* slots */
    int max_context; /* tokens per sequence, <= model max_position */
    int pool_blocks; /* offload: pool blocks per (slot, layer, KV head); 0: 2 * budget */
    /* Offload, sparse modes: blocks read ahead per (slot, layer, KV head) and step, 0: none.
     * After a step's attention, the complete blocks the pool lacks with the highest
     * query-aware score of the step are read into the pool, each only while it outranks the
     * block it would evict, so the next step is likelier to find them (docs/ARCHITECTURE.md,
     * "Prefetch"). Results never depend on it; the hit rate and the bytes read do. */
    int prefetch_blocks; /* [0, NOSA_MAX_PREFETCH_BLOCKS] */
    const struct nosa_kv_arena *arena; /* required with offload; optional otherwise */
    int device;      /* CUDA device ordinal (cuda only) */
};

/* A sequence's block table, as the caller keeps it: groups[m] is the arena group of logical
 * block m. n_groups must cover every block that is complete after the call. NULL (or
 * n_groups 0) is fine when no arena is configured. */
struct nosa_seq_blocks {
    const uint32_t *groups;
    uint32_t n_groups;
};

struct nosa_layer_stats {
    uint64_t selected;    /* complete blocks selected, summed over tokens and KV heads */
    uint64_t transferred; /* of those, pulled from the arena (the delta) */
    uint64_t hits;        /* of those, already in the local pool (or resident) */
    uint64_t prefetched;  /* blocks read ahead for the next step (cfg.prefetch_blocks) */
    uint64_t bytes_h2d;   /* this layer's bytes read from the arena: (transferred +
                           * prefetched) * block bytes */
    uint64_t bytes_d2h;   /* this layer's bytes written to the arena (completed blocks) */
};

/* Statistics of the last prefill or decode call. selected == transferred + hits per layer.
 * The open (incomplete) block is always local and is not counted. Every total is the sum
 * of its per-layer counter over layer[0 .. n_layers). A selection larger than the offload
 * pool (dense offloaded on the cpu backend: it selects the whole context) is attended in two
 * passes, keys then values, each pulling it through the pool; every block read counts as
 * selected once per pass, so the sums above still hold and hits / selected stays the share
 * of reads served locally. */
struct nosa_step_stats {
    uint32_t n_layers;
    uint64_t tokens;             /* tokens processed by the call */
    uint64_t blocks_selected;
    uint64_t blocks_transferred;
    uint64_t block_hits;
    uint64_t blocks_prefetched;  /* read ahead, not counted as selected */
    uint64_t bytes_h2d;          /* bytes read from the arena (the delta and the read-ahead) */
    uint64_t bytes_d2h;          /* bytes written to the arena (completed blocks) */
    double seconds;              /* wall time of the call */
    /* Where the time went, in seconds (a split of `seconds`; what a backend cannot time it
     * leaves 0 and the remainder is "other"): projections and MLP GEMMs, attention, block
     * scoring and selection, the delta copy from the arena. cuda times with events. */
    double gemm_s, attn_s, select_s, copy_s;
    struct nosa_layer_stats layer[NOSA_MAX_LAYERS];
};

/* How row i of a step is drawn (docs/ENGINE.md "Sampling"): temperature >= 0 (0 = greedy),
 * top_p in (0, 1] (the caller checks both), and the (seed, index) of the row's uniform
 * number. */
struct nosa_row_sampling {
    float temperature, top_p;
    uint64_t seed, index;
};

/* What a decode step hands back for row i (the token appended to slots[i]); every field
 * optional (NULL). logits[i * vocab ...] is written for the rows with want_logits[i] != 0,
 * for every row when want_logits is NULL; other rows are left as they were. argmax[i] is
 * nosa_logits_argmax of row i's logits, computed where the logits are (the GPU for cuda), so
 * that a greedy row needs no logits copied to the host. */
struct nosa_decode_out {
    float *logits;
    const uint8_t *want_logits;
    int32_t *argmax;
    /* Rows drawn where the logits are (NULL: none): for sampling[i].temperature > 0,
     * sampled[i] = nosa_sample_row of row i's logits, -1 where a logit is NaN or none is
     * finite; rows with temperature 0 leave sampled[i] as it was (see argmax). */
    const struct nosa_row_sampling *sampling;
    int32_t *sampled;
};


/* The greedy token of one row of logits: the id of the largest (ties: the lower id), or -1
 * when a logit is NaN or the largest is not finite (there is no token to take). */
int32_t nosa_logits_argmax(const float *logits, int vocab);

/* The token of one row of logits by the sampling rule (sample_rule.h; greedy when
 * temperature is 0): its id, or -1 when a logit is NaN, none is finite or vocab exceeds
 * NOSA_SAMPLE_MAX_VOCAB. keys: scratch of 2 * vocab entries. */
int32_t nosa_sample_row(const float *logits, int vocab, const struct nosa_row_sampling *rs,
                        uint64_t *keys);

struct nosa_backend;

/* One sequence's part of a prefill call: tokens[0 .. n) appended to slot; the last token's
 * logits [vocab] written to logits unless NULL. blocks: the slot's block table (NULL without
 * an arena), as for decode. */
struct nosa_prefill_req {
    int slot;
    const int32_t *tokens;
    int n;
    const struct nosa_seq_blocks *blocks;
    float *logits;
};

struct nosa_backend_ops {
    const char *name;
    int (*create)(const struct nosa_model *model, const struct nosa_backend_config *cfg,
                  struct nosa_backend **out, char *err, size_t errlen);
    void (*destroy)(struct nosa_backend *b); /* accepts NULL */
    /* Empties the slot: the next token appended is position 0. */
    int (*seq_reset)(struct nosa_backend *b, int slot, char *err, size_t errlen);
    /* Prefills n_reqs sequences (1 .. max_seqs requests, distinct slots): the same result,
     * stats summed, as prefilling each alone. Nothing is appended when a request fails the
     * checks (nosa_backend_check_prefill). */
    int (*prefill)(struct nosa_backend *b, const struct nosa_prefill_req *reqs, int n_reqs,
                   char *err, size_t errlen);
    /* One decode step: tokens[i] is appended to slots[i] (distinct); out (NULL: nothing
     * back) gets what struct nosa_decode_out says. */
    int (*decode)(struct nosa_backend *b, int n, const int *slots, const int32_t *tokens,
                  const struct nosa_seq_blocks *blocks, const struct nosa_decode_out *out,
                  char *err, size_t errlen);
    /* Rebuilds slot from n_blocks complete blocks already in the arena (a sequence moved from
     * a failed worker): afterwards the context is positions [0, n_blocks * block_size), with
     * no recomputation; the caller prefills the tokens of the open block after that. */
    int (*seq_resume)(struct nosa_backend *b, int slot, const struct nosa_seq_blocks *blocks,
                      uint32_t n_blocks, char *err, size_t errlen);
    /* The blocks selected for (slot, layer, KV head) by the last token processed, ascending
     * logical block numbers, complete blocks only (the open block the token sits in is always
     * attended and not listed; the budget counts it, so at most budget - 1 are listed);
     * returns the count (<= cap) or -errno. */
    int (*last_selection)(const struct nosa_backend *b, int slot, int layer, int kv_head,
                          int32_t *out, int cap);
    void (*stats)(const struct nosa_backend *b, struct nosa_step_stats *out);
    /* Requests one prefill call advances for about the time of one (the cuda backend runs
     * their tokens side by side; the cpu one after another: 1). The engine gives a step up
     * to this many prompts. */
    int prefill_lanes;
};

extern const struct nosa_backend_ops nosa_backend_cpu_ops;
#ifdef NOSA_HAVE_CUDA
extern const struct nosa_backend_ops nosa_backend_cuda_ops;
#endif

/* "cpu", "cuda" or "auto" (cuda when built with it and a GPU is visible). NULL with err set
 * when the name is unknown or that backend is not built/usable here. */
const struct nosa_backend_ops *nosa_backend_find(const char *name, char *err, size_t errlen);

/* The checks every backend's create makes (backend_checks.c): the model configuration is
 * valid, the mode known, 1 <= max_seqs and 1 <= max_context <= max_position, prefetch_blocks
 * in range and only with offload in a sparse mode, an arena with offload, and an arena's
 * geometry equal to the model's with a mapped base aligned to arena_align bytes. 0, or -EINVAL (or the model validation's code) with err naming backend. */
int nosa_backend_config_check(const struct nosa_model *model,
                              const struct nosa_backend_config *cfg, const char *backend,
                              size_t arena_align, char *err, size_t errlen);

/* What a created backend checks each call against (backend_checks.c). */
struct nosa_backend_limits {
    const char *name; /* "cpu", "cuda": the errors' first word */
    int max_seqs, max_context, vocab, block_size;
    int have_arena;        /* 0: block tables are not looked at */
    uint64_t arena_groups; /* groups the arena holds */
};
/* The limits of a backend created from model and cfg (checked by nosa_backend_config_check). */
void nosa_backend_limits_init(struct nosa_backend_limits *l, const char *name,
                              const struct nosa_model *model,
                              const struct nosa_backend_config *cfg);
/* 0, or -EINVAL with err: slot outside [0, max_seqs). */
int nosa_backend_check_slot(const struct nosa_backend_limits *l, int slot, char *err,
                            size_t errlen);
/* With an arena, every block complete once the slot holds n_after tokens must be in the
 * block table with a group the arena has: 0, or -EINVAL with err. */
int nosa_backend_check_blocks(const struct nosa_backend_limits *l, int slot, int n_after,
                              const struct nosa_seq_blocks *blocks, char *err, size_t errlen);
/* Appending tokens[0 .. n) to a slot holding lens[slot] tokens (read once the slot is
 * known valid): the slot, n >= 1, room in max_context (else -ENOSPC), every token in the
 * vocabulary, the block table afterwards. */
int nosa_backend_check_append(const struct nosa_backend_limits *l, int slot, const int *lens,
                              const int32_t *tokens, int n, const struct nosa_seq_blocks *blocks,
                              char *err, size_t errlen);
/* A prefill call: 1 <= n_reqs <= max_seqs, every request's append (check_append) and no
 * slot twice. */
int nosa_backend_check_prefill(const struct nosa_backend_limits *l, const int *lens,
                               const struct nosa_prefill_req *reqs, int n_reqs, char *err,
                               size_t errlen);
/* Prefill of one sequence through ops->prefill. */
static inline int nosa_backend_prefill_one(const struct nosa_backend_ops *ops,
                                           struct nosa_backend *b, int slot,
                                           const int32_t *tokens, int n,
                                           const struct nosa_seq_blocks *blocks, float *logits,
                                           char *err, size_t errlen)
{
    struct nosa_prefill_req req = {slot, tokens, n, blocks, logits};
    return ops->prefill(b, &req, 1, err, errlen);
}

#endif
