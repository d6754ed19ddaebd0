/* test_sampler: known answers of the sampler (gpu-worker/engine/sampler.h) and its rule
 * (gpu-worker/sample_rule.h).
 * - mix64 is splitmix64: the generator's first outputs from state 0 are published values;
 * - uniform(seed, index) is a pure function in [0, 1), different across indices and seeds;
 * - greedy is argmax with the lowest id on ties;
 * - top-p: the nucleus and the pick follow from probabilities computed by hand, for the
 *   uniform number the sequence uses at that index; temperature reshapes them as exp(l/T);
 * - bad parameters and NaN logits are refused;
 * - the radix select of nosa_sample_row finds the same nucleus and pick as the rule's
 *   definition walked over fully sorted keys (sample_rule.h), over random rows of several
 *   spreads, temperatures and top_p, with ties and -inf logits;
 * - the rule's exp is within 4 ulps of libm's exp over (-30, 0]. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "sample_rule.h"
#include "sampler.h"
#include "test_util.h"

static void test_mix64(void)
{
    /* splitmix64 seeded with 0: first three outputs (Vigna's reference implementation). */
    CHECK(nosa_sample_mix64(0) == 0xE220A8397B1DCDAFull, "mix64(0)");
    CHECK(nosa_sample_mix64(0x9E3779B97F4A7C15ull) == 0x6E789E6AA1B965F4ull, "mix64(gamma)");
    CHECK(nosa_sample_mix64(0x3C6EF372FE94F82Aull) == 0x06C45D188009454Full, "mix64(2 gamma)");
}

static void test_uniform(void)
{
    /* The definition, spelled out independently. */
    uint64_t bits = nosa_sample_mix64(42u ^ nosa_sample_mix64(5u + 1u));
    CHECK(nosa_sample_uniform(42, 5) == (double)(bits >> 11) / 9007199254740992.0,
          "uniform(42, 5) follows the definition");
    int distinct = 1;
    double sum = 0.0;
    for (uint64_t t = 0; t < 4096; t++) {
        double u = nosa_sample_uniform(7, t);
        CHECK(u >= 0.0 && u < 1.0, "uniform(7, %llu) = %g", (unsigned long long)t, u);
        CHECK(u == nosa_sample_uniform(7, t), "uniform is a pure function");
        if (t && u == nosa_sample_uniform(7, t - 1)) distinct = 0;
        sum += u;
    }
    CHECK(distinct, "consecutive indices give different numbers");
    CHECK_NEAR(sum / 4096.0, 0.5, 0.02, "mean of 4096 uniforms");
    CHECK(nosa_sample_uniform(7, 0) != nosa_sample_uniform(8, 0), "seeds differ");
}

static int32_t pick(struct nosa_sampler *s, const float *logits, float temp, float top_p,
                    uint64_t seed, uint64_t index)
{
    struct nosa_sampling p = {.max_tokens = 1, .temperature = temp, .top_p = top_p,
                              .seed = seed};
    char err[128];
    return nosa_sampler_pick(s, logits, &p, index, err, sizeof(err));
}

static void test_greedy(struct nosa_sampler *s)
{
    float l[4] = {1.0f, 3.0f, -2.0f, 3.0f};
    CHECK(pick(s, l, 0.0f, 1.0f, 0, 0) == 1, "greedy takes the lowest id of the tied maxima");
    float m[4] = {-INFINITY, -INFINITY, 0.5f, -INFINITY};
    CHECK(pick(s, m, 0.0f, 0.5f, 9, 3) == 2, "greedy ignores top_p and seed");
}

/* Probabilities 0.1, 0.2, 0.3, 0.4 for ids 0..3 (logits log(k+1), temperature 1). Sorted:
 * 3 (0.4), 2 (0.3), 1 (0.2), 0 (0.1); cumulative 0.4, 0.7, 0.9, 1.0. */
