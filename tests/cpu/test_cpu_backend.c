/* test_cpu_backend: the CPU backend's exactness properties on the tiny random model (block
 * size 8, budget 10 blocks unless a test says otherwise): every comparison is bit-for-bit.
 * - full budget: infllmv2 and nosa (resident and offloaded) select every block and give the
 *   dense logits;
 * - offloaded == resident over 200+ decode steps with really sparse selection, default pool
 *   and a pool of budget + 2 that must evict; in every call of both, each layer's bytes are
 *   its transferred / written blocks x block bytes and the totals are the per-layer sums;
 * - batched decode (sequences joining mid-way) == each sequence alone, every mode, resident
 *   and offloaded;
 * - prefill in one call == in chunks == one token at a time;
 * - seq_resume from the arena, then continuing == the uninterrupted sequence;
 * - a model read in place from a bf16 file == the same values from an f32 file;
 * - bad arguments are rejected with an error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_harness.h"

#define CTX 512
#define VOCAB_MAX 512

static float g_la[HARNESS_MAX_SEQS * VOCAB_MAX], g_lb[HARNESS_MAX_SEQS * VOCAB_MAX];

static int same_logits(const float *a, const float *b, int n)
{
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* Complete blocks the token at position pos selects (block size 8). */
static int selected_at(enum nosa_attn_mode mode, int pos, int budget)
{
    int nb = pos / 8;
    return mode == NOSA_ATTN_DENSE || nb < budget - 1 ? nb : budget - 1;
}

/* Block reads one KV head of that token counts as selected: a selection larger than the
 * offload pool (dense only) is read in two passes (backend.h). */
static int reads_at(enum nosa_attn_mode mode, int offload, int pos, int budget, int pool)
{
    int k = selected_at(mode, pos, budget);
    return offload && k > pool ? 2 * k : k;
}

/* A call's statistics: per layer, selected == layer_selected == transferred + hits, bytes
 * from the arena == transferred blocks x block bytes, bytes to it == layer_d2h_blocks x
 * block bytes; every total is the sum of its per-layer counter. */
static void check_layer_stats(const struct nosa_step_stats *st, int n_layers, uint64_t bb,
                              uint64_t layer_selected, uint64_t layer_d2h_blocks,
                              const char *what)
{
    struct nosa_layer_stats sum = {0};
    CHECK(st->n_layers == (uint32_t)n_layers, "%s: n_layers %u", what, st->n_layers);
    for (int l = 0; l < n_layers; l++) {
        const struct nosa_layer_stats *ls = &st->layer[l];
        CHECK(ls->selected == layer_selected && ls->selected == ls->transferred + ls->hits &&
                  ls->bytes_h2d == (ls->transferred + ls->prefetched) * bb &&
                  ls->bytes_d2h == layer_d2h_blocks * bb,
              "%s layer %d: selected %llu transferred %llu hits %llu h2d %llu d2h %llu", what, l,
              (unsigned long long)ls->selected, (unsigned long long)ls->transferred,
              (unsigned long long)ls->hits, (unsigned long long)ls->bytes_h2d,
              (unsigned long long)ls->bytes_d2h);
        sum.selected += ls->selected;
        sum.transferred += ls->transferred;
        sum.hits += ls->hits;
        sum.prefetched += ls->prefetched;
        sum.bytes_h2d += ls->bytes_h2d;
        sum.bytes_d2h += ls->bytes_d2h;
    }
    CHECK(st->blocks_selected == sum.selected && st->blocks_transferred == sum.transferred &&
              st->block_hits == sum.hits && st->blocks_prefetched == sum.prefetched &&
              st->bytes_h2d == sum.bytes_h2d &&
              st->bytes_d2h == sum.bytes_d2h,
          "%s: totals are not the per-layer sums", what);
}

/* Every (slot, layer, KV head) of h's first n slots last selected all its complete blocks,
 * 0 .. len/8 - 1 in order. */
static void check_selects_all(const struct harness *h, int n, const char *what)
{
    int32_t sel[CTX / 8];
    for (int s = 0; s < n; s++) {
        int want = (h->len[s] - 1) / 8;
        for (int l = 0; l < h->model->cfg.n_layers; l++) {
            for (int hd = 0; hd < h->model->cfg.n_kv_heads; hd++) {
                int k = h->ops->last_selection(h->b, s, l, hd, sel, CTX / 8), i = 0;
                while (i < k && sel[i] == i) i++;
                CHECK(k == want && i == k, "%s: slot %d layer %d head %d selected %d of %d "
                      "blocks, first out of order at %d", what, s, l, hd, k, want, i);
            }
        }
    }
}

/* Full budget: with budget_blocks covering the whole context, every sparse mode selects
 * every block and must reproduce dense exactly (docs/CPU_BACKEND.md: all modes share the
 * attention formula, eviction bias included). The sparse modes score and run the top-k
 * here too, so this checks that the choice takes every block, in ascending order; the
 * budget is the longest context's exactly (154 tokens: 19 complete blocks at the end). */
