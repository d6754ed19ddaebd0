/* gather: zero-copy block gather from the mapped arena (see gather.cuh). */
#include "gather.cuh"

static __global__ void gather_kernel(const uint8_t *const *src, uint8_t *const *dst,
                                     const int32_t *n_miss, int list_ld, size_t block_bytes)
{
    int e = blockIdx.x, li = blockIdx.y;
    if (e >= n_miss[li]) return;
    const uint4 *s = (const uint4 *)src[(size_t)li * (size_t)list_ld + (size_t)e];
    uint4 *d = (uint4 *)dst[(size_t)li * (size_t)list_ld + (size_t)e];
    size_t n16 = block_bytes / 16;
    /* Four independent 16-byte loads in flight per thread before the stores. */
    size_t o = threadIdx.x;
    for (; o + 3u * blockDim.x < n16; o += 4u * blockDim.x) {
        uint4 a = s[o], b = s[o + blockDim.x], c = s[o + 2u * blockDim.x],
              f = s[o + 3u * blockDim.x];
        d[o] = a;
        d[o + blockDim.x] = b;
        d[o + 2u * blockDim.x] = c;
        d[o + 3u * blockDim.x] = f;
    }
    for (; o < n16; o += blockDim.x) d[o] = s[o];
}

void gather_launch(const uint8_t *const *src, uint8_t *const *dst, const int32_t *n_miss,
                   int n_heads, int max_miss, int list_ld, size_t block_bytes, cudaStream_t s)
{
    if (max_miss <= 0 || n_heads <= 0) return;
    gather_kernel<<<dim3(max_miss, n_heads), 256, 0, s>>>(src, dst, n_miss, list_ld,
                                                          block_bytes);
}
