/* score: query x compressed-key logits on the tensor cores (see score.cuh). */
#include "mma.cuh"
#include "score.cuh"

#define SCORE_WARPS 4
#define SCORE_TILES 4 /* 8-key tiles per warp: their loads are all in flight before the MMAs */
#define SCORE_KEYS (SCORE_WARPS * SCORE_TILES * 8) /* compressed keys per CTA */
#define SCORE_G 8     /* query heads per pass: the MMA's 16 rows are their hi and lo halves */
static_assert(SCORE_KEYS == SELECT_STAT_KEYS, "a CTA's keys are one statistics chunk");

bool score_supported(int head_dim)
{
    return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128 ||
           head_dim == 256;
}

/* The chunk's softmax statistics of head `head` (select.cuh): v[] are this lane's logits
 * (-inf where the key is past n_c); lanes 4g .. 4g + 3 hold head g's. Reduced over the
 * lanes, then over the warps in order through red[2][SCORE_WARPS][SCORE_G]. */
static __device__ void chunk_stats(const float (&v)[SCORE_TILES][2], float *red, int head,
                                   int rep, float2 *stat)
{
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4;
    float m = -INFINITY;
#pragma unroll
    for (int tile = 0; tile < SCORE_TILES; tile++) m = fmaxf(m, fmaxf(v[tile][0], v[tile][1]));
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
    if (lane % 4 == 0) red[warp * SCORE_G + g] = m;
    __syncthreads();
    m = red[g];
#pragma unroll
    for (int w = 1; w < SCORE_WARPS; w++) m = fmaxf(m, red[w * SCORE_G + g]);
    /* The CTA has a key below n_c, so m is finite (for finite logits). */
    float e = 0.0f;
#pragma unroll
    for (int tile = 0; tile < SCORE_TILES; tile++)
        e += expf(v[tile][0] - m) + expf(v[tile][1] - m);
    e += __shfl_xor_sync(0xffffffffu, e, 1);
    e += __shfl_xor_sync(0xffffffffu, e, 2);
    float *rs = red + SCORE_WARPS * SCORE_G;
    if (lane % 4 == 0) rs[warp * SCORE_G + g] = e;
    __syncthreads();
    if (warp == 0 && lane % 4 == 0 && head < rep) {
        float sum = 0.0f;
        for (int w = 0; w < SCORE_WARPS; w++) sum += rs[w * SCORE_G + g];
        stat[head] = make_float2(m, sum);
    }
    __syncthreads(); /* red is rewritten by the next head group */
}

/* One warp scores 8-key tiles with m16n8k16 MMAs. The f32 query is split into bf16 hi + lo
 * (q = hi + lo to 2^-16 relative): rows 0-7 of A are the group's 8 heads' hi halves, rows
 * 8-15 their lo halves, and a key's logit is the sum of the two rows' results, so the
 * products are those of the f32 query to about f32 precision (exact bf16 x bf16 products,
 * f32 accumulation) while the keys are read once at memory speed.
 *
 * The dot product does not depend on the order of the dimensions, so the k index of the MMA
 * is permuted to suit the loads: LK k-steps (16 dimensions each) are loaded together, and in
 * k-step j = LK * j2 + s lane t = lane % 4 holds the four dimensions from
 * 16 LK j2 + 4 LK t + 4 s of its key row as the B fragment's k = {2t, 2t + 1} and
 * {2t + 8, 2t + 9}; the A fragment holds the query's same four dimensions in the same k
 * positions. With LK = 2 a lane's key load is 16 bytes (8-byte loads ran the kernel 9%
 * slower at batch 64-256, bench/RESULTS.md); head_dim 16 has one k-step, LK = 1.
 * NK = head_dim / 16. */
