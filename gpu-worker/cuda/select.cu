/* select: query-aware / query-agnostic block selection on the GPU (see select.cuh). */
#include <math.h>

#include "select.cuh"

#define SELECT_THREADS 1024
#define SELECT_WARPS (SELECT_THREADS / 32)
#define SELECT_SQ_KEYS 2  /* group_softmax_sum: keys per thread and pass */
#define SELECT_SQ_HEADS 4 /* heads whose logits are loaded together */
#define SELECT_POOL_LOADS 8 /* max_pool: window units loaded together */

/* sq[c] = sum over the query heads g of softmax_c(lg[g][c]) (g ascending, f32), for
 * c < n_c, reading the logits once: each head's max and sum over all keys come from the
 * chunks' statistics (score.cu), combined by one warp per head in a fixed order.
 * gstat: [2][rep] in shared memory (the max, then 1 / the sum). */
static __device__ void group_softmax_sum(float *sq, const float *lgall, const float2 *stat,
                                         int max_c, int rep, int n_c, float *gstat)
{
    int n_chunks = (n_c + SELECT_STAT_KEYS - 1) / SELECT_STAT_KEYS;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int g = warp; g < rep; g += SELECT_WARPS) {
        float m = -INFINITY, sum = 0.0f;
        for (int j = lane; j < n_chunks; j += 32) m = fmaxf(m, stat[(size_t)j * rep + g].x);
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        for (int j = lane; j < n_chunks; j += 32) {
            float2 cs = stat[(size_t)j * rep + g];
            sum += cs.y * expf(cs.x - m);
        }
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
        if (lane == 0) gstat[g] = m, gstat[rep + g] = 1.0f / sum;
    }
    __syncthreads();
    /* SELECT_SQ_KEYS keys per thread a blockDim apart (coalesced), SELECT_SQ_HEADS heads'
     * logits loaded before any is added, so that more of a thread's loads are in flight at
     * once: the phase is latency-bound at small batches (a CTA per (token, KV head); 11.6 ->
     * 9.0 us at batch 64, 128K, bench/RESULTS.md twelfth session). The adds keep the order
     * above (g ascending), so the bits do not change. */
    const int span = SELECT_SQ_KEYS * (int)blockDim.x;
    for (int c0 = threadIdx.x; c0 < n_c; c0 += span) {
        float acc[SELECT_SQ_KEYS];
#pragma unroll
        for (int k = 0; k < SELECT_SQ_KEYS; k++) acc[k] = 0.0f;
        for (int g0 = 0; g0 < rep; g0 += SELECT_SQ_HEADS) {
            float v[SELECT_SQ_HEADS][SELECT_SQ_KEYS];
#pragma unroll
            for (int j = 0; j < SELECT_SQ_HEADS; j++)
#pragma unroll
                for (int k = 0; k < SELECT_SQ_KEYS; k++) {
                    int c = c0 + k * (int)blockDim.x;
                    v[j][k] = g0 + j < rep && c < n_c ? lgall[(size_t)(g0 + j) * max_c + c]
                                                      : 0.0f;
                }
#pragma unroll
            for (int j = 0; j < SELECT_SQ_HEADS; j++) {
                if (g0 + j >= rep) break;
                float m = gstat[g0 + j], inv = gstat[rep + g0 + j];
#pragma unroll
                for (int k = 0; k < SELECT_SQ_KEYS; k++)
                    acc[k] = __fadd_rn(acc[k], __fmul_rn(expf(v[j][k] - m), inv));
            }
        }
#pragma unroll
        for (int k = 0; k < SELECT_SQ_KEYS; k++) {
            int c = c0 + k * (int)blockDim.x;
            if (c < n_c) sq[c] = acc[k];
        }
    }
    __syncthreads();
}

/* Thread t's contiguous run [*m0, *m1) of [0, nb): in-order work split for scans. */
static __device__ void thread_run(int nb, int *m0, int *m1)
{
    int per = (nb + (int)blockDim.x - 1) / (int)blockDim.x;
    *m0 = min((int)threadIdx.x * per, nb);
    *m1 = min(*m0 + per, nb);
}

/* Exclusive prefix sum of v over the threads in order; *total gets the sum. red:
 * [SELECT_WARPS]; the caller syncs before red is reused. */
static __device__ int block_exclusive_scan(int v, int *total, int *red)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, incl = v;
    for (int o = 1; o < 32; o <<= 1) {
        int u = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += u;
    }
    __syncthreads();
    if (lane == 31) red[warp] = incl;
    __syncthreads();
    int base = 0;
    *total = 0;
    for (int w = 0; w < SELECT_WARPS; w++) {
        if (w < warp) base += red[w];
        *total += red[w];
    }
    return base + incl - v;
}