static void test_full_budget(void)
{
    struct nosa_model *m = harness_model(154 / 8 + 1, 10, 11);
    int vocab = m->cfg.vocab_size;
    const int plen[3] = {5, 37, 130};
    enum { NV = 6 };
    struct {
        enum nosa_attn_mode mode;
        int offload;
    } variants[NV] = {{NOSA_ATTN_DENSE, 0},    {NOSA_ATTN_INFLLMV2, 0}, {NOSA_ATTN_NOSA, 0},
                      {NOSA_ATTN_INFLLMV2, 1}, {NOSA_ATTN_NOSA, 1},     {NOSA_ATTN_DENSE, 1}};
    for (int bs = 1; bs <= 3; bs++) {
        struct test_arena ta;
        test_arena_init(&ta, &m->cfg, NV * 3 * (CTX / 8 + 2));
        struct harness h[NV];
        for (int v = 0; v < NV; v++)
            harness_open(&h[v], m, variants[v].mode, variants[v].offload, 3, CTX, 0, &ta);
        int slots[3] = {0, 1, 2};
        int32_t tok[3];
        for (int s = 0; s < bs; s++) {
            int32_t prompt[130];
            harness_prompt(prompt, plen[s], (uint32_t)(s + 1), vocab);
            harness_prefill(&h[0], s, prompt, plen[s], g_la + s * vocab);
            for (int v = 1; v < NV; v++) {
                harness_prefill(&h[v], s, prompt, plen[s], g_lb + s * vocab);
                CHECK(same_logits(g_la + s * vocab, g_lb + s * vocab, vocab),
                      "prefill: variant %d differs from dense (prompt %d)", v, s);
            }
            tok[s] = harness_argmax(g_la + s * vocab, vocab);
        }
        for (int step = 0; step < 24; step++) {
            harness_decode(&h[0], bs, slots, tok, g_la);
            for (int v = 1; v < NV; v++) {
                harness_decode(&h[v], bs, slots, tok, g_lb);
                CHECK(same_logits(g_la, g_lb, bs * vocab),
                      "batch %d step %d: variant %d differs from dense", bs, step, v);
                check_selects_all(&h[v], bs, nosa_attn_mode_name(variants[v].mode));
            }
            for (int s = 0; s < bs; s++) tok[s] = harness_argmax(g_la + s * vocab, vocab);
        }
        for (int v = 0; v < NV; v++) harness_close(&h[v]);
        test_arena_free(&ta);
    }
    nosa_model_free(m);
}

/* Offloaded vs resident, same mode, same token stream, 2 sequences batched. Every call's
 * statistics are checked exactly (check_layer_stats); dense selects the whole context, which
 * is larger than the pool, so each step streams it through the pool and moves what the
 * pool cannot hold in each of its two passes. With prefetch (sparse modes), the read-ahead
 * changes what is moved, never a logit. */
