/* test_cpu_reference: the CPU backend against a naive double-precision forward of the tiny
 * model, written here from the definitions (NOSA.md, docs/CPU_BACKEND.md) and sharing no
 * code with gpu-worker/cpu: embedding, RMSNorm, RoPE (Hugging Face rotate_half, angles in
 * double), GQA attention over every earlier token with the eviction bias cis added after the
 * 1/sqrt(d) scaling, SwiGLU, final norm, LM head. K and V are rounded to bf16 as the KV
 * blocks store them (the model's KV dtype, part of the definition), by rounding the double
 * value to 8 significant bits, half to even.
 * Over a 40-token prompt, one token per call, the test compares:
 * - dense's logits at every position (tolerance LOGIT_TOL below);
 * - the K, V and cis of every completed block the backend wrote to the arena: K and V equal
 *   to the reference's bf16 (but for rounding ties, TIE_TOL), and cis within CIS_TOL of
 *   A * softplus(delta(v)) in double from the stored values: a known answer for the eviction
 *   head;
 * - nosa's block scores of the last token (nosa_backend_cpu_block_scores): Bq from the
 *   compressed keys (means of the stored keys, rounded to bf16) and the last query, and Be
 *   from the mean-pooled cis, both max-pooled to blocks as NOSA.md step 2 writes it (window
 *   5, stride 4, padding 1 in compressed units at block = 4 * stride = 2 * kernel, tiny's
 *   ratios). The budget covers every block, so nosa's forward is dense's. */
#include <math.h>
#include <string.h>

#include "backend_cpu.h"
#include "bf16.h"
#include "cpu_harness.h"

#define N 40
#define MAXD 128 /* the largest hidden / q / intermediate size of the tiny model */

/* Worst |backend - reference| / max(1, |reference|) on this seed: logits 2.0e-6 (f32 sums of
 * 64 to 128 products, two layers), cis 2.3e-7, Bq 2e-8, Be 1.1e-7. The tolerances leave about
 * 10x and are still far below what one wrong term or a missing bias would cause. */
#define LOGIT_TOL 2e-5
#define CIS_TOL 2e-6
#define SCORE_TOL 2e-6
/* The same f32 sums err by ~1e-7 absolute (unit-RMS inputs and outputs, docs/MODEL.md), so
 * a K or V whose exact value lies closer than this to a bf16 rounding midpoint may round to
 * either neighbour in the backend. */
#define TIE_TOL 1e-6

struct ref {
    double logits[N][512];
    /* Per layer and token: K and V as stored (bf16) and before rounding, cis. */
    double k[2][N][32], v[2][N][32], kraw[2][N][32], vraw[2][N][32], cis[2][N][2];
    double q_last[2][64]; /* the last token's queries, after RoPE */
};

static double to_bf16(double x)
{
    if (x == 0.0) return 0.0;
    int e;
    double f = frexp(x, &e); /* x = f * 2^e, 0.5 <= |f| < 1 */
    return ldexp(nearbyint(ldexp(f, 8)), e - 8);
}

static void rmsnorm(double *y, const double *x, const float *w, int n, double eps)
{
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * r * w[i];
}

static void matvec(double *y, struct nosa_weight W, const float *b, const double *x, int out,
                   int in)
{
    for (int o = 0; o < out; o++) {
        double s = b ? b[o] : 0.0;
        for (int i = 0; i < in; i++)
            s += (double)nosa_weight_at(W, (size_t)o * (size_t)in + (size_t)i) * x[i];
        y[o] = s;
    }
}

static void rope(double *x, int d, int pos, double theta)
{
    for (int i = 0; i < d / 2; i++) {
        double a = pos * pow(theta, -2.0 * i / d), c = cos(a), s = sin(a);
        double x0 = x[i], x1 = x[i + d / 2];
        x[i] = x0 * c - x1 * s;
        x[i + d / 2] = x1 * c + x0 * s;
    }
}

