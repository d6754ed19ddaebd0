/* rmsnorm: RMSNorm into the two-term bf16 GEMM operand (see rmsnorm.cuh). */
#include "rmsnorm.cuh"

#define RMSNORM_THREADS 256

static __device__ __forceinline__ void split_store(uint16_t *hi, uint16_t *lo, float y)
{
    uint16_t h = cu_f32_to_bf16(y);
    *hi = h;
    *lo = cu_f32_to_bf16(y - cu_bf16_to_f32(h));
}

static __global__ void rmsnorm_split_kernel(uint16_t *out, const float *x, const float *w,
                                            int n, int dim, float eps)
{
    __shared__ float red[RMSNORM_THREADS / 32];
    const float *xr = x + (size_t)blockIdx.x * (size_t)dim;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) ss += xr[j] * xr[j];
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x == 0) {
        float t = 0.0f;
        for (int i = 0; i < (int)(blockDim.x >> 5); i++) t += red[i];
        red[0] = t;
    }
    __syncthreads();
    float r = 1.0f / sqrtf(red[0] / (float)dim + eps);
    uint16_t *hi = out + (size_t)blockIdx.x * (size_t)dim;
    uint16_t *lo = out + ((size_t)n + blockIdx.x) * (size_t)dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x)
        split_store(hi + j, lo + j, __fmul_rn(__fmul_rn(xr[j], r), w[j]));
}

static __global__ void split_kernel(uint16_t *out, const float *x, int n, int dim)
{
    const float *xr = x + (size_t)blockIdx.x * (size_t)dim;
    uint16_t *hi = out + (size_t)blockIdx.x * (size_t)dim;
    uint16_t *lo = out + ((size_t)n + blockIdx.x) * (size_t)dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) split_store(hi + j, lo + j, xr[j]);
}

void rmsnorm_split_launch(uint16_t *out, const float *x, const float *w, int n, int dim,
                          float eps, cudaStream_t s)
{
    rmsnorm_split_kernel<<<n, RMSNORM_THREADS, 0, s>>>(out, x, w, n, dim, eps);
}

void split_launch(uint16_t *out, const float *x, int n, int dim, cudaStream_t s)
{
    split_kernel<<<n, RMSNORM_THREADS, 0, s>>>(out, x, n, dim);
}
