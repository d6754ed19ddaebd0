/* sampler.h: choosing a token from logits, reproducibly (docs/ENGINE.md "Sampling").
 *
 * Greedy (temperature 0): the highest logit, the lowest id on ties. Otherwise top-p with
 * temperature, driven by one uniform number per generated token that is a pure function of
 * (seed, token index): a sequence gives the same tokens whatever batch it is in and on
 * whichever worker each token is generated, including after a move mid-run.
 *
 * This module owns: the sampling parameters' checks, the host's pick (a prefill's token; the
 * backends draw decode rows by the same rule, gpu-worker/sample_rule.h) and its scratch
 * buffer (allocated once per engine, never on the decode path). */
#ifndef NOSA_SAMPLER_H
#define NOSA_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

struct nosa_sampling {
    uint32_t max_tokens; /* >= 1 */
    float temperature;   /* >= 0; 0 = greedy */
    float top_p;         /* (0, 1]; 1 = no truncation */
    uint64_t seed;
    int stop_at_eos;     /* 1: finish when the model's EOS is generated (it is emitted) */
};

/* -EINVAL with err naming the field when max_tokens is 0, temperature is negative or not
 * finite, or top_p is outside (0, 1]. */
int nosa_sampling_validate(const struct nosa_sampling *s, char *err, size_t errlen);

struct nosa_sampler {
    int vocab;
    uint64_t *keys; /* [2 * vocab] scratch of nosa_sample_row */
};

int nosa_sampler_init(struct nosa_sampler *s, int vocab, char *err, size_t errlen);
void nosa_sampler_free(struct nosa_sampler *s); /* accepts a zeroed one */

/* Chooses generated token `index` from logits[vocab] by the sampling rule (sample_rule.h,
 * the one the backends draw sampled decode rows by). Returns the id, or -EDOM (err set) when
 * a logit is NaN (or all are -inf). params must have passed nosa_sampling_validate. */
int32_t nosa_sampler_pick(struct nosa_sampler *s, const float *logits,
                          const struct nosa_sampling *params, uint64_t index, char *err,
                          size_t errlen);

#endif
