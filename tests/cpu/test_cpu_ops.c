/* test_cpu_ops: known-answer tests of the CPU backend's kernel-sized pieces (ops.c,
 * select.c) against values worked out by hand or recomputed in double precision. */
#include <math.h>
#include <string.h>

#include "ops.h"
#include "select.h"
#include "test_util.h"

#define REL_TOL 2e-6

static void check_rel(double got, double want, const char *what)
{
    double tol = REL_TOL * (fabs(want) > 1.0 ? fabs(want) : 1.0);
    CHECK_NEAR(got, want, tol, what);
}

static void test_rmsnorm(void)
{
    const float x[4] = {1.0f, -2.0f, 3.0f, 4.5f}, w[4] = {1.0f, 0.5f, 2.0f, -1.0f};
    float y[4];
    nosa_cpu_rmsnorm(y, x, w, 4, 1e-6f);
    double ss = 0;
    for (int i = 0; i < 4; i++) ss += (double)x[i] * x[i];
    double r = 1.0 / sqrt(ss / 4 + 1e-6);
    for (int i = 0; i < 4; i++) check_rel(y[i], x[i] * r * w[i], "rmsnorm");
    nosa_cpu_rmsnorm(y, y, w, 4, 1e-6f); /* in place is allowed */
    CHECK(isfinite(y[0]), "rmsnorm in place");
}

static void test_matvec_dot(void)
{
    const float W[6] = {1, 2, 3, -4, 5, -6}, x[3] = {0.5f, -1.0f, 2.0f}, bias[2] = {10, 20};
    float y[2];
    nosa_cpu_matvec(y, W, NULL, x, 2, 3);
    CHECK(y[0] == 4.5f && y[1] == -19.0f, "matvec %g %g", y[0], y[1]);
    nosa_cpu_matvec(y, W, bias, x, 2, 3);
    CHECK(y[0] == 14.5f && y[1] == 1.0f, "matvec+bias %g %g", y[0], y[1]);
    nosa_bf16 kb[3] = {nosa_f32_to_bf16(1.0f), nosa_f32_to_bf16(-2.0f), nosa_f32_to_bf16(0.25f)};
    CHECK(nosa_cpu_dot_bf16(x, kb, 3) == 3.0f, "dot_bf16");
    /* The same matrix stored as bf16 (every value bf16-exact): the same answers. */
    nosa_bf16 Wb[6];
    for (int i = 0; i < 6; i++) Wb[i] = nosa_f32_to_bf16(W[i]);
    struct nosa_weight wb = {Wb, NOSA_WEIGHT_BF16};
    nosa_cpu_matvec_weight(y, wb, bias, x, 2, 3);
    CHECK(y[0] == 14.5f && y[1] == 1.0f, "bf16 matvec+bias %g %g", y[0], y[1]);
    /* Values that are not small integers: bf16 and f32 storage give the same bits. */
    float Wr[6], yf[2], yb[2];
    for (int i = 0; i < 6; i++) {
        Wb[i] = nosa_f32_to_bf16(0.1f * (float)(i + 1) - 0.37f);
        Wr[i] = nosa_bf16_to_f32(Wb[i]);
    }
    const float xr[3] = {0.3f, -1.7f, 2.9f};
    nosa_cpu_matvec(yf, Wr, NULL, xr, 2, 3);
    nosa_cpu_matvec_weight(yb, wb, NULL, xr, 2, 3);
    CHECK(memcmp(yf, yb, sizeof(yf)) == 0, "bf16 matvec == f32 matvec bit for bit");
}

