/* test_engine: the engine (gpu-worker/engine/engine.h) on the CPU backend and the tiny random
 * model (block size 8, budget 10 blocks: prompts of ~100 tokens make selection sparse).
 * Every comparison is exact, token for token:
 * - continuous batching (sequences joining and leaving mid-run, small prefill chunks) gives
 *   each sequence the tokens it gets alone, greedy and top-p, resident and offloaded (dense
 *   too);
 * - resume: stop after k tokens, destroy the engine, resume in a new one from the block table
 *   and the tokens: the same tokens, at most one block recomputed, the arena freed at the end;
 * - cancel, EOS, arena exhaustion, bad arguments. */
#include <errno.h>
#include <string.h>

#include "engine.h"
#include "local_blocks.h"
#include "test_util.h"

#define MAX_IDS 16
#define MAX_TOK 64
#define CTX 256

struct collected {
    int32_t tokens[MAX_IDS][MAX_TOK];
    uint32_t n[MAX_IDS];
    int finished[MAX_IDS];
    enum nosa_finish_reason reason[MAX_IDS];
    uint32_t recomputed[MAX_IDS];
    uint32_t prompt_done[MAX_IDS]; /* the last PREFILLED event's */
    int bad_events;
};

static void on_event(void *user, const struct nosa_engine_event *ev)
{
    struct collected *c = user;
    if (ev->seq_id >= MAX_IDS || c->finished[ev->seq_id]) {
        c->bad_events++;
        return;
    }
    uint64_t id = ev->seq_id;
    if (ev->type == NOSA_ENGINE_EVENT_TOKEN) {
        if (ev->index != c->n[id] || ev->index >= MAX_TOK) {
            c->bad_events++;
            return;
        }
        c->tokens[id][c->n[id]++] = ev->token;
        return;
    }
    if (ev->type == NOSA_ENGINE_EVENT_PREFILLED) { /* grows, and only before the first token */
        if (ev->prompt_done <= c->prompt_done[id] || c->n[id]) c->bad_events++;
        c->prompt_done[id] = ev->prompt_done;
        return;
    }
    c->finished[id] = 1;
    c->reason[id] = ev->reason;
    c->recomputed[id] = ev->recomputed_tokens;
    if (ev->generated_tokens != c->n[id]) c->bad_events++;
}

static struct nosa_model *g_model;

static void make_prompt(int32_t *p, int n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 12345u;
    for (int i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (int32_t)((x >> 8) % 256u);
    }
}

struct setup {
    enum nosa_attn_mode mode;
    int offload;
    int max_seqs;
    int prefill_chunk;
    int lanes; /* > 0: the cpu backend as if its prefill had this many lanes */
};

/* Offload runs with a pool of 10 blocks (budget 10 selects 9 complete ones), so blocks are
 * evicted and read back from the arena. */
struct rig {
    struct nosa_local_blocks *lb;
    struct nosa_block_source src;
    struct nosa_engine *e;
    struct collected c;
};

static void rig_open_engine(struct rig *r, const struct setup *s)
{
    struct nosa_engine_config cfg = {
        .backend = {.mode = s->mode, .offload = s->offload, .max_seqs = s->max_seqs,
                    .max_context = CTX, .pool_blocks = s->offload ? 10 : 0},
        .prefill_chunk = s->prefill_chunk,
    };
    char err[256];
    /* The cpu backend runs a call's prompts one after another, which gives what lanes
     * side by side must: only the engine's schedule changes. */
    static struct nosa_backend_ops lane_ops;
    const struct nosa_backend_ops *ops = &nosa_backend_cpu_ops;
    if (s->lanes > 0) {
        lane_ops = nosa_backend_cpu_ops;
        lane_ops.prefill_lanes = s->lanes;
        ops = &lane_ops;
    }
    int rc = nosa_engine_create(g_model, ops, &cfg, r->lb ? &r->src : NULL, on_event, &r->c,
                                &r->e, err, sizeof(err));
    REQUIRE(rc == 0, "engine create: %s", err);
}

