/* engine.c: see engine.h and docs/ENGINE.md. */
#include "engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

enum seq_state {
    SEQ_FREE = 0,
    SEQ_NEW,     /* added; the backend slot is not set up yet (reset or resume) */
    SEQ_PREFILL, /* set up; known tokens (prompt, resumed tokens) remain to be appended */
    SEQ_DECODE,  /* the last generated token is pending: the next decode appends it */
};

struct engine_seq {
    enum seq_state state;
    uint64_t id;
    uint64_t added; /* add order: prefill is first come, first served */
    struct nosa_sampling sampling;
    int32_t *tokens; /* [max_context]: prompt, then generated */
    uint32_t n_prompt, n_generated;
    uint32_t n_appended;    /* tokens the backend holds (NEW: will hold once set up) */
    uint32_t resume_blocks; /* NEW: complete blocks to restore from the arena */
    uint32_t *groups;       /* [max_blocks]: the block table */
    uint32_t n_groups;
    uint32_t recomputed;
    uint32_t recompute_until;  /* tokens below this were appended by a previous worker */
    uint32_t step_tokens; /* tokens this step appends */
};

struct nosa_engine {
    const struct nosa_model *model;
    const struct nosa_backend_ops *ops;
    struct nosa_backend *backend;
    struct nosa_block_source source;
    int has_source;
    nosa_engine_event_fn on_event;
    void *user;
    int max_seqs, max_context, vocab, prefill_chunk;
    int lanes; /* prompts one prefill call advances together (ops->prefill_lanes) */
    uint32_t block_size, max_blocks;
    uint64_t next_added;
    int failed;
    char fail_msg[256];

    struct engine_seq *seqs; /* [max_seqs]; seqs[i] uses backend slot i */
    int32_t *token_store;    /* [max_seqs * max_context] */
    uint32_t *group_store;   /* [max_seqs * max_blocks] */

    /* Per-step scratch, allocated once. */
    int *prefill_order;                /* [max_seqs] */
    int *dec_seq;                      /* [max_seqs] */
    int *dec_slots;                    /* [max_seqs] */
    int32_t *dec_tokens;               /* [max_seqs] */
    int32_t *dec_argmax;               /* [max_seqs] each row's greedy token (backend.h) */
    struct nosa_row_sampling *dec_sampling; /* [max_seqs] how each row is drawn */
    int32_t *dec_sampled;              /* [max_seqs] each sampled row's token (backend.h) */
    struct nosa_seq_blocks *dec_blocks; /* [max_seqs] */
    struct nosa_block_alloc *alloc_reqs; /* [max_seqs] */
    int *alloc_seq;                    /* [max_seqs] */
    uint64_t *free_ids;                /* [max_seqs] */
    int n_free_ids;
    struct nosa_prefill_req *pre_reqs; /* [lanes] one prefill call's requests */
    struct nosa_seq_blocks *pre_blocks; /* [lanes] */
    int *pre_seq;                       /* [lanes] their sequences */
    /* [lanes * vocab]: the last prompt token of each request (decode draws on the backend) */
    float *logits;
    struct nosa_sampler sampler;

    struct nosa_engine_step_stats last;
    struct nosa_engine_totals totals;
};

const char *nosa_finish_reason_name(enum nosa_finish_reason r)
{
    switch (r) {
    case NOSA_FINISH_LENGTH: return "length";
    case NOSA_FINISH_EOS: return "eos";
    case NOSA_FINISH_CANCELLED: return "cancelled";
    case NOSA_FINISH_ERROR: return "error";
    }
    return "unknown";
}