static void test_top_p(struct nosa_sampler *s)
{
    float l[4] = {logf(1.0f), logf(2.0f), logf(3.0f), logf(4.0f)};
    for (uint64_t t = 0; t < 64; t++) {
        double u = nosa_sample_uniform(11, t);
        /* top_p 0.6: nucleus {3, 2} (0.4 < 0.6 <= 0.7), mass 0.7. */
        int32_t want = u * 0.7 < 0.4 ? 3 : 2;
        CHECK(pick(s, l, 1.0f, 0.6f, 11, t) == want, "top_p 0.6, index %llu, u %.6f",
              (unsigned long long)t, u);
        /* top_p 1: all four. */
        double r = u;
        int32_t all = r < 0.4 ? 3 : r < 0.7 ? 2 : r < 0.9 ? 1 : 0;
        CHECK(pick(s, l, 1.0f, 1.0f, 11, t) == all, "top_p 1, index %llu, u %.6f",
              (unsigned long long)t, u);
        /* top_p 0.3: only the most likely id. */
        CHECK(pick(s, l, 1.0f, 0.3f, 11, t) == 3, "top_p 0.3 keeps id 3 only");
        /* temperature 0.5 squares the weights: 1, 4, 9, 16 over 30. */
        double c3 = 16.0 / 30.0, c2 = 25.0 / 30.0, c1 = 29.0 / 30.0;
        int32_t hot = r < c3 ? 3 : r < c2 ? 2 : r < c1 ? 1 : 0;
        CHECK(pick(s, l, 0.5f, 1.0f, 11, t) == hot, "temperature 0.5, index %llu",
              (unsigned long long)t);
    }
    /* Ties in probability go to the lower id first: ids 1 and 2 equal. */
    float tie[4] = {-INFINITY, 0.0f, 0.0f, -INFINITY};
    for (uint64_t t = 0; t < 32; t++) {
        double u = nosa_sample_uniform(3, t);
        CHECK(pick(s, tie, 1.0f, 1.0f, 3, t) == (u < 0.5 ? 1 : 2), "tie order, index %llu",
              (unsigned long long)t);
    }
    /* Frequencies over many indices follow the probabilities. */
    int count[4] = {0};
    for (uint64_t t = 0; t < 20000; t++) count[pick(s, l, 1.0f, 1.0f, 5, t)]++;
    for (int k = 0; k < 4; k++)
        CHECK_NEAR(count[k] / 20000.0, (k + 1) / 10.0, 0.015, "frequency of id");
}