/* with_arena: a local block source even when resident (blocks are written there too). */
static void rig_open(struct rig *r, const struct setup *s, int with_arena, uint64_t n_groups)
{
    memset(r, 0, sizeof(*r));
    if (with_arena || s->offload) {
        struct nosa_kv_geometry g = nosa_model_kv_geometry(&g_model->cfg);
        char err[256];
        int rc = nosa_local_blocks_create(&g, n_groups, MAX_IDS, CTX / 8, &r->lb, err,
                                          sizeof(err));
        REQUIRE(rc == 0, "local blocks: %s", err);
        r->src = nosa_local_blocks_source(r->lb);
    }
    rig_open_engine(r, s);
}

static void rig_close(struct rig *r)
{
    nosa_engine_destroy(r->e);
    nosa_local_blocks_destroy(r->lb);
}

static int add_seq(struct rig *r, uint64_t id, const int32_t *prompt, int n,
                   struct nosa_sampling sp)
{
    struct nosa_engine_seq_params p = {.seq_id = id, .prompt = prompt, .n_prompt = (uint32_t)n,
                                       .sampling = sp};
    char err[256];
    int rc = nosa_engine_add(r->e, &p, err, sizeof(err));
    CHECK(rc == 0, "add %llu: %s", (unsigned long long)id, err);
    return rc;
}

static int step(struct rig *r)
{
    char err[256];
    int rc = nosa_engine_step(r->e, err, sizeof(err));
    REQUIRE(rc >= 0, "step: %s", err);
    return rc;
}

/* The reference: sequence alone in its own engine. */
static void run_alone(const struct setup *s, const int32_t *prompt, int n,
                      struct nosa_sampling sp, int32_t *out, uint32_t *n_out)
{
    struct setup one = *s;
    one.max_seqs = 1;
    struct rig r;
    rig_open(&r, &one, 0, CTX / 8);
    add_seq(&r, 1, prompt, n, sp);
    while (step(&r) > 0) {
    }
    memcpy(out, r.c.tokens[1], r.c.n[1] * sizeof(int32_t));
    *n_out = r.c.n[1];
    CHECK(r.c.bad_events == 0, "alone: bad events");
    rig_close(&r);
}

#define N_JOBS 6
static const int g_plen[N_JOBS] = {97, 13, 120, 64, 1, 88};
static const uint32_t g_max[N_JOBS] = {30, 12, 25, 40, 9, 17};

static struct nosa_sampling job_sampling(int j, int sampled)
{
    struct nosa_sampling sp = {.max_tokens = g_max[j], .temperature = sampled ? 0.9f : 0.0f,
                               .top_p = sampled ? 0.8f : 1.0f, .seed = 100u + (uint64_t)j,
                               .stop_at_eos = 0};
    return sp;
}

/* Six jobs through three slots: they join when a slot frees and leave at their own length;
 * prefill chunks of 7 tokens interleave with the others' decode. */
static void test_batching(enum nosa_attn_mode mode, int offload, int sampled, int lanes)
{
    struct setup s = {.mode = mode, .offload = offload, .max_seqs = 3, .prefill_chunk = 7,
                      .lanes = lanes};
    int32_t prompts[N_JOBS][128], ref[N_JOBS][MAX_TOK];
    uint32_t ref_n[N_JOBS];
    for (int j = 0; j < N_JOBS; j++) {
        make_prompt(prompts[j], g_plen[j], (uint32_t)j + 1u);
        run_alone(&s, prompts[j], g_plen[j], job_sampling(j, sampled), ref[j], &ref_n[j]);
        CHECK(ref_n[j] == g_max[j], "alone: job %d gave %u tokens", j, ref_n[j]);
    }
    struct rig r;
    rig_open(&r, &s, 0, 3 * (CTX / 8));
    int next = 0, steps = 0;
    for (;;) {
        struct nosa_engine_capacity cap;
        nosa_engine_capacity(r.e, &cap);
        /* One job joins per step at most, so joins land mid-run of the others. */
        if (next < N_JOBS && cap.free_slots > 0 && (steps % 2 == 0 || cap.running == 0)) {
            add_seq(&r, (uint64_t)next + 1, prompts[next], g_plen[next],
                    job_sampling(next, sampled));
            next++;
        }
        int running = step(&r);
        steps++;
        if (running == 0 && next == N_JOBS) break;
        REQUIRE(steps < 2000, "batching does not finish");
    }
    for (int j = 0; j < N_JOBS; j++) {
        CHECK(r.c.finished[j + 1] && r.c.reason[j + 1] == NOSA_FINISH_LENGTH,
              "job %d finished by length", j);
        CHECK(r.c.n[j + 1] == ref_n[j] &&
                  memcmp(r.c.tokens[j + 1], ref[j], ref_n[j] * sizeof(int32_t)) == 0,
              "mode %s offload %d sampled %d: job %d differs from alone", nosa_attn_mode_name(mode),
              offload, sampled, j);
    }
    CHECK(r.c.bad_events == 0, "bad events");
    const struct nosa_engine_totals *t = nosa_engine_totals(r.e);
    uint64_t want = 0;
    for (int j = 0; j < N_JOBS; j++) want += g_max[j];
    CHECK(t->generated == want, "totals: %llu generated", (unsigned long long)t->generated);
    if (offload) {
        CHECK(t->blocks_transferred > 0, "offload moved blocks");
        CHECK(nosa_local_blocks_free_groups(r.lb) == 3u * (CTX / 8) &&
                  nosa_local_blocks_seqs(r.lb) == 0,
              "every group back in the arena after the run");
    }
    rig_close(&r);
}

