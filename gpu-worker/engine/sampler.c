/* sampler.c: see sampler.h. */
#include "sampler.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "backend.h" /* nosa_sample_row */
#include "sample_rule.h"
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

int nosa_sampler_init(struct nosa_sampler *s, int vocab, char *err, size_t errlen)
{
    s->vocab = vocab;
    s->keys = vocab >= 1 && vocab <= NOSA_SAMPLE_MAX_VOCAB
                  ? malloc(2 * (size_t)vocab * sizeof(*s->keys))
                  : NULL;
    if (!s->keys) {
        nosa_set_error(err, errlen, "sampler: cannot allocate scratch for a vocabulary of %d "
                                    "(1 .. %d)", vocab, NOSA_SAMPLE_MAX_VOCAB);
        return vocab < 1 || vocab > NOSA_SAMPLE_MAX_VOCAB ? -EINVAL : -ENOMEM;
    }
    return 0;
}

void nosa_sampler_free(struct nosa_sampler *s)
{
    if (!s) return;
    free(s->keys);
    s->keys = NULL;
}

int32_t nosa_sampler_pick(struct nosa_sampler *s, const float *logits,
                          const struct nosa_sampling *params, uint64_t index, char *err,
                          size_t errlen)
{
    struct nosa_row_sampling rs = {params->temperature, params->top_p, params->seed, index};
    int32_t tok = nosa_sample_row(logits, s->vocab, &rs, s->keys);
    if (tok < 0) {
        nosa_set_error(err, errlen, "sampler: a logit is NaN or none is finite");
        return -EDOM;
    }
    return tok;
}