uint32_t nosa_engine_committed_blocks(uint32_t n_prompt, uint32_t n_generated,
                                      uint32_t block_size)
{
    if (n_generated == 0 || block_size == 0) return 0;
    return (uint32_t)(((uint64_t)n_prompt + n_generated - 1u) / block_size);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------ create / destroy */

static int engine_alloc_buffers(struct nosa_engine *e)
{
    size_t n = (size_t)e->max_seqs;
    e->seqs = calloc(n, sizeof(*e->seqs));
    e->token_store = calloc(n * (size_t)e->max_context, sizeof(int32_t));
    e->group_store = calloc(n * e->max_blocks, sizeof(uint32_t));
    e->prefill_order = calloc(n, sizeof(int));
    e->dec_seq = calloc(n, sizeof(int));
    e->dec_slots = calloc(n, sizeof(int));
    e->dec_tokens = calloc(n, sizeof(int32_t));
    e->dec_argmax = calloc(n, sizeof(int32_t));
    e->dec_sampling = calloc(n, sizeof(*e->dec_sampling));
    e->dec_sampled = calloc(n, sizeof(int32_t));
    e->dec_blocks = calloc(n, sizeof(*e->dec_blocks));
    e->alloc_reqs = calloc(n, sizeof(*e->alloc_reqs));
    e->alloc_seq = calloc(n, sizeof(int));
    e->free_ids = calloc(n, sizeof(uint64_t));
    e->pre_reqs = calloc((size_t)e->lanes, sizeof(*e->pre_reqs));
    e->pre_blocks = calloc((size_t)e->lanes, sizeof(*e->pre_blocks));
    e->pre_seq = calloc((size_t)e->lanes, sizeof(int));
    e->logits = calloc((size_t)e->lanes * (size_t)e->vocab, sizeof(float));
    if (!e->pre_reqs || !e->pre_blocks || !e->pre_seq || !e->seqs || !e->token_store ||
        !e->group_store || !e->prefill_order || !e->dec_seq || !e->dec_slots || !e->dec_tokens ||
        !e->dec_argmax || !e->dec_sampling || !e->dec_sampled || !e->dec_blocks || !e->alloc_reqs ||
        !e->alloc_seq || !e->free_ids || !e->logits)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        e->seqs[i].tokens = e->token_store + i * (size_t)e->max_context;
        e->seqs[i].groups = e->group_store + i * e->max_blocks;
    }
    return 0;
}

static int check_create_args(const struct nosa_model *model, const struct nosa_backend_ops *ops,
                             const struct nosa_engine_config *cfg,
                             const struct nosa_block_source *source, char *err, size_t errlen)
{
    if (!model || !ops || !cfg) {
        nosa_set_error(err, errlen, "engine: model, backend ops and config are required");
        return -EINVAL;
    }
    const struct nosa_backend_config *bc = &cfg->backend;
    if (bc->max_seqs < 1 || bc->max_context < 1 ||
        bc->max_context > model->cfg.max_position || cfg->prefill_chunk < 0) {
        nosa_set_error(err, errlen,
                       "engine: max_seqs = %d must be >= 1, max_context = %d in [1, %d], "
                       "prefill_chunk = %d >= 0",
                       bc->max_seqs, bc->max_context, model->cfg.max_position,
                       cfg->prefill_chunk);
        return -EINVAL;
    }
    if (source && (!source->alloc || !source->free_seqs || !source->arena)) {
        nosa_set_error(err, errlen, "engine: the block source lacks alloc, free_seqs or arena");
        return -EINVAL;
    }
    if (bc->offload && !source) {
        nosa_set_error(err, errlen, "engine: offload needs a block source (the arena)");
        return -EINVAL;
    }
    return 0;
}

int nosa_engine_create(const struct nosa_model *model, const struct nosa_backend_ops *ops,
                       const struct nosa_engine_config *cfg,
                       const struct nosa_block_source *source, nosa_engine_event_fn on_event,
                       void *user, struct nosa_engine **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = check_create_args(model, ops, cfg, source, err, errlen);
    if (rc) return rc;
    struct nosa_engine *e = calloc(1, sizeof(*e));
    if (!e) {
        nosa_set_error(err, errlen, "engine: out of memory");
        return -ENOMEM;
    }
    e->model = model;
    e->ops = ops;
    e->on_event = on_event;
    e->user = user;
    if (source) {
        e->source = *source;
        e->has_source = 1;
    }
    e->max_seqs = cfg->backend.max_seqs;
    e->max_context = cfg->backend.max_context;
    e->vocab = model->cfg.vocab_size;
    e->prefill_chunk = cfg->prefill_chunk ? cfg->prefill_chunk : NOSA_ENGINE_PREFILL_CHUNK_DEFAULT;
    e->lanes = ops->prefill_lanes < 1 ? 1
               : ops->prefill_lanes < e->max_seqs ? ops->prefill_lanes : e->max_seqs;
    e->block_size = (uint32_t)model->cfg.sparse.block_size;
    e->max_blocks = ((uint32_t)e->max_context + e->block_size - 1u) / e->block_size;
    if ((rc = engine_alloc_buffers(e)) != 0) {
        nosa_set_error(err, errlen, "engine: out of memory for %d sequences of %d tokens",
                       e->max_seqs, e->max_context);
        goto fail;
    }
    if ((rc = nosa_sampler_init(&e->sampler, e->vocab, err, errlen)) != 0) goto fail;
    struct nosa_backend_config bc = cfg->backend;
    bc.arena = source ? source->arena : NULL;
    if ((rc = ops->create(model, &bc, &e->backend, err, errlen)) != 0) goto fail;
    LOG_DEBUG("engine", "created backend=%s mode=%s offload=%d max_seqs=%d max_context=%d "
              "prefill_chunk=%d", ops->name, nosa_attn_mode_name(bc.mode), bc.offload,
              e->max_seqs, e->max_context, e->prefill_chunk);
    *out = e;
    return 0;
fail:
    nosa_engine_destroy(e);
    return rc;
}

