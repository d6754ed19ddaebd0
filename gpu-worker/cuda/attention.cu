/* attention: split-KV decode attention over the selected blocks on the tensor cores (see
 * attention.cuh). */
#include <math.h>

#include "attention.cuh"
#include "mma.cuh"

#define ATT_G 8       /* query heads per CTA: the MMAs' 16 rows are their hi and lo halves */
#define ATT_MAX_NT 8 /* 8-token tiles of a warp's share of a block held in registers */
/* 16-byte loads in flight per lane on a missed block: 16 (8 KB per warp) read the link
 * 0.9-3.5% faster than 8 at 128K (bench/RESULTS.md, seventh session); 32 spills. */
#define ATT_MISS_LOADS 16
#define ATT_MIN_CHUNK 4  /* blocks per CTA at least (attention_chunk_for) */
#define ATT_MAX_CHUNK 16 /* blocks per CTA at most */
#define ATT_WARPS 2      /* warps per CTA, each over its share of every block's tokens */

/* Warps of a CTA: ATT_WARPS where each warp's share of a block's tokens is whole 8-token
 * MMA tiles, else one. */
static __host__ __device__ int att_warps(int bs)
{
    return bs % (8 * ATT_WARPS) == 0 ? ATT_WARPS : 1;
}

bool attention_supported(int head_dim, int block_size)
{
    return (head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128 ||
            head_dim == 256) &&
           block_size % 8 == 0 && block_size >= 8 &&
           block_size / att_warps(block_size) <= 8 * ATT_MAX_NT && block_size <= 128;
}

/* A block as staged in shared memory, in 16-byte units: K rows then V rows, each followed by
 * one unit of padding (an odd row stride in units, so the eight rows an ldmatrix phase reads
 * fall in distinct banks), then the rest of the block (the bias and the arena's alignment
 * padding) unchanged. Unit u of the arena block lands at att_staged_unit(u). */
static __host__ __device__ __forceinline__ int att_staged_unit(int u, int k16, int row16, int bs)
{
    return u < 2 * k16 ? u + u / row16 : u + 2 * bs;
}

size_t attention_smem_bytes(const cuda_kv &kv)
{
    return kv.block_bytes + 2u * (size_t)kv.block_size * 16u;
}

static __device__ __forceinline__ void cp_async16(void *smem, const void *gmem)
{
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}

static __device__ __forceinline__ void cp_async_commit(void)
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* Waits until at most one of this thread's copy groups is still in flight. */
static __device__ __forceinline__ void cp_async_wait_all_but_one(void)
{
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
}

static __device__ __forceinline__ void ldmatrix_x4(uint32_t *r, const void *smem)
{
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}

static __device__ __forceinline__ void ldmatrix_x2(uint32_t *r, const void *smem)
{
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(s));
}

static __device__ __forceinline__ void ldmatrix_x4_trans(uint32_t *r, const void *smem)
{
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}

/* Unit range [u0, u1) of block src into its staged form. A block on the GPU goes by cp.async
 * (waited for with its copy group). A missed block (from_host) is read with plain loads,
 * ATT_MISS_LOADS in flight per lane, and stored to the stage and, unpadded, to its pool slot
 * `install` (NULL: another CTA installs it): the one PCIe read feeds both. Plain loads
 * because on the H200 cp.async from mapped host memory reached 26 GB/s and plain loads
 * 48-50 GB/s (bench_cuda_attention, bench/RESULTS.md); the warp waits for them, the SM's
 * other warps run on. */
