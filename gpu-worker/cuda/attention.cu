/* attention: split-KV decode attention over the selected blocks (see attention.cuh). */
#include <math.h>

#include "attention.cuh"

#define ATT_THREADS 256
#define ATT_WARPS (ATT_THREADS / 32)

/* Dynamic shared memory: the chunk's blocks as raw bytes [chunk][block_bytes] (16-byte
 * loads, one pass over the bytes), then q[rep][d], logits[rep][chunk * block_size], m[rep],
 * l[rep]. */
size_t attention_smem_bytes(const cuda_kv &kv, int rep, int chunk)
{
    return (size_t)chunk * kv.block_bytes +
           ((size_t)rep * kv.head_dim + (size_t)rep * chunk * kv.block_size + 2u * rep) *
               sizeof(float);
}

static __global__ void attention_partial_kernel(float *part, const float *qkv, int ld,
                                                const uint8_t *const *ptrs,
                                                const int32_t *n_ent, cuda_kv kv, cuda_step st,
                                                int rep, float scale, int chunk);

cudaError_t attention_init(const cuda_kv &kv, int rep, int chunk)
{
    return cudaFuncSetAttribute(attention_partial_kernel,
                                cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)attention_smem_bytes(kv, rep, chunk));
}

static __global__ void attention_partial_kernel(float *part, const float *qkv, int ld,
                                                const uint8_t *const *ptrs,
                                                const int32_t *n_ent, cuda_kv kv, cuda_step st,
                                                int rep, float scale, int chunk)
{
    extern __shared__ uint4 sh_raw[];
    int c = blockIdx.x, li = blockIdx.y, d = kv.head_dim, bs = kv.block_size;
    int i = li / kv.n_kv, h = li % kv.n_kv;
    int ctok = chunk * bs;
    uint8_t *blk_sh = (uint8_t *)sh_raw;
    float *q = (float *)(blk_sh + (size_t)chunk * kv.block_bytes);
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
    size_t n16 = kv.block_bytes / 16;
    for (int e = e0; e < e1; e++) {
        const uint4 *src = (const uint4 *)pl[e];
        uint4 *dst = (uint4 *)(blk_sh + (size_t)(e - e0) * kv.block_bytes);
        for (size_t o = threadIdx.x; o < n16; o += blockDim.x) dst[o] = src[o];
    }
    int open_tokens = st.pos[i] % bs + 1;
    int ntok = 0;
    for (int e = e0; e < e1; e++) ntok += e == ne - 1 ? open_tokens : bs;
    __syncthreads();

    /* Logits: a warp per token, lanes over dimensions, one reduction per query head. */
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int tk = warp; tk < ntok; tk += ATT_WARPS) {
        const uint8_t *blk = blk_sh + (size_t)(tk / bs) * kv.block_bytes;
        int t = tk % bs;
        const uint16_t *k = (const uint16_t *)blk + (size_t)t * (size_t)d;
        float bias = ((const float *)(blk + kv.bias_off))[t];
        for (int g = 0; g < rep; g++) {
            float s = 0.0f;
            for (int x = lane; x < d; x += 32) s += q[g * d + x] * cu_bf16_to_f32(k[x]);
            for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            if (lane == 0) lg[(size_t)g * ctok + tk] = s * scale + bias;
        }
    }
    __syncthreads();
    /* Softmax state per query head: a warp per head. */
    for (int g = warp; g < rep; g += ATT_WARPS) {
        float *lr = lg + (size_t)g * ctok;
        float m = -INFINITY;
        for (int tk = lane; tk < ntok; tk += 32) m = fmaxf(m, lr[tk]);
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        float l = 0.0f;
        for (int tk = lane; tk < ntok; tk += 32) {
            float p = expf(lr[tk] - m);
            lr[tk] = p;
            l += p;
        }
        for (int o = 16; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
        if (lane == 0) {
            mx[g] = m;
            sm[g] = l;
        }
    }
    __syncthreads();
    /* Weighted values from shared memory: threads over (head, dimension). */
    for (int idx = threadIdx.x; idx < rep * d; idx += blockDim.x) {
        int g = idx / d, x = idx % d;
        const float *pr = lg + (size_t)g * ctok;
        float acc = 0.0f;
        for (int tk = 0; tk < ntok; tk++) {
            const uint16_t *v =
                (const uint16_t *)(blk_sh + (size_t)(tk / bs) * kv.block_bytes + kv.v_off);
            acc += pr[tk] * cu_bf16_to_f32(v[(size_t)(tk % bs) * d + x]);
        }
        out[2 * rep + idx] = acc;
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
                      const uint8_t *const *ptrs, const int32_t *n_ent, cuda_kv kv,
                      cuda_step st, int rep, float scale, int chunk, int n_chunks,
                      cudaStream_t s)
{
    int n_heads = st.n * kv.n_kv;
    size_t shm = attention_smem_bytes(kv, rep, chunk);
    attention_partial_kernel<<<dim3(n_chunks, n_heads), ATT_THREADS, shm, s>>>(
        part, qkv, ld, ptrs, n_ent, kv, st, rep, scale, chunk);
    int threads = kv.head_dim < 128 ? 32 : 128;
    size_t w_bytes = (size_t)att_combine_pad(n_chunks) * sizeof(float);
    attention_combine_kernel<<<dim3(n_heads, rep), threads, w_bytes, s>>>(
        out, part, kv.n_kv, rep, kv.head_dim, n_chunks);
}
