/* mma.cuh: the tensor-core pieces the scoring and attention kernels share: the m16n8k16 bf16
 * MMA with f32 accumulators, and the split of f32 operands into bf16 hi + lo halves that lets
 * those MMAs multiply f32 values (x = hi + lo to about 2^-17 of x; bf16 x bf16 products are
 * exact in f32, so a row of hi halves plus a row of lo halves gives f32-operand products). */
#ifndef NOSA_CUDA_MMA_CUH
#define NOSA_CUDA_MMA_CUH
#include <cuda_bf16.h>
#include <stdint.h>
#include <string.h>

/* D += A (16x16 bf16, row) x B (16x8 bf16, col), f32 accumulators. */
static __device__ __forceinline__ void mma_bf16_16816(float *c, const uint32_t *a, uint32_t b0,
                                                      uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* x0, x1 as bf16 hi and lo halves (round to nearest even), two per 32-bit word with x0 in
 * the low half (the MMA's lower k index). */
static __device__ __forceinline__ void bf16x2_split(float x0, float x1, uint32_t *hi,
                                                    uint32_t *lo)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
    float2 hf = __bfloat1622float2(h);
    __nv_bfloat162 l = __floats2bfloat162_rn(x0 - hf.x, x1 - hf.y);
    memcpy(hi, &h, 4);
    memcpy(lo, &l, 4);
}
#endif