template <int ROW16>
static __device__ __forceinline__ void att_stage_range(uint4 *stage, const uint4 *src,
                                                       bool from_host, uint4 *install, int u0,
                                                       int u1, int k16, int bs)
{
    int lane = threadIdx.x & 31;
    if (!from_host) {
        for (int u = u0 + lane; u < u1; u += 32)
            cp_async16(stage + att_staged_unit(u, k16, ROW16, bs), src + u);
        return;
    }
    for (int ub = u0 + lane; ub < u1; ub += ATT_MISS_LOADS * 32) {
        uint4 w[ATT_MISS_LOADS];
#pragma unroll
        for (int j = 0; j < ATT_MISS_LOADS; j++)
            if (ub + 32 * j < u1) w[j] = src[ub + 32 * j];
#pragma unroll
        for (int j = 0; j < ATT_MISS_LOADS; j++) {
            int u = ub + 32 * j;
            if (u >= u1) break;
            stage[att_staged_unit(u, k16, ROW16, bs)] = w[j];
            if (install) install[u] = w[j];
        }
    }
}

/* A warp's half of its tokens [t0, t0 + tn) of a block: their K rows and bias (half 0; the
 * last warp also the alignment padding after the bias, so that an installed block is whole)
 * or their V rows (half 1). */
template <int ROW16>
static __device__ __forceinline__ void att_stage_half(uint4 *stage, const uint4 *src,
                                                      bool from_host, uint4 *install, int half,
                                                      int t0, int tn, bool last, int k16,
                                                      int n16, int bs)
{
    int r0 = half * k16 + t0 * ROW16;
    att_stage_range<ROW16>(stage, src, from_host, install, r0, r0 + tn * ROW16, k16, bs);
    if (half == 0) {
        int b0 = 2 * k16 + t0 / 4; /* 4-byte bias per token */
        att_stage_range<ROW16>(stage, src, from_host, install, b0, last ? n16 : b0 + tn / 4,
                               k16, bs);
    }
}

/* Where entry e of a (token, KV head)'s list is staged from: its pool slot, or for a miss
 * the mapped arena block, with the pool slot to install it in (ins) when this CTA is the one
 * that installs (z0: blockIdx.z == 0, so one CTA writes a slot and the cast drops no
 * guarantee). The open block (last entry, ne - 1) is never a miss. */
struct att_source {
    const uint4 *src;
    uint4 *ins;
    bool miss;
};
static __device__ __forceinline__ att_source att_entry_source(const uint8_t *const *pl,
                                                              const uint8_t *const *ml, int e,
                                                              int ne, bool z0)
{
    const uint8_t *miss = ml && e < ne - 1 ? ml[e] : NULL;
    att_source a = {(const uint4 *)(miss ? miss : pl[e]),
                    miss && z0 ? (uint4 *)pl[e] : NULL, miss != NULL};
    return a;
}

/* One CTA per (chunk of `chunk` entries, token x KV head, group of up to 8 query heads), of
 * att_warps(bs) warps, warp w over tokens [w * bs / W, (w + 1) * bs / W) of every block: two
 * warps halve the chain of loads and MMAs a CTA waits through per block (at batch 16 the
 * kernel is bound by that chain, not by bytes) and the misses' PCIe reads each warp waits
 * for in turn. A warp walks its entries with a two-stage pipeline over its rows of one
 * staging buffer: while the QK products of block e run, its V rows are in flight; while its
 * PV products run, the K rows of block e + 1 are (cp.async; a missed block's rows are read in
 * place of the issue, see att_stage_range). At the 1B shape four such CTAs fit an SM (by
 * registers, ~250 per thread; 35 KB of shared memory each), each warp with its half of a K
 * or V half block in flight (8 KB). The warps' states merge through shared memory at the
 * end. Against one warp per CTA (bench/RESULTS.md, thirteenth session): the kernel alone
 * 82 / 86% of the copy rate at batch 128 / 256 (was 78 / 85%), misses 49.4 GB/s at 64 (48.8);
 * at batch 16 51.6% (50.0%) once attention_chunk_for keeps its CTAs in one wave. Both
 * products are m16n8k16 bf16 MMAs with f32 accumulators (mma.cuh):
 * - QK: A = the heads' f32 queries as bf16 hi (rows 0-7) and lo (rows 8-15) halves, B = K
 *   rows as stored (ldmatrix), so a logit is row g + row g + 8: the f32 query's products;
 * - PV: A = the softmax weights split the same way, B = V rows (ldmatrix.trans).
 * Lane (g = lane / 4, t = lane % 4) holds head g's logits for tokens 8j + 2t, 8j + 2t + 1 of
 * each 8-token tile j: the QK accumulator layout is the PV A-fragment layout, so the weights
 * never leave registers. Online softmax (max, sum, rescale) across the chunk's blocks. */