/* The prefill chunk bounds the tokens prefilled per step; decode of the others continues. */
static void test_prefill_budget(void)
{
    struct setup s = {.mode = NOSA_ATTN_NOSA, .offload = 0, .max_seqs = 2, .prefill_chunk = 16};
    struct rig r;
    rig_open(&r, &s, 0, 0);
    int32_t a[8], b[120];
    make_prompt(a, 8, 1);
    make_prompt(b, 120, 2);
    struct nosa_sampling sp = {.max_tokens = 20, .top_p = 1.0f};
    add_seq(&r, 1, a, 8, sp);
    step(&r); /* a prefilled, first token */
    add_seq(&r, 2, b, 120, sp);
    for (int k = 0; k < 7; k++) {
        step(&r);
        const struct nosa_engine_step_stats *st = nosa_engine_last_step(r.e);
        CHECK(st->prefill_tokens <= 16, "step prefilled %u tokens", st->prefill_tokens);
        CHECK(st->decoded == 1, "the running sequence decodes every step (%u)", st->decoded);
    }
    struct nosa_engine_seq_info info;
    CHECK(nosa_engine_seq_info(r.e, 2, &info) == 0 && info.prefilling && info.n_appended == 112,
          "b prefilled 7 x 16 tokens (%u)", info.n_appended);
    rig_close(&r);
}

/* With lanes, each of up to that many waiting prompts gets a chunk per step, in one call;
 * a fourth waits for a lane. */
static void test_prefill_lanes(void)
{
    struct setup s = {.mode = NOSA_ATTN_NOSA, .offload = 1, .max_seqs = 4, .prefill_chunk = 16,
                      .lanes = 3};
    struct rig r;
    rig_open(&r, &s, 0, 4 * (CTX / 8));
    int32_t p[4][120];
    struct nosa_sampling sp = {.max_tokens = 5, .top_p = 1.0f};
    for (int j = 0; j < 4; j++) {
        make_prompt(p[j], 120, (uint32_t)j + 7u);
        add_seq(&r, (uint64_t)j + 1, p[j], 120, sp);
    }
    for (int k = 0; k < 7; k++) {
        step(&r);
        const struct nosa_engine_step_stats *st = nosa_engine_last_step(r.e);
        CHECK(st->prefill_tokens == 48, "step %d prefilled %u tokens (3 lanes of 16)", k,
              st->prefill_tokens);
    }
    for (int j = 0; j < 4; j++) {
        struct nosa_engine_seq_info info;
        uint32_t want = j < 3 ? 112 : 0;
        CHECK(nosa_engine_seq_info(r.e, (uint64_t)j + 1, &info) == 0 && info.n_appended == want,
              "prompt %d: %u of 120 tokens prefilled after 7 steps (want %u)", j,
              info.n_appended, want);
    }
    while (step(&r) > 0) {
    }
    for (int j = 0; j < 4; j++)
        CHECK(r.c.finished[j + 1] && r.c.n[j + 1] == 5, "prompt %d: %u tokens", j, r.c.n[j + 1]);
    CHECK(r.c.bad_events == 0, "bad events");
    rig_close(&r);
}