void nosa_engine_destroy(struct nosa_engine *e)
{
    if (!e) return;
    if (e->backend) e->ops->destroy(e->backend);
    nosa_sampler_free(&e->sampler);
    free(e->seqs);
    free(e->token_store);
    free(e->group_store);
    free(e->prefill_order);
    free(e->dec_seq);
    free(e->dec_slots);
    free(e->dec_tokens);
    free(e->dec_argmax);
    free(e->dec_sampling);
    free(e->dec_sampled);
    free(e->dec_blocks);
    free(e->alloc_reqs);
    free(e->alloc_seq);
    free(e->free_ids);
    free(e->logits);
    free(e->pre_reqs);
    free(e->pre_blocks);
    free(e->pre_seq);
    free(e);
}

/* ------------------------------------------------------------------ sequences */

static int find_seq(const struct nosa_engine *e, uint64_t seq_id)
{
    for (int i = 0; i < e->max_seqs; i++)
        if (e->seqs[i].state != SEQ_FREE && e->seqs[i].id == seq_id) return i;
    return -1;
}

static int check_ids(const int32_t *ids, uint32_t n, int vocab, const char *what,
                     uint64_t seq_id, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) {
            nosa_set_error(err, errlen, "engine: sequence %llu: %s[%u] = %d outside [0, %d)",
                           (unsigned long long)seq_id, what, i, (int)ids[i], vocab);
            return -EINVAL;
        }
    return 0;
}

static int check_resume(const struct nosa_engine *e, const struct nosa_engine_seq_params *p,
                        char *err, size_t errlen)
{
    unsigned long long id = (unsigned long long)p->seq_id;
    if ((p->n_generated && !p->generated) || (p->n_groups && !p->groups)) {
        nosa_set_error(err, errlen, "engine: sequence %llu: resume counts without arrays", id);
        return -EINVAL;
    }
    int rc = check_ids(p->generated, p->n_generated, e->vocab, "generated", p->seq_id, err,
                       errlen);
    if (rc) return rc;
    if (p->n_generated >= p->sampling.max_tokens) {
        nosa_set_error(err, errlen, "engine: sequence %llu: resumed with %u generated tokens, "
                       "max_tokens %u: nothing left to do", id, p->n_generated,
                       p->sampling.max_tokens);
        return -EINVAL;
    }
    int eos = e->model->cfg.eos_token_id;
    if (p->n_generated && p->sampling.stop_at_eos && p->generated[p->n_generated - 1] == eos) {
        nosa_set_error(err, errlen, "engine: sequence %llu: resumed after its EOS", id);
        return -EINVAL;
    }
    if ((p->n_groups || p->n_complete_blocks) && !e->has_source) {
        nosa_set_error(err, errlen, "engine: sequence %llu: a block table to resume needs a "
                       "block source (arena)", id);
        return -ENOTSUP;
    }
    if (p->n_groups > e->max_blocks || p->n_complete_blocks > p->n_groups) {
        nosa_set_error(err, errlen, "engine: sequence %llu: %u complete blocks of a %u-group "
                       "table (at most %u groups here)", id, p->n_complete_blocks, p->n_groups,
                       e->max_blocks);
        return -EINVAL;
    }
    return 0;
}

