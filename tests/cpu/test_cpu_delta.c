/* test_cpu_delta: the blocks an offloaded step pulls from the arena are exactly the selected
 * blocks its pool lacked (kv.h), checked per step and layer against the selections
 * themselves (last_selection), not only as counts:
 * - pool = budget - 1 (the least a sparse mode accepts): a step's gather leaves exactly its
 *   selection S(t) in the pool. So a step whose previous token completed no block pulls
 *   exactly |S(t) \ S(t-1)| per head. After a completing token the completed block c took the
 *   slot of one block of S(t-1) (which one depends on slot history), so that step pulls
 *   |S(t) \ (S(t-1) + c)| or one more.
 * - a pool as large as the context, after seq_resume (which starts the pool empty): nothing is
 *   ever evicted, so every step pulls exactly |S(t) \ K(t)|, K(t) = every block selected or
 *   completed since the resume.
 * Both for infllmv2 and nosa, two sequences decoded together (a layer's count is the sum
 * over sequences and KV heads). */
#include <string.h>

#include "cpu_harness.h"

#define CTX 512
#define MAXB (CTX / 8)
#define NSEQ 2
#define MAX_LH 16 /* layers x KV heads */

/* What a test knows of the pool of each (slot, layer, KV head). */
struct pool_view {
    const struct harness *h;
    int n_lh;
    int32_t sel[NSEQ][MAX_LH][MAXB]; /* the last selection */
    int n_sel[NSEQ][MAX_LH];
    unsigned char known[NSEQ][MAX_LH][MAXB]; /* K(t) of the large-pool case */
};

static void view_init(struct pool_view *v, const struct harness *h)
{
    memset(v, 0, sizeof(*v));
    v->h = h;
    v->n_lh = h->model->cfg.n_layers * h->model->cfg.n_kv_heads;
    REQUIRE(v->n_lh <= MAX_LH, "too many heads for this test");
}

/* The selection (slot, i = layer * n_kv + head) made by its last token, into out. */
static int read_sel(const struct harness *h, int slot, int i, int32_t *out)
{
    int n_kv = h->model->cfg.n_kv_heads;
    int n = h->ops->last_selection(h->b, slot, i / n_kv, i % n_kv, out, MAXB);
    REQUIRE(n >= 0, "last_selection %d", n);
    return n;
}

/* Selected blocks of cur[0 .. n) that are not marked in mark. */
static int count_missing(const int32_t *cur, int n, const unsigned char *mark)
{
    int c = 0;
    for (int i = 0; i < n; i++) c += !mark[cur[i]];
    return c;
}

static void stats_of(const struct harness *h, struct nosa_step_stats *st)
{
    h->ops->stats(h->b, st);
    REQUIRE(st->n_layers == (uint32_t)h->model->cfg.n_layers, "stats n_layers %u",
            st->n_layers);
}

/* pool = budget - 1; a 300- and a 277-token prompt, then 120 decode steps of both. */
static void test_minimal_pool(enum nosa_attn_mode mode)
{
    struct nosa_model *m = harness_model(0, 0, 17);
    int vocab = m->cfg.vocab_size, n_kv = m->cfg.n_kv_heads;
    int pool = m->cfg.sparse.budget_blocks - 1;
    enum { STEPS = 120 };
    struct test_arena ta;
    test_arena_init(&ta, &m->cfg, NSEQ * (MAXB + 1));
    struct harness h;
    harness_open(&h, m, mode, 1, NSEQ, CTX, pool, &ta);
    static struct pool_view v;
    view_init(&v, &h);
    const int plen[NSEQ] = {300, 277};
    int slots[NSEQ] = {0, 1};
    int32_t prompt[300], tok[NSEQ];
    static int32_t stream[NSEQ][STEPS];
    for (int s = 0; s < NSEQ; s++) {
        harness_prompt(prompt, plen[s], (uint32_t)(40 + s), vocab);
        harness_prefill(&h, s, prompt, plen[s], NULL);
        harness_prompt(stream[s], STEPS, (uint32_t)(50 + s), vocab);
        for (int i = 0; i < v.n_lh; i++) v.n_sel[s][i] = read_sel(&h, s, i, v.sel[s][i]);
    }
    int exact_steps = 0, bounded_steps = 0;
    uint64_t moved = 0;
    for (int step = 0; step < STEPS; step++) {
        /* Per layer: the least and the most the pool lets this step pull. */
        uint64_t lo[NOSA_MAX_LAYERS] = {0}, hi[NOSA_MAX_LAYERS] = {0};
        int completed[NSEQ];
        for (int s = 0; s < NSEQ; s++) {
            completed[s] = h.len[s] % 8 == 0; /* the previous token ended a block */
            tok[s] = stream[s][step];
        }
        harness_decode(&h, NSEQ, slots, tok, NULL);
        for (int s = 0; s < NSEQ; s++) {
            for (int i = 0; i < v.n_lh; i++) {
                unsigned char pooled[MAXB] = {0};
                REQUIRE(v.n_sel[s][i] == pool, "the pool is full with the last selection");
                for (int j = 0; j < v.n_sel[s][i]; j++) pooled[v.sel[s][i][j]] = 1;
                if (completed[s]) pooled[(h.len[s] - 2) / 8] = 1;
                int n = read_sel(&h, s, i, v.sel[s][i]);
                v.n_sel[s][i] = n;
                int miss = count_missing(v.sel[s][i], n, pooled);
                lo[i / n_kv] += (uint64_t)miss;
                hi[i / n_kv] += (uint64_t)(miss + completed[s]);
            }
        }
        struct nosa_step_stats st;
        stats_of(&h, &st);
        int exact = !completed[0] && !completed[1];
        for (int l = 0; l < m->cfg.n_layers; l++) {
            uint64_t t = st.layer[l].transferred;
            CHECK(lo[l] <= t && t <= hi[l], "%s step %d layer %d: pulled %llu blocks, the pool "
                  "lacked %llu .. %llu of the selection", nosa_attn_mode_name(mode), step, l,
                  (unsigned long long)t, (unsigned long long)lo[l], (unsigned long long)hi[l]);
            moved += t;
        }
        exact_steps += exact;
        bounded_steps += !exact;
    }
    CHECK(exact_steps >= STEPS / 2 && moved > 0, "%d exact steps, %llu blocks moved",
          exact_steps, (unsigned long long)moved);
    printf("%-8s pool %d: %d steps exact, %d within one block per completing sequence, "
           "%llu blocks moved\n",
           nosa_attn_mode_name(mode), pool, exact_steps, bounded_steps,
           (unsigned long long)moved);
    harness_close(&h);
    test_arena_free(&ta);
    nosa_model_free(m);
}

