/* sample: one CTA per row (sample.cuh). The two prefix boundaries of the rule (the nucleus,
 * then the drawn id) are each found by a radix select over the 64-bit keys, 4 bits per pass
 * from the top: every thread sums the weights (and counts) of its ids per digit in
 * registers, the CTA adds the 16 sums and takes the heaviest digit whose mass reaches the
 * threshold. The keys are computed once (the exp in double) into the row's scratch; the
 * passes read it until the keys under the prefix fit in shared memory, then only those
 * (bench/RESULTS.md has the cost per step). */
#include "sample.cuh"
#include "sample_rule.h"

#define SAMPLE_THREADS 512
#define SAMPLE_WARPS (SAMPLE_THREADS / 32)
#define SAMPLE_CAND 2048 /* keys the passes copy into shared memory once they fit */

/* The sum of v over the CTA, on every thread. */
static __device__ uint64_t block_sum(uint64_t v, uint64_t *sh)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads(); /* sh may still be read from the previous call */
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    uint64_t t = 0;
    for (int w = 0; w < SAMPLE_WARPS; w++) t += sh[w];
    return t;
}

struct sample_row {
    const uint64_t *key;
    int vocab;
};

/* The key at which the running mass (keys descending) first reaches thr, and in *through the
 * running mass including it; every thread gets both. Once the keys under the prefix number at
 * most SAMPLE_CAND, the next pass also copies them into shared memory and the passes after
 * it scan only those: the digits' masses are integer sums, the same in any order, so the
 * result does not depend on the copy's order. */
static __device__ uint64_t select_prefix(const sample_row &r, uint64_t thr, uint64_t *through)
{
    __shared__ uint64_t part[SAMPLE_WARPS][16];
    __shared__ unsigned part_n[SAMPLE_WARPS][16];
    __shared__ uint64_t cand[SAMPLE_CAND];
    __shared__ uint64_t s_prefix, s_above;
    __shared__ int n_cand;
    __shared__ bool s_start_copy; /* the next pass copies the keys under the prefix */
    uint64_t prefix = 0, above = 0;
    bool in_cand = false, copying = false;
    for (int shift = 60; shift >= 0; shift -= 4) {
        uint64_t acc[16];
        unsigned cnt[16];
#pragma unroll
        for (int j = 0; j < 16; j++) acc[j] = 0, cnt[j] = 0;
        uint64_t hi_mask = shift == 60 ? 0 : ~0ull << (shift + 4);
        const uint64_t *src = in_cand ? cand : r.key;
        int n = in_cand ? n_cand : r.vocab;
        for (int i = threadIdx.x; i < n; i += SAMPLE_THREADS) {
            uint64_t k = src[i];
            if ((k & hi_mask) != prefix) continue;
            if (copying) cand[atomicAdd(&n_cand, 1)] = k;
            int d = (int)(k >> shift) & 15;
            uint64_t w = nosa_sample_key_weight(k);
#pragma unroll
            for (int j = 0; j < 16; j++) acc[j] += d == j ? w : 0, cnt[j] += d == j;
        }
#pragma unroll
        for (int j = 0; j < 16; j++)
            for (int o = 16; o > 0; o >>= 1) {
                acc[j] += __shfl_xor_sync(0xffffffffu, acc[j], o);
                cnt[j] += __shfl_xor_sync(0xffffffffu, cnt[j], o);
            }
        if ((threadIdx.x & 31) == 0)
#pragma unroll
            for (int j = 0; j < 16; j++)
                part[threadIdx.x >> 5][j] = acc[j], part_n[threadIdx.x >> 5][j] = cnt[j];
        __syncthreads();
        if (threadIdx.x == 0) {
            /* The range's mass plus `above` reaches thr and above < thr: some digit does. */
            int d = 15;
            unsigned c = 0;
            for (;; d--) {
                uint64_t h = 0;
                c = 0;
                for (int w = 0; w < SAMPLE_WARPS; w++) h += part[w][d], c += part_n[w][d];
                if (d == 0 || above + h >= thr) break;
                above += h;
            }
            s_prefix = prefix | (uint64_t)d << shift, s_above = above;
            s_start_copy = !in_cand && !copying && c <= SAMPLE_CAND;
            if (s_start_copy) n_cand = 0;
        }
        __syncthreads();
        prefix = s_prefix, above = s_above;
        if (copying) in_cand = true, copying = false;
        else copying = s_start_copy;
    }
    *through = above + nosa_sample_key_weight(prefix);
    return prefix;
}

static __global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_kernel(int32_t *out, uint64_t *keys, const float *logits, int vocab,
                  const struct nosa_row_sampling *rs)
{
    __shared__ uint64_t sh[SAMPLE_WARPS];
    __shared__ float s_max[SAMPLE_WARPS];
    int row = blockIdx.x;
    struct nosa_row_sampling p = rs[row];
    if (p.temperature == 0.0f) return;
    const float *l = logits + (size_t)row * (size_t)vocab;
    uint64_t *key = keys + (size_t)row * (size_t)vocab;
    float m = -INFINITY;
    int bad = 0;
    for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS) {
        float v = l[i];
        bad |= isnan(v);
        m = fmaxf(m, v);
    }
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
    if ((threadIdx.x & 31) == 0) s_max[threadIdx.x >> 5] = m;
    bad = __syncthreads_or(bad);
    for (int w = 0; w < SAMPLE_WARPS; w++) m = fmaxf(m, s_max[w]);
    if (bad || !isfinite(m) || vocab > NOSA_SAMPLE_MAX_VOCAB) {
        if (threadIdx.x == 0) out[row] = -1;
        return;
    }
    double inv_t = 1.0 / (double)p.temperature;
    uint64_t total = 0;
    for (int i = threadIdx.x; i < vocab; i += SAMPLE_THREADS) {
        key[i] = nosa_sample_key(l[i], m, inv_t, i);
        total += nosa_sample_key_weight(key[i]);
    }
    total = block_sum(total, sh); /* its barriers also publish key[] to the CTA */
    sample_row r = {key, vocab};
    uint64_t kept = 0, at = 0;
    (void)select_prefix(r, nosa_sample_threshold(p.top_p, total), &kept);
    uint64_t level = nosa_sample_level(nosa_sample_uniform(p.seed, p.index), kept);
    uint64_t drawn = select_prefix(r, level + 1, &at);
    if (threadIdx.x == 0) out[row] = nosa_sample_key_id(drawn);
}

void sample_launch(int32_t *out, uint64_t *keys, const float *logits, int n, int vocab,
                   const struct nosa_row_sampling *rs, cudaStream_t s)
{
    sample_kernel<<<n, SAMPLE_THREADS, 0, s>>>(out, keys, logits, vocab, rs);
}