static int check_seq_params(const struct nosa_engine *e, const struct nosa_engine_seq_params *p,
                            char *err, size_t errlen)
{
    unsigned long long id = (unsigned long long)p->seq_id;
    if (!p->prompt || p->n_prompt < 1) {
        nosa_set_error(err, errlen, "engine: sequence %llu: empty prompt", id);
        return -EINVAL;
    }
    char why[160];
    int rc = nosa_sampling_validate(&p->sampling, why, sizeof(why));
    if (rc) {
        nosa_set_error(err, errlen, "engine: sequence %llu: %s", id, why);
        return rc;
    }
    if ((rc = check_ids(p->prompt, p->n_prompt, e->vocab, "prompt", p->seq_id, err, errlen)))
        return rc;
    if ((uint64_t)p->n_prompt + p->sampling.max_tokens > (uint64_t)e->max_context) {
        nosa_set_error(err, errlen, "engine: sequence %llu: prompt %u + max_tokens %u exceed "
                       "max_context %d", id, p->n_prompt, p->sampling.max_tokens,
                       e->max_context);
        return -E2BIG;
    }
    if ((rc = check_resume(e, p, err, errlen))) return rc;
    if (find_seq(e, p->seq_id) >= 0) {
        nosa_set_error(err, errlen, "engine: sequence %llu is already running", id);
        return -EEXIST;
    }
    return 0;
}

int nosa_engine_add(struct nosa_engine *e, const struct nosa_engine_seq_params *p, char *err,
                    size_t errlen)
{
    int rc = check_seq_params(e, p, err, errlen);
    if (rc) return rc;
    int slot = -1;
    for (int i = 0; i < e->max_seqs && slot < 0; i++)
        if (e->seqs[i].state == SEQ_FREE) slot = i;
    if (slot < 0) {
        nosa_set_error(err, errlen, "engine: sequence %llu: all %d slots are in use",
                       (unsigned long long)p->seq_id, e->max_seqs);
        return -EBUSY;
    }
    struct engine_seq *s = &e->seqs[slot];
    s->id = p->seq_id;
    s->added = e->next_added++;
    s->sampling = p->sampling;
    s->n_prompt = p->n_prompt;
    s->n_generated = p->n_generated;
    memcpy(s->tokens, p->prompt, p->n_prompt * sizeof(int32_t));
    if (p->n_generated)
        memcpy(s->tokens + p->n_prompt, p->generated, p->n_generated * sizeof(int32_t));
    s->n_groups = p->n_groups;
    if (p->n_groups) memcpy(s->groups, p->groups, p->n_groups * sizeof(uint32_t));
    /* Keep at least one token to prefill: its logits give the next token. */
    uint32_t known = p->n_prompt + p->n_generated;
    uint32_t usable = (known - 1u) / e->block_size;
    s->resume_blocks = p->n_complete_blocks < usable ? p->n_complete_blocks : usable;
    s->n_appended = s->resume_blocks * e->block_size;
    s->recompute_until = p->n_appended_before;
    s->recomputed = 0;
    s->step_tokens = 0;
    s->state = SEQ_NEW;
    LOG_DEBUG("engine", "added seq=%llu slot=%d prompt=%u generated=%u groups=%u restored=%u",
              (unsigned long long)s->id, slot, s->n_prompt, s->n_generated, s->n_groups,
              s->resume_blocks);
    return 0;
}

/* ------------------------------------------------------------------ events and finishing */

static void emit(struct nosa_engine *e, const struct nosa_engine_event *ev)
{
    if (e->on_event) e->on_event(e->user, ev);
}

/* Reports s finished and frees its slot; its groups are queued to be freed through the
 * source unless keep_groups (another worker took the sequence over). */
static void seq_end(struct nosa_engine *e, struct engine_seq *s, enum nosa_finish_reason why,
                    const char *error, int keep_groups)
{
    struct nosa_engine_event ev = {
        .type = NOSA_ENGINE_EVENT_FINISHED,
        .seq_id = s->id,
        .reason = why,
        .error = error ? error : "",
        .prompt_tokens = s->n_prompt,
        .generated_tokens = s->n_generated,
        .generated = s->tokens + s->n_prompt,
        .recomputed_tokens = s->recomputed,
    };
    if (why == NOSA_FINISH_ERROR)
        LOG_WARN("engine", "sequence failed seq=%llu error=\"%s\"", (unsigned long long)s->id,
                 ev.error);
    emit(e, &ev);
    if (e->has_source && s->n_groups > 0 && !keep_groups) e->free_ids[e->n_free_ids++] = s->id;
    s->state = SEQ_FREE;
    e->last.finished++;
}

static void seq_finish(struct nosa_engine *e, struct engine_seq *s, enum nosa_finish_reason why,
                       const char *error)
{
    seq_end(e, s, why, error, 0);
}