template <int NK>
static __global__ void __launch_bounds__(32 * ATT_WARPS)
    attention_partial_kernel(float *part, const float *qkv, int ld, const uint8_t *const *ptrs,
                             const uint8_t *const *miss_src, const int32_t *n_ent, cuda_kv kv,
                             cuda_step st, int rep, float scale, int chunk)
{
    constexpr int D = NK * 16, ROW16 = NK * 2, PROW = ROW16 + 1;
    extern __shared__ uint4 stage[];
    int c = blockIdx.x, li = blockIdx.y, g0 = blockIdx.z * ATT_G;
    int i = li / kv.n_kv, h = li % kv.n_kv, bs = kv.block_size;
    int lane = threadIdx.x & 31, grp = lane >> 2, t = lane & 3;
    int nw = att_warps(bs), w = threadIdx.x >> 5, tn = bs / nw, tw = w * tn;
    bool last_w = w == nw - 1;
    int k16 = bs * ROW16, n16 = (int)(kv.block_bytes / 16), n_tiles = tn / 8;
    int ng = min(ATT_G, rep - g0);
    float *out = part + ((size_t)li * gridDim.x + (size_t)c) * (size_t)rep * (size_t)(D + 2);
    int ne = n_ent[li];
    int e0 = c * chunk, e1 = min(e0 + chunk, ne);
    bool head_ok = grp < ng;
    int head = g0 + grp;
    if (e0 >= e1) {
        if (w == 0 && head_ok) {
            for (int x = 2 * t; x < D; x += 8)
                *(float2 *)(out + 2 * rep + (size_t)head * D + x) = make_float2(0.0f, 0.0f);
            if (t == 0) out[head] = -INFINITY, out[rep + head] = 0.0f;
        }
        return;
    }
    const uint8_t *const *pl = ptrs + (size_t)li * ((size_t)kv.max_blocks + 1u);
    const uint8_t *const *ml = miss_src ? miss_src + (size_t)li * (size_t)kv.max_blocks : NULL;
    bool z0 = blockIdx.z == 0;
    {
        att_source cur = att_entry_source(pl, ml, e0, ne, z0);
        att_stage_half<ROW16>(stage, cur.src, cur.miss, cur.ins, 0, tw, tn, last_w, k16, n16,
                              bs);
        cp_async_commit();
        att_stage_half<ROW16>(stage, cur.src, cur.miss, cur.ins, 1, tw, tn, last_w, k16, n16,
                              bs);
        cp_async_commit();
    }

    uint32_t qa[NK][4];
    {
        const float *qh = qkv + (size_t)i * (size_t)ld + ((size_t)h * rep + head) * D;
#pragma unroll
        for (int j = 0; j < NK; j++) {
            float2 x0 = head_ok ? *(const float2 *)(qh + 16 * j + 2 * t) : make_float2(0.f, 0.f);
            float2 x1 = head_ok ? *(const float2 *)(qh + 16 * j + 8 + 2 * t)
                                : make_float2(0.f, 0.f);
            bf16x2_split(x0.x, x0.y, &qa[j][0], &qa[j][1]);
            bf16x2_split(x1.x, x1.y, &qa[j][2], &qa[j][3]);
        }
    }
    float o[2 * NK][4];
#pragma unroll
    for (int dn = 0; dn < 2 * NK; dn++) o[dn][0] = o[dn][1] = o[dn][2] = o[dn][3] = 0.0f;
    float m_run = -INFINITY, l_run = 0.0f;
    int open_tokens = st.pos[i] % bs + 1;
    const uint4 *vs = stage + bs * PROW;
    const float *bias = (const float *)(stage + 2 * bs * PROW);

    for (int e = e0; e < e1; e++) {
        /* This warp's tokens of block e that hold keys: none only in an open block that
         * ends before them; the warp then leaves its state as it is. */
        int ntok = e == ne - 1 ? open_tokens : bs, nv = min(max(ntok - tw, 0), tn);
        att_source next = {NULL, NULL, false};
        if (e + 1 < e1) next = att_entry_source(pl, ml, e + 1, ne, z0);
        cp_async_wait_all_but_one(); /* K rows and the bias of block e */
        __syncwarp();

        float s[ATT_MAX_NT][2];
#pragma unroll
        for (int nt = 0; nt < ATT_MAX_NT; nt++) {
            if (nt >= n_tiles || nv == 0) break;
            float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            /* ldmatrix rows: token tw + 8 nt + lane % 8; matrix lane / 8 = 8 dimensions. */
            const uint4 *kr = stage + (tw + 8 * nt + (lane & 7)) * PROW + (lane >> 3);
#pragma unroll
            for (int j = 0; j + 1 < NK; j += 2) {
                uint32_t b[4];
                ldmatrix_x4(b, kr + 2 * j);
                mma_bf16_16816(acc, qa[j], b[0], b[1]);
                mma_bf16_16816(acc, qa[j + 1], b[2], b[3]);
            }
            if (NK & 1) {
                uint32_t b[2];
                ldmatrix_x2(b, kr + 2 * (NK - 1));
                mma_bf16_16816(acc, qa[NK - 1], b[0], b[1]);
            }
            int tk = tw + 8 * nt + 2 * t;
            float2 bb = *(const float2 *)(bias + tk);
            s[nt][0] = tk < ntok ? (acc[0] + acc[2]) * scale + bb.x : -INFINITY;
            s[nt][1] = tk + 1 < ntok ? (acc[1] + acc[3]) * scale + bb.y : -INFINITY;
        }
        if (nv > 0) {
            float mb = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < ATT_MAX_NT; nt++)
                if (nt < n_tiles) mb = fmaxf(mb, fmaxf(s[nt][0], s[nt][1]));
            mb = fmaxf(mb, __shfl_xor_sync(0xffffffffu, mb, 1));
            mb = fmaxf(mb, __shfl_xor_sync(0xffffffffu, mb, 2));
            float m_new = fmaxf(m_run, mb); /* finite: the warp's share holds >= 1 key */
            float alpha = expf(m_run - m_new);
            m_run = m_new;
            l_run *= alpha;
#pragma unroll
            for (int dn = 0; dn < 2 * NK; dn++)
#pragma unroll
                for (int x = 0; x < 4; x++) o[dn][x] *= alpha;
#pragma unroll
            for (int nt = 0; nt < ATT_MAX_NT; nt++) {
                if (nt >= n_tiles) break;
                s[nt][0] = expf(s[nt][0] - m_new);
                s[nt][1] = expf(s[nt][1] - m_new);
                l_run += s[nt][0] + s[nt][1];
            }
        }
        __syncwarp(); /* every lane is done with the K rows and the bias */
        if (next.src)
            att_stage_half<ROW16>(stage, next.src, next.miss, next.ins, 0, tw, tn, last_w, k16,
                                  n16, bs);
        cp_async_commit();
        cp_async_wait_all_but_one(); /* V rows of block e */
        __syncwarp();

#pragma unroll
        for (int kt = 0; kt < ATT_MAX_NT / 2; kt++) {
            if (2 * kt >= n_tiles || nv == 0) break;
            bool second = 2 * kt + 1 < n_tiles;
            uint32_t a[4];
            bf16x2_split(s[2 * kt][0], s[2 * kt][1], &a[0], &a[1]);
            bf16x2_split(second ? s[2 * kt + 1][0] : 0.0f, second ? s[2 * kt + 1][1] : 0.0f,
                         &a[2], &a[3]);
            /* ldmatrix.trans rows: token tw + 16 kt + 8 (matrix & 1) + lane % 8, clamped to
             * the warp's last valid token (its weight is 0 there; the row must be finite). */
            int tok = min(tw + 16 * kt + ((lane >> 3) & 1) * 8 + (lane & 7), tw + nv - 1);
            const uint4 *vr = vs + tok * PROW + (lane >> 4);
#pragma unroll
            for (int dn = 0; dn < 2 * NK; dn += 2) {
                uint32_t b[4];
                ldmatrix_x4_trans(b, vr + dn);
                mma_bf16_16816(o[dn], a, b[0], b[1]);
                mma_bf16_16816(o[dn + 1], a, b[2], b[3]);
            }
        }
        __syncwarp(); /* every lane is done with the V rows */
        if (next.src)
            att_stage_half<ROW16>(stage, next.src, next.miss, next.ins, 1, tw, tn, last_w, k16,
                                  n16, bs);
        cp_async_commit();
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");

    l_run += __shfl_xor_sync(0xffffffffu, l_run, 1);
    l_run += __shfl_xor_sync(0xffffffffu, l_run, 2);
    /* The later warps' states through the stage (every warp is past its last read of it):
     * per warp ATT_G maxima, ATT_G sums, then ATT_G x D of o unnormalised, 32 (D + 2) bytes,
     * which the stage holds (attention_init checks it); merged by warp 0 in warp order. */
    float *xs = (float *)stage;
    const int xw = ATT_G * (D + 2);
    if (nw > 1) {
        __syncthreads();
        if (w > 0 && head_ok) {
            float *xo = xs + (w - 1) * xw;
            if (t == 0) xo[grp] = m_run, xo[ATT_G + grp] = l_run;
            float *oh = xo + 2 * ATT_G + grp * D + 2 * t;
#pragma unroll
            for (int dn = 0; dn < 2 * NK; dn++)
                *(float2 *)(oh + 8 * dn) =
                    make_float2(o[dn][0] + o[dn][2], o[dn][1] + o[dn][3]);
        }
        __syncthreads();
    }
    if (w > 0 || !head_ok) return;
    float2 acc[2 * NK];
#pragma unroll
    for (int dn = 0; dn < 2 * NK; dn++)
        acc[dn] = make_float2(o[dn][0] + o[dn][2], o[dn][1] + o[dn][3]);
    for (int v = 1; v < nw; v++) {
        /* A warp with no key yet has m = -inf, l = 0, o = 0: weight 0. */
        const float *xo = xs + (v - 1) * xw;
        float mv = xo[grp], m_new = fmaxf(m_run, mv);
        float a = expf(m_run - m_new), bw = expf(mv - m_new);
        l_run = l_run * a + xo[ATT_G + grp] * bw;
        m_run = m_new;
        const float *oh = xo + 2 * ATT_G + grp * D + 2 * t;
#pragma unroll
        for (int dn = 0; dn < 2 * NK; dn++) {
            float2 ov = *(const float2 *)(oh + 8 * dn);
            acc[dn] = make_float2(acc[dn].x * a + ov.x * bw, acc[dn].y * a + ov.y * bw);
        }
    }
    if (t == 0) out[head] = m_run, out[rep + head] = l_run;
    float *oh = out + 2 * rep + (size_t)head * D + 2 * t;
#pragma unroll
    for (int dn = 0; dn < 2 * NK; dn++) *(float2 *)(oh + 8 * dn) = acc[dn];
}