/* sel[0 .. count) = the m < nb with flag[m] != 0, ascending; *n_sel = count. */
static __device__ void compact_flags(int32_t *sel, int32_t *n_sel, const float *flag, int nb,
                                     int *red)
{
    int m0, m1, cnt = 0, total;
    thread_run(nb, &m0, &m1);
    for (int m = m0; m < m1; m++) cnt += flag[m] != 0.0f;
    int at = block_exclusive_scan(cnt, &total, red);
    for (int m = m0; m < m1; m++)
        if (flag[m] != 0.0f) sel[at++] = m;
    if (threadIdx.x == 0) *n_sel = total;
}

/* out[m] = max of s over the compressed units overlapping block m; -inf when none. The
 * window is loaded SELECT_POOL_LOADS units at a time, all issued before the maxima (the two
 * poolings took 8.4 us of the kernel at batch 64, 128K, loaded one unit per step; 4.7 so). */
static __device__ void max_pool(float *out, int nb, const float *s, int n_c, int u, int r)
{
    for (int m = threadIdx.x; m < nb; m += blockDim.x) {
        int lo = u * m - (r - 1), hi = u * m + u - 1;
        if (lo < 0) lo = 0;
        if (hi > n_c - 1) hi = n_c - 1;
        float mx = -INFINITY;
        for (int i0 = lo; i0 <= hi; i0 += SELECT_POOL_LOADS) {
            float v[SELECT_POOL_LOADS];
#pragma unroll
            for (int k = 0; k < SELECT_POOL_LOADS; k++) v[k] = i0 + k <= hi ? s[i0 + k] : -INFINITY;
#pragma unroll
            for (int k = 0; k < SELECT_POOL_LOADS; k++) mx = fmaxf(mx, v[k]);
        }
        out[m] = mx;
    }
}

static __device__ void mark_forced(const select_params &p, float *score, int nb)
{
    for (int m = threadIdx.x; m < nb; m += blockDim.x)
        if (m < p.sink || m >= nb - p.window) score[m] = INFINITY;
}

/* Radix-select state shared by the CTA. */
struct topk_shared {
    unsigned hist[256];
    uint32_t prefix;
    int want;
};

/* flag[m] = 1 iff m is among the k best of score[0 .. nb) in the CPU's order: higher score
 * first, ties to the lower block. The k-th best value T is found by a 4-pass, 8-bit radix
 * select over order_key (the histogram in shared memory); blocks above T are taken, and of
 * those equal to T the lowest-numbered ones, as many as are still wanted (an in-order scan).
 * O(nb) per pass, whatever k. */
