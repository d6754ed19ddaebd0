/* score: query x compressed-key logits (see score.cuh). */
#include "score.cuh"

#define SCORE_THREADS 128
#define SCORE_KEYS 32 /* compressed keys per CTA */

static __global__ void score_kernel(cuda_kv kv, cuda_step st, int layer, select_params p,
                                    const float *qkv, int ld, float *scratch)
{
    extern __shared__ float qs[]; /* [rep][d] */
    int li = blockIdx.y, i = li / kv.n_kv, h = li % kv.n_kv, d = kv.head_dim;
    int pos = st.pos[i], nb = pos / kv.block_size;
    if (p.mode == 0 || nb <= p.k_total) return;
    int n_c = pos + 1 < kv.kernel ? 0 : (pos + 1 - kv.kernel) / kv.stride + 1;
    int c0 = blockIdx.x * SCORE_KEYS;
    if (c0 >= n_c) return;
    const float *q = qkv + (size_t)i * (size_t)ld + (size_t)h * (size_t)p.rep * (size_t)d;
    for (int idx = threadIdx.x; idx < p.rep * d; idx += blockDim.x) qs[idx] = q[idx];
    __syncthreads();
    size_t ih = cu_kv_head_index(kv, st.slot[i], layer, h);
    const float *kc = kv.kc + ih * (size_t)kv.max_c * (size_t)d;
    float *lg = select_scratch_logits(kv, scratch, li);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int c1 = min(c0 + SCORE_KEYS, n_c);
    for (int c = c0 + warp; c < c1; c += SCORE_THREADS / 32) {
        const float *kr = kc + (size_t)c * (size_t)d;
        for (int g = 0; g < p.rep; g++) {
            float s = 0.0f;
            for (int x = lane; x < d; x += 32) s += qs[g * d + x] * kr[x];
            for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
            if (lane == 0) lg[(size_t)g * kv.max_c + c] = s * p.scale;
        }
    }
}

void score_launch(cuda_kv kv, cuda_step st, int layer, select_params p, const float *qkv,
                  int ld, float *scratch, int max_nc, cudaStream_t s)
{
    if (max_nc <= 0) return;
    int bx = (max_nc + SCORE_KEYS - 1) / SCORE_KEYS;
    score_kernel<<<dim3(bx, st.n * kv.n_kv), SCORE_THREADS,
                   (size_t)p.rep * (size_t)kv.head_dim * sizeof(float), s>>>(kv, st, layer, p,
                                                                             qkv, ld, scratch);
}