static void test_rope(void)
{
    enum { D = 4, NPOS = 3000 };
    static float cos_t[NPOS * D / 2], sin_t[NPOS * D / 2];
    nosa_cpu_rope_table_fill(cos_t, sin_t, NPOS, D, 10000.0);
    /* inv_freq = {1, 10000^-0.5 = 0.01}: pairs (0,2) rotate by pos rad, (1,3) by 0.01 pos. */
    for (int pos = 0; pos < NPOS; pos += 997) {
        float v[D] = {1.0f, 2.0f, 3.0f, 4.0f};
        nosa_cpu_rope_apply(v, cos_t + pos * D / 2, sin_t + pos * D / 2, D);
        double a0 = pos * 1.0, a1 = pos * 0.01;
        check_rel(v[0], 1 * cos(a0) - 3 * sin(a0), "rope x0");
        check_rel(v[2], 3 * cos(a0) + 1 * sin(a0), "rope x2");
        check_rel(v[1], 2 * cos(a1) - 4 * sin(a1), "rope x1");
        check_rel(v[3], 4 * cos(a1) + 2 * sin(a1), "rope x3");
    }
    /* Position 0 is the identity, exactly. */
    float v[D] = {1.5f, -2.0f, 3.25f, 4.0f};
    nosa_cpu_rope_apply(v, cos_t, sin_t, D);
    CHECK(v[0] == 1.5f && v[1] == -2.0f && v[2] == 3.25f && v[3] == 4.0f, "rope pos 0");
    /* The table is the double-precision angle rounded once. */
    CHECK(cos_t[2999 * 2 + 1] == (float)cos(2999 * pow(10000.0, -0.5)), "rope table");
}

static void test_softmax_softplus_swiglu(void)
{
    float x[4] = {1.0f, 2.0f, 3.0f, -1000.0f};
    double e[4], s = 0;
    for (int i = 0; i < 4; i++) s += (e[i] = exp((double)x[i] - 3.0));
    nosa_cpu_softmax(x, 4);
    for (int i = 0; i < 4; i++) check_rel(x[i], e[i] / s, "softmax");
    CHECK(x[3] == 0.0f, "softmax underflow to 0");
    float big[2] = {1e30f, 1e30f};
    nosa_cpu_softmax(big, 2);
    CHECK(big[0] == 0.5f && big[1] == 0.5f, "softmax of huge equal logits");

    const float sp_in[6] = {0.0f, 1.0f, -1.0f, 30.0f, -30.0f, 100.0f};
    for (int i = 0; i < 6; i++) {
        double want = log1p(exp((double)sp_in[i]));
        double got = nosa_cpu_softplus(sp_in[i]);
        CHECK(fabs(got - want) <= 2e-7 * want, "softplus(%g) = %.9g, want %.9g", sp_in[i], got,
              want);
    }
    CHECK(nosa_cpu_softplus(1000.0f) == 1000.0f, "softplus no overflow");

    const float g[3] = {0.0f, 2.0f, -3.0f}, u[3] = {5.0f, 0.5f, 2.0f};
    float o[3];
    nosa_cpu_swiglu(o, g, u, 3);
    for (int i = 0; i < 3; i++) check_rel(o[i], g[i] / (1.0 + exp(-(double)g[i])) * u[i], "swiglu");
}

static void test_topk(void)
{
    unsigned char taken[8];
    int sel[8];
    const float s[7] = {1, 3, 3, 2, 3, INFINITY, INFINITY};
    nosa_cpu_topk(sel, 3, s, 7, taken);
    CHECK(sel[0] == 1 && sel[1] == 5 && sel[2] == 6, "topk3 ties: %d %d %d", sel[0], sel[1],
          sel[2]);
    nosa_cpu_topk(sel, 4, s, 7, taken);
    CHECK(sel[0] == 1 && sel[1] == 2 && sel[2] == 5 && sel[3] == 6, "topk4 ties: %d %d %d %d",
          sel[0], sel[1], sel[2], sel[3]);
    nosa_cpu_topk(sel, 1, s, 7, taken);
    CHECK(sel[0] == 5, "topk1 of equal +inf: the lower index");
    const float z[4] = {-INFINITY, -INFINITY, 0.0f, -INFINITY};
    nosa_cpu_topk(sel, 2, z, 4, taken);
    CHECK(sel[0] == 0 && sel[1] == 2, "topk with -inf: %d %d", sel[0], sel[1]);
    nosa_cpu_topk(sel, 4, z, 4, taken);
    CHECK(sel[0] == 0 && sel[3] == 3, "topk of all");
}

