/* test_cuda_backend: the cuda backend against the cpu reference on the tiny model.
 *
 * The model is written as bf16 and loaded back, so its weights are bf16-exact, as with a real
 * checkpoint: the GPU's bf16 weights then lose nothing, its activations enter the GEMMs as
 * two bf16 terms (~2^-17 relative), and the two backends differ only by f32 accumulation
 * order and by libm/CUDA expf/log1pf ulps, ~1e-6 relative per op. But K and V are stored
 * in bf16: where the two backends' f32 values straddle a rounding boundary, that element
 * differs by one bf16 ulp (2^-8 relative), and that moves later logits by up to a few 1e-4
 * of max |logit| (4.5e-4 measured on the H100, bench/RESULTS.md). Logits are checked to
 * LOGIT_TOL = 2e-3 of max |logit|; a greedy token may differ only where the CPU's top-2 gap
 * is under twice that.
 *
 * Per mode (dense, infllmv2, nosa; resident and offloaded), two slots, prompts of 21 and 13
 * tokens, then g_steps batched decode steps with the next tokens chosen greedily from the CPU's
 * logits (so one near-tie cannot derail the rest of the run):
 * - the GPU's greedy token equals the CPU's, except where the CPU's top-2 gap is under
 *   GAP_TOL (counted, reported; must stay rare);
 * - every (slot, layer, KV head) selection equals the CPU's, except where the CPU's block
 *   scores have a near tie at a top-k boundary (score gap under SCORE_TOL, relative): scores
 *   within the numeric differences above may legitimately rank differently;
 * - while all selections agree, blocks transferred / hits and every layer's statistics
 *   equal the CPU's exactly (same pool policy), up to the first step whose evictions rest on
 *   a near tie of the CPU's block scores (the eviction order compares scores; counted and
 *   reported with the number of steps compared);
 * - with the read-ahead (prefetch_blocks 2 and 3), the blocks read ahead are counted the same
 *   as the CPU's while the stats are compared (up to a near tie of the scores the read-ahead
 *   compares: prefetch_near_tie), and the logits are those without it;
 * - offloaded logits are bit-identical to resident logits (offload only moves bytes), with
 *   or without the read-ahead;
 * - with a budget covering the whole context, infllmv2 and nosa logits are bit-identical to
 *   dense;
 * - decode steps replayed from CUDA graphs give logits bit-identical to steps without graphs
 *   (NOSA_CUDA_GRAPHS=0), and graphs are in fact captured and replayed;
 * - a slot rebuilt by seq_resume from the arena (then prefilled to the same length) decodes
 *   bit-identically to the slot that was prefilled, resident and offloaded;
 * - a row drawn by top-p with temperature (decode's sampled output) is, on both backends, the
 *   token nosa_sample_row draws from that backend's own logits of the step; a greedy row's
 *   sampled output is left as it was;
 * - a 150-token prompt prefilled in one call or cut into three gives bit-identical logits and
 *   decode steps (the batched prefill's arithmetic does not depend on the cut), within
 *   LOGIT_TOL of the CPU's;
 * - prompts prefilled side by side in one call (the prefill's lanes) give bit-identical
 *   logits, block counts and decode steps to each prompt prefilled alone;
 * - dense with offloaded KV (cpu backend only) is refused at create, saying so. */
#include <cuda_runtime_api.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "backend_cpu.h"
#include "backend_cuda.h"
#include "model.h"
#include "parse.h"
#include "test_arena.h"
#include "test_util.h"

#define STEPS_DEFAULT 220 /* NOSA_TEST_STEPS overrides (shorter runs under sanitizers) */
#define N_SLOTS 2
#define MAX_CTX 512
#define LOGIT_TOL 2e-3
#define GAP_TOL (2 * LOGIT_TOL)
#define SCORE_TOL 1e-4
#define MAX_NB (MAX_CTX / 8 + 1)
#define NOSA_SAMPLE_MAX_TEST_VOCAB 4096 /* the tiny model's vocabulary fits */

static int g_steps = STEPS_DEFAULT;

struct run_cfg {
    const char *name;
    enum nosa_attn_mode mode;
    int offload;
    int prefetch; /* prefetch_blocks */
};

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static float top2_gap(const float *x, int n)
{
    int b = argmax(x, n);
    float second = -INFINITY;
    for (int i = 0; i < n; i++)
        if (i != b && x[i] > second) second = x[i];
    return x[b] - second;
}

/* The CPU's ordering boundary for a top-k over s[0 .. nb): the gap between the k-th and
 * (k+1)-th best finite scores (forced +inf entries never tie with finite ones). */
static float boundary_gap(const float *s, int nb, int k)
{
    float v[MAX_NB];
    int n = 0;
    for (int i = 0; i < nb; i++) v[n++] = s[i];
    /* selection sort of the top k+1, descending */
    for (int a = 0; a <= k && a < n; a++) {
        int best = a;
        for (int j = a + 1; j < n; j++)
            if (v[j] > v[best]) best = j;
        float t = v[a];
        v[a] = v[best];
        v[best] = t;
    }
    if (k >= n || k < 1) return INFINITY;
    if (isinf(v[k - 1]) && isinf(v[k])) return INFINITY;
    return fabsf(v[k - 1] - v[k]) / fmaxf(1.0f, fabsf(v[k - 1]));
}

/* The CPU's block scores of the head's last step (bq, and be when not NULL), forced blocks
 * +inf as the selection sees them; the number of blocks, or -1 when they do not fit. */
static int cpu_scores(struct nosa_backend *cpu, const struct nosa_model_config *mc, int slot,
                      int layer, int head, float *bq, float *be)
{
    int nb = nosa_backend_cpu_block_scores(cpu, slot, layer, head, bq, be, MAX_NB);
    if (nb < 0 || nb > MAX_NB) return -1;
    const struct nosa_sparse_config *sc = &mc->sparse;
    for (int m = 0; m < nb; m++)
        if (m < sc->sink_blocks || m >= nb - sc->window_blocks) {
            bq[m] = INFINITY;
            if (be) be[m] = INFINITY;
        }
    return nb;
}

/* 1 when the CPU's selection for this head sits on a near tie of its scores. */
static int near_tie(struct nosa_backend *cpu, const struct nosa_model_config *mc,
                    enum nosa_attn_mode mode, int slot, int layer, int head)
{
    float bq[MAX_NB], be[MAX_NB];
    int nb = cpu_scores(cpu, mc, slot, layer, head, bq, be);
    if (nb < 0) return 0;
    const struct nosa_sparse_config *sc = &mc->sparse;
    if (boundary_gap(bq, nb, mode == NOSA_ATTN_NOSA ? sc->query_aware_blocks - 1
                                                     : sc->budget_blocks - 1) < SCORE_TOL)
        return 1;
    return mode == NOSA_ATTN_NOSA && boundary_gap(be, nb, sc->budget_blocks - 1) < SCORE_TOL;
}