static void test_bad(struct nosa_sampler *s)
{
    char err[128];
    struct nosa_sampling ok = {.max_tokens = 4, .temperature = 0.7f, .top_p = 0.9f};
    CHECK(nosa_sampling_validate(&ok, err, sizeof(err)) == 0, "valid parameters");
    struct nosa_sampling bad[4] = {ok, ok, ok, ok};
    bad[0].max_tokens = 0;
    bad[1].temperature = -1.0f;
    bad[2].top_p = 0.0f;
    bad[3].top_p = 1.5f;
    for (int i = 0; i < 4; i++)
        CHECK(nosa_sampling_validate(&bad[i], err, sizeof(err)) == -EINVAL, "bad %d accepted", i);
    bad[1].temperature = NAN;
    CHECK(nosa_sampling_validate(&bad[1], err, sizeof(err)) == -EINVAL, "NaN temperature");
    float nan_l[4] = {0.0f, NAN, 1.0f, 2.0f};
    CHECK(pick(s, nan_l, 0.0f, 1.0f, 0, 0) == -EDOM, "NaN logit refused");
    float inf_l[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    CHECK(pick(s, inf_l, 1.0f, 1.0f, 0, 0) == -EDOM, "all -inf refused");
}

static int cmp_key_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The rule as sample_rule.h states it: keys sorted descending, prefixes walked. */
static int32_t rule_by_sort(const float *l, int vocab, const struct nosa_row_sampling *rs,
                            uint64_t *keys)
{
    float m = -INFINITY;
    for (int i = 0; i < vocab; i++) m = l[i] > m ? l[i] : m;
    uint64_t total = 0;
    for (int i = 0; i < vocab; i++) {
        keys[i] = nosa_sample_key(l[i], m, 1.0 / (double)rs->temperature, i);
        total += nosa_sample_key_weight(keys[i]);
    }
    qsort(keys, (size_t)vocab, sizeof(*keys), cmp_key_desc);
    uint64_t thr = nosa_sample_threshold(rs->top_p, total), kept = 0;
    for (int i = 0; i < vocab && kept < thr; i++) kept += nosa_sample_key_weight(keys[i]);
    uint64_t level = nosa_sample_level(nosa_sample_uniform(rs->seed, rs->index), kept), run = 0;
    for (int i = 0; i < vocab; i++) {
        run += nosa_sample_key_weight(keys[i]);
        if (run > level) return nosa_sample_key_id(keys[i]);
    }
    return -2; /* unreachable: level < kept <= total */
}

static void test_rule_select(void)
{
    enum { V = 3000 };
    static float l[V];
    static uint64_t ka[2 * V], kb[V];
    uint64_t rng = 12345;
    const float spreads[] = {0.01f, 1.0f, 4.0f, 30.0f};
    const float temps[] = {0.3f, 0.8f, 1.5f};
    const float tops[] = {0.05f, 0.5f, 0.9f, 1.0f};
    int cases = 0, same = 0;
    for (int sp = 0; sp < 4; sp++)
        for (int rep = 0; rep < 6; rep++) {
            for (int i = 0; i < V; i++) {
                rng = nosa_sample_mix64(rng);
                l[i] = spreads[sp] * (float)((double)(rng >> 11) * 0x1.0p-53 - 0.5);
                if (rep == 1 && i % 7 == 0) l[i] = -INFINITY;
                if (rep == 2) l[i] = (float)(i % 5); /* many exact ties */
            }
            for (int t = 0; t < 3; t++)
                for (int p = 0; p < 4; p++) {
                    struct nosa_row_sampling rs = {temps[t], tops[p], 99u + (uint64_t)rep,
                                                   (uint64_t)(sp * 100 + t * 10 + p)};
                    int32_t a = nosa_sample_row(l, V, &rs, ka), b = rule_by_sort(l, V, &rs, kb);
                    cases++;
                    same += a == b;
                    CHECK(a == b && a >= 0 && a < V && l[a] > -INFINITY,
                          "radix select %d vs sorted %d (spread %g, T %g, top_p %g)", a, b,
                          (double)spreads[sp], (double)temps[t], (double)tops[p]);
                }
        }
    CHECK(same == cases, "%d of %d rows drawn as by the sorted definition", same, cases);
}

static void test_rule_exp(void)
{
    int worst = 0;
    for (int k = 0; k <= 80000; k++) {
        double x = -(double)k * 1e-3 - (k % 3) * 1.234567e-4;
        if (x <= -30.0) break;
        double a = nosa_sample_exp(x), b = exp(x);
        double ulp = nextafter(b, INFINITY) - b;
        int d = (int)fabs((a - b) / ulp);
        if (d > worst) worst = d;
    }
    CHECK(worst <= 4, "the rule's exp is %d ulps from libm's", worst);
    CHECK(nosa_sample_exp(0.0) == 1.0 && nosa_sample_exp(-INFINITY) == 0.0, "exp(0), exp(-inf)");
}

int main(void)
{
    struct nosa_sampler s;
    char err[128];
    REQUIRE(nosa_sampler_init(&s, 4, err, sizeof(err)) == 0, "%s", err);
    test_mix64();
    test_uniform();
    test_greedy(&s);
    test_top_p(&s);
    test_bad(&s);
    test_rule_select();
    test_rule_exp();
    nosa_sampler_free(&s);
    return test_report("test_sampler");
}