/* The worker dies: the engine goes, the arena and the table of p->seq_id stay; a new engine
 * takes the sequence back (p with the table filled in) and runs until nothing is left. */
static void kill_and_resume(struct rig *r, const struct setup *s,
                            struct nosa_engine_seq_params *p, const char *what)
{
    nosa_engine_destroy(r->e);
    r->e = NULL;
    REQUIRE(nosa_local_blocks_table(r->lb, p->seq_id, &p->groups, &p->n_groups) == 0,
            "%s: table of %llu", what, (unsigned long long)p->seq_id);
    rig_open_engine(r, s);
    char err[256];
    REQUIRE(nosa_engine_add(r->e, p, err, sizeof(err)) == 0, "%s: %s", what, err);
    while (step(r) > 0) {
    }
}

/* Resume after k generated tokens, for k at several block alignments. */
static void test_resume(int offload, int sampled)
{
    struct setup s = {.mode = NOSA_ATTN_NOSA, .offload = offload, .max_seqs = 2,
                      .prefill_chunk = 32};
    const int plen = 101;
    int32_t prompt[128], ref[MAX_TOK];
    uint32_t ref_n;
    make_prompt(prompt, plen, 77);
    struct nosa_sampling sp = job_sampling(0, sampled);
    sp.max_tokens = 36;
    run_alone(&s, prompt, plen, sp, ref, &ref_n);
    const uint32_t ks[5] = {1, 3, 4, 12, 35}; /* 101+3 = 104 = 13 blocks exactly */
    for (int v = 0; v < 5; v++) {
        uint32_t k = ks[v];
        struct rig r;
        rig_open(&r, &s, 1, 2 * (CTX / 8));
        add_seq(&r, 5, prompt, plen, sp);
        while (r.c.n[5] < k) step(&r);
        REQUIRE(r.c.n[5] == k && !r.c.finished[5], "stopped at %u", r.c.n[5]);
        struct collected before = r.c;
        memset(&r.c, 0, sizeof(r.c));
        r.c.n[5] = k; /* the resumed engine goes on at index k */
        struct nosa_engine_seq_params p = {
            .seq_id = 5, .prompt = prompt, .n_prompt = plen, .sampling = sp,
            .generated = before.tokens[5], .n_generated = k,
            .n_complete_blocks = nosa_engine_committed_blocks(plen, k, 8),
            .n_appended_before = plen + k};
        kill_and_resume(&r, &s, &p, "resume");
        CHECK(r.c.finished[5] && r.c.reason[5] == NOSA_FINISH_LENGTH, "resumed finished");
        CHECK(memcmp(before.tokens[5], ref, k * sizeof(int32_t)) == 0, "tokens before the stop");
        CHECK(r.c.n[5] == ref_n &&
                  memcmp(r.c.tokens[5] + k, ref + k, (ref_n - k) * sizeof(int32_t)) == 0,
              "offload %d sampled %d k %u: resumed tokens differ", offload, sampled, k);
        CHECK(r.c.bad_events == 0, "resumed events continue at index k");
        CHECK(r.c.recomputed[5] >= 1 && r.c.recomputed[5] <= 8,
              "k %u: recomputed %u tokens (at most one block)", k, r.c.recomputed[5]);
        CHECK(nosa_engine_totals(r.e)->recomputed_tokens == r.c.recomputed[5], "totals count");
        CHECK(nosa_local_blocks_seqs(r.lb) == 0 &&
                  nosa_local_blocks_free_groups(r.lb) == 2u * (CTX / 8),
              "arena freed after the resumed sequence finished");
        rig_close(&r);
    }
}

/* A sequence moved while its prompt is prefilled (no token yet): the new engine restores the
 * complete blocks the PREFILLED events vouch for and prefills only the rest; the tokens equal
 * the reference and less than a block is recomputed. */