/* The CPU's offload pool of each (slot, layer * n_kv + head) before a step. */
#define MAX_LH 64
struct pool_snapshot {
    int n[N_SLOTS][MAX_LH];
    int32_t blk[N_SLOTS][MAX_LH][MAX_NB];
};

static void pool_snapshot_take(struct pool_snapshot *ps, struct nosa_backend *cpu,
                               const struct nosa_model_config *mc)
{
    REQUIRE(mc->n_layers * mc->n_kv_heads <= MAX_LH, "too many heads for the pool snapshot");
    for (int s = 0; s < N_SLOTS; s++)
        for (int l = 0; l < mc->n_layers; l++)
            for (int h = 0; h < mc->n_kv_heads; h++) {
                int lh = l * mc->n_kv_heads + h;
                ps->n[s][lh] = nosa_backend_cpu_pool_blocks(cpu, s, l, h, ps->blk[s][lh], MAX_NB);
                REQUIRE(ps->n[s][lh] >= 0 && ps->n[s][lh] <= MAX_NB, "pool_blocks %d",
                        ps->n[s][lh]);
            }
}

/* 1 when a and b differ by less than SCORE_TOL (relative) without being equal: scores the two
 * backends may order either way (equal scores come from one compressed key on both). */
static int near_pair(float a, float b)
{
    return a != b && fabsf(a - b) < SCORE_TOL * fmaxf(1.0f, fmaxf(fabsf(a), fabsf(b)));
}

