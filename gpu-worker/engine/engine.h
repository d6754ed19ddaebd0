/* engine.h: continuous batching over one compute backend (backend.h), the part of a worker
 * that decides what runs in each step. docs/ENGINE.md explains the scheduling, resume and
 * sampling rules in full.
 *
 * This module owns: the sequences (id, prompt, generated tokens, sampling parameters), the
 * backend's slots, each sequence's block table (a copy of what the block source handed out),
 * the step loop (bounded prefill chunks + one batched decode), sampling and the step
 * statistics. It does not own: the model, the backend ops table, the block source (its
 * arena and allocator outlive the engine, so a sequence can be resumed by another engine).
 *
 * Threading: one thread uses an engine. The event callback runs inside step() and cancel()
 * and must not call back into the engine. */
#ifndef NOSA_ENGINE_H
#define NOSA_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "block_source.h"
#include "model.h"
#include "sampler.h"

/* ------------------------------------------------------------------ configuration */
#define NOSA_ENGINE_PREFILL_CHUNK_DEFAULT 256

struct nosa_engine_config {
    /* Passed to the backend's create; .arena is ignored (the engine sets it from the block
     * source). max_seqs = how many sequences the engine holds at once (running + waiting to
     * prefill); max_context = prompt + max_tokens limit of every sequence. */
    struct nosa_backend_config backend;
    /* Tokens prefilled per step across all sequences (prompts and resumes), so one long
     * prompt does not stall the decode of the others; 0: NOSA_ENGINE_PREFILL_CHUNK_DEFAULT. */
    int prefill_chunk;
};

/* ------------------------------------------------------------------ events */
enum nosa_finish_reason {
    NOSA_FINISH_LENGTH = 1,    /* max_tokens generated */
    NOSA_FINISH_EOS = 2,       /* the model's EOS was generated (and emitted) with stop_at_eos */
    NOSA_FINISH_CANCELLED = 3, /* nosa_engine_cancel */
    NOSA_FINISH_ERROR = 4,     /* see the event's error */
};
const char *nosa_finish_reason_name(enum nosa_finish_reason r); /* "length", "eos", ... */

enum nosa_engine_event_type {
    NOSA_ENGINE_EVENT_TOKEN = 1,    /* one generated token */
    NOSA_ENGINE_EVENT_FINISHED = 2, /* the sequence left the engine; its blocks are freed */
    NOSA_ENGINE_EVENT_PREFILLED = 3, /* a prefill chunk of a sequence with no token yet ran */
};

struct nosa_engine_event {
    enum nosa_engine_event_type type;
    uint64_t seq_id;
    /* TOKEN: the token and its 0-based index among the sequence's generated tokens (a
     * resumed sequence continues at the index after the tokens it was given). */
    uint32_t index;
    int32_t token;
    /* PREFILLED: prompt tokens whose KV is computed (complete blocks are in the source). */
    uint32_t prompt_done;
    /* FINISHED: why, and the sequence's counts. error is "" unless reason is ERROR; the
     * pointer is valid during the callback only. */
    enum nosa_finish_reason reason;
    const char *error;
    uint32_t prompt_tokens;
    uint32_t generated_tokens;  /* including those a resume was given */
    const int32_t *generated;   /* those generated_tokens ids (valid during the callback) */
    uint32_t recomputed_tokens; /* tokens prefilled again after a resume (< block_size + 1) */
};

typedef void (*nosa_engine_event_fn)(void *user, const struct nosa_engine_event *ev);

/* ------------------------------------------------------------------ sequences */
struct nosa_engine_seq_params {
    uint64_t seq_id;        /* unique among the engine's sequences; the block source's id */
    const int32_t *prompt;  /* n_prompt >= 1 ids in [0, vocab) */
    uint32_t n_prompt;
    struct nosa_sampling sampling;
    /* Resume (a sequence moved from another worker), all zero/NULL for a new sequence:
     * generated: the tokens it already produced (reported to the client); they are not
     * emitted again, and generation continues at index n_generated.
     * groups: its whole block table as the block source holds it (every group the source
     * gave the sequence, in logical order); the engine keeps it and allocates only past it.
     * n_complete_blocks: how many leading blocks of that table are known written to the arena
     * (nosa_engine_committed_blocks gives it from the tokens reported). The engine restores
     * those without compute (backend seq_resume) and prefills only the tokens after them;
     * it uses at most (n_prompt + n_generated - 1) / block_size of them, so that at least
     * one token is prefilled to produce the next token's logits.
     * n_appended_before: tokens whose KV the previous worker had computed; prefilling any of
     * them again counts as recomputed (reported in FINISHED). */
    const int32_t *generated;
    uint32_t n_generated;
    const uint32_t *groups;
    uint32_t n_groups;
    uint32_t n_complete_blocks;
    uint32_t n_appended_before;
};

/* Blocks that are surely in the arena for a sequence whose worker reported n_generated
 * tokens of a n_prompt-token prompt: generating token g needed the n_prompt + g tokens
 * before it appended, and a block is written when its last token is appended (backend.h),
 * so floor((n_prompt + n_generated - 1) / block_size); 0 when nothing was generated. */
uint32_t nosa_engine_committed_blocks(uint32_t n_prompt, uint32_t n_generated,
                                      uint32_t block_size);

