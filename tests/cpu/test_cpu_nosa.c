/* test_cpu_nosa: NOSA's query-agnostic selection and its locality, on the tiny random model.
 * - Query independence: two sequences with the same prefix and a different token at the same
 *   position (one where no compressed window completes) get bit-identical eviction scores Be,
 *   different query scores Bq, and both selections contain the top (budget - query_aware) of
 *   Be: the part of the selection no query can change (NOSA.md "Why it is offloadable").
 * - Locality: on the same model and token stream, at the same budget and pool, nosa pulls
 *   fewer blocks from the arena than infllmv2; the per-step hit fraction (selected blocks
 *   already local) and the step-to-step selection overlap are printed for both. */
#include <string.h>

#include "backend_cpu.h"
#include "cpu_harness.h"
#include "ops.h"

#define CTX 512
#define MAXB (CTX / 8)

static float g_logits[2 * 512];

static void test_query_independence(void)
{
    struct nosa_model *m = harness_model(16, 6, 21);
    const struct nosa_sparse_config *sc = &m->cfg.sparse;
    int vocab = m->cfg.vocab_size;
    int k_total = sc->budget_blocks - 1, k_query = sc->query_aware_blocks - 1;
    enum { P = 300 }; /* token P is pushed as the 301st: (301 - 4) % 2 != 0, no window ends */
    struct test_arena ta;
    test_arena_init(&ta, &m->cfg, 2 * (MAXB + 1));
    struct harness h;
    harness_open(&h, m, NOSA_ATTN_NOSA, 0, 2, CTX, 0, &ta);
    int32_t prompt[P];
    harness_prompt(prompt, P, 5, vocab);
    harness_prefill(&h, 0, prompt, P, NULL);
    harness_prefill(&h, 1, prompt, P, NULL);
    int slots[2] = {0, 1};
    int32_t last[2] = {17, 300};
    harness_decode(&h, 2, slots, last, g_logits);

    int n_heads = 0, bq_differs = 0, sel_differs = 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        for (int hd = 0; hd < m->cfg.n_kv_heads; hd++) {
            float bq[2][MAXB], be[2][MAXB];
            int32_t sel[2][MAXB];
            int nb = 0, ns[2];
            for (int s = 0; s < 2; s++) {
                nb = nosa_backend_cpu_block_scores(h.b, s, l, hd, bq[s], be[s], MAXB);
                ns[s] = h.ops->last_selection(h.b, s, l, hd, sel[s], MAXB);
            }
            REQUIRE(nb == P / 8 && ns[0] == k_total && ns[1] == k_total,
                    "blocks %d, selections %d %d", nb, ns[0], ns[1]);
            n_heads++;
            CHECK(memcmp(be[0], be[1], (size_t)nb * sizeof(float)) == 0,
                  "layer %d head %d: Be depends on the query", l, hd);
            if (memcmp(bq[0], bq[1], (size_t)nb * sizeof(float)) != 0) bq_differs++;
            if (memcmp(sel[0], sel[1], sizeof(sel[0])) != 0) sel_differs++;
            /* The query-independent core: top (k_total - k_query) of Be, forced blocks +inf. */
            float ber[MAXB];
            memcpy(ber, be[0], sizeof(ber));
            for (int b = 0; b < sc->sink_blocks; b++) ber[b] = INFINITY;
            for (int b = nb - sc->window_blocks; b < nb; b++) ber[b] = INFINITY;
            int core[MAXB];
            unsigned char taken[MAXB];
            nosa_cpu_topk(core, k_total - k_query, ber, nb, taken);
            for (int s = 0; s < 2; s++) {
                int found = 0;
                for (int i = 0; i < k_total - k_query; i++)
                    for (int j = 0; j < k_total; j++) found += sel[s][j] == core[i];
                CHECK(found == k_total - k_query,
                      "layer %d head %d seq %d: %d of the %d top-Be blocks selected", l, hd, s,
                      found, k_total - k_query);
            }
        }
    }
    CHECK(bq_differs > 0, "the two queries should score blocks differently");
    printf("query independence: %d heads, Bq differs in %d, selection differs in %d, Be "
           "identical in all\n",
           n_heads, bq_differs, sel_differs);
    harness_close(&h);
    test_arena_free(&ta);
    nosa_model_free(m);
}

struct locality {
    uint64_t selected, transferred;
    double hit_sum, hit_min, overlap_sum;
    int steps;
};