static void test_resume_prefill(int offload)
{
    struct setup s = {.mode = NOSA_ATTN_NOSA, .offload = offload, .max_seqs = 2,
                      .prefill_chunk = 20};
    const int plen = 101;
    int32_t prompt[128], ref[MAX_TOK];
    uint32_t ref_n;
    make_prompt(prompt, plen, 78);
    struct nosa_sampling sp = job_sampling(0, 1);
    sp.max_tokens = 20;
    run_alone(&s, prompt, plen, sp, ref, &ref_n);
    struct rig r;
    rig_open(&r, &s, 1, 2 * (CTX / 8));
    add_seq(&r, 6, prompt, plen, sp);
    for (int k = 0; k < 3; k++) step(&r); /* 60 of 101 prompt tokens */
    REQUIRE(r.c.prompt_done[6] == 60 && r.c.n[6] == 0, "prefilled %u, %u tokens",
            r.c.prompt_done[6], r.c.n[6]);
    uint32_t done = r.c.prompt_done[6];
    memset(&r.c, 0, sizeof(r.c));
    struct nosa_engine_seq_params p = {.seq_id = 6, .prompt = prompt, .n_prompt = plen,
                                       .sampling = sp, .n_complete_blocks = done / 8,
                                       .n_appended_before = done};
    kill_and_resume(&r, &s, &p, "resume mid-prefill"); /* the worker dies mid-prefill */
    CHECK(r.c.finished[6] && r.c.n[6] == ref_n && !memcmp(r.c.tokens[6], ref, ref_n * 4),
          "offload %d: tokens after a resume mid-prefill differ", offload);
    CHECK(r.c.recomputed[6] == done % 8, "recomputed %u tokens, want the open block's %u",
          r.c.recomputed[6], done % 8);
    CHECK(r.c.bad_events == 0, "events after the resume");
    rig_close(&r);
}

static void test_cancel(void)
{
    struct setup s = {.mode = NOSA_ATTN_NOSA, .offload = 1, .max_seqs = 2, .prefill_chunk = 64};
    int32_t a[90], b[40], ref[MAX_TOK];
    uint32_t ref_n;
    make_prompt(a, 90, 3);
    make_prompt(b, 40, 4);
    struct nosa_sampling sp = {.max_tokens = 24, .top_p = 1.0f};
    run_alone(&s, b, 40, sp, ref, &ref_n);
    struct rig r;
    rig_open(&r, &s, 1, 2 * (CTX / 8));
    add_seq(&r, 1, a, 90, sp);
    add_seq(&r, 2, b, 40, sp);
    for (int k = 0; k < 5; k++) step(&r);
    char err[256];
    CHECK(nosa_engine_cancel(r.e, 1, 0, err, sizeof(err)) == 0, "cancel: %s", err);
    CHECK(r.c.finished[1] && r.c.reason[1] == NOSA_FINISH_CANCELLED, "cancel event sent at once");
    const uint32_t *g;
    uint32_t n;
    CHECK(nosa_local_blocks_table(r.lb, 1, &g, &n) == -ENOENT, "cancelled blocks freed");
    CHECK(nosa_engine_cancel(r.e, 1, 0, err, sizeof(err)) == -ENOENT, "second cancel: ENOENT");
    struct nosa_engine_capacity cap;
    nosa_engine_capacity(r.e, &cap);
    CHECK(cap.running == 1 && cap.free_slots == 1, "slot freed");
    while (step(&r) > 0) {
    }
    CHECK(r.c.n[2] == ref_n && memcmp(r.c.tokens[2], ref, ref_n * sizeof(int32_t)) == 0,
          "the other sequence is unaffected by the cancel");
    CHECK(r.c.bad_events == 0, "no event after the cancel");
    rig_close(&r);
}

/* EOS: make the model's EOS the token greedy decoding produces at index 3. */
static void test_eos(void)
{
    struct setup s = {.mode = NOSA_ATTN_DENSE, .offload = 0, .max_seqs = 1, .prefill_chunk = 0};
    int32_t p[20], ref[MAX_TOK];
    uint32_t ref_n;
    make_prompt(p, 20, 9);
    struct nosa_sampling sp = {.max_tokens = 12, .top_p = 1.0f, .stop_at_eos = 1};
    run_alone(&s, p, 20, sp, ref, &ref_n);
    int saved = g_model->cfg.eos_token_id;
    int first = 0;
    while (ref[first] != ref[3]) first++; /* EOS stops at its first occurrence */
    g_model->cfg.eos_token_id = ref[3];
    struct rig r;
    rig_open(&r, &s, 0, 0);
    add_seq(&r, 1, p, 20, sp);
    while (step(&r) > 0) {
    }
    CHECK(r.c.finished[1] && r.c.reason[1] == NOSA_FINISH_EOS, "finished by EOS");
    CHECK(r.c.n[1] == (uint32_t)first + 1 && r.c.tokens[1][first] == ref[3],
          "EOS emitted as the last token (%u tokens)", r.c.n[1]);
    rig_close(&r);
    sp.stop_at_eos = 0;
    uint32_t n_ignore;
    int32_t ignore[MAX_TOK];
    run_alone(&s, p, 20, sp, ignore, &n_ignore);
    CHECK(n_ignore == 12, "stop_at_eos 0 runs to max_tokens");
    g_model->cfg.eos_token_id = saved;
}