typedef void (*att_kernel_fn)(float *, const float *, int, const uint8_t *const *,
                              const uint8_t *const *, const int32_t *, cuda_kv, cuda_step, int,
                              float, int);

static att_kernel_fn att_kernel_for(int head_dim)
{
    switch (head_dim) {
    case 16: return attention_partial_kernel<1>;
    case 32: return attention_partial_kernel<2>;
    case 64: return attention_partial_kernel<4>;
    case 128: return attention_partial_kernel<8>;
    case 256: return attention_partial_kernel<16>;
    default: return NULL; /* create refuses other head sizes (attention_supported) */
    }
}

cudaError_t attention_init(const cuda_kv &kv, int device, int *resident_ctas)
{
    att_kernel_fn fn = att_kernel_for(kv.head_dim);
    if (!fn || !attention_supported(kv.head_dim, kv.block_size) ||
        kv.v_off != (size_t)kv.block_size * kv.head_dim * 2u ||
        kv.bias_off != 2u * kv.v_off || kv.block_bytes % 16u != 0u)
        return cudaErrorInvalidValue; /* K then V then the bias, 16-byte units */
    /* The later warps' states pass through the stage at the end (attention_partial_kernel). */
    if ((size_t)(att_warps(kv.block_size) - 1) * ATT_G * (kv.head_dim + 2) * sizeof(float) >
        attention_smem_bytes(kv))
        return cudaErrorInvalidValue;
    int smem = (int)attention_smem_bytes(kv), per_sm = 0, sms = 0;
    cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e == cudaSuccess)
        e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(
            &per_sm, fn, 32 * att_warps(kv.block_size), (size_t)smem);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (e == cudaSuccess) *resident_ctas = per_sm * sms;
    return e;
}