/* Decodes a fixed token stream after a fixed prompt with offload and measures the hit
 * fraction per step and the mean overlap |S(t) & S(t-1)| / |S(t)| over layers and heads. */
static void run_locality(const struct nosa_model *m, enum nosa_attn_mode mode, int pool,
                         struct locality *out)
{
    enum { P = 300, STEPS = 200 };
    int vocab = m->cfg.vocab_size;
    int n_lh = m->cfg.n_layers * m->cfg.n_kv_heads;
    struct test_arena ta;
    test_arena_init(&ta, &m->cfg, MAXB + 1);
    struct harness h;
    harness_open(&h, m, mode, 1, 1, CTX, pool, &ta);
    static int32_t stream[P + STEPS];
    harness_prompt(stream, P + STEPS, 31, vocab);
    harness_prefill(&h, 0, stream, P, NULL);
    static int32_t prev[16][MAXB], cur[MAXB];
    int prev_n[16];
    REQUIRE(n_lh <= 16, "too many heads for this test");
    for (int i = 0; i < n_lh; i++)
        prev_n[i] = h.ops->last_selection(h.b, 0, i / m->cfg.n_kv_heads, i % m->cfg.n_kv_heads,
                                          prev[i], MAXB);
    memset(out, 0, sizeof(*out));
    out->hit_min = 1.0;
    int slot = 0;
    for (int step = 0; step < STEPS; step++) {
        harness_decode(&h, 1, &slot, stream + P + step, g_logits);
        struct nosa_step_stats st;
        h.ops->stats(h.b, &st);
        double hit = (double)st.block_hits / (double)st.blocks_selected;
        out->selected += st.blocks_selected;
        out->transferred += st.blocks_transferred;
        out->hit_sum += hit;
        if (hit < out->hit_min) out->hit_min = hit;
        if (step % 40 == 0)
            printf("  %-8s step %3d: %llu selected, %llu transferred, hit fraction %.3f\n",
                   nosa_attn_mode_name(mode), step, (unsigned long long)st.blocks_selected,
                   (unsigned long long)st.blocks_transferred, hit);
        for (int i = 0; i < n_lh; i++) {
            int n = h.ops->last_selection(h.b, 0, i / m->cfg.n_kv_heads, i % m->cfg.n_kv_heads,
                                          cur, MAXB);
            int common = 0;
            for (int a = 0; a < n; a++)
                for (int b = 0; b < prev_n[i]; b++) common += cur[a] == prev[i][b];
            out->overlap_sum += (double)common / (double)n / (double)n_lh;
            memcpy(prev[i], cur, (size_t)n * sizeof(int32_t));
            prev_n[i] = n;
        }
        out->steps++;
    }
    harness_close(&h);
    test_arena_free(&ta);
}

static void test_locality(int budget, int query_aware, int pool)
{
    struct nosa_model *m = harness_model(budget, query_aware, 13);
    struct locality inf, nosa;
    printf("locality: budget %d, query-aware %d, pool %d, 200 decode steps after 300 tokens\n",
           m->cfg.sparse.budget_blocks, m->cfg.sparse.query_aware_blocks,
           pool ? pool : 2 * m->cfg.sparse.budget_blocks);
    run_locality(m, NOSA_ATTN_INFLLMV2, pool, &inf);
    run_locality(m, NOSA_ATTN_NOSA, pool, &nosa);
    const struct locality *r[2] = {&inf, &nosa};
    for (int i = 0; i < 2; i++)
        printf("  %-8s: transferred %llu of %llu selected; hit fraction mean %.3f min %.3f; "
               "selection overlap with the previous step %.4f\n",
               i ? "nosa" : "infllmv2", (unsigned long long)r[i]->transferred,
               (unsigned long long)r[i]->selected, r[i]->hit_sum / r[i]->steps, r[i]->hit_min,
               r[i]->overlap_sum / r[i]->steps);
    CHECK(inf.selected == nosa.selected, "same budget, same number of selected blocks");
    CHECK(nosa.transferred < inf.transferred, "nosa moved %llu blocks, infllmv2 %llu",
          (unsigned long long)nosa.transferred, (unsigned long long)inf.transferred);
    nosa_model_free(m);
}

int main(void)
{
    test_query_independence();
    test_locality(0, 0, 0);   /* tiny's own settings: budget 10, query-aware 6, pool 20 */
    test_locality(0, 0, 12);  /* a pool of budget + 2 */
    test_locality(16, 6, 0);  /* a larger query-agnostic share */
    return test_report("test_cpu_nosa");
}
