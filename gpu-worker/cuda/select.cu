/* select: query-aware / query-agnostic block selection on the GPU (see select.cuh). */
#include <math.h>

#include "select.cuh"

#define SELECT_THREADS 256

static __device__ float block_max(float v, float *red)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = red[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); w++) r = fmaxf(r, red[w]);
    return r;
}

static __device__ float block_sum(float v, float *red)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = 0.0f;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) r += red[w];
    return r;
}

/* out[m] = max of s over the compressed units overlapping block m; -inf when none. */
static __device__ void max_pool(float *out, int nb, const float *s, int n_c, int u, int r)
{
    for (int m = threadIdx.x; m < nb; m += blockDim.x) {
        int lo = u * m - (r - 1), hi = u * m + u - 1;
        if (lo < 0) lo = 0;
        if (hi > n_c - 1) hi = n_c - 1;
        float mx = -INFINITY;
        for (int i = lo; i <= hi; i++) mx = fmaxf(mx, s[i]);
        out[m] = mx;
    }
}

static __device__ void mark_forced(const select_params &p, float *score, int nb)
{
    for (int m = threadIdx.x; m < nb; m += blockDim.x)
        if (m < p.sink || m >= nb - p.window) score[m] = INFINITY;
}

/* flag[m] = 1 iff m is among the k best of score[0 .. nb) in the CPU's order. */
static __device__ void topk_flags(float *flag, const float *score, int nb, int k)
{
    for (int m = threadIdx.x; m < nb; m += blockDim.x) {
        float sm = score[m];
        int rank = 0;
        for (int j = 0; j < nb && rank < k; j++) {
            float sj = score[j];
            rank += (sj > sm) || (sj == sm && j < m);
        }
        flag[m] = rank < k ? 1.0f : 0.0f;
    }
}

static __global__ void select_kernel(cuda_kv kv, cuda_step st, int layer, select_params p,
                                     float *scratch)
{
    __shared__ float red[SELECT_THREADS / 32];
    int i = blockIdx.x, h = blockIdx.y;
    int pos = st.pos[i], nb = pos / kv.block_size;
    size_t ih = cu_kv_head_index(kv, st.slot[i], layer, h);
    int32_t *sel = kv.last_sel + ih * (size_t)kv.max_blocks;
    if (p.mode == 0 /* dense */ || nb <= p.k_total) {
        for (int m = threadIdx.x; m < nb; m += blockDim.x) sel[m] = m;
        if (threadIdx.x == 0) kv.n_sel[ih] = nb;
        return;
    }
    float *lgall = select_scratch_logits(kv, scratch, i * kv.n_kv + h);
    float *sq = lgall + (size_t)p.rep * (size_t)kv.max_c;
    float *bq = sq + kv.max_c, *be = bq + kv.max_blocks, *flag = be + kv.max_blocks;
    int n_c = pos + 1 < kv.kernel ? 0 : (pos + 1 - kv.kernel) / kv.stride + 1;

    for (int c = threadIdx.x; c < n_c; c += blockDim.x) sq[c] = 0.0f;
    for (int g = 0; g < p.rep && n_c > 0; g++) {
        float *pg = lgall + (size_t)g * (size_t)kv.max_c;
        float mx = -INFINITY;
        for (int c = threadIdx.x; c < n_c; c += blockDim.x) mx = fmaxf(mx, pg[c]);
        mx = block_max(mx, red);
        float part = 0.0f;
        for (int c = threadIdx.x; c < n_c; c += blockDim.x) {
            float e = expf(pg[c] - mx);
            pg[c] = e;
            part += e;
        }
        float inv = 1.0f / block_sum(part, red);
        for (int c = threadIdx.x; c < n_c; c += blockDim.x)
            sq[c] = __fadd_rn(sq[c], __fmul_rn(pg[c], inv));
        __syncthreads();
    }
    __syncthreads();
    max_pool(bq, nb, sq, n_c, p.units, p.span);
    if (p.mode == 2 /* nosa */)
        max_pool(be, nb, kv.ce + ih * (size_t)kv.max_c, n_c, p.units, p.span);
    __syncthreads();
    mark_forced(p, bq, nb);
    __syncthreads();
    if (p.mode == 1 /* infllmv2 */) {
        topk_flags(flag, bq, nb, p.k_total);
    } else {
        int kq = p.k_query < nb ? p.k_query : nb;
        topk_flags(flag, bq, nb, kq);
        mark_forced(p, be, nb);
        __syncthreads();
        for (int m = threadIdx.x; m < nb; m += blockDim.x)
            if (flag[m] != 0.0f) be[m] = INFINITY;
        __syncthreads();
        topk_flags(flag, be, nb, p.k_total);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int c = 0;
        for (int m = 0; m < nb; m++)
            if (flag[m] != 0.0f) sel[c++] = m;
        kv.n_sel[ih] = c;
    }
}

void select_launch(cuda_kv kv, cuda_step st, int layer, select_params p, float *scratch,
                   cudaStream_t s)
{
    select_kernel<<<dim3(st.n, kv.n_kv), SELECT_THREADS, 0, s>>>(kv, st, layer, p, scratch);
}