static void test_offload_equals_resident(enum nosa_attn_mode mode, int pool_blocks,
                                         int prefetch)
{
    struct nosa_model *m = harness_model(0, 0, 7);
    int vocab = m->cfg.vocab_size, budget = m->cfg.sparse.budget_blocks;
    int pool = pool_blocks ? pool_blocks : 2 * budget;
    uint64_t n_kv = (uint64_t)m->cfg.n_kv_heads;
    struct test_arena ta;
    test_arena_init(&ta, &m->cfg, 4 * (CTX / 8 + 1));
    uint64_t bb = nosa_kv_block_bytes(&ta.arena.geom);
    struct harness res, off;
    harness_open(&res, m, mode, 0, 2, CTX, 0, &ta);
    struct nosa_backend_config oc = {.mode = mode, .offload = 1, .max_seqs = 2,
                                     .max_context = CTX, .pool_blocks = pool_blocks,
                                     .prefetch_blocks = prefetch};
    harness_create(&off, m, oc, &ta);
    const int plen[2] = {300, 277};
    int slots[2] = {0, 1};
    int32_t tok[2], prompt[300];
    for (int s = 0; s < 2; s++) {
        harness_prompt(prompt, plen[s], (uint32_t)(10 + s), vocab);
        harness_prefill(&res, s, prompt, plen[s], g_la + s * vocab);
        harness_prefill(&off, s, prompt, plen[s], g_lb + s * vocab);
        CHECK(same_logits(g_la + s * vocab, g_lb + s * vocab, vocab), "prefill %d differs", s);
        tok[s] = harness_argmax(g_la + s * vocab, vocab);
        /* Each completed block is written once, per layer and KV head. */
        uint64_t reads = 0;
        for (int pos = 0; pos < plen[s]; pos++)
            reads += (uint64_t)reads_at(mode, 1, pos, budget, pool);
        struct nosa_step_stats st;
        off.ops->stats(off.b, &st);
        check_layer_stats(&st, m->cfg.n_layers, bb, reads * n_kv, (uint64_t)(plen[s] / 8) * n_kv,
                          "prefill");
        CHECK(st.tokens == (uint64_t)plen[s], "prefill of %d tokens: %llu", plen[s],
              (unsigned long long)st.tokens);
    }
    uint64_t transferred = 0, selected = 0, hits = 0, prefetched = 0, mismatches = 0;
    const int steps = 210;
    for (int step = 0; step < steps; step++) {
        /* Per layer: blocks this step completes (one per KV head of each sequence whose token
         * ends a block), block reads resident and offloaded, the fewest misses possible. */
        uint64_t completes = 0, reads_res = 0, reads_off = 0, min_moved = 0;
        for (int s = 0; s < 2; s++) {
            int pos = off.len[s], k = selected_at(mode, pos, budget);
            completes += (uint64_t)((pos + 1) % 8 == 0) * n_kv;
            reads_res += (uint64_t)reads_at(mode, 0, pos, budget, pool) * n_kv;
            reads_off += (uint64_t)reads_at(mode, 1, pos, budget, pool) * n_kv;
            min_moved += (uint64_t)(k > pool ? 2 * (k - pool) : 0) * n_kv;
        }
        harness_decode(&res, 2, slots, tok, g_la);
        harness_decode(&off, 2, slots, tok, g_lb);
        if (!same_logits(g_la, g_lb, 2 * vocab)) mismatches++;
        struct nosa_step_stats st;
        off.ops->stats(off.b, &st);
        transferred += st.blocks_transferred;
        selected += st.blocks_selected;
        hits += st.block_hits;
        prefetched += st.blocks_prefetched;
        check_layer_stats(&st, m->cfg.n_layers, bb, reads_off, completes, "offloaded decode");
        /* Dense moves exactly that minimum: pass 2 starts on the chunks pass 1 left in the
         * pool, and the next step's pass 1 on those pass 2 left. */
        for (int l = 0; l < m->cfg.n_layers; l++)
            CHECK(mode == NOSA_ATTN_DENSE ? st.layer[l].transferred == min_moved
                                          : st.layer[l].transferred >= min_moved,
                  "step %d layer %d moved %llu, minimum %llu", step, l,
                  (unsigned long long)st.layer[l].transferred, (unsigned long long)min_moved);
        res.ops->stats(res.b, &st);
        check_layer_stats(&st, m->cfg.n_layers, bb, reads_res, completes, "resident decode");
        CHECK(st.blocks_transferred == 0, "resident transfers nothing");
        for (int s = 0; s < 2; s++) {
            int32_t a = harness_argmax(g_la + s * vocab, vocab);
            CHECK(a == harness_argmax(g_lb + s * vocab, vocab), "token differs");
            tok[s] = a;
        }
    }
    CHECK(mismatches == 0, "%s pool %d prefetch %d: %llu of %d steps differ",
          nosa_attn_mode_name(mode), pool, prefetch, (unsigned long long)mismatches, steps);
    CHECK((prefetched > 0) == (prefetch > 0), "prefetch %d read %llu blocks ahead", prefetch,
          (unsigned long long)prefetched);
    /* The selection is sparse (dense: the whole context), identical in both placements. */
    int32_t sa[CTX / 8], sb[CTX / 8];
    int want = selected_at(mode, res.len[1] - 1, budget);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        for (int hd = 0; hd < m->cfg.n_kv_heads; hd++) {
            int na = res.ops->last_selection(res.b, 1, l, hd, sa, CTX / 8);
            int nb = off.ops->last_selection(off.b, 1, l, hd, sb, CTX / 8);
            CHECK(na == want && nb == na && memcmp(sa, sb, (size_t)na * 4) == 0,
                  "last selection %d vs %d (want %d)", na, nb, want);
        }
    }
    CHECK(transferred > 0, "the pool must miss sometimes");
    /* Both placements wrote the same bytes to their own arena groups. */
    size_t gb = nosa_kv_group_bytes(&ta.arena.geom);
    for (int s = 0; s < 2; s++) {
        int differ = 0;
        for (uint32_t i = 0; i < res.tables[s].blocks.n_groups; i++)
            differ += memcmp(ta.arena.base + res.tables[s].groups[i] * gb,
                             ta.arena.base + off.tables[s].groups[i] * gb, gb) != 0;
        CHECK(differ == 0 && res.tables[s].blocks.n_groups == (uint32_t)(res.len[s] / 8),
              "seq %d: %d arena groups differ", s, differ);
    }
    printf("offload %-8s pool %2d prefetch %d: %d steps x 2 seqs, selected %llu, transferred "
           "%llu, prefetched %llu, hit rate %.3f\n",
           nosa_attn_mode_name(mode), pool, prefetch, steps, (unsigned long long)selected,
           (unsigned long long)transferred, (unsigned long long)prefetched,
           selected ? (double)hits / (double)selected : 0.0);
    harness_close(&res);
    harness_close(&off);
    test_arena_free(&ta);
    nosa_model_free(m);
}

