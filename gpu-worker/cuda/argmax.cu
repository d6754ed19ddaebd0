/* argmax: per-row argmax with lowest-index ties, -1 for NaN or no finite maximum (see
 * argmax.cuh). */
#include "argmax.cuh"

#define ARGMAX_THREADS 256

static __device__ __forceinline__ bool better(float v, int i, float bv, int bi)
{
    return v > bv || (v == bv && i < bi);
}

static __global__ void argmax_kernel(int32_t *out, const float *logits, int vocab)
{
    __shared__ float sv[ARGMAX_THREADS / 32];
    __shared__ int si[ARGMAX_THREADS / 32];
    __shared__ int any_nan;
    const float *row = logits + (size_t)blockIdx.x * (size_t)vocab;
    if (threadIdx.x == 0) any_nan = 0;
    __syncthreads();
    float bv = -INFINITY;
    int bi = 0x7fffffff, nan_seen = 0;
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
        nan_seen |= isnan(row[j]);
        if (better(row[j], j, bv, bi)) bv = row[j], bi = j;
    }
    if (nan_seen) any_nan = 1; /* every writer writes the same value */
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (better(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
    if ((threadIdx.x & 31) == 0) sv[threadIdx.x >> 5] = bv, si[threadIdx.x >> 5] = bi;
    __syncthreads();
    if (threadIdx.x == 0) {
        bv = sv[0];
        bi = si[0];
        for (int w = 1; w < ARGMAX_THREADS / 32; w++)
            if (better(sv[w], si[w], bv, bi)) bv = sv[w], bi = si[w];
        out[blockIdx.x] = any_nan || !isfinite(bv) || bi == 0x7fffffff ? -1 : bi;
    }
}

void argmax_launch(int32_t *out, const float *logits, int n, int vocab, cudaStream_t s)
{
    argmax_kernel<<<n, ARGMAX_THREADS, 0, s>>>(out, logits, vocab);
}