template <int NK>
static __global__ void __launch_bounds__(SCORE_WARPS * 32)
    score_kernel(cuda_kv kv, cuda_step st, int layer, select_params p, const float *qkv, int ld,
                 float *scratch)
{
    __shared__ float red[2 * SCORE_WARPS * SCORE_G];
    int li = blockIdx.y, i = li / kv.n_kv, h = li % kv.n_kv;
    const int d = NK * 16;
    constexpr int LK = NK >= 2 ? 2 : 1; /* k-steps per key load */
    int pos = st.pos[i], nb = pos / kv.block_size;
    if (p.mode == 0 || nb == 0) return; /* dense, or no complete block to select */
    int n_c = pos + 1 < kv.kernel ? 0 : (pos + 1 - kv.kernel) / kv.stride + 1;
    if ((int)blockIdx.x * SCORE_KEYS >= n_c) return; /* the whole CTA: no barrier is left */
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    int c0 = blockIdx.x * SCORE_KEYS + warp * SCORE_TILES * 8;
    size_t ih = cu_kv_head_index(kv, st.slot[i], layer, h);
    const uint16_t *kc = kv.kc + ih * (size_t)kv.max_c * (size_t)d + (size_t)(4 * LK * t);
    float *lg = select_scratch_logits(kv, scratch, li);
    float2 *stat = select_scratch_stats(kv, scratch, li, p.rep) + (size_t)blockIdx.x * p.rep;
    const float *qh = qkv + (size_t)i * (size_t)ld + (size_t)h * (size_t)p.rep * (size_t)d;

    /* Key rows of this lane (key g of each tile), loaded once for every head group. */
    uint2 kf[SCORE_TILES][NK];
#pragma unroll
    for (int tile = 0; tile < SCORE_TILES; tile++) {
        int c = c0 + tile * 8 + g;
#pragma unroll
        for (int j2 = 0; j2 < NK / LK; j2++) {
            const uint16_t *src = kc + (size_t)c * d + 16 * LK * j2;
            if constexpr (LK == 2) {
                uint4 w = c < n_c ? *(const uint4 *)src : make_uint4(0u, 0u, 0u, 0u);
                kf[tile][2 * j2] = make_uint2(w.x, w.y);
                kf[tile][2 * j2 + 1] = make_uint2(w.z, w.w);
            } else {
                kf[tile][j2] = c < n_c ? *(const uint2 *)src : make_uint2(0u, 0u);
            }
        }
    }
    for (int g0 = 0; g0 < p.rep; g0 += SCORE_G) {
        /* A fragments: a[0] = hi (row g), a[1] = lo (row g + 8) at k {2t, 2t+1}; a[2], a[3]
         * the same at k {2t+8, 2t+9}. Heads past the group are zero rows. */
        uint32_t a[NK][4];
        int head = g0 + g;
#pragma unroll
        for (int j = 0; j < NK; j++) {
            const float *qd =
                qh + (size_t)head * d + 16 * LK * (j / LK) + 4 * LK * t + 4 * (j % LK);
            float4 q = head < p.rep ? *(const float4 *)qd : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            bf16x2_split(q.x, q.y, &a[j][0], &a[j][1]);
            bf16x2_split(q.z, q.w, &a[j][2], &a[j][3]);
        }
        float v[SCORE_TILES][2];
#pragma unroll
        for (int tile = 0; tile < SCORE_TILES; tile++) {
            float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
            for (int j = 0; j < NK; j++) mma_bf16_16816(acc, a[j], kf[tile][j].x, kf[tile][j].y);
            /* acc[0..1]: head g's hi products for keys 2t, 2t+1 of the tile; acc[2..3]: lo. */
            int c = c0 + tile * 8 + 2 * t;
            v[tile][0] = c < n_c ? (acc[0] + acc[2]) * p.scale : -INFINITY;
            v[tile][1] = c + 1 < n_c ? (acc[1] + acc[3]) * p.scale : -INFINITY;
            if (head < p.rep) {
                float *row = lg + (size_t)head * kv.max_c;
                if (c < n_c) row[c] = v[tile][0];
                if (c + 1 < n_c) row[c + 1] = v[tile][1];
            }
        }
        chunk_stats(v, red, head, p.rep, stat);
    }
}

void score_launch(cuda_kv kv, cuda_step st, int layer, select_params p, const float *qkv,
                  int ld, float *scratch, int max_nc, cudaStream_t s)
{
    if (max_nc <= 0) return;
    dim3 grid((max_nc + SCORE_KEYS - 1) / SCORE_KEYS, st.n * kv.n_kv);
    int threads = SCORE_WARPS * 32;
    switch (kv.head_dim) {
    case 16: score_kernel<1><<<grid, threads, 0, s>>>(kv, st, layer, p, qkv, ld, scratch); break;
    case 32: score_kernel<2><<<grid, threads, 0, s>>>(kv, st, layer, p, qkv, ld, scratch); break;
    case 64: score_kernel<4><<<grid, threads, 0, s>>>(kv, st, layer, p, qkv, ld, scratch); break;
    case 128: score_kernel<8><<<grid, threads, 0, s>>>(kv, st, layer, p, qkv, ld, scratch); break;
    case 256: score_kernel<16><<<grid, threads, 0, s>>>(kv, st, layer, p, qkv, ld, scratch); break;
    default: break; /* create refuses other head sizes (score_supported) */
    }
}