/* Frees the groups of the sequences that finished, in one source call. A failure leaves the
 * groups with the source (its owner frees them: kv-host frees what a worker held); it is
 * logged and counted, and does not stop the engine. */
static void flush_frees(struct nosa_engine *e)
{
    if (e->n_free_ids == 0) return;
    char why[256];
    int rc = e->source.free_seqs(e->source.ctx, e->free_ids, e->n_free_ids, why, sizeof(why));
    if (rc) {
        e->totals.free_errors++;
        LOG_ERROR("engine", "freeing the blocks of %d finished sequences failed rc=%d error=\"%s\"",
                  e->n_free_ids, rc, why);
    }
    e->n_free_ids = 0;
}

/* Emits tok as s's next token, and finishes s when it is done. */
static void seq_emit_token(struct nosa_engine *e, struct engine_seq *s, int32_t tok)
{
    s->tokens[s->n_prompt + s->n_generated] = tok;
    struct nosa_engine_event ev = {
        .type = NOSA_ENGINE_EVENT_TOKEN,
        .seq_id = s->id,
        .index = s->n_generated,
        .token = tok,
    };
    s->n_generated++;
    e->last.generated++;
    emit(e, &ev);
    if (s->sampling.stop_at_eos && tok == e->model->cfg.eos_token_id)
        seq_finish(e, s, NOSA_FINISH_EOS, NULL);
    else if (s->n_generated >= s->sampling.max_tokens)
        seq_finish(e, s, NOSA_FINISH_LENGTH, NULL);
    else
        s->state = SEQ_DECODE;
}

/* The next token of s from its logits (the sampler), emitted. */
static void seq_take_token(struct nosa_engine *e, struct engine_seq *s, const float *logits)
{
    char why[160];
    int32_t tok = nosa_sampler_pick(&e->sampler, logits, &s->sampling, s->n_generated, why,
                                    sizeof(why));
    if (tok < 0) {
        seq_finish(e, s, NOSA_FINISH_ERROR, why);
        return;
    }
    seq_emit_token(e, s, tok);
}

int nosa_engine_cancel(struct nosa_engine *e, uint64_t seq_id, int keep_blocks, char *err,
                       size_t errlen)
{
    int i = find_seq(e, seq_id);
    if (i < 0) {
        nosa_set_error(err, errlen, "engine: no sequence %llu", (unsigned long long)seq_id);
        return -ENOENT;
    }
    seq_end(e, &e->seqs[i], NOSA_FINISH_CANCELLED, NULL, keep_blocks);
    flush_frees(e);
    return 0;
}

/* ------------------------------------------------------------------ the step */

/* Fills dec_seq with the decoding sequences (slot order) and gives the prefill budget to the
 * waiting ones, oldest first. Returns the decode count. */
static int schedule(struct nosa_engine *e)
{
    int n_dec = 0, n_pre = 0;
    for (int i = 0; i < e->max_seqs; i++) {
        struct engine_seq *s = &e->seqs[i];
        s->step_tokens = 0;
        if (s->state == SEQ_DECODE) {
            s->step_tokens = 1;
            e->dec_seq[n_dec++] = i;
        } else if (s->state == SEQ_NEW || s->state == SEQ_PREFILL) {
            int j = n_pre++; /* insertion by add order */
            while (j > 0 && e->seqs[e->prefill_order[j - 1]].added > s->added) {
                e->prefill_order[j] = e->prefill_order[j - 1];
                j--;
            }
            e->prefill_order[j] = i;
        }
    }
    /* Each lane's worth of the budget costs about one lane's time, so a step's prefill takes
     * about as long with many prompts waiting as with one; no prompt takes more than one
     * chunk, so lanes > 1 spread it over that many. */
    uint32_t budget = (uint32_t)e->prefill_chunk * (uint32_t)e->lanes;
    for (int k = 0; k < n_pre && budget > 0; k++) {
        struct engine_seq *s = &e->seqs[e->prefill_order[k]];
        uint32_t left = s->n_prompt + s->n_generated - s->n_appended;
        if (left > (uint32_t)e->prefill_chunk) left = (uint32_t)e->prefill_chunk;
        s->step_tokens = left < budget ? left : budget;
        budget -= s->step_tokens;
    }
    for (int k = n_pre; k < e->max_seqs; k++) e->prefill_order[k] = -1;
    return n_dec;
}

/* Builds one request per scheduled sequence whose tokens of this step complete a block not in
 * its table; only_decode skips the prefilling ones. Returns the request count. */