static void sort_floats(float *v, int n, int descending)
{
    for (int i = 1; i < n; i++) /* insertion sort */
        for (int j = i; j > 0 && (descending ? v[j] > v[j - 1] : v[j] < v[j - 1]); j--) {
            float t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
}

/* 1 when the CPU's evictions of this step for (slot, layer, head) rest on a near tie of its
 * block scores, so the GPU may legitimately evict another block (kv.h, eviction order):
 * the pool's blocks outside the step's selection go lowest score first, as many as the
 * misses and a completing block need beyond the free slots; a near tie is a score gap under
 * SCORE_TOL between the last evicted and the first kept (exactly equal scores are the same
 * on both, from one compressed key, and are ordered by stamp alike). */
static int victim_near_tie(struct nosa_backend *cpu, const struct nosa_model_config *mc,
                           int pool_blocks, const int32_t *before, int n_before,
                           const int32_t *sel, int n_sel, int completes, int slot, int layer,
                           int head)
{
    float bq[MAX_NB], v[MAX_NB];
    if (cpu_scores(cpu, mc, slot, layer, head, bq, NULL) < 0) return 0;
    unsigned char in_sel[MAX_NB] = {0}, in_pool[MAX_NB] = {0};
    for (int i = 0; i < n_sel; i++) in_sel[sel[i]] = 1;
    int nv = 0, misses = 0;
    for (int i = 0; i < n_before; i++) {
        in_pool[before[i]] = 1;
        if (!in_sel[before[i]]) v[nv++] = bq[before[i]];
    }
    for (int i = 0; i < n_sel; i++) misses += !in_pool[sel[i]];
    int evict = misses + completes - (pool_blocks - n_before);
    if (evict <= 0 || evict >= nv) return 0; /* nothing to choose */
    sort_floats(v, nv, 0);
    float lo = v[evict - 1], hi = v[evict], tol = SCORE_TOL * fmaxf(1.0f, fabsf(hi));
    if (!(hi - lo < tol)) return 0;
    if (hi != lo) return 1;
    for (int i = 0; i < nv; i++)
        if (v[i] != lo && fabsf(v[i] - lo) < tol) return 1;
    return 0;
}

/* 1 when the CPU's read-ahead of this step for (slot, layer, head) rests on a near tie of its
 * block scores (kv.h, "Prefetch"). With before/after the pool's blocks before and after the
 * step and the evictions of the step's misses and completion already free of near ties
 * (victim_near_tie), the read-ahead put the top F + k of the absent blocks C (descending)
 * into F free slots and over the k lowest of the eligible pool blocks E (ascending), and
 * stopped at x blocks, at no candidate, at no victim, or at a candidate that did not
 * outrank its victim. Near ties that can change that: C's boundary at F + k, E's at k, the
 * last accepted swap (c > e) and the refused one. */
static int prefetch_near_tie(struct nosa_backend *cpu, const struct nosa_model_config *mc,
                             int pool_blocks, int x, const int32_t *before, int n_before,
                             const int32_t *after, int n_after, const int32_t *sel, int n_sel,
                             int completes, int n_blocks, int slot, int layer, int head)
{
    float bq[MAX_NB], e[MAX_NB], c[MAX_NB];
    if (cpu_scores(cpu, mc, slot, layer, head, bq, NULL) < 0) return 0;
    unsigned char in_sel[MAX_NB] = {0}, in_before[MAX_NB] = {0}, in_pool[MAX_NB] = {0};
    for (int i = 0; i < n_sel; i++) in_sel[sel[i]] = 1;
    for (int i = 0; i < n_before; i++) in_before[before[i]] = 1;
    int nu = 0, misses = 0, n_read = 0;
    for (int i = 0; i < n_before; i++)
        if (!in_sel[before[i]]) e[nu++] = bq[before[i]];
    for (int i = 0; i < n_sel; i++) misses += !in_before[sel[i]];
    for (int i = 0; i < n_after; i++) {
        int m = after[i];
        /* In the pool after the step, neither before it, selected, nor completing. */
        if (m < n_blocks && !in_before[m] && !in_sel[m]) n_read++;
    }
    sort_floats(e, nu, 0);
    int free_before = pool_blocks - n_before;
    int evict = misses + completes - free_before, free_left = -evict;
    if (evict < 0) evict = 0;
    if (free_left < 0) free_left = 0;
    /* The pool before the read-ahead: before minus the evicted (the lowest of e), plus the
     * selection; the absent complete blocks are the candidates. */
    const float *el = e + (evict < nu ? evict : nu);
    int ne = nu - evict > 0 ? nu - evict : 0;
    for (int i = 0; i < n_before; i++)
        if (in_sel[before[i]]) in_pool[before[i]] = 1;
    for (int i = 0; i < n_sel; i++) in_pool[sel[i]] = 1;
    for (int i = 0; i < n_before; i++)
        if (!in_sel[before[i]]) {
            int rank = 0; /* among before's unselected, by score: evicted if below evict */
            for (int j = 0; j < n_before; j++)
                if (!in_sel[before[j]] && (bq[before[j]] < bq[before[i]] ||
                                           (bq[before[j]] == bq[before[i]] && j < i)))
                    rank++;
            in_pool[before[i]] = rank >= evict;
        }
    int nc = 0;
    for (int m = 0; m < n_blocks; m++)
        if (!in_pool[m]) c[nc++] = bq[m];
    sort_floats(c, nc, 1);
    int f = n_read < free_left ? n_read : free_left, k = n_read - f;
    if (n_read > 0 && n_read < nc && near_pair(c[n_read - 1], c[n_read])) return 1;
    if (k > 0 && k < ne && near_pair(el[k - 1], el[k])) return 1;
    if (k > 0 && near_pair(c[n_read - 1], el[k - 1])) return 1;
    /* Refused: the next candidate against the next victim, unless x, the candidates or the
     * victims ran out first. */
    if (n_read < x && n_read < nc && k < ne && n_read >= free_left &&
        near_pair(c[n_read], el[k]))
        return 1;
    return 0;
}

struct side {
    const struct nosa_backend_ops *ops;
    struct nosa_backend *b;
    struct test_arena ta;
    struct test_seq_table tab[N_SLOTS];
};

static struct nosa_backend_config side_config(const struct nosa_model *m,
                                              const struct run_cfg *rc,
                                              const struct nosa_kv_arena *arena)
{
    struct nosa_backend_config cfg = {
        .mode = rc->mode,
        .offload = rc->offload,
        .max_seqs = N_SLOTS,
        .max_context = MAX_CTX,
        .pool_blocks = m->cfg.sparse.budget_blocks + 2, /* tight: the pool must evict */
        .prefetch_blocks = rc->prefetch,
        .arena = arena,
        .device = 0,
    };
    return cfg;
}

static void side_open(struct side *s, const struct nosa_backend_ops *ops,
                      const struct nosa_model *m, const struct run_cfg *rc)
{
    char err[256];
    memset(s, 0, sizeof(*s));
    s->ops = ops;
    test_arena_init(&s->ta, &m->cfg, 2 * MAX_CTX / (uint64_t)m->cfg.sparse.block_size + 4);
    for (int i = 0; i < N_SLOTS; i++) test_seq_table_init(&s->tab[i]);
    struct nosa_backend_config cfg = side_config(m, rc, &s->ta.arena);
    int r = ops->create(m, &cfg, &s->b, err, sizeof(err));
    REQUIRE(r == 0, "%s create (%s): %s", ops->name, rc->name, err);
}

static void side_close(struct side *s)
{
    s->ops->destroy(s->b);
    test_arena_free(&s->ta);
}

/* Runs one configuration; the GPU logits of every step go to trace[g_steps][N_SLOTS][vocab]
 * (and the prompt logits first) when trace is not NULL. */
static void run_mode(const struct nosa_model *m, const struct run_cfg *rc, float *trace)
{
    char err[256];
    const struct nosa_model_config *mc = &m->cfg;
    int vocab = mc->vocab_size;
    struct side cpu, gpu;
    side_open(&cpu, &nosa_backend_cpu_ops, m, rc);
    side_open(&gpu, &nosa_backend_cuda_ops, m, rc);
    float *lc = malloc(sizeof(float) * (size_t)vocab * N_SLOTS);
    float *lg = malloc(sizeof(float) * (size_t)vocab * N_SLOTS);
    REQUIRE(lc && lg, "out of memory");
    int len[N_SLOTS] = {21, 13}, next[N_SLOTS], slots[N_SLOTS] = {0, 1};
    int32_t prompt[32];
    double max_err = 0.0;
    int near_ties = 0, sel_checked = 0, sel_mismatch = 0, sel_tie = 0, diverged = 0;
    int victim_ties = 0, stats_steps = 0;
    int pooled = rc->offload && rc->mode != NOSA_ATTN_DENSE;
    int pool_blocks = side_config(m, rc, NULL).pool_blocks;
    static struct pool_snapshot before, after;
    int sampled_same = 0, sampled_rows = 0;
    uint64_t transferred = 0, prefetched = 0, stats_prefetched = 0;
    for (int s = 0; s < N_SLOTS; s++) {
        for (int i = 0; i < len[s]; i++) prompt[i] = (int32_t)((i * 37 + s * 101 + 5) % 256);
        struct side *sides[2] = {&cpu, &gpu};
        float *outs[2] = {lc + (size_t)s * vocab, lg + (size_t)s * vocab};
        for (int k = 0; k < 2; k++) {
            test_seq_table_cover(&sides[k]->ta, &sides[k]->tab[s], len[s]);
            int r = nosa_backend_prefill_one(sides[k]->ops, sides[k]->b, s, prompt, len[s],
                                          &sides[k]->tab[s].blocks, outs[k], err, sizeof(err));
            REQUIRE(r == 0, "%s prefill: %s", sides[k]->ops->name, err);
        }
        next[s] = argmax(lc + (size_t)s * vocab, vocab);
    }
    struct nosa_seq_blocks bc[N_SLOTS], bg[N_SLOTS];
    for (int step = 0; step < g_steps; step++) {
        int32_t toks[N_SLOTS];
        for (int s = 0; s < N_SLOTS; s++) {
            toks[s] = next[s];
            test_seq_table_cover(&cpu.ta, &cpu.tab[s], len[s] + 1);
            test_seq_table_cover(&gpu.ta, &gpu.tab[s], len[s] + 1);
            bc[s] = cpu.tab[s].blocks;
            bg[s] = gpu.tab[s].blocks;
        }
        int32_t ac[N_SLOTS], ag[N_SLOTS], dc[N_SLOTS] = {-7, -7}, dg[N_SLOTS] = {-7, -7};
        /* Row 0 drawn (temperature and top_p vary with the step), row 1 greedy. */
        struct nosa_row_sampling rs[N_SLOTS] = {
            {0.5f + 0.25f * (float)(step % 4), step % 3 ? 0.9f : 1.0f, 77u, (uint64_t)step},
            {0.0f, 1.0f, 0u, 0u}};
        struct nosa_decode_out oc = {.logits = lc, .argmax = ac, .sampling = rs, .sampled = dc},
                               og = {.logits = lg, .argmax = ag, .sampling = rs, .sampled = dg};
        if (pooled) pool_snapshot_take(&before, cpu.b, mc);
        int r = cpu.ops->decode(cpu.b, N_SLOTS, slots, toks, bc, &oc, err, sizeof(err));
        REQUIRE(r == 0, "cpu decode: %s", err);
        if (pooled && rc->prefetch) pool_snapshot_take(&after, cpu.b, mc);
        r = gpu.ops->decode(gpu.b, N_SLOTS, slots, toks, bg, &og, err, sizeof(err));
        REQUIRE(r == 0, "cuda decode step %d: %s", step, err);
        for (int s = 0; s < N_SLOTS; s++)
            CHECK(ac[s] == argmax(lc + (size_t)s * vocab, vocab) &&
                      ag[s] == argmax(lg + (size_t)s * vocab, vocab),
                  "%s step %d slot %d: argmax output %d/%d (cpu/cuda) is not its logits' %d/%d",
                  rc->name, step, s, ac[s], ag[s], argmax(lc + (size_t)s * vocab, vocab),
                  argmax(lg + (size_t)s * vocab, vocab));
        {
            uint64_t keys[2 * NOSA_SAMPLE_MAX_TEST_VOCAB];
            REQUIRE(vocab <= NOSA_SAMPLE_MAX_TEST_VOCAB, "vocab %d", vocab);
            int32_t wc = nosa_sample_row(lc, vocab, &rs[0], keys);
            int32_t wg = nosa_sample_row(lg, vocab, &rs[0], keys);
            CHECK(dc[0] == wc && dg[0] == wg && wc >= 0,
                  "%s step %d: sampled row %d/%d (cpu/cuda), the rule on their logits %d/%d",
                  rc->name, step, dc[0], dg[0], wc, wg);
            CHECK(dc[1] == -7 && dg[1] == -7, "%s step %d: a greedy row's sampled output written",
                  rc->name, step);
            sampled_same += dc[0] == dg[0];
            sampled_rows++;
        }
        if (trace) memcpy(trace + (size_t)step * N_SLOTS * vocab, lg,
                          sizeof(float) * (size_t)vocab * N_SLOTS);
        for (int s = 0; s < N_SLOTS; s++) {
            len[s]++;
            const float *c = lc + (size_t)s * vocab, *g = lg + (size_t)s * vocab;
            int tie_here = 0;
            for (int l = 0; l < mc->n_layers; l++) {
                for (int h = 0; h < mc->n_kv_heads; h++) {
                    int32_t sc_[MAX_NB], sg[MAX_NB];
                    int nc = cpu.ops->last_selection(cpu.b, s, l, h, sc_, MAX_NB);
                    int ng = gpu.ops->last_selection(gpu.b, s, l, h, sg, MAX_NB);
                    REQUIRE(nc >= 0 && ng >= 0, "last_selection failed (%d, %d)", nc, ng);
                    sel_checked++;
                    int lh = l * mc->n_kv_heads + h;
                    int completes = len[s] % mc->sparse.block_size == 0;
                    if (pooled && !diverged &&
                        (victim_near_tie(cpu.b, mc, pool_blocks, before.blk[s][lh],
                                         before.n[s][lh], sc_, nc, completes, s, l, h) ||
                         (rc->prefetch &&
                          prefetch_near_tie(cpu.b, mc, pool_blocks, rc->prefetch,
                                            before.blk[s][lh], before.n[s][lh],
                                            after.blk[s][lh], after.n[s][lh], sc_, nc,
                                            completes, (len[s] - 1) / mc->sparse.block_size,
                                            s, l, h)))) {
                        victim_ties++;
                        diverged = 1; /* the pools may differ from here on */
                    }
                    if (nc == ng && memcmp(sc_, sg, sizeof(int32_t) * (size_t)nc) == 0) continue;
                    diverged = 1;
                    if (near_tie(cpu.b, mc, rc->mode, s, l, h)) {
                        sel_tie++;
                        tie_here = 1;
                        continue;
                    }
                    sel_mismatch++;
                    CHECK(0, "%s step %d slot %d layer %d head %d: selections differ "
                          "(%d vs %d blocks) with no near tie", rc->name, step, s, l, h, nc, ng);
                }
            }
            double mx = 0.0, de = 0.0;
            for (int v = 0; v < vocab; v++) {
                mx = fmax(mx, fabs(c[v]));
                de = fmax(de, fabs((double)c[v] - g[v]));
            }
            if (!tie_here) max_err = fmax(max_err, de / mx);
            /* A near-tie selection difference changes this step's attention legitimately. */
            CHECK(tie_here || de <= LOGIT_TOL * mx, "%s step %d slot %d: logits differ by %g (max %g)",
                  rc->name, step, s, de, mx);
            int tc = argmax(c, vocab), tg = argmax(g, vocab);
            if (tc != tg && !tie_here) {
                if (top2_gap(c, vocab) < GAP_TOL * mx)
                    near_ties++;
                else
                    CHECK(tc == tg, "%s step %d slot %d: greedy token %d (cpu) vs %d (cuda)",
                          rc->name, step, s, tc, tg);
            }
            next[s] = tc;
        }
        struct nosa_step_stats sc, sg;
        cpu.ops->stats(cpu.b, &sc);
        gpu.ops->stats(gpu.b, &sg);
        CHECK(sg.blocks_selected == sg.blocks_transferred + sg.block_hits,
              "%s: selected != transferred + hits", rc->name);
        CHECK(rc->prefetch || sg.blocks_prefetched == 0, "%s: read ahead without prefetch",
              rc->name);
        prefetched += sg.blocks_prefetched;
        if (!diverged) {
            stats_steps++;
            CHECK(sc.blocks_selected == sg.blocks_selected &&
                      sc.blocks_transferred == sg.blocks_transferred &&
                      sc.block_hits == sg.block_hits &&
                      sc.blocks_prefetched == sg.blocks_prefetched &&
                      sc.bytes_h2d == sg.bytes_h2d &&
                      sc.bytes_d2h == sg.bytes_d2h && sc.n_layers == sg.n_layers &&
                      memcmp(sc.layer, sg.layer, sc.n_layers * sizeof(sc.layer[0])) == 0,
                  "%s step %d: stats (totals or per layer) differ: selected %llu/%llu "
                  "transferred %llu/%llu prefetched %llu/%llu d2h %llu/%llu", rc->name, step,
                  (unsigned long long)sc.blocks_selected, (unsigned long long)sg.blocks_selected,
                  (unsigned long long)sc.blocks_transferred,
                  (unsigned long long)sg.blocks_transferred,
                  (unsigned long long)sc.blocks_prefetched,
                  (unsigned long long)sg.blocks_prefetched, (unsigned long long)sc.bytes_d2h,
                  (unsigned long long)sg.bytes_d2h);
            stats_prefetched += sg.blocks_prefetched;
        }
        transferred += sg.blocks_transferred;
    }
    printf("%-14s max logit err %.3g (tol %g), greedy near-ties %d, selections %d checked, "
           "%d near-tie differences, %d mismatches, blocks transferred %llu, read ahead %llu, "
           "stats equal to the cpu's for %d/%d steps (%d eviction near-ties; %llu blocks read "
           "ahead in them), sampled rows equal to the cpu's %d/%d\n",
           rc->name, max_err, LOGIT_TOL, near_ties, sel_checked, sel_tie, sel_mismatch,
           (unsigned long long)transferred, (unsigned long long)prefetched, stats_steps,
           g_steps, victim_ties, (unsigned long long)stats_prefetched, sampled_same,
           sampled_rows);
    if (rc->prefetch && g_steps >= 100)
        CHECK(stats_prefetched > 0, "%s: no block read ahead while the stats were compared",
              rc->name);
    CHECK(near_ties <= 2 + g_steps / 50, "%s: %d greedy near-ties", rc->name, near_ties);
    if (rc->offload && g_steps >= 100) CHECK(transferred > 0, "%s: offload never transferred a block", rc->name);
    free(lc);
    free(lg);
    side_close(&cpu);
    side_close(&gpu);
}

/* GPU only: logits of the whole run for one configuration, next tokens fixed. The graph
 * counts of the backend go to graphs[2] (captures, launches) when not NULL. */
static void gpu_trace(const struct nosa_model *m, const struct run_cfg *rc, float *trace,
                      unsigned long *graphs)
{
    char err[256];
    struct side gpu;
    side_open(&gpu, &nosa_backend_cuda_ops, m, rc);
    int vocab = m->cfg.vocab_size, len[N_SLOTS] = {21, 13}, slots[N_SLOTS] = {0, 1};
    int32_t prompt[32], toks[N_SLOTS];
    struct nosa_seq_blocks bg[N_SLOTS];
    for (int s = 0; s < N_SLOTS; s++) {
        for (int i = 0; i < len[s]; i++) prompt[i] = (int32_t)((i * 37 + s * 101 + 5) % 256);
        test_seq_table_cover(&gpu.ta, &gpu.tab[s], len[s]);
        int r = nosa_backend_prefill_one(gpu.ops, gpu.b, s, prompt, len[s], &gpu.tab[s].blocks,
                                         NULL, err, sizeof(err));
        REQUIRE(r == 0, "prefill: %s", err);
    }
    for (int step = 0; step < g_steps; step++) {
        for (int s = 0; s < N_SLOTS; s++) {
            toks[s] = (int32_t)((step * 13 + s * 7) % 256);
            test_seq_table_cover(&gpu.ta, &gpu.tab[s], len[s] + 1);
            bg[s] = gpu.tab[s].blocks;
            len[s]++;
        }
        struct nosa_decode_out out = {.logits = trace + (size_t)step * N_SLOTS * vocab};
        int r = gpu.ops->decode(gpu.b, N_SLOTS, slots, toks, bg, &out, err, sizeof(err));
        REQUIRE(r == 0, "decode: %s", err);
    }
    if (graphs) nosa_backend_cuda_graph_counts(gpu.b, &graphs[0], &graphs[1]);
    side_close(&gpu);
}

#define OUT_STEPS 6

/* What a decode step hands back (struct nosa_decode_out): two GPU backends decode the same
 * tokens, A asking every row's logits and argmax, B in turn the argmax alone, the logits of
 * row 1 alone (row 0's left as they were), and nothing. B's argmax must equal A's and the
 * argmax of A's logits, and B's row 1 equal A's bit for bit. */
static void decode_out_check(const struct nosa_model *m, const struct run_cfg *rc)
{
    char err[256];
    int vocab = m->cfg.vocab_size, slots[N_SLOTS] = {0, 1};
    struct side sd[2];
    size_t lb = (size_t)vocab * N_SLOTS;
    float *la = malloc(lb * sizeof(float)), *lbuf = malloc(lb * sizeof(float));
    REQUIRE(la && lbuf, "out of memory");
    int len[2][N_SLOTS];
    for (int k = 0; k < 2; k++) {
        side_open(&sd[k], &nosa_backend_cuda_ops, m, rc);
        for (int s = 0; s < N_SLOTS; s++) {
            int32_t prompt[128];
            len[k][s] = 90 + 9 * s; /* past the full budget: the sparse path runs */
            for (int i = 0; i < len[k][s]; i++) prompt[i] = (int32_t)((i * 29 + s) % 256);
            test_seq_table_cover(&sd[k].ta, &sd[k].tab[s], len[k][s]);
            REQUIRE(nosa_backend_prefill_one(sd[k].ops, sd[k].b, s, prompt, len[k][s],
                                             &sd[k].tab[s].blocks, NULL, err, sizeof(err)) == 0,
                    "prefill: %s", err);
        }
    }
    static const uint8_t row1[N_SLOTS] = {0, 1};
    for (int step = 0; step < OUT_STEPS; step++) {
        int32_t toks[N_SLOTS], ga[N_SLOTS], gb[N_SLOTS] = {-7, -7};
        for (int s = 0; s < N_SLOTS; s++) toks[s] = (int32_t)((step * 11 + s * 5) % 256);
        memset(lbuf, 0xff, lb * sizeof(float)); /* NaN: untouched rows stay NaN */
        struct nosa_decode_out oa = {.logits = la, .argmax = ga};
        struct nosa_decode_out ob[3] = {
            {.argmax = gb}, {.logits = lbuf, .want_logits = row1, .argmax = gb}, {0}};
        for (int k = 0; k < 2; k++) {
            struct nosa_seq_blocks bl[N_SLOTS];
            for (int s = 0; s < N_SLOTS; s++) {
                test_seq_table_cover(&sd[k].ta, &sd[k].tab[s], len[k][s] + 1);
                bl[s] = sd[k].tab[s].blocks;
                len[k][s]++;
            }
            const struct nosa_decode_out *o = k == 0 ? &oa : step % 3 == 2 ? NULL : &ob[step % 3];
            REQUIRE(sd[k].ops->decode(sd[k].b, N_SLOTS, slots, toks, bl, o, err,
                                      sizeof(err)) == 0,
                    "%s decode: %s", rc->name, err);
        }
        for (int s = 0; s < N_SLOTS; s++) {
            int want = argmax(la + (size_t)s * vocab, vocab);
            CHECK(ga[s] == want, "%s step %d row %d: argmax %d, logits' %d", rc->name, step, s,
                  ga[s], want);
            if (step % 3 != 2)
                CHECK(gb[s] == ga[s], "%s step %d row %d: argmax %d with %s, %d with logits",
                      rc->name, step, s, gb[s], step % 3 ? "row 1's logits" : "no logits",
                      ga[s]);
        }
        if (step % 3 == 1) {
            uint32_t bits;
            memcpy(&bits, lbuf, sizeof bits);
            CHECK(bits == 0xffffffffu, "%s step %d: row 0's logits written though not wanted",
                  rc->name, step);
            CHECK(memcmp(lbuf + vocab, la + vocab, (size_t)vocab * sizeof(float)) == 0,
                  "%s step %d: row 1's logits differ from the full copy's", rc->name, step);
        }
    }
    for (int k = 0; k < 2; k++) side_close(&sd[k]);
    free(la);
    free(lbuf);
}

#define RESUME_PROMPT 45 /* 5 complete blocks of the tiny model, then 5 tokens */
#define RESUME_STEPS 40

/* Prefill + decode on one backend; then a second backend on the same arena resumes the slot
 * from the first one's complete blocks, prefills the rest of the prompt and decodes the
 * same tokens: its logits must be bit-identical. */
static void resume_check(const struct nosa_model *m, const struct run_cfg *rc)
{
    char err[256];
    int vocab = m->cfg.vocab_size, slot = 0, bs = m->cfg.sparse.block_size;
    size_t n = (size_t)RESUME_STEPS * (size_t)vocab;
    float *la = malloc(n * sizeof(float)), *lb = malloc(n * sizeof(float));
    REQUIRE(la && lb, "out of memory");
    int32_t prompt[RESUME_PROMPT], toks[RESUME_STEPS];
    for (int i = 0; i < RESUME_PROMPT; i++) prompt[i] = (int32_t)((i * 53 + 11) % 256);
    for (int i = 0; i < RESUME_STEPS; i++) toks[i] = (int32_t)((i * 29 + 3) % 256);
    struct side a;
    side_open(&a, &nosa_backend_cuda_ops, m, rc);
    struct test_seq_table *tab = &a.tab[slot];
    test_seq_table_cover(&a.ta, tab, RESUME_PROMPT + RESUME_STEPS);
    struct nosa_backend *bk[2] = {a.b, NULL};
    for (int k = 0; k < 2; k++) {
        float *out = k == 0 ? la : lb;
        int start = 0;
        if (k == 1) {
            struct nosa_backend_config cfg = side_config(m, rc, &a.ta.arena);
            REQUIRE(a.ops->create(m, &cfg, &bk[1], err, sizeof(err)) == 0, "create: %s", err);
            uint32_t nb = RESUME_PROMPT / (uint32_t)bs;
            REQUIRE(a.ops->seq_resume(bk[1], slot, &tab->blocks, nb, err, sizeof(err)) == 0,
                    "%s seq_resume: %s", rc->name, err);
            start = (int)nb * bs;
        }
        REQUIRE(nosa_backend_prefill_one(a.ops, bk[k], slot, prompt + start, RESUME_PROMPT - start,
                                         &tab->blocks, NULL, err, sizeof(err)) == 0,
                "prefill: %s", err);
        for (int i = 0; i < RESUME_STEPS; i++) {
            struct nosa_decode_out o = {.logits = out + (size_t)i * vocab};
            REQUIRE(a.ops->decode(bk[k], 1, &slot, &toks[i], &tab->blocks, &o, err,
                                  sizeof(err)) == 0,
                    "decode: %s", err);
        }
        if (k == 0) a.ops->destroy(a.b); /* the arena stays, with the prefilled blocks */
    }
    CHECK(memcmp(la, lb, n * sizeof(float)) == 0, "%s: resumed slot decodes differently",
          rc->name);
    a.b = bk[1];
    side_close(&a);
    free(la);
    free(lb);
}

static int same_trace(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof(float)) == 0;
}

