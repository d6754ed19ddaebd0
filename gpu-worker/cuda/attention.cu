/* attention: split-KV decode attention over the selected blocks (see attention.cuh). */
#include <math.h>

#include "attention.cuh"

#define ATT_THREADS 256
#define ATT_WARPS (ATT_THREADS / 32)
#define ATT_G_MAX 4 /* query heads a thread scores per pass over a key row (registers) */

/* A block as staged in shared memory: its bytes in arena order, except that each K row is
 * followed by 16 bytes of padding, so the lanes of a warp, each on its own token, read the
 * same column of different rows from different banks. V and the bias follow unchanged. */
static __host__ __device__ size_t att_staged_bytes(const cuda_kv &kv)
{
    return kv.block_bytes + (size_t)kv.block_size * 16u;
}

/* Dynamic shared memory: the chunk's staged blocks, then q[rep][d], logits[rep][chunk *
 * block_size], m[rep], l[rep]. */
size_t attention_smem_bytes(const cuda_kv &kv, int rep, int chunk)
{
    return (size_t)chunk * att_staged_bytes(kv) +
           ((size_t)rep * kv.head_dim + (size_t)rep * chunk * kv.block_size + 2u * rep) *
               sizeof(float);
}

static __global__ void attention_partial_kernel(float *part, const float *qkv, int ld,
                                                const uint8_t *const *ptrs,
                                                const uint8_t *const *miss_src,
                                                const int32_t *n_ent, cuda_kv kv, cuda_step st,
                                                int rep, float scale, int chunk);

cudaError_t attention_init(const cuda_kv &kv, int rep, int chunk)
{
    if (kv.head_dim % 8 != 0 || kv.v_off != (size_t)kv.block_size * kv.head_dim * 2u)
        return cudaErrorInvalidValue; /* 16-byte rows, K then V then the bias */
    return cudaFuncSetAttribute(attention_partial_kernel,
                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)attention_smem_bytes(kv, rep, chunk));
}

/* Copies block src (arena format, n16 16-byte units) into its staged form at dst, four
 * independent loads in flight per thread. A missed block is read from the mapped arena and
 * also stored, unpadded, into its pool slot `install` (NULL for a block already on the GPU):
 * the one PCIe read of the block feeds both. */
static __device__ void att_stage(uint4 *dst, const uint4 *src, uint4 *install, int n16, int k16,
                                 int row16)
{
    for (int u0 = threadIdx.x; u0 < n16; u0 += 4 * blockDim.x) {
        uint4 w[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int u = u0 + j * blockDim.x;
            if (u < n16) w[j] = src[u];
        }
#pragma unroll
        for (int j = 0; j < 4; j++) {
            int u = u0 + j * blockDim.x;
            if (u >= n16) break;
            int r = u / row16; /* K rows gain one unit of padding each */
            dst[u < k16 ? u + r : u + k16 / row16] = w[j];
            if (install) install[u] = w[j];
        }
    }
}

