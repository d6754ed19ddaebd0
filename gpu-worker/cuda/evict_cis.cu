/* evict_cis: per-token eviction scores (see evict_cis.cuh). One thread per (token, KV head):
 * a sequential dot of kvdim terms, in the reference order. */
#include "evict_cis.cuh"

static __global__ void evict_cis_kernel(float *cis, const float *qkv, int ld, int v_off,
                                        const float *w, const float *b, const float *A, int n,
                                        int n_kv, int kvdim)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n * n_kv) return;
    int i = t / n_kv, h = t % n_kv;
    const float *v = qkv + (size_t)i * (size_t)ld + v_off;
    const float *wr = w + (size_t)h * (size_t)kvdim;
    float s = 0.0f;
    for (int x = 0; x < kvdim; x++)
        s = __fadd_rn(s, __fmul_rn(wr[x], cu_bf16_to_f32(cu_f32_to_bf16(v[x]))));
    if (b) s = __fadd_rn(s, b[h]);
    float sp = (s > 0.0f ? s : 0.0f) + log1pf(expf(-fabsf(s)));
    cis[t] = __fmul_rn(A[h], sp);
}

void evict_cis_launch(float *cis, const float *qkv, int ld, int v_off, const float *w,
                      const float *b, const float *A, int n, int n_kv, int kvdim, cudaStream_t s)
{
    int total = n * n_kv;
    evict_cis_kernel<<<(total + 127) / 128, 128, 0, s>>>(cis, qkv, ld, v_off, w, b, A, n, n_kv,
                                                          kvdim);
}
