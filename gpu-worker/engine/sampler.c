/* sampler.c: see sampler.h. */
#include "sampler.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "backend.h" /* nosa_logits_argmax */
#include "log.h"

int nosa_sampling_validate(const struct nosa_sampling *s, char *err, size_t errlen)
{
    if (s->max_tokens < 1) {
        nosa_set_error(err, errlen, "max_tokens must be >= 1");
        return -EINVAL;
    }
    if (!isfinite(s->temperature) || s->temperature < 0.0f) {
        nosa_set_error(err, errlen, "temperature %g must be finite and >= 0 (0 = greedy)",
                       (double)s->temperature);
        return -EINVAL;
    }
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f)) {
        nosa_set_error(err, errlen, "top_p %g must be in (0, 1]", (double)s->top_p);
        return -EINVAL;
    }
    return 0;
}

uint64_t nosa_sampler_mix64(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double nosa_sampler_uniform(uint64_t seed, uint64_t index)
{
    /* Mixing the index first keeps (seed, index) pairs that differ only by an xor of their
     * bits apart; the top 53 bits make every value exact in a double and < 1. */
    uint64_t bits = nosa_sampler_mix64(seed ^ nosa_sampler_mix64(index + 1u));
    return (double)(bits >> 11) * 0x1.0p-53;
}

int nosa_sampler_init(struct nosa_sampler *s, int vocab, char *err, size_t errlen)
{
    s->vocab = vocab;
    s->order = malloc((size_t)vocab * sizeof(*s->order));
    s->weight = malloc((size_t)vocab * sizeof(*s->weight));
    if (vocab < 1 || !s->order || !s->weight) {
        nosa_set_error(err, errlen, "sampler: cannot allocate scratch for a vocabulary of %d",
                       vocab);
        nosa_sampler_free(s);
        return vocab < 1 ? -EINVAL : -ENOMEM;
    }
    return 0;
}

void nosa_sampler_free(struct nosa_sampler *s)
{
    if (!s) return;
    free(s->order);
    free(s->weight);
    s->order = NULL;
    s->weight = NULL;
}

/* Candidates by descending weight, then ascending id: a total order, so the sort's result
 * does not depend on the algorithm. */
static int cmp_candidates(const void *a, const void *b, void *ctx)
{
    const double *w = ctx;
    uint32_t ia = *(const uint32_t *)a, ib = *(const uint32_t *)b;
    if (w[ia] != w[ib]) return w[ia] > w[ib] ? -1 : 1;
    return ia < ib ? -1 : (ia > ib);
}

int32_t nosa_sampler_pick(struct nosa_sampler *s, const float *logits,
                          const struct nosa_sampling *params, uint64_t index, char *err,
                          size_t errlen)
{
    int vocab = s->vocab;
    float max = -INFINITY;
    for (int i = 0; i < vocab; i++) {
        if (isnan(logits[i])) {
            nosa_set_error(err, errlen, "sampler: logit %d is NaN", i);
            return -EDOM;
        }
        if (logits[i] > max) max = logits[i];
    }
    if (!isfinite(max)) {
        nosa_set_error(err, errlen, "sampler: the largest logit is %g", (double)max);
        return -EDOM;
    }
    if (params->temperature == 0.0f) return nosa_logits_argmax(logits, vocab);

    double inv_t = 1.0 / (double)params->temperature;
    for (int i = 0; i < vocab; i++) {
        s->weight[i] = exp(((double)logits[i] - (double)max) * inv_t);
        s->order[i] = (uint32_t)i;
    }
    qsort_r(s->order, (size_t)vocab, sizeof(*s->order), cmp_candidates, s->weight);

    double total = 0.0;
    for (int i = 0; i < vocab; i++) total += s->weight[s->order[i]];
    /* The nucleus: the shortest prefix whose mass reaches top_p of the total (>= 1 id). */
    double threshold = (double)params->top_p * total, kept = 0.0;
    int n_kept = 0;
    while (n_kept < vocab && (n_kept == 0 || kept < threshold))
        kept += s->weight[s->order[n_kept++]];

    double r = nosa_sampler_uniform(params->seed, index) * kept, cum = 0.0;
    for (int i = 0; i < n_kept; i++) {
        cum += s->weight[s->order[i]];
        if (r < cum) return (int32_t)s->order[i];
    }
    return (int32_t)s->order[n_kept - 1]; /* r rounded up to the kept mass */
}