static __device__ void topk_flags(float *flag, const float *score, int nb, int k,
                                  topk_shared *ts, int *red)
{
    if (k >= nb || k <= 0) {
        for (int m = threadIdx.x; m < nb; m += blockDim.x) flag[m] = k > 0 ? 1.0f : 0.0f;
        __syncthreads();
        return;
    }
    uint32_t prefix = 0, mask = 0;
    int want = k; /* keys still wanted among those matching prefix (every thread's copy) */
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += blockDim.x) ts->hist[b] = 0u;
        __syncthreads();
        for (int m = threadIdx.x; m < nb; m += blockDim.x) {
            uint32_t u = order_key(score[m]);
            if ((u & mask) == prefix) atomicAdd(&ts->hist[(u >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (threadIdx.x < 32) {
            /* Lane l sums bins [248 - 8l, 255 - 8l]; scanning lanes in order walks the
             * bins from the top. */
            int lane = threadIdx.x, sum = 0;
            for (int j = 0; j < 8; j++) sum += (int)ts->hist[255 - 8 * lane - j];
            int incl = sum;
            for (int o = 1; o < 32; o <<= 1) {
                int u = __shfl_up_sync(0xffffffffu, incl, o);
                if (lane >= o) incl += u;
            }
            int above = incl - sum; /* keys in higher bins than this lane's */
            if (above < want && incl >= want) {
                for (int j = 0; j < 8; j++) {
                    int bin = 255 - 8 * lane - j, c = (int)ts->hist[bin];
                    if (above + c >= want) {
                        ts->prefix = (uint32_t)bin;
                        ts->want = want - above;
                        break;
                    }
                    above += c;
                }
            }
        }
        __syncthreads(); /* the next write of ts is two barriers away */
        prefix |= ts->prefix << shift;
        mask |= 255u << shift;
        want = ts->want;
    }
    /* prefix: the k-th best key; `want` of the keys equal to it are taken. */
    int m0, m1, eq = 0, total;
    thread_run(nb, &m0, &m1);
    for (int m = m0; m < m1; m++) eq += order_key(score[m]) == prefix;
    int before = block_exclusive_scan(eq, &total, red);
    for (int m = m0; m < m1; m++) {
        uint32_t u = order_key(score[m]);
        int take = u > prefix || (u == prefix && before++ < want);
        flag[m] = take ? 1.0f : 0.0f;
    }
    __syncthreads();
}

/* Two CTAs per SM, which at 1024 threads caps the registers at 32: left to itself the
 * compiler once took 58, one CTA per SM, and batch 256 ran in twice the waves (+0.65-0.9 ms
 * per step, bench/RESULTS.md, sixth session). */
static __global__ void __launch_bounds__(SELECT_THREADS, 2)
    select_kernel(cuda_kv kv, cuda_step st, int layer, select_params p, float *scratch)
{
    extern __shared__ float gstat[]; /* [2][rep]: group_softmax_sum */
    __shared__ int red_i[SELECT_WARPS];
    __shared__ topk_shared ts;
    int i = blockIdx.x, h = blockIdx.y;
    int pos = st.pos[i], nb = pos / kv.block_size;
    size_t ih = cu_kv_head_index(kv, st.slot[i], layer, h);
    int32_t *sel = kv.last_sel + ih * (size_t)kv.max_blocks;
    /* Sparse modes run the top-k even when every block fits (it then takes them all, as the
     * CPU's does), so the full-budget == dense tests exercise this code. */
    if (p.mode == 0 /* dense */) {
        for (int m = threadIdx.x; m < nb; m += blockDim.x) sel[m] = m;
        if (threadIdx.x == 0) kv.n_sel[ih] = nb;
        return;
    }
    float *lgall = select_scratch_logits(kv, scratch, i * kv.n_kv + h);
    float *sq = lgall + (size_t)p.rep * (size_t)kv.max_c;
    float *bq = select_scratch_bq(kv, scratch, i * kv.n_kv + h, p.rep);
    float *be = bq + kv.max_blocks, *flag = be + kv.max_blocks;
    int n_c = pos + 1 < kv.kernel ? 0 : (pos + 1 - kv.kernel) / kv.stride + 1;

    if (n_c > 0)
        group_softmax_sum(sq, lgall, select_scratch_stats(kv, scratch, i * kv.n_kv + h, p.rep),
                          kv.max_c, p.rep, n_c, gstat);
    max_pool(bq, nb, sq, n_c, p.units, p.span);
    if (p.mode == 2 /* nosa */)
        max_pool(be, nb, kv.ce + ih * (size_t)kv.max_c, n_c, p.units, p.span);
    __syncthreads();
    mark_forced(p, bq, nb);
    __syncthreads();
    if (p.mode == 1 /* infllmv2 */) {
        topk_flags(flag, bq, nb, p.k_total, &ts, red_i);
    } else {
        int kq = p.k_query < nb ? p.k_query : nb;
        topk_flags(flag, bq, nb, kq, &ts, red_i);
        mark_forced(p, be, nb);
        __syncthreads();
        for (int m = threadIdx.x; m < nb; m += blockDim.x)
            if (flag[m] != 0.0f) be[m] = INFINITY;
        __syncthreads();
        topk_flags(flag, be, nb, p.k_total, &ts, red_i);
    }
    __syncthreads();
    compact_flags(sel, kv.n_sel + ih, flag, nb, red_i);
}

select_params select_params_of(const struct nosa_sparse_config *sc, int mode, int rep,
                               float scale)
{
    select_params p;
    p.mode = mode, p.rep = rep;
    p.k_total = sc->budget_blocks - 1, p.k_query = sc->query_aware_blocks - 1;
    p.sink = sc->sink_blocks, p.window = sc->window_blocks;
    p.units = sc->block_size / sc->compress_stride;
    p.span = sc->compress_kernel / sc->compress_stride;
    p.scale = scale;
    return p;
}

void select_launch(cuda_kv kv, cuda_step st, int layer, select_params p, float *scratch,
                   cudaStream_t s)
{
    size_t smem = 2u * (size_t)p.rep * sizeof(float);
    select_kernel<<<dim3(st.n, kv.n_kv), SELECT_THREADS, smem, s>>>(kv, st, layer, p, scratch);
}
