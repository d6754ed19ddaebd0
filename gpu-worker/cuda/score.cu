/* score: query x compressed-key logits (see score.cuh). */
#include "score.cuh"

#define SCORE_THREADS 128
#define SCORE_KEYS 64 /* compressed keys per CTA */
#define SCORE_DIMS 16 /* dimensions of a key row per lane */
#define SCORE_G 8     /* query heads per pass: their q slices stay in registers */

bool score_supported(int head_dim)
{
    int lanes = head_dim / SCORE_DIMS;
    return head_dim % SCORE_DIMS == 0 && lanes >= 1 && lanes <= 32 && (lanes & (lanes - 1)) == 0;
}

/* A key row is split over `lanes` = head_dim / 16 consecutive lanes, each holding the same 16
 * dimensions of up to 8 query heads in registers for all the CTA's keys: a row is read once
 * (two 16-byte loads of bf16 per lane), scored against 8 heads, and reduced over its lanes with
 * log2(lanes) shuffles per head. */
static __global__ void __launch_bounds__(SCORE_THREADS)
    score_kernel(cuda_kv kv, cuda_step st, int layer, select_params p, const float *qkv, int ld,
                 float *scratch)
{
    int li = blockIdx.y, i = li / kv.n_kv, h = li % kv.n_kv, d = kv.head_dim;
    int pos = st.pos[i], nb = pos / kv.block_size;
    if (p.mode == 0 || nb <= p.k_total) return;
    int n_c = pos + 1 < kv.kernel ? 0 : (pos + 1 - kv.kernel) / kv.stride + 1;
    int c0 = blockIdx.x * SCORE_KEYS;
    if (c0 >= n_c) return;
    int c1 = min(c0 + SCORE_KEYS, n_c);
    int lanes = d / SCORE_DIMS, sub = threadIdx.x % lanes, grp = threadIdx.x / lanes;
    int n_grp = blockDim.x / lanes;
    size_t ih = cu_kv_head_index(kv, st.slot[i], layer, h);
    const float *q = qkv + (size_t)i * (size_t)ld + (size_t)h * (size_t)p.rep * (size_t)d +
                     (size_t)sub * SCORE_DIMS;
    const uint16_t *kc = kv.kc + ih * (size_t)kv.max_c * (size_t)d + (size_t)sub * SCORE_DIMS;
    float *lg = select_scratch_logits(kv, scratch, li);
    for (int g0 = 0; g0 < p.rep; g0 += SCORE_G) {
        float qr[SCORE_G][SCORE_DIMS];
#pragma unroll
        for (int g = 0; g < SCORE_G; g++)
#pragma unroll
            for (int x = 0; x < SCORE_DIMS; x++)
                qr[g][x] = g0 + g < p.rep ? q[(size_t)(g0 + g) * d + x] : 0.0f;
        /* Uniform trip count over the warp: the shuffles need every lane. */
        for (int base = c0; base < c1; base += n_grp) {
            int c = base + grp;
            float kf[SCORE_DIMS];
            if (c < c1) {
                const uint4 *kr = (const uint4 *)(kc + (size_t)c * (size_t)d);
#pragma unroll
                for (int v = 0; v < SCORE_DIMS / 8; v++) bf16x8_to_f32(kr[v], kf + 8 * v);
            } else {
#pragma unroll
                for (int x = 0; x < SCORE_DIMS; x++) kf[x] = 0.0f;
            }
            float acc[SCORE_G];
#pragma unroll
            for (int g = 0; g < SCORE_G; g++) {
                acc[g] = 0.0f;
#pragma unroll
                for (int x = 0; x < SCORE_DIMS; x++) acc[g] = fmaf(qr[g][x], kf[x], acc[g]);
            }
            for (int o = lanes / 2; o > 0; o >>= 1)
#pragma unroll
                for (int g = 0; g < SCORE_G; g++)
                    acc[g] += __shfl_xor_sync(0xffffffffu, acc[g], o);
            if (sub == 0 && c < c1)
#pragma unroll
                for (int g = 0; g < SCORE_G; g++)
                    if (g0 + g < p.rep) lg[(size_t)(g0 + g) * kv.max_c + c] = acc[g] * p.scale;
        }
    }
}

void score_launch(cuda_kv kv, cuda_step st, int layer, select_params p, const float *qkv,
                  int ld, float *scratch, int max_nc, cudaStream_t s)
{
    if (max_nc <= 0) return;
    int bx = (max_nc + SCORE_KEYS - 1) / SCORE_KEYS;
    score_kernel<<<dim3(bx, st.n * kv.n_kv), SCORE_THREADS, 0, s>>>(kv, st, layer, p, qkv, ld,
                                                                    scratch);
}