static int collect_allocs(struct nosa_engine *e, int only_decode)
{
    int n = 0;
    for (int i = 0; i < e->max_seqs; i++) {
        struct engine_seq *s = &e->seqs[i];
        if (s->step_tokens == 0 || (only_decode && s->state != SEQ_DECODE)) continue;
        uint32_t need = (s->n_appended + s->step_tokens) / e->block_size;
        if (need <= s->n_groups) continue;
        e->alloc_reqs[n] = (struct nosa_block_alloc){
            .seq_id = s->id,
            .first_index = s->n_groups,
            .n_groups = need - s->n_groups,
            .groups = s->groups + s->n_groups,
        };
        e->alloc_seq[n++] = i;
    }
    return n;
}

/* Gets the groups the step needs in one source call. Out of space: the prefills wait for a
 * later step, and if the decoding sequences alone still do not fit, those that needed a group
 * finish with ERROR. Any other source failure is returned with nothing changed. */
static int allocate(struct nosa_engine *e, char *err, size_t errlen)
{
    if (!e->has_source) return 0;
    char why[256];
    for (int only_decode = 0; only_decode < 2; only_decode++) {
        int n = collect_allocs(e, only_decode);
        if (n == 0) return 0;
        int rc = e->source.alloc(e->source.ctx, e->alloc_reqs, n, why, sizeof(why));
        if (rc == 0) {
            for (int k = 0; k < n; k++) {
                struct engine_seq *s = &e->seqs[e->alloc_seq[k]];
                s->n_groups += e->alloc_reqs[k].n_groups;
                e->last.groups_allocated += e->alloc_reqs[k].n_groups;
            }
            return 0;
        }
        if (rc != -ENOSPC) {
            nosa_set_error(err, errlen, "engine: block source: %s", why);
            return rc;
        }
        LOG_WARN("engine", "arena full requests=%d decode_only=%d error=\"%s\"", n, only_decode,
                 why);
        for (int i = 0; i < e->max_seqs; i++)
            if (e->seqs[i].state == SEQ_NEW || e->seqs[i].state == SEQ_PREFILL)
                e->seqs[i].step_tokens = 0;
    }
    char msg[300];
    snprintf(msg, sizeof(msg), "no arena space for the next block: %s", why);
    int n = collect_allocs(e, 1);
    for (int k = 0; k < n; k++) seq_finish(e, &e->seqs[e->alloc_seq[k]], NOSA_FINISH_ERROR, msg);
    return 0;
}

static void add_backend_stats(struct nosa_step_stats *dst, const struct nosa_step_stats *src)
{
    dst->n_layers = src->n_layers;
    dst->tokens += src->tokens;
    dst->blocks_selected += src->blocks_selected;
    dst->blocks_transferred += src->blocks_transferred;
    dst->block_hits += src->block_hits;
    dst->blocks_prefetched += src->blocks_prefetched;
    dst->bytes_h2d += src->bytes_h2d;
    dst->bytes_d2h += src->bytes_d2h;
    dst->seconds += src->seconds;
    dst->gemm_s += src->gemm_s;
    dst->attn_s += src->attn_s;
    dst->select_s += src->select_s;
    dst->copy_s += src->copy_s;
    for (uint32_t l = 0; l < src->n_layers && l < NOSA_MAX_LAYERS; l++) {
        dst->layer[l].selected += src->layer[l].selected;
        dst->layer[l].transferred += src->layer[l].transferred;
        dst->layer[l].hits += src->layer[l].hits;
        dst->layer[l].prefetched += src->layer[l].prefetched;
        dst->layer[l].bytes_h2d += src->layer[l].bytes_h2d;
        dst->layer[l].bytes_d2h += src->layer[l].bytes_d2h;
    }
}

static void collect_backend_stats(struct nosa_engine *e, struct nosa_step_stats *into)
{
    struct nosa_step_stats s;
    memset(&s, 0, sizeof(s));
    e->ops->stats(e->backend, &s);
    add_backend_stats(into, &s);
}

/* Sets up the slot of a new sequence: empty, or restored from its complete arena blocks. */
static int seq_setup(struct nosa_engine *e, int slot, char *err, size_t errlen)
{
    struct engine_seq *s = &e->seqs[slot];
    if (s->resume_blocks == 0) return e->ops->seq_reset(e->backend, slot, err, errlen);
    struct nosa_seq_blocks blocks = {.groups = s->groups, .n_groups = s->n_groups};
    return e->ops->seq_resume(e->backend, slot, &blocks, s->resume_blocks, err, errlen);
}