/* A tiny arena: the decoding sequence that needs a block finishes with ERROR; the other goes
 * on; every group returns. */
static void test_arena_full(void)
{
    struct setup s = {.mode = NOSA_ATTN_NOSA, .offload = 1, .max_seqs = 2, .prefill_chunk = 64};
    struct rig r;
    rig_open(&r, &s, 1, 3);
    int32_t a[15], b[4];
    make_prompt(a, 15, 5);
    make_prompt(b, 4, 6);
    struct nosa_sampling sp = {.max_tokens = 30, .top_p = 1.0f};
    add_seq(&r, 1, a, 15, sp); /* needs 1 group for its prompt, 5 by the end */
    sp.max_tokens = 12;
    add_seq(&r, 2, b, 4, sp); /* 1 group by the end */
    int steps = 0;
    while (step(&r) > 0) REQUIRE(++steps < 200, "does not finish");
    CHECK(r.c.finished[1] && r.c.reason[1] == NOSA_FINISH_ERROR, "arena full: error");
    CHECK(r.c.finished[2] && r.c.reason[2] == NOSA_FINISH_LENGTH && r.c.n[2] == 12,
          "the other finished (reason %d)", (int)r.c.reason[2]);
    CHECK(nosa_local_blocks_free_groups(r.lb) == 3, "groups back");
    rig_close(&r);
}

static void test_bad_args(void)
{
    char err[256];
    struct setup s = {.mode = NOSA_ATTN_NOSA, .offload = 0, .max_seqs = 1, .prefill_chunk = 0};
    struct rig r;
    rig_open(&r, &s, 0, 0);
    int32_t p[4] = {1, 2, 3, 4}, bad_tok[2] = {1, 9999};
    struct nosa_sampling sp = {.max_tokens = 4, .top_p = 1.0f};
    struct nosa_engine_seq_params ok = {.seq_id = 1, .prompt = p, .n_prompt = 4, .sampling = sp};
    struct nosa_engine_seq_params q;
    q = ok, q.n_prompt = 0;
    CHECK(nosa_engine_add(r.e, &q, err, sizeof(err)) == -EINVAL, "empty prompt");
    q = ok, q.prompt = bad_tok, q.n_prompt = 2;
    CHECK(nosa_engine_add(r.e, &q, err, sizeof(err)) == -EINVAL, "token outside the vocab");
    q = ok, q.sampling.max_tokens = 0;
    CHECK(nosa_engine_add(r.e, &q, err, sizeof(err)) == -EINVAL, "max_tokens 0");
    q = ok, q.sampling.top_p = 0.0f;
    CHECK(nosa_engine_add(r.e, &q, err, sizeof(err)) == -EINVAL, "top_p 0");
    q = ok, q.sampling.temperature = -1.0f;
    CHECK(nosa_engine_add(r.e, &q, err, sizeof(err)) == -EINVAL, "negative temperature");
    q = ok, q.sampling.max_tokens = CTX;
    CHECK(nosa_engine_add(r.e, &q, err, sizeof(err)) == -E2BIG, "longer than max_context");
    uint32_t groups[1] = {0};
    q = ok, q.groups = groups, q.n_groups = 1;
    CHECK(nosa_engine_add(r.e, &q, err, sizeof(err)) == -ENOTSUP, "table without a source");
    q = ok, q.generated = p, q.n_generated = 4;
    CHECK(nosa_engine_add(r.e, &q, err, sizeof(err)) == -EINVAL, "resume already finished");
    CHECK(nosa_engine_add(r.e, &ok, err, sizeof(err)) == 0, "valid add: %s", err);
    CHECK(nosa_engine_add(r.e, &ok, err, sizeof(err)) == -EEXIST, "duplicate id");
    q = ok, q.seq_id = 2;
    CHECK(nosa_engine_add(r.e, &q, err, sizeof(err)) == -EBUSY, "no free slot");
    struct nosa_engine_seq_info info;
    CHECK(nosa_engine_seq_info(r.e, 99, &info) == -ENOENT, "info of an unknown id");
    rig_close(&r);

    struct nosa_engine *e = NULL;
    struct nosa_engine_config cfg = {.backend = {.mode = NOSA_ATTN_NOSA, .offload = 1,
                                                 .max_seqs = 1, .max_context = CTX}};
    CHECK(nosa_engine_create(g_model, &nosa_backend_cpu_ops, &cfg, NULL, NULL, NULL, &e, err,
                             sizeof(err)) == -EINVAL && !e, "offload without a source");
    cfg.backend.offload = 0;
    cfg.backend.max_seqs = 0;
    CHECK(nosa_engine_create(g_model, &nosa_backend_cpu_ops, &cfg, NULL, NULL, NULL, &e, err,
                             sizeof(err)) == -EINVAL && !e, "max_seqs 0");
    cfg.backend.max_seqs = 1;
    cfg.backend.offload = 1;
    cfg.backend.pool_blocks = 1; /* below one nosa selection */
    struct nosa_local_blocks *lb;
    struct nosa_kv_geometry g = nosa_model_kv_geometry(&g_model->cfg);
    REQUIRE(nosa_local_blocks_create(&g, 4, 1, 4, &lb, err, sizeof(err)) == 0, "%s", err);
    struct nosa_block_source src = nosa_local_blocks_source(lb);
    CHECK(nosa_engine_create(g_model, &nosa_backend_cpu_ops, &cfg, &src, NULL, NULL, &e, err,
                             sizeof(err)) < 0 && !e, "a pool the backend refuses");
    nosa_local_blocks_destroy(lb);
    CHECK(nosa_local_blocks_create(&g, 0, 1, 4, &lb, err, sizeof(err)) == -EINVAL,
          "local blocks of 0 groups");
}