/* Three sequences decoded together (the third joining after 10 steps, prefilled while the
 * others decode) against each decoded alone in a fresh backend, in one placement. */
static void batched_equals_alone(enum nosa_attn_mode mode, int offload, int pool_blocks)
{
    struct nosa_model *m = harness_model(0, 0, 3);
    int vocab = m->cfg.vocab_size;
    enum { NS = 3, STEPS = 40, JOIN = 10 };
    const int plen[NS] = {50, 123, 200};
    static float alone[NS][STEPS][VOCAB_MAX];
    static int32_t toks[NS][STEPS];
    struct test_arena ta;
    test_arena_init(&ta, &m->cfg, 2 * NS * (CTX / 8 + 1));
    int32_t prompt[200];
    for (int s = 0; s < NS; s++) {
        struct harness h;
        harness_open(&h, m, mode, offload, 3, CTX, pool_blocks, &ta);
        int slot = 2 - s; /* a different slot than in the batch */
        harness_prompt(prompt, plen[s], (uint32_t)(20 + s), vocab);
        harness_prefill(&h, slot, prompt, plen[s], g_la);
        int32_t t = harness_argmax(g_la, vocab);
        for (int step = 0; step < STEPS; step++) {
            toks[s][step] = t;
            harness_decode(&h, 1, &slot, &t, alone[s][step]);
            t = harness_argmax(alone[s][step], vocab);
        }
        harness_close(&h);
    }
    struct harness h;
    harness_open(&h, m, mode, offload, 3, CTX, pool_blocks, &ta);
    int done[NS] = {0};
    for (int s = 0; s < 2; s++) {
        harness_prompt(prompt, plen[s], (uint32_t)(20 + s), vocab);
        harness_prefill(&h, s, prompt, plen[s], NULL);
    }
    int mism = 0;
    for (int iter = 0; iter < STEPS + JOIN; iter++) {
        if (iter == JOIN) {
            harness_prompt(prompt, plen[2], 22, vocab);
            harness_prefill(&h, 2, prompt, plen[2], NULL);
        }
        int slots[NS], n = 0;
        int32_t tk[NS];
        for (int s = 0; s < NS; s++) {
            if ((s == 2 && iter < JOIN) || done[s] >= STEPS) continue;
            slots[n] = s;
            tk[n++] = toks[s][done[s]];
        }
        if (n == 0) break;
        harness_decode(&h, n, slots, tk, g_lb);
        for (int i = 0; i < n; i++) {
            int s = slots[i];
            if (!same_logits(alone[s][done[s]], g_lb + i * vocab, vocab)) mism++;
            done[s]++;
        }
    }
    CHECK(mism == 0 && done[0] == STEPS && done[2] == STEPS,
          "%s offload %d pool %d: batched vs alone: %d differ", nosa_attn_mode_name(mode), offload,
          pool_blocks, mism);
    harness_close(&h);
    test_arena_free(&ta);
    nosa_model_free(m);
}

/* Every mode, resident and offloaded with a pool of 12 blocks (below the budget's 2 x 10,
 * so the sparse pools evict; dense's contexts of up to 30 blocks go through it in chunks). */