#define CUT_PROMPT 150 /* three prefill spans of 64 rows; 19 blocks, past the budget */
#define CUT_STEPS 8

/* A prompt prefilled in one call (slot 0) and cut into calls of 37, 50 and 63 tokens (slot
 * 1) gives bit-identical logits, then bit-identical decode steps; both within LOGIT_TOL of
 * the CPU's prefill of the whole prompt. */
static void prefill_cut_check(const struct nosa_model *m, const struct run_cfg *rc)
{
    char err[256];
    int vocab = m->cfg.vocab_size, slots[N_SLOTS] = {0, 1}, cuts[] = {37, 50, 63};
    struct side cpu, gpu;
    side_open(&cpu, &nosa_backend_cpu_ops, m, rc);
    side_open(&gpu, &nosa_backend_cuda_ops, m, rc);
    float *lc = malloc(sizeof(float) * (size_t)vocab), *lg = malloc(sizeof(float) * 2 * vocab);
    REQUIRE(lc && lg, "out of memory");
    int32_t prompt[CUT_PROMPT], toks[N_SLOTS];
    for (int i = 0; i < CUT_PROMPT; i++) prompt[i] = (int32_t)((i * 53 + 11) % 256);
    test_seq_table_cover(&cpu.ta, &cpu.tab[0], CUT_PROMPT);
    REQUIRE(nosa_backend_prefill_one(cpu.ops, cpu.b, 0, prompt, CUT_PROMPT, &cpu.tab[0].blocks, lc,
                                     err, sizeof(err)) == 0,
            "cpu prefill: %s", err);
    test_seq_table_cover(&gpu.ta, &gpu.tab[0], CUT_PROMPT);
    REQUIRE(nosa_backend_prefill_one(gpu.ops, gpu.b, 0, prompt, CUT_PROMPT, &gpu.tab[0].blocks, lg,
                                     err, sizeof(err)) == 0,
            "cuda prefill: %s", err);
    for (int k = 0, at = 0; k < 3; at += cuts[k++]) {
        test_seq_table_cover(&gpu.ta, &gpu.tab[1], at + cuts[k]);
        REQUIRE(nosa_backend_prefill_one(gpu.ops, gpu.b, 1, prompt + at, cuts[k],
                                         &gpu.tab[1].blocks, lg + vocab, err, sizeof(err)) == 0,
                "cuda prefill: %s", err);
    }
    double mx = 0.0, de = 0.0;
    for (int v = 0; v < vocab; v++) {
        mx = fmax(mx, fabs(lc[v]));
        de = fmax(de, fabs((double)lc[v] - lg[v]));
    }
    CHECK(de <= LOGIT_TOL * mx, "%s: prefill of %d tokens: logits differ from the cpu's by %g "
          "(max %g)", rc->name, CUT_PROMPT, de, mx);
    CHECK(same_trace(lg, lg + vocab, (size_t)vocab), "%s: the prompt cut into 37 + 50 + 63 "
          "tokens gives other logits than one prefill call", rc->name);
    int same = 1;
    for (int step = 0; step < CUT_STEPS; step++) {
        struct nosa_seq_blocks bg[N_SLOTS];
        for (int s = 0; s < N_SLOTS; s++) {
            toks[s] = argmax(lg, vocab);
            test_seq_table_cover(&gpu.ta, &gpu.tab[s], CUT_PROMPT + step + 1);
            bg[s] = gpu.tab[s].blocks;
        }
        struct nosa_decode_out og = {.logits = lg};
        REQUIRE(gpu.ops->decode(gpu.b, N_SLOTS, slots, toks, bg, &og, err, sizeof(err)) == 0,
                "cuda decode: %s", err);
        same &= same_trace(lg, lg + vocab, (size_t)vocab);
    }
    CHECK(same, "%s: decode after the cut prefill differs from decode after one call",
          rc->name);
    printf("%-14s prefill of %d tokens: %.3g of max |logit| from the cpu; cut into 37 + 50 + "
           "63 tokens: identical, and %d decode steps after it\n", rc->name, CUT_PROMPT, de / mx,
           CUT_STEPS);
    free(lc);
    free(lg);
    side_close(&cpu);
    side_close(&gpu);
}