/* ------------------------------------------------------------------ statistics */
struct nosa_engine_step_stats {
    uint32_t running;        /* sequences in the engine after the step */
    uint32_t decoded;        /* sequences in the step's decode call (its batch size) */
    uint32_t prefill_tokens; /* tokens prefilled (prompts, resumed open blocks) */
    uint32_t generated;      /* tokens emitted */
    uint32_t finished;       /* sequences that left the engine during the step */
    uint32_t groups_allocated; /* arena groups the block source gave this step */
    double seconds;          /* wall time of the whole step */
    struct nosa_step_stats decode;  /* the backend's statistics of the decode call */
    struct nosa_step_stats prefill; /* the backend's statistics summed over prefill calls */
};

struct nosa_engine_totals {
    uint64_t steps;
    uint64_t generated;
    uint64_t prefill_tokens;
    uint64_t recomputed_tokens;
    uint64_t blocks_selected, blocks_transferred, block_hits; /* decode and prefill */
    uint64_t blocks_prefetched;                              /* read ahead (not selected) */
    uint64_t bytes_h2d, bytes_d2h;
    double seconds;          /* in step() */
    double decode_seconds;   /* in the backend's decode calls */
    uint64_t decode_steps;   /* steps with a decode call */
    uint64_t free_errors;    /* block source frees that failed (logged) */
};

struct nosa_engine_capacity {
    int max_seqs;
    int free_slots;          /* sequences nosa_engine_add accepts now */
    int running;             /* sequences in the engine (decoding or waiting to prefill) */
    int max_context;
    uint64_t groups_held;    /* arena groups in the tables of the engine's sequences */
};

/* Per-sequence view; pointers are valid until the next engine call. */
struct nosa_engine_seq_info {
    uint32_t n_prompt;
    uint32_t n_generated;
    const int32_t *generated;  /* every generated token, resumed ones included */
    uint32_t n_appended;       /* tokens the backend holds (prompt + generated - pending) */
    uint32_t n_groups;         /* block table length */
    uint32_t recomputed_tokens;
    int prefilling;            /* 1 while its prompt (or resumed open block) is not done */
};

/* ------------------------------------------------------------------ the engine */
struct nosa_engine;

/* Creates the backend (ops->create) with cfg->backend and the source's arena. source may be
 * NULL when there is no arena (resident KV only; resume then refused); with
 * cfg->backend.offload it is required. on_event may be NULL (events dropped). Returns 0 or
 * a negated errno with err saying why. */
int nosa_engine_create(const struct nosa_model *model, const struct nosa_backend_ops *ops,
                       const struct nosa_engine_config *cfg,
                       const struct nosa_block_source *source, nosa_engine_event_fn on_event,
                       void *user, struct nosa_engine **out, char *err, size_t errlen);
/* Destroys the backend. The blocks of sequences still in the engine are NOT freed: they stay
 * with the block source's owner, as a crashed worker's do (resume them elsewhere, or free
 * them through the source). Accepts NULL. */
void nosa_engine_destroy(struct nosa_engine *e);

/* Adds a sequence; it is prefilled from the next step on. -EINVAL (bad parameters, tokens
 * outside the vocabulary, a resume that is already finished or whose table is too short),
 * -E2BIG (prompt + max_tokens > max_context), -EEXIST (id in use), -EBUSY (no free slot),
 * -ENOTSUP (resume without a block source); err says which. Nothing is kept on failure. */
int nosa_engine_add(struct nosa_engine *e, const struct nosa_engine_seq_params *p, char *err,
                    size_t errlen);

/* Removes a sequence now and reports FINISHED with reason CANCELLED (through the callback,
 * before returning). Its blocks are freed through the source, unless keep_blocks: then they
 * stay with the source for another worker that took the sequence over. -ENOENT for an
 * unknown id. */
int nosa_engine_cancel(struct nosa_engine *e, uint64_t seq_id, int keep_blocks, char *err,
                       size_t errlen);

/* One step: allocates the groups every scheduled sequence needs (one batched source call),
 * prefills waiting sequences up to the prefill chunk (FIFO by add order), then runs one
 * batched decode of every sequence that was decoding when the step began. Emits TOKEN and
 * FINISHED events. A sequence the source cannot give blocks to finishes with ERROR. Returns
 * the number of sequences still in the engine (0: idle), or a negated errno when the backend
 * failed: the engine is then unusable (later steps return -EIO), its sequences keep their
 * blocks, and the caller should destroy it (the worker exits; its sequences move). */
int nosa_engine_step(struct nosa_engine *e, char *err, size_t errlen);

const struct nosa_engine_step_stats *nosa_engine_last_step(const struct nosa_engine *e);
const struct nosa_engine_totals *nosa_engine_totals(const struct nosa_engine *e);
void nosa_engine_capacity(const struct nosa_engine *e, struct nosa_engine_capacity *out);
/* -ENOENT for an unknown id. */
int nosa_engine_seq_info(const struct nosa_engine *e, uint64_t seq_id,
                         struct nosa_engine_seq_info *out);
/* The backend, for inspection (last_selection, stats) by tests and benchmarks. */
struct nosa_backend *nosa_engine_backend(const struct nosa_engine *e);
const struct nosa_backend_ops *nosa_engine_backend_ops(const struct nosa_engine *e);

#endif