int attention_chunk_for(int n_lists, int max_entries, int resident_ctas)
{
    /* About four waves of CTAs (uneven chunks even out, each CTA's partial output of rep *
     * (head_dim + 2) floats stays small beside the blocks it reads), but at least 4 blocks
     * per CTA: a warp's pipeline needs a next block to fetch. At batch 16 / 64 of the 1B
     * shape 4-block splits read blocks on the GPU 1.2x / 1.06x faster than the 1-2-block
     * splits four waves would give; offloaded steps with few misses lose up to 7% at batch
     * 16 (a warp waits for its misses in turn), bench/RESULTS.md. Where those CTAs take a
     * little more than one wave (batch 16 with four CTAs per SM: 544 of them, 528 resident),
     * a chunk of up to twice as many blocks that fits one wave goes first: 5-block splits
     * ran 51.6% of the copy rate against 45.1% for 4 (thirteenth session). One wave of up
     * to 16 blocks also at batch 32 and 48 (9 and 13) read 67% and 74% against 59% and 67%
     * for 4-block chunks, but cost offloaded steps at batch 48 3-6% of their attention time:
     * a step's misses fall at random, and in one wave the CTA with the most sets the time
     * (fifteenth session). The split must not depend on offload: offloaded and resident
     * results are bit-identical. */
    long res = resident_ctas > 0 ? resident_ctas : 1, ent = max_entries > 0 ? max_entries : 1;
    long lists = n_lists > 0 ? n_lists : 1, c = lists * ent / (4L * res);
    c = c < ATT_MIN_CHUNK ? ATT_MIN_CHUNK : c > ATT_MAX_CHUNK ? ATT_MAX_CHUNK : c;
    long k = c;
    while (k <= 2 * c && k <= ATT_MAX_CHUNK && lists * ((ent + k - 1) / k) > res) k++;
    if (k > 2 * c || k > ATT_MAX_CHUNK) k = c;
    /* The fewest blocks per chunk for that many chunks, so that a list's last chunk is not
     * what a larger size left (at batch 256 chunks of 15, 15, 15, 15 and 5 blocks read
     * 85.5% of the copy rate, of 13 each 88.8%: fifteenth session). */
    long nc = (ent + k - 1) / k;
    k = (ent + nc - 1) / nc;
    return (int)(k < ATT_MIN_CHUNK ? ATT_MIN_CHUNK : k);
}

