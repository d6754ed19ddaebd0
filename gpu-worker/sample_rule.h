/* sample_rule.h: the arithmetic of top-p sampling with temperature (docs/ENGINE.md
 * "Sampling"), written once for the host (sample.c) and the GPU (cuda/sample.cu), so that a
 * token drawn on either is the same: integer arithmetic wherever an order of summation would
 * matter, and in floating point only correctly rounded operations, each rounded once (no
 * fused multiply-add).
 *
 * For a row of logits l with largest logit m, temperature T and top_p p:
 * - weight W_i = floor(exp_rule((l_i - m) * (1 / T)) * 2^43) (the top token's is 2^43);
 * - key K_i = W_i * 2^20 + (2^20 - 1 - i): keys are distinct, and descending keys are the
 *   ids by descending weight, then ascending id;
 * - total = sum W_i (exact); the nucleus is the shortest prefix of the ids in key order whose
 *   mass reaches thr = clamp(ceil(p * total), 1, total); kept = its mass;
 * - with u the sequence's uniform number for this token, R = min(floor(u * kept), kept - 1);
 *   the token is the first id in key order whose running mass exceeds R.
 * Weights below 2^-43 of the top token's count as 0 and are never drawn. */
#ifndef NOSA_SAMPLE_RULE_H
#define NOSA_SAMPLE_RULE_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define NOSA_HD __host__ __device__
#else
#define NOSA_HD
#endif

#define NOSA_SAMPLE_WEIGHT_BITS 43 /* vocab * 2^43 < 2^63: sums of weights fit a uint64 */
#define NOSA_SAMPLE_ID_BITS 20     /* vocabularies up to 2^20 ids */
#define NOSA_SAMPLE_MAX_VOCAB (1 << NOSA_SAMPLE_ID_BITS)

/* splitmix64's finaliser: a bijective mix of 64 bits. */
NOSA_HD static inline uint64_t nosa_sample_mix64(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The uniform number in [0, 1) for generated token `index` of a sequence seeded `seed`. Mixing
 * the index first keeps (seed, index) pairs that differ only by an xor of their bits apart;
 * the top 53 bits make every value exact in a double and < 1. */
NOSA_HD static inline double nosa_sample_uniform(uint64_t seed, uint64_t index)
{
    uint64_t bits = nosa_sample_mix64(seed ^ nosa_sample_mix64(index + 1u));
    return (double)(bits >> 11) * 0x1.0p-53;
}

/* Products and sums rounded once each, never fused: nvcc would contract a * b + c into an
 * fma (one rounding) where a host compiler may not. Host files that include this are built
 * with -ffp-contract=off (gpu-worker/CMakeLists.txt, tests/engine/CMakeLists.txt). */
NOSA_HD static inline double nosa_rule_mul(double a, double b)
{
#ifdef __CUDA_ARCH__
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}

NOSA_HD static inline double nosa_rule_add(double a, double b)
{
#ifdef __CUDA_ARCH__
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}

/* exp(x) for x <= 0 by the same operations everywhere: x = k ln2 + r (|r| <= ln2 / 2; ln2 in
 * two parts, k * ln2_hi exact), the Taylor series of exp(r) to degree 13 by Horner steps,
 * times 2^k. Within a few ulps of exp (tests/engine/test_sampler.c). 0 at or below -30:
 * exp(-30) * 2^43 < 1, so such a weight is 0 either way. */
NOSA_HD static inline double nosa_sample_exp(double x)
{
    static const double inv_fact[14] = {
        1.0, 1.0, 0.5, 1.66666666666666667e-01, 4.16666666666666667e-02,
        8.33333333333333333e-03, 1.38888888888888889e-03, 1.98412698412698413e-04,
        2.48015873015873016e-05, 2.75573192239858925e-06, 2.75573192239858907e-07,
        2.50521083854417188e-08, 2.08767569878680990e-09, 1.6059043836821613e-10};
    if (!(x > -30.0)) return 0.0;
    double k = rint(nosa_rule_mul(x, 1.4426950408889634));
    double r = nosa_rule_add(x, -nosa_rule_mul(k, 6.93147180369123816490e-01));
    r = nosa_rule_add(r, -nosa_rule_mul(k, 1.90821492927058770002e-10));
    double p = inv_fact[13];
    for (int j = 12; j >= 0; j--) p = nosa_rule_add(nosa_rule_mul(p, r), inv_fact[j]);
    return ldexp(p, (int)k);
}

/* Key of id i with logit l, the row's largest logit m and inv_t = 1 / T (see above). */
NOSA_HD static inline uint64_t nosa_sample_key(float l, float m, double inv_t, int i)
{
    double w = nosa_sample_exp(((double)l - (double)m) * inv_t);
    uint64_t W = (uint64_t)(w * 0x1.0p43);
    return (W << NOSA_SAMPLE_ID_BITS) | (uint64_t)(NOSA_SAMPLE_MAX_VOCAB - 1 - i);
}

NOSA_HD static inline uint64_t nosa_sample_key_weight(uint64_t key)
{
    return key >> NOSA_SAMPLE_ID_BITS;
}

NOSA_HD static inline int nosa_sample_key_id(uint64_t key)
{
    return NOSA_SAMPLE_MAX_VOCAB - 1 - (int)(key & (uint64_t)(NOSA_SAMPLE_MAX_VOCAB - 1));
}

/* The nucleus' mass threshold for top_p p over total mass `total` (>= 1). */
NOSA_HD static inline uint64_t nosa_sample_threshold(float p, uint64_t total)
{
    uint64_t thr = (uint64_t)ceil((double)p * (double)total);
    return thr < 1 ? 1 : thr > total ? total : thr;
}

/* The running-mass level the drawn token's prefix must exceed, for u in [0, 1). */
NOSA_HD static inline uint64_t nosa_sample_level(double u, uint64_t kept)
{
    uint64_t r = (uint64_t)floor(u * (double)kept);
    return r < kept ? r : kept - 1;
}

#endif