static void test_registry(void)
{
    char err[256];
    CHECK(nosa_backend_find("cpu", err, sizeof(err)) == &nosa_backend_cpu_ops, "cpu");
    const struct nosa_backend_ops *a = nosa_backend_find("auto", err, sizeof(err));
    CHECK(a != NULL, "auto finds a backend");
    CHECK(nosa_backend_find("tpu", err, sizeof(err)) == NULL && strstr(err, "tpu"),
          "unknown backend names itself: %s", err);
#ifndef NOSA_HAVE_CUDA
    CHECK(nosa_backend_find("cuda", err, sizeof(err)) == NULL && strstr(err, "not built"),
          "cuda not built: %s", err);
    CHECK(a == &nosa_backend_cpu_ops, "auto without cuda is cpu");
#endif
}

int main(void)
{
    struct nosa_model_config cfg;
    char err[256];
    REQUIRE(nosa_model_config_builtin("tiny", &cfg, err, sizeof(err)) == 0, "%s", err);
    REQUIRE(nosa_model_init_random(&cfg, 1, &g_model, err, sizeof(err)) == 0, "%s", err);
    test_registry();
    test_batching(NOSA_ATTN_NOSA, 0, 0, 0);
    test_batching(NOSA_ATTN_NOSA, 1, 1, 0);
    test_batching(NOSA_ATTN_INFLLMV2, 1, 0, 0);
    test_batching(NOSA_ATTN_DENSE, 0, 1, 0);
    test_batching(NOSA_ATTN_DENSE, 1, 0, 0);
    test_batching(NOSA_ATTN_NOSA, 1, 1, 3);
    test_batching(NOSA_ATTN_INFLLMV2, 1, 0, 2);
    test_prefill_budget();
    test_prefill_lanes();
    test_resume(1, 0);
    test_resume(1, 1);
    test_resume(0, 1);
    test_resume_prefill(1);
    test_resume_prefill(0);
    test_cancel();
    test_eos();
    test_arena_full();
    test_bad_args();
    nosa_model_free(g_model);
    return test_report("test_engine");
}