int attention_max_chunks(int max_entries)
{
    return (max_entries + ATT_MIN_CHUNK - 1) / ATT_MIN_CHUNK;
}

static __host__ __device__ int att_combine_pad(int n_chunks)
{
    return (n_chunks + 7) & ~7;
}

/* One CTA per (token x KV head, query head), threads over dimensions: the chunks' maxima and
 * sums are staged in shared memory once, then every thread walks the chunks' partial
 * outputs with independent loads. */
static __global__ void attention_combine_kernel(float *outp, const float *part, int n_kv,
                                                int rep, int d, int n_chunks)
{
    /* [att_combine_pad(n_chunks)] weights, zero past n_chunks: the unrolled loop below is
     * compiled to 16-byte shared loads that may read up to the padded end. */
    extern __shared__ float w_sh[];
    int li = blockIdx.x, g = blockIdx.y, i = li / n_kv, h = li % n_kv;
    size_t stride = (size_t)rep * (size_t)(d + 2);
    const float *pp = part + (size_t)li * (size_t)n_chunks * stride;
    __shared__ float l_all;
    if (threadIdx.x < 32) {
        float m = -INFINITY;
        for (int c = threadIdx.x; c < n_chunks; c += 32) m = fmaxf(m, pp[c * stride + g]);
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        float l = 0.0f;
        for (int c = threadIdx.x; c < att_combine_pad(n_chunks); c += 32) {
            float w = 0.0f;
            if (c < n_chunks) {
                w = expf(pp[c * stride + g] - m); /* an empty chunk has -inf: weight 0 */
                l += w * pp[c * stride + rep + g];
            }
            w_sh[c] = w;
        }
        for (int o = 16; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
        if (threadIdx.x == 0) l_all = l;
    }
    __syncthreads();
    float inv = 1.0f / l_all;
    float *out = outp + (size_t)i * (size_t)n_kv * (size_t)rep * (size_t)d +
                 ((size_t)h * (size_t)rep + (size_t)g) * (size_t)d;
    for (int x = threadIdx.x; x < d; x += blockDim.x) {
        const float *a = pp + 2 * rep + (size_t)g * (size_t)d + x;
        float acc = 0.0f;
#pragma unroll 8
        for (int c = 0; c < n_chunks; c++) acc += w_sh[c] * a[c * stride];
        out[x] = acc * inv;
    }
}

void attention_partial_launch(float *part, const float *qkv, int ld,
                              const uint8_t *const *ptrs, const uint8_t *const *miss_src,
                              const int32_t *n_ent, cuda_kv kv, cuda_step st, int rep,
                              float scale, int chunk, int n_chunks, cudaStream_t s)
{
    att_kernel_fn fn = att_kernel_for(kv.head_dim);
    if (!fn) return; /* attention_init refused the shape */
    fn<<<dim3(n_chunks, st.n * kv.n_kv, (rep + ATT_G - 1) / ATT_G),
         32 * att_warps(kv.block_size), attention_smem_bytes(kv), s>>>(
        part, qkv, ld, ptrs, miss_src, n_ent, kv, st, rep, scale, chunk);
}

void attention_combine_launch(float *out, const float *part, cuda_kv kv, int n, int rep,
                              int n_chunks, cudaStream_t s)
{
    int threads = kv.head_dim < 128 ? 32 : 128;
    size_t w_bytes = (size_t)att_combine_pad(n_chunks) * sizeof(float);
    attention_combine_kernel<<<dim3(n * kv.n_kv, rep), threads, w_bytes, s>>>(
        out, part, kv.n_kv, rep, kv.head_dim, n_chunks);
}

void attention_launch(float *out, float *part, const float *qkv, int ld,
                      const uint8_t *const *ptrs, const uint8_t *const *miss_src,
                      const int32_t *n_ent, cuda_kv kv, cuda_step st, int rep, float scale,
                      int chunk, int n_chunks, cudaStream_t s)
{
    attention_partial_launch(part, qkv, ld, ptrs, miss_src, n_ent, kv, st, rep, scale, chunk,
                             n_chunks, s);
    attention_combine_launch(out, part, kv, st.n, rep, n_chunks, s);
}