static __global__ void attention_partial_kernel(float *part, const float *qkv, int ld,
                                                const uint8_t *const *ptrs,
                                                const uint8_t *const *miss_src,
                                                const int32_t *n_ent, cuda_kv kv, cuda_step st,
                                                int rep, float scale, int chunk)
{
    extern __shared__ uint4 sh_raw[];
    int c = blockIdx.x, li = blockIdx.y, d = kv.head_dim, bs = kv.block_size;
    int i = li / kv.n_kv, h = li % kv.n_kv;
    int ctok = chunk * bs, row16 = d / 8, k16 = bs * row16;
    size_t sb = att_staged_bytes(kv);
    uint8_t *stage = (uint8_t *)sh_raw;
    float *q = (float *)(stage + (size_t)chunk * sb);
    float *lg = q + rep * d, *mx = lg + (size_t)rep * ctok, *sm = mx + rep;
    float *out = part + ((size_t)li * gridDim.x + (size_t)c) * (size_t)rep * (size_t)(d + 2);
    int ne = n_ent[li];
    int e0 = c * chunk, e1 = min(e0 + chunk, ne);
    if (e0 >= e1) {
        for (int idx = threadIdx.x; idx < rep * d; idx += blockDim.x) out[2 * rep + idx] = 0.0f;
        if (threadIdx.x < rep) {
            out[threadIdx.x] = -INFINITY;
            out[rep + threadIdx.x] = 0.0f;
        }
        return;
    }
    const float *qrow = qkv + (size_t)i * (size_t)ld + (size_t)h * (size_t)rep * (size_t)d;
    for (int idx = threadIdx.x; idx < rep * d; idx += blockDim.x) q[idx] = qrow[idx];
    const uint8_t *const *pl = ptrs + (size_t)li * ((size_t)kv.max_blocks + 1u);
    const uint8_t *const *ml = miss_src ? miss_src + (size_t)li * (size_t)kv.max_blocks : NULL;
    for (int e = e0; e < e1; e++) {
        /* The open block (last entry) is never a miss. The pool slot of a miss is written
         * by this CTA only (one CTA per entry and head), so the cast drops no guarantee. */
        const uint8_t *miss = ml && e < ne - 1 ? ml[e] : NULL;
        att_stage((uint4 *)(stage + (size_t)(e - e0) * sb), (const uint4 *)(miss ? miss : pl[e]),
                  miss ? (uint4 *)pl[e] : NULL, (int)(kv.block_bytes / 16), k16, row16);
    }
    int open_tokens = st.pos[i] % bs + 1;
    int ntok = 0;
    for (int e = e0; e < e1; e++) ntok += e == ne - 1 ? open_tokens : bs;
    __syncthreads();

    /* Logits: a thread per (token, head group); it reads its key row once per 8 dimensions
     * for up to ATT_G_MAX heads (q reads are warp-wide broadcasts). */
    int groups = blockDim.x >= ctok ? blockDim.x / ctok : 1;
    for (int p = threadIdx.x; p < ctok * groups; p += blockDim.x) {
        int tk = p % ctok, gg = p / ctok;
        if (tk >= ntok) continue;
        int eb = tk / bs, t = tk - eb * bs;
        const uint8_t *blk = stage + (size_t)eb * sb;
        const uint4 *krow = (const uint4 *)blk + (size_t)t * (size_t)(row16 + 1);
        float bias = ((const float *)(blk + kv.bias_off + (size_t)bs * 16u))[t];
        for (int g0 = gg; g0 < rep; g0 += groups * ATT_G_MAX) {
            float acc[ATT_G_MAX] = {0.0f, 0.0f, 0.0f, 0.0f};
            for (int x8 = 0; x8 < row16; x8++) {
                float kf[8];
                bf16x8_to_f32(krow[x8], kf);
#pragma unroll
                for (int j = 0; j < ATT_G_MAX; j++) {
                    int g = g0 + j * groups;
                    if (g >= rep) break;
                    const float4 *qq = (const float4 *)(q + (size_t)g * d + x8 * 8);
                    float4 a = qq[0], b = qq[1];
                    acc[j] += a.x * kf[0] + a.y * kf[1] + a.z * kf[2] + a.w * kf[3] +
                              b.x * kf[4] + b.y * kf[5] + b.z * kf[6] + b.w * kf[7];
                }
            }
#pragma unroll
            for (int j = 0; j < ATT_G_MAX; j++) {
                int g = g0 + j * groups;
                if (g < rep) lg[(size_t)g * ctok + tk] = acc[j] * scale + bias;
            }
        }
    }
    __syncthreads();
    /* Softmax state per query head: a warp per head. */
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int g = warp; g < rep; g += ATT_WARPS) {
        float *lr = lg + (size_t)g * ctok;
        float m = -INFINITY;
        for (int tk = lane; tk < ntok; tk += 32) m = fmaxf(m, lr[tk]);
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        float l = 0.0f;
        for (int tk = lane; tk < ntok; tk += 32) {
            float pr = expf(lr[tk] - m);
            lr[tk] = pr;
            l += pr;
        }
        for (int o = 16; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
        if (lane == 0) {
            mx[g] = m;
            sm[g] = l;
        }
    }
    __syncthreads();
    /* Weighted values: a thread per (head, 4 dimensions), 8-byte V reads along the row. */
    int q4 = d / 4;
    for (int idx = threadIdx.x; idx < rep * q4; idx += blockDim.x) {
        int g = idx / q4, x4 = idx - g * q4;
        const float *pr = lg + (size_t)g * ctok;
        float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
        int tk = 0;
        for (int e = e0; e < e1; e++) {
            int nt = e == ne - 1 ? open_tokens : bs;
            const uint2 *vv = (const uint2 *)(stage + (size_t)(e - e0) * sb + kv.v_off +
                                              (size_t)bs * 16u) + x4;
            for (int t = 0; t < nt; t++, tk++) {
                float w = pr[tk];
                uint2 v = vv[(size_t)t * q4];
                a0 += w * __uint_as_float(v.x << 16);
                a1 += w * __uint_as_float(v.x & 0xffff0000u);
                a2 += w * __uint_as_float(v.y << 16);
                a3 += w * __uint_as_float(v.y & 0xffff0000u);
            }
        }
        float *o = out + 2 * rep + (size_t)g * d + (size_t)x4 * 4;
        o[0] = a0, o[1] = a1, o[2] = a2, o[3] = a3;
    }
    if (threadIdx.x < rep) {
        out[threadIdx.x] = mx[threadIdx.x];
        out[rep + threadIdx.x] = sm[threadIdx.x];
    }
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

void attention_launch(float *out, float *part, const float *qkv, int ld,
                      const uint8_t *const *ptrs, const uint8_t *const *miss_src,
                      const int32_t *n_ent, cuda_kv kv, cuda_step st, int rep, float scale,
                      int chunk, int n_chunks, cudaStream_t s)
{
    int n_heads = st.n * kv.n_kv;
    size_t shm = attention_smem_bytes(kv, rep, chunk);
    attention_partial_kernel<<<dim3(n_chunks, n_heads), ATT_THREADS, shm, s>>>(
        part, qkv, ld, ptrs, miss_src, n_ent, kv, st, rep, scale, chunk);
    int threads = kv.head_dim < 128 ? 32 : 128;
    size_t w_bytes = (size_t)att_combine_pad(n_chunks) * sizeof(float);
    attention_combine_kernel<<<dim3(n_heads, rep), threads, w_bytes, s>>>(
        out, part, kv.n_kv, rep, kv.head_dim, n_chunks);
}
