/* evict_cis: per-token eviction scores (see evict_cis.cuh). One warp per (token, KV head):
 * the lanes form the kvdim products at once (coalesced loads) into shared memory, then lane 0
 * adds them in ascending order, the reference's, so the sum has the CPU's bits. */
#include "evict_cis.cuh"

#define EVICT_WARPS 4

static __global__ void evict_cis_kernel(float *cis, const float *qkv, int ld, int v_off,
                                        const float *w, const float *b, const float *A, int n,
                                        int n_kv, int kvdim)
{
    extern __shared__ float prod_all[]; /* [EVICT_WARPS][kvdim] */
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int t = blockIdx.x * EVICT_WARPS + warp;
    if (t >= n * n_kv) return; /* whole warps: no CTA barrier follows */
    int i = t / n_kv, h = t % n_kv;
    const float *v = qkv + (size_t)i * (size_t)ld + v_off;
    const float *wr = w + (size_t)h * (size_t)kvdim;
    float *prod = prod_all + (size_t)warp * (size_t)kvdim;
    for (int x = lane; x < kvdim; x += 32)
        prod[x] = __fmul_rn(wr[x], cu_bf16_to_f32(cu_f32_to_bf16(v[x])));
    __syncwarp();
    if (lane != 0) return;
    float s = 0.0f;
#pragma unroll 8
    for (int x = 0; x < kvdim; x++) s = __fadd_rn(s, prod[x]);
    if (b) s = __fadd_rn(s, b[h]);
    float sp = (s > 0.0f ? s : 0.0f) + log1pf(expf(-fabsf(s)));
    cis[t] = __fmul_rn(A[h], sp);
}

int evict_cis_max_kvdim(void)
{
    return (int)(48 * 1024 / (EVICT_WARPS * sizeof(float))); /* the default shared limit */
}

bool evict_cis_supported(int kvdim)
{
    return kvdim > 0 && kvdim <= evict_cis_max_kvdim();
}

void evict_cis_launch(float *cis, const float *qkv, int ld, int v_off, const float *w,
                      const float *b, const float *A, int n, int n_kv, int kvdim, cudaStream_t s)
{
    int total = n * n_kv;
    size_t smem = (size_t)EVICT_WARPS * (size_t)kvdim * sizeof(float);
    evict_cis_kernel<<<(total + EVICT_WARPS - 1) / EVICT_WARPS, EVICT_WARPS * 32, smem, s>>>(
        cis, qkv, ld, v_off, w, b, A, n, n_kv, kvdim);
}