static void reference_forward(const struct nosa_model *m, const int32_t *tok, struct ref *r)
{
    const struct nosa_model_config *c = &m->cfg;
    int hid = c->hidden_size, d = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads;
    int rep = nh / nkv, kvdim = nkv * d, inter = c->intermediate_size;
    REQUIRE(c->n_layers == 2 && nh * d <= 64 && kvdim <= 32 && nkv <= 2 && hid <= MAXD &&
                inter <= MAXD && c->vocab_size <= 512,
            "the reference's arrays are sized for the tiny model");
    for (int pos = 0; pos < N; pos++) {
        double x[MAXD], xb[MAXD], q[64], att[64], g[MAXD], u[MAXD], t[MAXD];
        for (int i = 0; i < hid; i++)
            x[i] = nosa_weight_at(m->tok_embed, (size_t)tok[pos] * (size_t)hid + (size_t)i);
        for (int l = 0; l < c->n_layers; l++) {
            const struct nosa_layer_weights *w = &m->layers[l];
            double k[32], v[32];
            rmsnorm(xb, x, w->attn_norm, hid, c->rms_eps);
            matvec(q, w->wq, w->bq, xb, nh * d, hid);
            matvec(k, w->wk, w->bk, xb, kvdim, hid);
            matvec(v, w->wv, w->bv, xb, kvdim, hid);
            for (int h = 0; h < nh; h++) rope(q + h * d, d, pos, c->rope_theta);
            for (int h = 0; h < nkv; h++) rope(k + h * d, d, pos, c->rope_theta);
            for (int i = 0; i < kvdim; i++) {
                r->kraw[l][pos][i] = k[i];
                r->vraw[l][pos][i] = v[i];
                r->k[l][pos][i] = to_bf16(k[i]);
                r->v[l][pos][i] = to_bf16(v[i]);
            }
            double delta[2];
            matvec(delta, w->evict_delta_w, w->evict_delta_b, r->v[l][pos], nkv, kvdim);
            for (int h = 0; h < nkv; h++) r->cis[l][pos][h] = w->evict_A[h] * log1p(exp(delta[h]));
            if (pos == N - 1) memcpy(r->q_last[l], q, sizeof(double) * (size_t)(nh * d));
            for (int hq = 0; hq < nh; hq++) {
                int h = hq / rep;
                double lg[N], mx = -INFINITY, sum = 0;
                for (int j = 0; j <= pos; j++) {
                    double dot = 0;
                    for (int i = 0; i < d; i++) dot += q[hq * d + i] * r->k[l][j][h * d + i];
                    lg[j] = dot / sqrt((double)d) + r->cis[l][j][h];
                    if (lg[j] > mx) mx = lg[j];
                }
                for (int i = 0; i < d; i++) att[hq * d + i] = 0;
                for (int j = 0; j <= pos; j++) {
                    double e = exp(lg[j] - mx);
                    sum += e;
                    for (int i = 0; i < d; i++) att[hq * d + i] += e * r->v[l][j][h * d + i];
                }
                for (int i = 0; i < d; i++) att[hq * d + i] /= sum;
            }
            matvec(t, w->wo, NULL, att, hid, nh * d);
            for (int i = 0; i < hid; i++) x[i] += t[i];
            rmsnorm(xb, x, w->mlp_norm, hid, c->rms_eps);
            matvec(g, w->w_gate, NULL, xb, inter, hid);
            matvec(u, w->w_up, NULL, xb, inter, hid);
            for (int i = 0; i < inter; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
            matvec(t, w->w_down, NULL, g, hid, inter);
            for (int i = 0; i < hid; i++) x[i] += t[i];
        }
        rmsnorm(xb, x, m->final_norm, hid, c->rms_eps);
        matvec(r->logits[pos], m->lm_head, NULL, xb, c->vocab_size, hid);
    }
}

static double rel_err(double got, double want)
{
    return fabs(got - want) / (fabs(want) > 1.0 ? fabs(want) : 1.0);
}

/* Element i of token t's K (which = 0) or V (which = 1) in the arena block of (group, layer,
 * head). */
static double stored_kv(const struct test_arena *ta, uint32_t group, int l, int hd, int which,
                        int t, int i)
{
    const struct nosa_kv_geometry *g = &ta->arena.geom;
    const uint8_t *blk = ta->arena.base +
                         nosa_kv_block_index(g, group, (uint32_t)l, (uint32_t)hd) *
                             nosa_kv_block_bytes(g);
    nosa_bf16 b;
    memcpy(&b, blk + (which ? nosa_kv_block_v_offset(g) : 0) +
                   ((size_t)t * g->head_dim + (size_t)i) * sizeof(b),
           sizeof(b));
    return nosa_bf16_to_f32(b);
}

static float stored_cis(const struct test_arena *ta, uint32_t group, int l, int hd, int t)
{
    const struct nosa_kv_geometry *g = &ta->arena.geom;
    const uint8_t *blk = ta->arena.base +
                         nosa_kv_block_index(g, group, (uint32_t)l, (uint32_t)hd) *
                             nosa_kv_block_bytes(g);
    float c;
    memcpy(&c, blk + nosa_kv_block_bias_offset(g) + (size_t)t * sizeof(c), sizeof(c));
    return c;
}

/* A stored K/V value is the reference's bf16 rounding, or (*ties counts these) the
 * unrounded reference value lies within TIE_TOL of the midpoint between the two and the
 * backend's f32 value fell on the other side. */
static int stored_ok(double got, double want, double raw, int *ties)
{
    if (got == want) return 1;
    double mid = 0.5 * (got + want), big = fabs(got) > fabs(want) ? fabs(got) : fabs(want);
    int adjacent = fabs(got - want) <= ldexp(big, -7);
    if (!adjacent || fabs(raw - mid) > TIE_TOL) return 0;
    (*ties)++;
    return 1;
}

/* The completed blocks dense wrote: K and V against the reference's, and each token's cis
 * against A * softplus(delta(v)) in double from the values stored beside it (the exact
 * input the backend's eviction head read): a known answer for cis. */
static void check_arena_blocks(const struct nosa_model *m, const struct test_arena *ta,
                               const struct test_seq_table *tbl, const struct ref *r)
{
    int d = m->cfg.head_dim, nkv = m->cfg.n_kv_heads, bs = m->cfg.sparse.block_size;
    int bad = 0, ties = 0;
    double cis_worst = 0;
    CHECK(tbl->blocks.n_groups == N / 8, "%u blocks written", tbl->blocks.n_groups);
    for (uint32_t b = 0; b < tbl->blocks.n_groups; b++) {
        for (int l = 0; l < m->cfg.n_layers; l++) {
            const struct nosa_layer_weights *w = &m->layers[l];
            for (int t = 0; t < bs; t++) {
                int pos = (int)b * bs + t;
                double v[32];
                for (int hd = 0; hd < nkv; hd++) {
                    for (int i = 0; i < d; i++) {
                        int e = hd * d + i;
                        double k = stored_kv(ta, tbl->groups[b], l, hd, 0, t, i);
                        v[e] = stored_kv(ta, tbl->groups[b], l, hd, 1, t, i);
                        bad += !stored_ok(k, r->k[l][pos][e], r->kraw[l][pos][e], &ties);
                        bad += !stored_ok(v[e], r->v[l][pos][e], r->vraw[l][pos][e], &ties);
                    }
                }
                double delta[2];
                matvec(delta, w->evict_delta_w, w->evict_delta_b, v, nkv, nkv * d);
                for (int hd = 0; hd < nkv; hd++) {
                    double want = w->evict_A[hd] * log1p(exp(delta[hd]));
                    double e = rel_err(stored_cis(ta, tbl->groups[b], l, hd, t), want);
                    if (e > cis_worst) cis_worst = e;
                }
            }
        }
    }
    CHECK(bad == 0, "%d stored K/V values differ from the reference's bf16", bad);
    CHECK(cis_worst <= CIS_TOL, "cis: worst relative error %.3g > %g", cis_worst, CIS_TOL);
    printf("arena blocks: K/V equal to the reference's bf16 (%d ties within %g of a rounding "
           "midpoint), cis worst relative error %.3g (tolerance %g)\n",
           ties, TIE_TOL, cis_worst, CIS_TOL);
}

/* Dense logits at every position, and the blocks it wrote to the arena. */
static void test_dense(const struct nosa_model *m, const int32_t *tok, const struct ref *r)
{
    int vocab = m->cfg.vocab_size;
    struct test_arena ta;
    test_arena_init(&ta, &m->cfg, N / 8 + 1);
    struct harness h;
    harness_open(&h, m, NOSA_ATTN_DENSE, 0, 1, N, 0, &ta);
    static float logits[512];
    double worst = 0;
    for (int pos = 0; pos < N; pos++) {
        harness_prefill(&h, 0, tok + pos, 1, logits);
        for (int i = 0; i < vocab; i++) {
            double e = rel_err(logits[i], r->logits[pos][i]);
            if (e > worst) worst = e;
        }
    }
    CHECK(worst <= LOGIT_TOL, "dense logits: worst relative error %.3g > %g", worst, LOGIT_TOL);
    printf("dense logits over %d positions: worst relative error %.3g (tolerance %g)\n", N,
           worst, LOGIT_TOL);

    check_arena_blocks(m, &ta, &h.tables[0], r);
    harness_close(&h);
    test_arena_free(&ta);
}

/* Max over the compressed units block m overlaps: NOSA.md's Bq[m] = max(s[4m-1 .. 4m+3]). */
static double pool_block(const double *s, int n_c, int m)
{
    double mx = -INFINITY;
    for (int i = 4 * m - 1; i <= 4 * m + 3; i++)
        if (i >= 0 && i < n_c && s[i] > mx) mx = s[i];
    return mx;
}

static void test_block_scores(const struct nosa_model *m, const int32_t *tok,
                              const struct ref *r)
{
    const struct nosa_model_config *c = &m->cfg;
    const struct nosa_sparse_config *sc = &c->sparse;
    int d = c->head_dim, rep = c->n_heads / c->n_kv_heads, kern = sc->compress_kernel;
    REQUIRE(sc->block_size == 4 * sc->compress_stride && kern == 2 * sc->compress_stride &&
                sc->budget_blocks > N / 8,
            "the pooling below is written for block = 4 x stride = 2 x kernel, full budget");
    struct test_arena ta;
    test_arena_init(&ta, c, N / 8 + 1);
    struct harness h;
    harness_open(&h, m, NOSA_ATTN_NOSA, 0, 1, N, 0, &ta);
    harness_prefill(&h, 0, tok, N, NULL);
    int n_c = (N - kern) / sc->compress_stride + 1, nb = (N - 1) / sc->block_size;
    double worst_q = 0, worst_e = 0;
    for (int l = 0; l < c->n_layers; l++) {
        for (int hd = 0; hd < c->n_kv_heads; hd++) {
            double kc[N][32], ce[N], sq[N] = {0};
            for (int i = 0; i < n_c; i++) {
                int j0 = i * sc->compress_stride;
                ce[i] = 0;
                for (int j = j0; j < j0 + kern; j++) ce[i] += r->cis[l][j][hd] / kern;
                for (int x = 0; x < d; x++) {
                    double mean = 0;
                    for (int j = j0; j < j0 + kern; j++) mean += r->k[l][j][hd * d + x] / kern;
                    kc[i][x] = to_bf16(mean);
                }
            }
            for (int g = 0; g < rep; g++) {
                const double *qg = r->q_last[l] + (hd * rep + g) * d;
                double lg[N], mx = -INFINITY, sum = 0;
                for (int i = 0; i < n_c; i++) {
                    lg[i] = 0;
                    for (int x = 0; x < d; x++) lg[i] += qg[x] * kc[i][x];
                    lg[i] /= sqrt((double)d);
                    if (lg[i] > mx) mx = lg[i];
                }
                for (int i = 0; i < n_c; i++) sum += exp(lg[i] - mx);
                for (int i = 0; i < n_c; i++) sq[i] += exp(lg[i] - mx) / sum;
            }
            float bq[N / 8], be[N / 8];
            int got = nosa_backend_cpu_block_scores(h.b, 0, l, hd, bq, be, N / 8);
            REQUIRE(got == nb, "block_scores: %d blocks, want %d", got, nb);
            for (int b = 0; b < nb; b++) {
                double eq = rel_err(bq[b], pool_block(sq, n_c, b));
                double ee = rel_err(be[b], pool_block(ce, n_c, b));
                if (eq > worst_q) worst_q = eq;
                if (ee > worst_e) worst_e = ee;
            }
        }
    }
    CHECK(worst_q <= SCORE_TOL && worst_e <= SCORE_TOL,
          "block scores: worst relative error Bq %.3g, Be %.3g > %g", worst_q, worst_e,
          SCORE_TOL);
    printf("nosa block scores of %d blocks: worst relative error Bq %.3g, Be %.3g (tolerance "
           "%g)\n", nb, worst_q, worst_e, SCORE_TOL);
    harness_close(&h);
    test_arena_free(&ta);
}

int main(void)
{
    struct nosa_model *m = harness_model(0, 0, 23);
    static int32_t tok[N];
    harness_prompt(tok, N, 3, m->cfg.vocab_size);
    static struct ref r;
    reference_forward(m, tok, &r);
    test_dense(m, tok, &r);
    test_block_scores(m, tok, &r);
    nosa_model_free(m);
    return test_report("test_cpu_reference");
}