#define BATCH_SLOTS 4 /* the backend's slots, so its prefill has 4 lanes */
#define BATCH_SEQS 3

/* Block counts of a backend's last call, added to *into. */
static void add_counts(const struct nosa_backend_ops *ops, struct nosa_backend *b,
                       struct nosa_step_stats *into)
{
    struct nosa_step_stats st;
    ops->stats(b, &st);
    into->blocks_selected += st.blocks_selected;
    into->blocks_transferred += st.blocks_transferred;
    into->block_hits += st.block_hits;
    into->blocks_prefetched += st.blocks_prefetched;
    into->bytes_d2h += st.bytes_d2h;
}

/* Three prompts prefilled side by side in one call, the third cut after 37 tokens and
 * finished by a second call (so one round holds pieces that start at different span
 * positions, and a call's pieces end in different rounds), on a backend whose prefill has
 * four lanes, against each prompt prefilled alone by a second backend: bit-identical
 * logits and block counts, then bit-identical decode steps of the three. */
static void prefill_batch_check(const struct nosa_model *m, const struct run_cfg *rc)
{
    char err[256];
    static const int len[BATCH_SEQS] = {150, 97, 211};
    const int first = 37;
    int vocab = m->cfg.vocab_size, slots[BATCH_SEQS] = {0, 1, 2};
    size_t row = (size_t)vocab;
    struct test_arena ta[2];
    struct test_seq_table tab[2][BATCH_SEQS];
    struct nosa_backend *b[2];
    struct nosa_step_stats counts[2];
    const struct nosa_backend_ops *ops = &nosa_backend_cuda_ops;
    float *lg = malloc(sizeof(float) * 2 * BATCH_SEQS * row);
    int32_t prompt[BATCH_SEQS][MAX_CTX], toks[BATCH_SEQS];
    REQUIRE(lg, "out of memory");
    memset(counts, 0, sizeof(counts));
    for (int s = 0; s < BATCH_SEQS; s++)
        for (int i = 0; i < len[s]; i++) prompt[s][i] = (int32_t)((i * 53 + 11 + 29 * s) % 256);
    for (int k = 0; k < 2; k++) {
        test_arena_init(&ta[k], &m->cfg,
                        BATCH_SEQS * MAX_CTX / (uint64_t)m->cfg.sparse.block_size + 4);
        for (int s = 0; s < BATCH_SEQS; s++) {
            test_seq_table_init(&tab[k][s]);
            test_seq_table_cover(&ta[k], &tab[k][s], len[s]);
        }
        struct nosa_backend_config cfg = side_config(m, rc, &ta[k].arena);
        cfg.max_seqs = BATCH_SLOTS;
        REQUIRE(ops->create(m, &cfg, &b[k], err, sizeof(err)) == 0, "cuda create (%s): %s",
                rc->name, err);
    }
    float *la = lg, *lb = lg + BATCH_SEQS * row;
    struct nosa_prefill_req reqs[BATCH_SEQS];
    for (int s = 0; s < BATCH_SEQS; s++)
        reqs[s] = (struct nosa_prefill_req){s, prompt[s], s == 2 ? first : len[s],
                                            &tab[0][s].blocks, s == 2 ? NULL : la + s * row};
    REQUIRE(ops->prefill(b[0], reqs, BATCH_SEQS, err, sizeof(err)) == 0, "batched prefill: %s",
            err);
    add_counts(ops, b[0], &counts[0]);
    REQUIRE(nosa_backend_prefill_one(ops, b[0], 2, prompt[2] + first, len[2] - first,
                                     &tab[0][2].blocks, la + 2 * row, err, sizeof(err)) == 0,
            "prefill: %s", err);
    add_counts(ops, b[0], &counts[0]);
    for (int s = 0; s < BATCH_SEQS; s++) {
        REQUIRE(nosa_backend_prefill_one(ops, b[1], s, prompt[s], len[s], &tab[1][s].blocks,
                                         lb + s * row, err, sizeof(err)) == 0,
                "prefill: %s", err);
        add_counts(ops, b[1], &counts[1]);
    }
    CHECK(same_trace(la, lb, BATCH_SEQS * row), "%s: prompts prefilled side by side give other "
          "logits than each alone", rc->name);
    CHECK(counts[0].blocks_selected == counts[1].blocks_selected &&
              counts[0].blocks_transferred == counts[1].blocks_transferred &&
              counts[0].block_hits == counts[1].block_hits &&
              counts[0].blocks_prefetched == counts[1].blocks_prefetched &&
              counts[0].bytes_d2h == counts[1].bytes_d2h,
          "%s: side by side selected/transferred/hits/read ahead/written %llu/%llu/%llu/%llu/"
          "%llu, alone %llu/%llu/%llu/%llu/%llu", rc->name,
          (unsigned long long)counts[0].blocks_selected,
          (unsigned long long)counts[0].blocks_transferred,
          (unsigned long long)counts[0].block_hits,
          (unsigned long long)counts[0].blocks_prefetched,
          (unsigned long long)counts[0].bytes_d2h,
          (unsigned long long)counts[1].blocks_selected,
          (unsigned long long)counts[1].blocks_transferred,
          (unsigned long long)counts[1].block_hits,
          (unsigned long long)counts[1].blocks_prefetched,
          (unsigned long long)counts[1].bytes_d2h);
    int same = 1;
    for (int step = 0; step < CUT_STEPS; step++) {
        for (int s = 0; s < BATCH_SEQS; s++) toks[s] = argmax(la + s * row, vocab);
        for (int k = 0; k < 2; k++) {
            struct nosa_seq_blocks bl[BATCH_SEQS];
            for (int s = 0; s < BATCH_SEQS; s++) {
                test_seq_table_cover(&ta[k], &tab[k][s], len[s] + step + 1);
                bl[s] = tab[k][s].blocks;
            }
            struct nosa_decode_out o = {.logits = k ? lb : la};
            REQUIRE(ops->decode(b[k], BATCH_SEQS, slots, toks, bl, &o, err, sizeof(err)) == 0,
                    "cuda decode: %s", err);
        }
        same &= same_trace(la, lb, BATCH_SEQS * row);
    }
    CHECK(same, "%s: decode after prompts prefilled side by side differs", rc->name);
    printf("%-14s prefill of 3 prompts side by side (150, 97, 37 + 174 tokens): logits, %llu "
           "blocks selected, %llu transferred as each alone, and %d decode steps after it\n",
           rc->name, (unsigned long long)counts[0].blocks_selected,
           (unsigned long long)counts[0].blocks_transferred, CUT_STEPS);
    for (int k = 0; k < 2; k++) {
        ops->destroy(b[k]);
        test_arena_free(&ta[k]);
    }
    free(lg);
}

