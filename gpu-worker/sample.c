/* sample.c: the host's draw of a token by the sampling rule (sample_rule.h), shared by the
 * sampler of the engine and the cpu backend's sampled rows (backend.h). The boundary of a
 * prefix is found by a radix select over the keys (8 bits per pass, heaviest digit first),
 * not a sort: O(vocab) per pass, the same result as walking the sorted ids. */
#include "backend.h"
#include "sample_rule.h"

/* The key at which the running mass (keys descending) first reaches thr (1 <= thr <= the
 * mass of key[0 .. n)), with in *through the running mass including it. Each pass keeps only
 * the keys of the chosen digit, compacted into work[] (which may be key itself). */
static uint64_t select_prefix(const uint64_t *key, int n, uint64_t thr, uint64_t *work,
                              uint64_t *through)
{
    uint64_t prefix = 0, above = 0; /* above: mass of the keys over the current range */
    const uint64_t *in = key;
    for (int shift = 56; shift >= 0; shift -= 8) {
        uint64_t hist[256] = {0};
        for (int i = 0; i < n; i++)
            hist[(in[i] >> shift) & 255u] += nosa_sample_key_weight(in[i]);
        /* The range's mass plus `above` reaches thr, and above < thr: some digit does. */
        int d = 255;
        while (d > 0 && above + hist[d] < thr) above += hist[d--];
        prefix |= (uint64_t)d << shift;
        int m = 0;
        for (int i = 0; i < n; i++)
            if (((in[i] >> shift) & 255u) == (uint64_t)d) work[m++] = in[i];
        in = work, n = m;
    }
    *through = above + nosa_sample_key_weight(prefix);
    return prefix;
}

int32_t nosa_sample_row(const float *logits, int vocab, const struct nosa_row_sampling *rs,
                        uint64_t *keys)
{
    if (rs->temperature == 0.0f) return nosa_logits_argmax(logits, vocab);
    if (vocab < 1 || vocab > NOSA_SAMPLE_MAX_VOCAB) return -1;
    float m = -INFINITY;
    for (int i = 0; i < vocab; i++) {
        if (isnan(logits[i])) return -1;
        if (logits[i] > m) m = logits[i];
    }
    if (!isfinite(m)) return -1;
    double inv_t = 1.0 / (double)rs->temperature;
    uint64_t *work = keys + vocab, total = 0, kept = 0, at = 0;
    for (int i = 0; i < vocab; i++) {
        keys[i] = nosa_sample_key(logits[i], m, inv_t, i);
        total += nosa_sample_key_weight(keys[i]);
    }
    uint64_t edge = select_prefix(keys, vocab, nosa_sample_threshold(rs->top_p, total), work,
                                  &kept);
    /* The draw lies in the nucleus: the keys >= edge. */
    int n_kept = 0;
    for (int i = 0; i < vocab; i++)
        if (keys[i] >= edge) work[n_kept++] = keys[i];
    uint64_t level = nosa_sample_level(nosa_sample_uniform(rs->seed, rs->index), kept);
    return nosa_sample_key_id(select_prefix(work, n_kept, level + 1, work, &at));
}