/* A resident run writes both prompts' blocks to the arena; an offloaded backend with a pool
 * of the whole context resumes them, re-prefills the open blocks' tokens one per call and
 * decodes 80 steps. */
static void test_large_pool_after_resume(enum nosa_attn_mode mode)
{
    struct nosa_model *m = harness_model(0, 0, 19);
    int vocab = m->cfg.vocab_size, n_kv = m->cfg.n_kv_heads;
    enum { P = 300, STEPS = 80, T = P + STEPS };
    struct test_arena ta;
    test_arena_init(&ta, &m->cfg, 2 * NSEQ * (MAXB + 1));
    struct harness res, off;
    harness_open(&res, m, mode, 0, NSEQ, CTX, 0, &ta);
    harness_open(&off, m, mode, 1, NSEQ, CTX, MAXB, &ta);
    static struct pool_view v;
    view_init(&v, &off);
    static int32_t stream[NSEQ][T];
    const int nb[NSEQ] = {P / 8, P / 8 - 3}; /* blocks resumed */
    for (int s = 0; s < NSEQ; s++) {
        harness_prompt(stream[s], T, (uint32_t)(60 + s), vocab);
        harness_prefill(&res, s, stream[s], P, NULL);
        struct test_seq_table *tb = &off.tables[s];
        memcpy(tb->groups, res.tables[s].groups, (size_t)nb[s] * sizeof(uint32_t));
        tb->blocks.n_groups = (uint32_t)nb[s];
        char err[256];
        int rc = off.ops->seq_resume(off.b, s, &tb->blocks, (uint32_t)nb[s], err, sizeof(err));
        REQUIRE(rc == 0, "seq_resume: %s", err);
        off.len[s] = nb[s] * 8;
    }
    uint64_t moved = 0, selected = 0;
    int calls = 0;
    /* One token per call for each sequence: re-prefill up to P alone, then decode together. */
    for (int pos = nb[1] * 8; pos < T; pos++) {
        int slots[NSEQ], n = 0;
        int32_t tok[NSEQ];
        for (int s = 0; s < NSEQ; s++) {
            if (off.len[s] > pos) continue;
            slots[n] = s;
            tok[n++] = stream[s][pos];
        }
        int per_call = pos < P ? 1 : n; /* sequences a call steps */
        for (int first = 0; first < n; first += per_call) {
            if (pos < P)
                harness_prefill(&off, slots[first], tok + first, 1, NULL);
            else
                harness_decode(&off, n, slots, tok, NULL);
            uint64_t want[NOSA_MAX_LAYERS] = {0};
            for (int k = first; k < first + per_call; k++) {
                int s = slots[k];
                for (int i = 0; i < v.n_lh; i++) {
                    int c = read_sel(&off, s, i, v.sel[s][i]);
                    want[i / n_kv] += (uint64_t)count_missing(v.sel[s][i], c, v.known[s][i]);
                    for (int j = 0; j < c; j++) v.known[s][i][v.sel[s][i][j]] = 1;
                    if (pos % 8 == 7) v.known[s][i][pos / 8] = 1; /* completed into the pool */
                }
            }
            struct nosa_step_stats st;
            stats_of(&off, &st);
            for (int l = 0; l < m->cfg.n_layers; l++) {
                CHECK(st.layer[l].transferred == want[l], "%s position %d layer %d: pulled "
                      "%llu blocks, the pool lacked %llu", nosa_attn_mode_name(mode), pos, l,
                      (unsigned long long)st.layer[l].transferred,
                      (unsigned long long)want[l]);
                moved += st.layer[l].transferred;
                selected += st.layer[l].selected;
            }
            calls++;
        }
    }
    CHECK(moved > 0 && moved < selected, "moved %llu of %llu", (unsigned long long)moved,
          (unsigned long long)selected);
    printf("%-8s pool %d after resume: %d calls exact, %llu of %llu selected blocks moved\n",
           nosa_attn_mode_name(mode), MAXB, calls, (unsigned long long)moved,
           (unsigned long long)selected);
    harness_close(&res);
    harness_close(&off);
    test_arena_free(&ta);
    nosa_model_free(m);
}

int main(void)
{
    test_minimal_pool(NOSA_ATTN_INFLLMV2);
    test_minimal_pool(NOSA_ATTN_NOSA);
    test_large_pool_after_resume(NOSA_ATTN_INFLLMV2);
    test_large_pool_after_resume(NOSA_ATTN_NOSA);
    return test_report("test_cpu_delta");
}