static void test_block_pool(void)
{
    /* u = 4, r = 2: block m takes compressed keys [4m-1, 4m+3] (window 5, stride 4, pad 1). */
    const float s[9] = {5, 1, 2, 0, 4, 9, 1, 1, 3};
    float out[4];
    nosa_cpu_block_max_pool(out, 4, s, 9, 4, 2);
    CHECK(out[0] == 5 && out[1] == 9 && out[2] == 3, "max pool %g %g %g", out[0], out[1], out[2]);
    CHECK(isinf(out[3]) && out[3] < 0, "block without compressed keys: -inf");
    /* u = 2, r = 1 (kernel == stride): windows [2m, 2m+1], no overlap. */
    nosa_cpu_block_max_pool(out, 3, s, 9, 2, 1);
    CHECK(out[0] == 5 && out[1] == 2 && out[2] == 9, "max pool r=1 %g %g %g", out[0], out[1],
          out[2]);
}

static void test_compression(void)
{
    enum { D = 3, K = 4, S = 2, T = 11 };
    struct nosa_cpu_sel_params p = {.mode = NOSA_ATTN_NOSA, .head_dim = D, .rep = 1,
                                    .block_size = 8, .kernel = K, .stride = S, .units = 4,
                                    .span = 2, .k_total = 3, .k_query = 2, .sink = 1,
                                    .window = 1, .scale = 1.0f};
    nosa_bf16 ring[K * D], keys[T][D], kc[8 * D];
    float cis_ring[K], ce[8], cis[T];
    struct nosa_cpu_sel_state st = {ring, cis_ring, kc, ce, 0};
    for (int t = 0; t < T; t++) {
        for (int x = 0; x < D; x++) keys[t][x] = nosa_f32_to_bf16(0.37f * (float)t - (float)x);
        cis[t] = 0.1f * (float)(t * t % 7) - 0.2f;
        nosa_cpu_sel_push(&p, &st, t, keys[t], cis[t]);
        CHECK(st.n_c == nosa_cpu_sel_compressed_count(&p, t + 1), "n_c after %d", t + 1);
    }
    CHECK(st.n_c == 4, "compressed keys of 11 tokens (kernel 4 stride 2): %d", st.n_c);
    for (int i = 0; i < st.n_c; i++) {
        double cm = 0;
        for (int j = 0; j < K; j++) cm += cis[S * i + j];
        check_rel(ce[i], cm / K, "compressed cis");
        /* The definition exactly: the ascending f32 sum times 1/K, rounded to bf16. */
        for (int x = 0; x < D; x++) {
            float m = 0.0f;
            for (int j = 0; j < K; j++) m += nosa_bf16_to_f32(keys[S * i + j][x]);
            nosa_bf16 want = nosa_f32_to_bf16(m * (1.0f / (float)K));
            CHECK(kc[i * D + x] == want, "compressed key %d[%d]: bf16 0x%04x, want 0x%04x", i, x,
                  kc[i * D + x], want);
        }
    }
}

/* Bq by hand: two query heads, three compressed keys, scale 1, and pooling with u = 1, r = 2
 * (block m takes compressed keys m-1 and m), so each block shows a different maximum. */
static void test_score_query(void)
{
    struct nosa_cpu_sel_params p = {.mode = NOSA_ATTN_INFLLMV2, .head_dim = 2, .rep = 2,
                                    .block_size = 2, .kernel = 4, .stride = 2, .units = 1,
                                    .span = 2, .k_total = 3, .k_query = 2, .sink = 1,
                                    .window = 1, .scale = 1.0f};
    const float kcv[3][2] = {{0, 0}, {1, 1}, {2, -1}}, q[2][2] = {{1, 0}, {0, 2}};
    nosa_bf16 kc[6];
    for (int i = 0; i < 6; i++) kc[i] = nosa_f32_to_bf16(kcv[i / 2][i % 2]);
    struct nosa_cpu_sel_state st = {NULL, NULL, kc, NULL, 3};
    float bq[3], scratch[6];
    nosa_cpu_sel_score_query(&p, &st, &q[0][0], 3, bq, scratch);
    /* Logits q_g . kc_i: head 0 {0, 1, 2}, head 1 {0, 2, -2}. */
    double z0 = 1 + exp(1.0) + exp(2.0), z1 = 1 + exp(2.0) + exp(-2.0);
    double sq[3] = {1 / z0 + 1 / z1, exp(1.0) / z0 + exp(2.0) / z1,
                    exp(2.0) / z0 + exp(-2.0) / z1};
    check_rel(bq[0], sq[0], "Bq block 0");
    check_rel(bq[1], fmax(sq[0], sq[1]), "Bq block 1");
    check_rel(bq[2], fmax(sq[1], sq[2]), "Bq block 2");
    st.n_c = 0; /* no compressed key yet: every block -inf */
    nosa_cpu_sel_score_query(&p, &st, &q[0][0], 2, bq, scratch);
    CHECK(isinf(bq[0]) && bq[0] < 0 && isinf(bq[1]), "Bq without compressed keys");
}