int main(void)
{
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("test_cuda_backend: skipped: no CUDA GPU visible\n");
        return TEST_SKIP_EXIT;
    }
    char err[256], dir[] = "/tmp/nosa-cuda-test-XXXXXX";
    const char *steps_env = getenv("NOSA_TEST_STEPS");
    long steps = STEPS_DEFAULT;
    if (steps_env)
        REQUIRE(nosa_parse_long(steps_env, 1, 100000, &steps, err, sizeof(err)) == 0,
                "NOSA_TEST_STEPS: %s", err);
    g_steps = (int)steps;
    struct nosa_model_config cfg;
    struct nosa_model *m0 = NULL, *m = NULL;
    REQUIRE(nosa_model_config_builtin("tiny", &cfg, err, sizeof(err)) == 0, "%s", err);
    REQUIRE(nosa_model_init_random(&cfg, 1234, &m0, err, sizeof(err)) == 0, "%s", err);
    REQUIRE(mkdtemp(dir), "mkdtemp");
    REQUIRE(nosa_model_save(m0, dir, "bf16", err, sizeof(err)) == 0, "%s", err);
    REQUIRE(nosa_model_load(dir, &m, err, sizeof(err)) == 0, "%s", err);
    nosa_model_free(m0);

    /* Indices below: 0 dense, 1-2 infllmv2, 3-4 nosa (resident, offloaded), 5-6 the two
     * offloaded with the read-ahead. */
    static const struct run_cfg runs[] = {
        {"dense", NOSA_ATTN_DENSE, 0, 0},
        {"infllmv2-res", NOSA_ATTN_INFLLMV2, 0, 0},
        {"infllmv2-off", NOSA_ATTN_INFLLMV2, 1, 0},
        {"nosa-res", NOSA_ATTN_NOSA, 0, 0},
        {"nosa-off", NOSA_ATTN_NOSA, 1, 0},
        {"infllmv2-pf2", NOSA_ATTN_INFLLMV2, 1, 2},
        {"nosa-pf3", NOSA_ATTN_NOSA, 1, 3},
    };
    const int n_runs = (int)(sizeof(runs) / sizeof(runs[0]));
    /* NOSA_TEST_ONLY=<run name>: that configuration against the CPU, its decode outputs and
     * its prompts side by side (the prefill's lanes), nothing else (for slow tools such as
     * racecheck). */
    const char *only = getenv("NOSA_TEST_ONLY");
    for (int i = 0; i < n_runs; i++) {
        if (only && strcmp(only, runs[i].name) != 0) continue;
        run_mode(m, &runs[i], NULL);
        if (only) {
            decode_out_check(m, &runs[i]);
            prefill_batch_check(m, &runs[i]);
        }
    }
    if (only) {
        nosa_model_free(m);
        return test_report("test_cuda_backend");
    }

    size_t tn = (size_t)g_steps * N_SLOTS * (size_t)m->cfg.vocab_size;
    float *ta = malloc(tn * sizeof(float)), *tb = malloc(tn * sizeof(float));
    REQUIRE(ta && tb, "out of memory");
    /* Offloaded == resident, bit for bit, with and without the read-ahead. */
    for (int k = 1; k < 5; k += 2) {
        gpu_trace(m, &runs[k], ta, NULL);
        for (int o = 0; o < 2; o++) {
            const struct run_cfg *off = &runs[o ? 5 + k / 2 : k + 1];
            gpu_trace(m, off, tb, NULL);
            CHECK(same_trace(ta, tb, tn), "%s and %s logits differ", runs[k].name, off->name);
        }
    }
    /* Graph replays == direct launches, bit for bit. */
    static const int graph_runs[] = {0, 2, 4, 6};
    for (size_t g = 0; g < sizeof(graph_runs) / sizeof(graph_runs[0]); g++) {
        int k = graph_runs[g];
        unsigned long graphs[2];
        gpu_trace(m, &runs[k], ta, graphs);
        REQUIRE(setenv("NOSA_CUDA_GRAPHS", "0", 1) == 0, "setenv");
        gpu_trace(m, &runs[k], tb, NULL);
        REQUIRE(unsetenv("NOSA_CUDA_GRAPHS") == 0, "unsetenv");
        CHECK(same_trace(ta, tb, tn), "%s: graph and direct logits differ", runs[k].name);
        CHECK(graphs[0] > 0 && graphs[1] > (unsigned long)g_steps / 2,
              "%s: %lu graphs captured, %lu steps replayed of %d", runs[k].name, graphs[0],
              graphs[1], g_steps);
        printf("%-14s graphs: %lu captured, %lu of %d steps replayed, logits identical\n",
               runs[k].name, graphs[0], graphs[1], g_steps);
    }
    for (int k = 0; k < n_runs; k++) resume_check(m, &runs[k]);
    for (int k = 0; k < n_runs; k++) prefill_cut_check(m, &runs[k]);
    for (int k = 0; k < n_runs; k++) prefill_batch_check(m, &runs[k]);
    decode_out_check(m, &runs[4]);
    decode_out_check(m, &runs[0]);
    {
        static const struct run_cfg dense_off = {"dense-off", NOSA_ATTN_DENSE, 1, 0};
        struct test_arena da;
        test_arena_init(&da, &m->cfg, 4);
        struct nosa_backend_config dc = side_config(m, &dense_off, &da.arena);
        struct nosa_backend *db = NULL;
        int r = nosa_backend_cuda_ops.create(m, &dc, &db, err, sizeof(err));
        CHECK(r == -EINVAL && !db && strstr(err, "not implemented"),
              "dense offloaded: create gave %d (%s)", r, err);
        test_arena_free(&da);
    }
    /* A budget covering every block: the sparse modes are dense, bit for bit. */
    m->cfg.sparse.budget_blocks = MAX_CTX / m->cfg.sparse.block_size + 1;
    m->cfg.sparse.query_aware_blocks = m->cfg.sparse.budget_blocks;
    gpu_trace(m, &runs[0], ta, NULL);
    for (int k = 1; k < n_runs; k++) {
        gpu_trace(m, &runs[k], tb, NULL);
        CHECK(same_trace(ta, tb, tn), "full budget %s differs from dense", runs[k].name);
    }
    free(ta);
    free(tb);
    nosa_model_free(m);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_report("test_cuda_backend");
}