/* After a prefill call: the sequence's tokens are appended; the last prompt token's logits
 * (when it was the last) give its first generated token. */
static void prefill_done(struct nosa_engine *e, struct engine_seq *s, const float *logits)
{
    if (s->n_appended < s->recompute_until) {
        uint32_t again = s->recompute_until - s->n_appended;
        if (again > s->step_tokens) again = s->step_tokens;
        s->recomputed += again;
        e->totals.recomputed_tokens += again;
    }
    s->n_appended += s->step_tokens;
    e->last.prefill_tokens += s->step_tokens;
    if (logits) {
        seq_take_token(e, s, logits);
    } else if (s->n_generated == 0) {
        struct nosa_engine_event ev = {.type = NOSA_ENGINE_EVENT_PREFILLED,
                                       .seq_id = s->id,
                                       .prompt_done = s->n_appended};
        emit(e, &ev);
    }
}

/* The scheduled prefills, oldest first, `lanes` sequences per backend call. */
static int run_prefills(struct nosa_engine *e, char *err, size_t errlen)
{
    size_t vocab = (size_t)e->vocab;
    for (int k = 0; k < e->max_seqs && e->prefill_order[k] >= 0;) {
        int n = 0;
        for (; k < e->max_seqs && e->prefill_order[k] >= 0 && n < e->lanes; k++) {
            int slot = e->prefill_order[k];
            struct engine_seq *s = &e->seqs[slot];
            if (s->step_tokens == 0 || s->state == SEQ_FREE) continue;
            if (s->state == SEQ_NEW) {
                int rc = seq_setup(e, slot, err, errlen);
                if (rc) return rc;
                s->state = SEQ_PREFILL;
            }
            int last = s->n_appended + s->step_tokens == s->n_prompt + s->n_generated;
            e->pre_blocks[n] = (struct nosa_seq_blocks){.groups = s->groups,
                                                        .n_groups = s->n_groups};
            e->pre_reqs[n] = (struct nosa_prefill_req){
                .slot = slot,
                .tokens = s->tokens + s->n_appended,
                .n = (int)s->step_tokens,
                .blocks = &e->pre_blocks[n],
                .logits = last ? e->logits + (size_t)n * vocab : NULL,
            };
            e->pre_seq[n++] = slot;
        }
        if (n == 0) continue;
        int rc = e->ops->prefill(e->backend, e->pre_reqs, n, err, errlen);
        if (rc) return rc;
        collect_backend_stats(e, &e->last.prefill);
        for (int i = 0; i < n; i++)
            prefill_done(e, &e->seqs[e->pre_seq[i]], e->pre_reqs[i].logits);
    }
    return 0;
}

static int run_decode(struct nosa_engine *e, int n_listed, char *err, size_t errlen)
{
    int n = 0;
    for (int k = 0; k < n_listed; k++) {
        struct engine_seq *s = &e->seqs[e->dec_seq[k]];
        if (s->state != SEQ_DECODE) continue; /* finished by allocate */
        e->dec_seq[n] = e->dec_seq[k];
        e->dec_slots[n] = e->dec_seq[k];
        e->dec_tokens[n] = s->tokens[s->n_appended]; /* the pending generated token */
        e->dec_blocks[n] = (struct nosa_seq_blocks){.groups = s->groups, .n_groups = s->n_groups};
        /* Greedy rows take the backend's argmax, sampled rows its draw by the sampling rule:
         * no logits leave the device. */
        e->dec_sampling[n] = (struct nosa_row_sampling){s->sampling.temperature, s->sampling.top_p,
                                                        s->sampling.seed, s->n_generated};
        n++;
    }
    if (n == 0) return 0;
    struct nosa_decode_out out = {.argmax = e->dec_argmax, .sampling = e->dec_sampling,
                                  .sampled = e->dec_sampled};
    int rc = e->ops->decode(e->backend, n, e->dec_slots, e->dec_tokens, e->dec_blocks, &out, err,
                            errlen);
    if (rc) return rc;
    collect_backend_stats(e, &e->last.decode);
    e->last.decoded = (uint32_t)n;
    for (int k = 0; k < n; k++) {
        struct engine_seq *s = &e->seqs[e->dec_seq[k]];
        s->n_appended++;
        int sampled = e->dec_sampling[k].temperature > 0.0f;
        int32_t tok = sampled ? e->dec_sampled[k] : e->dec_argmax[k];
        if (tok < 0)
            seq_finish(e, s, NOSA_FINISH_ERROR,
                       sampled ? "sampler: the step's logits hold a NaN or none is finite"
                               : "greedy: the step's logits hold a NaN or no finite maximum");
        else
            seq_emit_token(e, s, tok);
    }
    return 0;
}