static void test_choose(void)
{
    struct nosa_cpu_sel_params p = {.mode = NOSA_ATTN_INFLLMV2, .head_dim = 4, .rep = 1,
                                    .block_size = 8, .kernel = 4, .stride = 2, .units = 4,
                                    .span = 2, .k_total = 5, .k_query = 4, .sink = 1,
                                    .window = 2, .scale = 0.5f};
    const float bq0[10] = {0.1f, 0.9f, 0.2f, 0.8f, 0.3f, 0.7f, 0.4f, 0.6f, 0.5f, 0.05f};
    const float be0[10] = {0, 0, 5, 1, 4, 3, 2, 0, 0, 0};
    float bq[10], be[10];
    int sel[10];
    unsigned char taken[10];
    /* Forced: block 0 (sink), 8 and 9 (window). infllmv2: + the two best by Bq (1, 3). */
    memcpy(bq, bq0, sizeof(bq));
    int n = nosa_cpu_sel_choose(&p, 10, bq, NULL, sel, taken);
    CHECK(n == 5 && sel[0] == 0 && sel[1] == 1 && sel[2] == 3 && sel[3] == 8 && sel[4] == 9,
          "infllmv2: %d: %d %d %d %d %d", n, sel[0], sel[1], sel[2], sel[3], sel[4]);
    /* nosa: Sq = forced + block 1; then the best by Be outside Sq: block 2. */
    p.mode = NOSA_ATTN_NOSA;
    memcpy(bq, bq0, sizeof(bq));
    memcpy(be, be0, sizeof(be));
    n = nosa_cpu_sel_choose(&p, 10, bq, be, sel, taken);
    CHECK(n == 5 && sel[0] == 0 && sel[1] == 1 && sel[2] == 2 && sel[3] == 8 && sel[4] == 9,
          "nosa: %d: %d %d %d %d %d", n, sel[0], sel[1], sel[2], sel[3], sel[4]);
    /* As many or fewer complete blocks than the budget: the top-k takes all of them, in
     * ascending order, whatever the scores (ties, -inf, the nosa stage smaller than n). */
    const float low[5] = {-INFINITY, 2.0f, -INFINITY, 2.0f, 0.5f};
    for (int mode = NOSA_ATTN_INFLLMV2; mode <= NOSA_ATTN_NOSA; mode++) {
        p.mode = (enum nosa_attn_mode)mode;
        for (int nb = 0; nb <= 5; nb++) {
            memcpy(bq, low, sizeof(low));
            memcpy(be, bq0, sizeof(low));
            n = nosa_cpu_sel_choose(&p, nb, bq, be, sel, taken);
            int i = 0;
            while (i < n && sel[i] == i) i++;
            CHECK(n == nb && i == nb, "%s, %d blocks that fit: %d chosen, in order up to %d",
                  nosa_attn_mode_name(p.mode), nb, n, i);
        }
    }
    p.mode = NOSA_ATTN_DENSE;
    n = nosa_cpu_sel_choose(&p, 10, NULL, NULL, sel, taken);
    CHECK(n == 10 && sel[9] == 9, "dense selects everything");
}

int main(void)
{
    test_rmsnorm();
    test_matvec_dot();
    test_rope();
    test_softmax_softplus_swiglu();
    test_topk();
    test_block_pool();
    test_compression();
    test_score_query();
    test_choose();
    return test_report("test_cpu_ops");
}