static void test_batched_equals_alone(void)
{
    static const struct {
        enum nosa_attn_mode mode;
        int offload, pool_blocks;
    } cases[] = {
        {NOSA_ATTN_NOSA, 0, 0},     {NOSA_ATTN_NOSA, 1, 12},  {NOSA_ATTN_INFLLMV2, 0, 0},
        {NOSA_ATTN_INFLLMV2, 1, 12}, {NOSA_ATTN_DENSE, 0, 0}, {NOSA_ATTN_DENSE, 1, 12},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        batched_equals_alone(cases[i].mode, cases[i].offload, cases[i].pool_blocks);
}

/* prefill(150) == prefill in chunks of 7 == 1 token then 149 decode steps; then 20 more. */
static void test_prefill_chunking(void)
{
    struct nosa_model *m = harness_model(0, 0, 5);
    int vocab = m->cfg.vocab_size;
    enum { P = 150 };
    int32_t prompt[P];
    harness_prompt(prompt, P, 99, vocab);
    struct test_arena ta;
    test_arena_init(&ta, &m->cfg, 3 * (CTX / 8 + 1));
    struct harness h[3];
    int slot = 0;
    for (int v = 0; v < 3; v++) harness_open(&h[v], m, NOSA_ATTN_NOSA, 1, 1, CTX, 0, &ta);
    harness_prefill(&h[0], 0, prompt, P, g_la);
    for (int i = 0; i < P; i += 7) harness_prefill(&h[1], 0, prompt + i, i + 7 <= P ? 7 : P - i, g_lb);
    CHECK(same_logits(g_la, g_lb, vocab), "chunked prefill differs");
    harness_prefill(&h[2], 0, prompt, 1, g_lb);
    for (int i = 1; i < P; i++) harness_decode(&h[2], 1, &slot, prompt + i, g_lb);
    CHECK(same_logits(g_la, g_lb, vocab), "token-by-token differs");
    int32_t t = harness_argmax(g_la, vocab);
    for (int step = 0; step < 20; step++) {
        harness_decode(&h[0], 1, &slot, &t, g_la);
        for (int v = 1; v < 3; v++) {
            harness_decode(&h[v], 1, &slot, &t, g_lb);
            CHECK(same_logits(g_la, g_lb, vocab), "variant %d step %d differs", v, step);
        }
        t = harness_argmax(g_la, vocab);
    }
    for (int v = 0; v < 3; v++) harness_close(&h[v]);
    test_arena_free(&ta);
    nosa_model_free(m);
}

/* A runs uninterrupted; B resumes from A's first R blocks in the arena, re-prefills the
 * tokens after them and decodes: every logit B produces equals A's at that position. */
static void test_resume(enum nosa_attn_mode mode, int offload)
{
    struct nosa_model *m = harness_model(0, 0, 9);
    int vocab = m->cfg.vocab_size, bs = m->cfg.sparse.block_size;
    enum { P = 203, STEPS = 40, T = P + STEPS };
    static int32_t stream[T];
    static float ref[T][VOCAB_MAX]; /* ref[i]: logits after token i */
    harness_prompt(stream, P, 77, vocab);
    struct test_arena ta;
    test_arena_init(&ta, &m->cfg, 3 * (CTX / 8 + 1));
    struct harness a;
    harness_open(&a, m, mode, offload, 1, CTX, 0, &ta);
    int slot = 0;
    for (int i = 0; i < P; i++) harness_prefill(&a, 0, stream + i, 1, ref[i]);
    for (int i = P; i < T; i++) {
        stream[i] = harness_argmax(ref[i - 1], vocab);
        harness_decode(&a, 1, &slot, stream + i, ref[i]);
    }
    const int resume_blocks[2] = {P / 8, (P + 17) / 8};
    for (int r = 0; r < 2; r++) {
        int nb = resume_blocks[r], start = nb * bs;
        struct harness b;
        harness_open(&b, m, mode, offload, 2, CTX, 0, &ta);
        slot = 1;
        struct test_seq_table *tb = &b.tables[1];
        memcpy(tb->groups, a.tables[0].groups, (size_t)nb * sizeof(uint32_t));
        tb->blocks.n_groups = (uint32_t)nb;
        char err[256];
        int rc = b.ops->seq_resume(b.b, 1, &tb->blocks, (uint32_t)nb, err, sizeof(err));
        REQUIRE(rc == 0, "seq_resume: %s", err);
        b.len[1] = start;
        int upto = start + 5; /* re-prefill the open block's tokens, then decode */
        harness_prefill(&b, 1, stream + start, upto - start, g_lb);
        CHECK(same_logits(ref[upto - 1], g_lb, vocab), "resume %d blocks: prefill differs", nb);
        int mism = 0;
        for (int i = upto; i < T; i++) {
            harness_decode(&b, 1, &slot, stream + i, g_lb);
            if (!same_logits(ref[i], g_lb, vocab)) mism++;
        }
        CHECK(mism == 0, "%s offload %d resume %d blocks: %d positions differ",
              nosa_attn_mode_name(mode), offload, nb, mism);
        harness_close(&b);
    }
    harness_close(&a);
    test_arena_free(&ta);
    nosa_model_free(m);
}

/* What a decode step hands back (struct nosa_decode_out): two backends decode the same
 * tokens, one asking every row's logits and argmax, the other in turn the argmax alone, the
 * logits of row 1 alone (row 0's left as they were) and nothing; the argmax must be the
 * greedy token of the logits (harness_argmax, written apart) and the row's logits equal. The
 * second also draws row 0 by top-p with temperature (sampled output) while row 1 stays greedy:
 * the draw must be nosa_sample_row's on the first backend's logits, row 1's left as it was. */
static void test_decode_out(void)
{
    struct nosa_model *m = harness_model(0, 0, 21);
    int vocab = m->cfg.vocab_size, slots[2] = {0, 1};
    struct test_arena ta;
    test_arena_init(&ta, &m->cfg, 64);
    struct harness a, b;
    harness_open(&a, m, NOSA_ATTN_NOSA, 1, 2, CTX, 0, &ta);
    harness_open(&b, m, NOSA_ATTN_NOSA, 1, 2, CTX, 0, &ta);
    int32_t prompt[100];
    for (int i = 0; i < 100; i++) prompt[i] = (int32_t)((i * 31 + 7) % 256);
    for (int s = 0; s < 2; s++) {
        harness_prefill(&a, s, prompt + s, 90 + s, NULL); /* past the budget: sparse */
        harness_prefill(&b, s, prompt + s, 90 + s, NULL);
    }
    float *la = malloc(2 * (size_t)vocab * sizeof(float));
    float *lb = malloc(2 * (size_t)vocab * sizeof(float));
    REQUIRE(la && lb, "out of memory");
    static const uint8_t row1[2] = {0, 1};
    for (int step = 0; step < 9; step++) {
        int32_t tok[2] = {(int32_t)(step * 3 % 256), (int32_t)(step * 5 + 1) % 256};
        int32_t ga[2], gb[2] = {-7, -7}, db[2] = {-7, -7};
        struct nosa_row_sampling rs[2] = {{0.6f + 0.2f * (float)step, 0.8f, 5u, (uint64_t)step},
                                          {0.0f, 1.0f, 0u, 0u}};
        memset(lb, 0xff, 2 * (size_t)vocab * sizeof(float)); /* NaN: untouched stays NaN */
        struct nosa_decode_out oa = {.logits = la, .argmax = ga};
        struct nosa_decode_out ob[2] = {
            {.argmax = gb, .sampling = rs, .sampled = db},
            {.logits = lb, .want_logits = row1, .argmax = gb}};
        harness_decode_out(&a, 2, slots, tok, &oa);
        harness_decode_out(&b, 2, slots, tok, step % 3 == 2 ? NULL : &ob[step % 3]);
        for (int s = 0; s < 2; s++) {
            int want = harness_argmax(la + (size_t)s * vocab, vocab);
            CHECK(ga[s] == want, "step %d row %d: argmax %d, logits' %d", step, s, ga[s], want);
            if (step % 3 != 2)
                CHECK(gb[s] == ga[s], "step %d row %d: argmax %d (no full logits) vs %d", step,
                      s, gb[s], ga[s]);
        }
        if (step % 3 == 0) {
            uint64_t *keys = malloc(2 * (size_t)vocab * sizeof(uint64_t));
            REQUIRE(keys, "out of memory");
            int32_t want = nosa_sample_row(la, vocab, &rs[0], keys);
            CHECK(db[0] == want && want >= 0, "step %d: sampled %d, the rule on the logits %d",
                  step, db[0], want);
            CHECK(db[1] == -7, "step %d: a greedy row's sampled output written", step);
            free(keys);
        }
        if (step % 3 == 1) {
            uint32_t bits;
            memcpy(&bits, lb, sizeof bits);
            CHECK(bits == 0xffffffffu, "step %d: row 0's logits written though not wanted", step);
            CHECK(memcmp(lb + vocab, la + vocab, (size_t)vocab * sizeof(float)) == 0,
                  "step %d: row 1's logits differ", step);
        }
    }
    free(la);
    free(lb);
    harness_close(&a);
    harness_close(&b);
    test_arena_free(&ta);
    nosa_model_free(m);
}

static void test_errors(void)
{
    struct nosa_model *m = harness_model(0, 0, 1);
    struct test_arena ta;
    test_arena_init(&ta, &m->cfg, 8);
    const struct nosa_backend_ops *ops = &nosa_backend_cpu_ops;
    struct nosa_backend *b = NULL;
    char err[256];
    /* Dense streams the context through the pool, so a one-block pool is enough for it; a
     * sparse mode needs its whole selection local. */
    struct nosa_backend_config cfg = {.mode = NOSA_ATTN_DENSE, .offload = 1, .max_seqs = 2,
                                      .max_context = 64, .pool_blocks = 1, .arena = &ta.arena};
    CHECK(ops->create(m, &cfg, &b, err, sizeof(err)) == 0 && b, "dense, offload, pool 1: %s",
          err);
    ops->destroy(b);
    b = NULL;
    cfg.mode = NOSA_ATTN_NOSA;
    cfg.pool_blocks = m->cfg.sparse.budget_blocks - 2;
    CHECK(ops->create(m, &cfg, &b, err, sizeof(err)) == -EINVAL && !b, "pool too small: %s",
          err);
    cfg.pool_blocks = 0;
    cfg.prefetch_blocks = NOSA_MAX_PREFETCH_BLOCKS + 1;
    CHECK(ops->create(m, &cfg, &b, err, sizeof(err)) == -EINVAL && !b &&
              strstr(err, "prefetch_blocks = 17 not in [0, 16]"),
          "prefetch too large: %s", err);
    cfg.prefetch_blocks = 2;
    cfg.offload = 0;
    CHECK(ops->create(m, &cfg, &b, err, sizeof(err)) == -EINVAL && !b &&
              strstr(err, "needs offload and a sparse mode"),
          "prefetch resident: %s", err);
    cfg.offload = 1;
    cfg.mode = NOSA_ATTN_DENSE;
    CHECK(ops->create(m, &cfg, &b, err, sizeof(err)) == -EINVAL && !b &&
              strstr(err, "needs offload and a sparse mode"),
          "prefetch dense: %s", err);
    cfg.mode = NOSA_ATTN_NOSA;
    cfg.prefetch_blocks = 0;
    cfg.arena = NULL;
    CHECK(ops->create(m, &cfg, &b, err, sizeof(err)) == -EINVAL &&
              strstr(err, "cpu backend: offload needs a host arena"),
          "offload without arena: %s", err);
    cfg.arena = &ta.arena;
    cfg.max_context = m->cfg.max_position + 1;
    CHECK(ops->create(m, &cfg, &b, err, sizeof(err)) == -EINVAL &&
              strstr(err, "max_context = ") && strstr(err, "in [1, "),
          "max_context too large: %s", err);
    cfg.max_context = 64;
    cfg.max_seqs = 0;
    CHECK(ops->create(m, &cfg, &b, err, sizeof(err)) == -EINVAL &&
              strstr(err, "max_seqs = 0 must be >= 1"),
          "no slots: %s", err);
    cfg.max_seqs = 2;
    cfg.mode = (enum nosa_attn_mode)7;
    CHECK(ops->create(m, &cfg, &b, err, sizeof(err)) == -EINVAL &&
              strstr(err, "cpu backend: unknown attention mode 7"),
          "bad mode: %s", err);
    cfg.mode = NOSA_ATTN_NOSA;
    struct nosa_kv_arena other = ta.arena;
    other.geom.head_dim *= 2;
    cfg.arena = &other;
    CHECK(ops->create(m, &cfg, &b, err, sizeof(err)) == -EINVAL &&
              strstr(err, "arena geometry") && strstr(err, "does not match the model"),
          "an arena of another geometry: %s", err);
    other = ta.arena;
    other.base = NULL;
    CHECK(ops->create(m, &cfg, &b, err, sizeof(err)) == -EINVAL &&
              strstr(err, "the arena is not mapped"),
          "an unmapped arena: %s", err);
    CHECK(!b, "a refused create left a backend");
    cfg.arena = &ta.arena;
    REQUIRE(ops->create(m, &cfg, &b, err, sizeof(err)) == 0, "%s", err);
    int32_t tok[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    int32_t bad = m->cfg.vocab_size;
    CHECK(nosa_backend_prefill_one(ops, b, 0, &bad, 1, NULL, NULL, err, sizeof(err)) == -EINVAL,
          "bad token");
    CHECK(nosa_backend_prefill_one(ops, b, 2, tok, 1, NULL, NULL, err, sizeof(err)) == -EINVAL,
          "bad slot");
    CHECK(nosa_backend_prefill_one(ops, b, 0, tok, 8, NULL, NULL, err, sizeof(err)) == -EINVAL,
          "a completed block with no block table: %s", err);
    uint32_t groups[4] = {0, 1, 2, 99};
    struct nosa_seq_blocks tbl = {groups, 4};
    CHECK(nosa_backend_prefill_one(ops, b, 0, tok, 7, &tbl, NULL, err, sizeof(err)) == 0, "%s",
          err);
    int slots[2] = {0, 0};
    CHECK(ops->decode(b, 2, slots, tok, NULL, NULL, err, sizeof(err)) == -EINVAL,
          "duplicate slots");
    for (int i = 0; i < 3; i++) /* up to 31 tokens: blocks 0-2 complete */
        REQUIRE(nosa_backend_prefill_one(ops, b, 0, tok, 8, &tbl, NULL, err, sizeof(err)) == 0,
                "%s", err);
    CHECK(nosa_backend_prefill_one(ops, b, 0, tok, 8, &tbl, NULL, err, sizeof(err)) == -EINVAL,
          "block 3 maps to group 99, beyond the arena: %s", err);
    int32_t many[65] = {0};
    CHECK(nosa_backend_prefill_one(ops, b, 1, many, 65, NULL, NULL, err, sizeof(err)) == -ENOSPC,
          "beyond max_context");
    struct nosa_prefill_req twice[2] = {{1, tok, 2, NULL, NULL}, {1, tok + 2, 2, NULL, NULL}};
    CHECK(ops->prefill(b, twice, 2, err, sizeof(err)) == -EINVAL && strstr(err, "twice"),
          "a slot twice in one prefill: %s", err);
    CHECK(ops->prefill(b, twice, 0, err, sizeof(err)) == -EINVAL, "a prefill of no sequence");
    CHECK(ops->last_selection(b, 0, m->cfg.n_layers, 0, (int32_t *)groups, 8) == -EINVAL,
          "bad layer");
    ops->destroy(b);
    ops->destroy(NULL);
    test_arena_free(&ta);
    nosa_model_free(m);
}

/* Removes dir/config.json, dir/model.safetensors and dir. */
static void remove_model_dir(const char *dir)
{
    static const char *files[] = {"config.json", "model.safetensors"};
    char p[512];
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        CHECK(unlink(p) == 0, "remove %s", p);
    }
    CHECK(rmdir(dir) == 0, "remove %s", dir);
}

/* A model loaded from a bf16 file (matrices read in place as bf16) against the same values
 * loaded from an f32 file (read in place as f32): bf16 -> f32 is exact, so every logit of a
 * prefill and of a sparse decode is the same bits, offloaded nosa and resident dense. */
static void test_bf16_weights(void)
{
    char root[] = "/tmp/nosa_test_cpu_bf16.XXXXXX", d16[300], d32[300], err[512];
    REQUIRE(mkdtemp(root), "mkdtemp");
    snprintf(d16, sizeof(d16), "%s/bf16", root);
    snprintf(d32, sizeof(d32), "%s/f32", root);
    struct nosa_model *m0 = harness_model(0, 0, 5), *mb = NULL, *mf = NULL;
    REQUIRE(nosa_model_save(m0, d16, "bf16", err, sizeof(err)) == 0, "%s", err);
    REQUIRE(nosa_model_load(d16, &mb, err, sizeof(err)) == 0, "%s", err);
    REQUIRE(nosa_model_save(mb, d32, "f32", err, sizeof(err)) == 0, "%s", err);
    REQUIRE(nosa_model_load(d32, &mf, err, sizeof(err)) == 0, "%s", err);
    CHECK(mb->tok_embed.dtype == NOSA_WEIGHT_BF16 &&
              mb->layers[1].w_down.dtype == NOSA_WEIGHT_BF16 &&
              mf->tok_embed.dtype == NOSA_WEIGHT_F32 &&
              mf->layers[1].w_down.dtype == NOSA_WEIGHT_F32,
          "the two models hold bf16 and f32 matrices");
    int vocab = mb->cfg.vocab_size;
    enum { PROMPT = 70, STEPS = 50 }; /* 120 tokens: 15 blocks against a budget of 10 */
    static const struct {
        enum nosa_attn_mode mode;
        int offload;
    } variants[] = {{NOSA_ATTN_NOSA, 1}, {NOSA_ATTN_DENSE, 0}};
    for (int v = 0; v < 2; v++) {
        struct test_arena ta;
        struct harness hb, hf;
        test_arena_init(&ta, &mb->cfg, 2 * (CTX / 8 + 2));
        harness_open(&hb, mb, variants[v].mode, variants[v].offload, 1, CTX, 0, &ta);
        harness_open(&hf, mf, variants[v].mode, variants[v].offload, 1, CTX, 0, &ta);
        int32_t prompt[PROMPT], tok;
        int slot = 0;
        harness_prompt(prompt, PROMPT, 9, vocab);
        harness_prefill(&hb, 0, prompt, PROMPT, g_la);
        harness_prefill(&hf, 0, prompt, PROMPT, g_lb);
        CHECK(same_logits(g_la, g_lb, vocab), "%s: prefill logits differ",
              nosa_attn_mode_name(variants[v].mode));
        for (int step = 0; step < STEPS; step++) {
            tok = harness_argmax(g_la, vocab);
            harness_decode(&hb, 1, &slot, &tok, g_la);
            harness_decode(&hf, 1, &slot, &tok, g_lb);
            CHECK(same_logits(g_la, g_lb, vocab), "%s: step %d logits differ",
                  nosa_attn_mode_name(variants[v].mode), step);
        }
        harness_close(&hb);
        harness_close(&hf);
        test_arena_free(&ta);
    }
    nosa_model_free(m0);
    nosa_model_free(mb);
    nosa_model_free(mf);
    remove_model_dir(d16);
    remove_model_dir(d32);
    CHECK(rmdir(root) == 0, "remove %s", root);
}

int main(void)
{
    test_full_budget();
    test_offload_equals_resident(NOSA_ATTN_INFLLMV2, 0, 0);
    test_offload_equals_resident(NOSA_ATTN_NOSA, 0, 0);
    test_offload_equals_resident(NOSA_ATTN_INFLLMV2, 12, 0);
    test_offload_equals_resident(NOSA_ATTN_NOSA, 12, 0);
    test_offload_equals_resident(NOSA_ATTN_INFLLMV2, 12, 2);
    test_offload_equals_resident(NOSA_ATTN_NOSA, 0, 3);
    test_offload_equals_resident(NOSA_ATTN_DENSE, 0, 0);
    test_offload_equals_resident(NOSA_ATTN_DENSE, 1, 0);
    test_batched_equals_alone();
    test_prefill_chunking();
    test_resume(NOSA_ATTN_NOSA, 1);
    test_resume(NOSA_ATTN_INFLLMV2, 0);
    test_resume(NOSA_ATTN_DENSE, 1);
    test_decode_out();
    test_bf16_weights();
    test_errors();
    return test_report("test_cpu_backend");
}