static void update_totals(struct nosa_engine *e)
{
    struct nosa_engine_totals *t = &e->totals;
    const struct nosa_engine_step_stats *l = &e->last;
    t->steps++;
    t->generated += l->generated;
    t->prefill_tokens += l->prefill_tokens;
    t->blocks_selected += l->decode.blocks_selected + l->prefill.blocks_selected;
    t->blocks_transferred += l->decode.blocks_transferred + l->prefill.blocks_transferred;
    t->block_hits += l->decode.block_hits + l->prefill.block_hits;
    t->blocks_prefetched += l->decode.blocks_prefetched + l->prefill.blocks_prefetched;
    t->bytes_h2d += l->decode.bytes_h2d + l->prefill.bytes_h2d;
    t->bytes_d2h += l->decode.bytes_d2h + l->prefill.bytes_d2h;
    t->seconds += l->seconds;
    t->decode_seconds += l->decode.seconds;
    t->decode_steps += l->decoded > 0;
}

static int count_running(const struct nosa_engine *e)
{
    int n = 0;
    for (int i = 0; i < e->max_seqs; i++) n += e->seqs[i].state != SEQ_FREE;
    return n;
}

int nosa_engine_step(struct nosa_engine *e, char *err, size_t errlen)
{
    if (e->failed) {
        nosa_set_error(err, errlen, "engine: unusable after a backend failure: %s", e->fail_msg);
        return -EIO;
    }
    double t0 = now_seconds();
    memset(&e->last, 0, sizeof(e->last));
    int n_dec = schedule(e);
    int rc = allocate(e, err, errlen);
    if (rc) {
        flush_frees(e);
        return rc;
    }
    rc = run_prefills(e, err, errlen);
    if (rc == 0) rc = run_decode(e, n_dec, err, errlen);
    flush_frees(e);
    e->last.running = (uint32_t)count_running(e);
    e->last.seconds = now_seconds() - t0;
    update_totals(e);
    if (rc) {
        e->failed = 1;
        snprintf(e->fail_msg, sizeof(e->fail_msg), "%s", err ? err : "backend error");
        LOG_ERROR("engine", "backend %s failed rc=%d error=\"%s\"", e->ops->name, rc,
                  e->fail_msg);
        return rc;
    }
    return (int)e->last.running;
}

/* ------------------------------------------------------------------ queries */

const struct nosa_engine_step_stats *nosa_engine_last_step(const struct nosa_engine *e)
{
    return &e->last;
}

const struct nosa_engine_totals *nosa_engine_totals(const struct nosa_engine *e)
{
    return &e->totals;
}

void nosa_engine_capacity(const struct nosa_engine *e, struct nosa_engine_capacity *out)
{
    memset(out, 0, sizeof(*out));
    out->max_seqs = e->max_seqs;
    out->max_context = e->max_context;
    for (int i = 0; i < e->max_seqs; i++) {
        if (e->seqs[i].state == SEQ_FREE) continue;
        out->running++;
        out->groups_held += e->seqs[i].n_groups;
    }
    out->free_slots = e->max_seqs - out->running;
}

int nosa_engine_seq_info(const struct nosa_engine *e, uint64_t seq_id,
                         struct nosa_engine_seq_info *out)
{
    int i = find_seq(e, seq_id);
    if (i < 0) return -ENOENT;
    const struct engine_seq *s = &e->seqs[i];
    *out = (struct nosa_engine_seq_info){
        .n_prompt = s->n_prompt,
        .n_generated = s->n_generated,
        .generated = s->tokens + s->n_prompt,
        .n_appended = s->state == SEQ_NEW ? 0 : s->n_appended,
        .n_groups = s->n_groups,
        .recomputed_tokens = s->recomputed,
        .prefilling = s->state == SEQ_NEW || s->state == SEQ_PREFILL,
    };
    return 0;
}

struct nosa_backend *nosa_engine_backend(const struct nosa_engine *e)
{
    return e->backend;
}

const struct nosa_backend_ops *nosa_engine_backend_ops(const struct nosa_engine *e)
{
    return e->ops;
}
