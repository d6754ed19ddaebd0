/* attention: split-KV decode attention over the selected blocks (see attention.cuh). */
#include <math.h>

#include "attention.cuh"

#define ATT_THREADS 128
#define ATT_WARPS (ATT_THREADS / 32)

/* Dynamic shared memory: q[rep][d], logits[rep][chunk * block_size], m[rep], l[rep]. */
static __global__ void attention_partial_kernel(float *part, const float *qkv, int ld,
                                                const uint8_t *const *ptrs,
                                                const int32_t *n_ent, cuda_kv kv, cuda_step st,
                                                int rep, float scale, int chunk)
{
    extern __shared__ float sh[];
    int c = blockIdx.x, li = blockIdx.y, d = kv.head_dim, bs = kv.block_size;
    int i = li / kv.n_kv, h = li % kv.n_kv;
    int ctok = chunk * bs;
    float *q = sh, *lg = q + rep * d, *mx = lg + (size_t)rep * ctok, *sm = mx + rep;
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
    int open_tokens = st.pos[i] % bs + 1;
    const uint8_t *const *pl = ptrs + (size_t)li * ((size_t)kv.max_blocks + 1u);
    int ntok = 0;
    for (int e = e0; e < e1; e++) ntok += e == ne - 1 ? open_tokens : bs;
    __syncthreads();

    /* Logits: a warp per token, lanes over dimensions, one reduction per query head. */
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int tk = warp; tk < ntok; tk += ATT_WARPS) {
        int e = e0 + tk / bs, t = tk % bs;
        const uint8_t *blk = pl[e];
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
    /* Weighted values: threads over (head, dimension); V rows read coalesced. */
    for (int idx = threadIdx.x; idx < rep * d; idx += blockDim.x) {
        int g = idx / d, x = idx % d;
        const float *pr = lg + (size_t)g * ctok;
        float acc = 0.0f;
        int tk = 0;
        for (int e = e0; e < e1; e++) {
            int nt = e == ne - 1 ? open_tokens : bs;
            const uint16_t *v = (const uint16_t *)(pl[e] + kv.v_off);
            for (int t = 0; t < nt; t++, tk++) acc += pr[tk] * cu_bf16_to_f32(v[(size_t)t * d + x]);
        }
        out[2 * rep + idx] = acc;
    }
    if (threadIdx.x < rep) {
        out[threadIdx.x] = mx[threadIdx.x];
        out[rep + threadIdx.x] = sm[threadIdx.x];
    }
}

static __global__ void attention_combine_kernel(float *outp, const float *part, int n_kv,
                                                int rep, int d, int n_chunks)
{
    int li = blockIdx.x, i = li / n_kv, h = li % n_kv;
    size_t stride = (size_t)rep * (size_t)(d + 2);
    const float *pp = part + (size_t)li * (size_t)n_chunks * stride;
    float *out = outp + (size_t)i * (size_t)n_kv * (size_t)rep * (size_t)d +
                 (size_t)h * (size_t)rep * (size_t)d;
    for (int idx = threadIdx.x; idx < rep * d; idx += blockDim.x) {
        int g = idx / d;
        float m = -INFINITY;
        for (int c = 0; c < n_chunks; c++) m = fmaxf(m, pp[c * stride + g]);
        float l = 0.0f, acc = 0.0f;
        for (int c = 0; c < n_chunks; c++) {
            float w = expf(pp[c * stride + g] - m); /* an empty chunk has -inf: weight 0 */
            l += w * pp[c * stride + rep + g];
            acc += w * pp[c * stride + 2 * rep + idx];
        }
        out[idx] = acc / l;
    }
}

void attention_launch(float *out, float *part, const float *qkv, int ld,
                      const uint8_t *const *ptrs, const int32_t *n_ent, cuda_kv kv,
                      cuda_step st, int rep, float scale, int chunk, int n_chunks,
                      cudaStream_t s)
{
    int n_heads = st.n * kv.n_kv;
    size_t shm = ((size_t)rep * kv.head_dim + (size_t)rep * chunk * kv.block_size +
                  2u * (size_t)rep) * sizeof(float);
    attention_partial_kernel<<<dim3(n_chunks, n_heads), ATT_THREADS, shm, s>>>(
        part, qkv, ld, ptrs, n_ent, kv, st, rep, scale, chunk);
    attention_combine_kernel<<<n_heads, 128, 0, s>>>(out, part, kv.n_kv, rep, kv.head_dim,
                                                     n_chunks);
}
