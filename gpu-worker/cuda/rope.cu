/* rope: rotary position embedding in place (see rope.cuh). */
#include "rope.cuh"

static __global__ void rope_kernel(float *qk, int ld, int n_heads_total, int head_dim,
                                   const float *cos_t, const float *sin_t, const int32_t *pos)
{
    int i = blockIdx.x, half = head_dim / 2;
    const float *c = cos_t + (size_t)pos[i] * (size_t)half;
    const float *sn = sin_t + (size_t)pos[i] * (size_t)half;
    float *row = qk + (size_t)i * (size_t)ld;
    for (int idx = threadIdx.x; idx < n_heads_total * half; idx += blockDim.x) {
        int hd = idx / half, j = idx % half;
        float *x = row + (size_t)hd * (size_t)head_dim;
        float a = x[j], b = x[j + half];
        /* Explicit roundings, no fused multiply-add: the CPU reference's arithmetic. */
        x[j] = __fsub_rn(__fmul_rn(a, c[j]), __fmul_rn(b, sn[j]));
        x[j + half] = __fadd_rn(__fmul_rn(b, c[j]), __fmul_rn(a, sn[j]));
    }
}

void rope_launch(float *qk, int ld, int n_heads_total, int head_dim, const float *cos_t,
                 const float *sin_t, const int32_t *pos, int n, cudaStream_t s)
{
    rope_kernel<<<n, 256, 0, s>>>(qk, ld, n_heads_total, head_dim, cos_t, sin_t, pos);
}
