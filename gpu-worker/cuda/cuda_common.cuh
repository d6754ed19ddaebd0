/* cuda_common.cuh: what every op of the CUDA backend shares: the error macros (file, line,
 * message into the caller's error buffer), bf16 bit conversions that match common/bf16.h
 * exactly, and the device view of the KV state (struct cuda_kv), passed to kernels by value.
 *
 * Errors: a CUDA or cuBLAS failure is fatal to the worker (STYLE.md); the macros format
 * "file:line: call: message" into (err, errlen), set rc (-ENOMEM for an allocation that
 * the device refused, so a caller sizing a batch can tell it from a fault; else -EIO) and
 * jump to the function's cleanup label `fail`. */
#ifndef NOSA_CUDA_COMMON_CUH
#define NOSA_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

extern "C" {
#include "log.h"
}

#define CUDA_CHECK(call)                                                                    \
    do {                                                                                    \
        cudaError_t e_ = (call);                                                            \
        if (e_ != cudaSuccess) {                                                            \
            nosa_set_error(err, errlen, "%s:%d: %s: %s", __FILE__, __LINE__, #call,         \
                           cudaGetErrorString(e_));                                         \
            rc = e_ == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;                          \
            goto fail;                                                                      \
        }                                                                                   \
    } while (0)

#define CUBLAS_CHECK(call)                                                                  \
    do {                                                                                    \
        cublasStatus_t s_ = (call);                                                         \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                  \
            nosa_set_error(err, errlen, "%s:%d: %s: %s", __FILE__, __LINE__, #call,         \
                           cublasGetStatusString(s_));                                      \
            rc = s_ == CUBLAS_STATUS_ALLOC_FAILED ? -ENOMEM : -EIO;                         \
            goto fail;                                                                      \
        }                                                                                   \
    } while (0)

/* After a kernel launch: launch-configuration errors show up here. */
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

/* common/bf16.h on the device: round to nearest even, NaN kept quiet. */
__device__ __forceinline__ uint16_t cu_f32_to_bf16(float f)
{
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

__device__ __forceinline__ float cu_bf16_to_f32(uint16_t h)
{
    return __uint_as_float((uint32_t)h << 16);
}

/* Eight bf16 from one 16-byte load: a 32-bit word holds element 2j (low half) and 2j + 1. */
__device__ __forceinline__ void bf16x8_to_f32(uint4 w, float *f)
{
    const uint32_t u[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        f[2 * j] = __uint_as_float(u[j] << 16);
        f[2 * j + 1] = __uint_as_float(u[j] & 0xffff0000u);
    }
}

/* Per (slot, layer, KV head) state, head index ih = (slot * n_layers + layer) * n_kv + head.
 * Blocks use the arena block format (kv_geometry.h) so copies are plain byte copies. */
struct cuda_kv {
    uint8_t *blocks;    /* resident: [ih][max_blocks] blocks; offload: the pool [ih][pool] */
    uint8_t *open;      /* offload: [ih] the open block; resident: NULL */
    int32_t *pool_of;   /* offload: [ih][max_blocks] pool slot of a logical block or -1 */
    int32_t *block_of;  /* offload: [ih][pool] logical block in a pool slot or -1 */
    uint32_t *stamp;    /* offload: [ih][pool] position + 1 of the last step selecting it */
    float *slot_score;  /* offload: [ih][pool] the eviction score of the block in a slot, as
                         * of the step's pool_delta (pool.cuh) */
    int32_t *ahead;     /* offload with prefetch: [ih][prefetch] the slots the step's
                         * read-ahead fills, -1 past the last (pool.cuh) */
    uint16_t *key_ring; /* [ih][kernel][head_dim] bf16 */
    float *cis_ring;    /* [ih][kernel] */
    uint16_t *kc;       /* [ih][max_c][head_dim] compressed keys, bf16 */
    float *ce;          /* [ih][max_c] compressed eviction scores */
    int32_t *last_sel;  /* [ih][max_blocks] the last selection, ascending */
    int32_t *n_sel;     /* [ih] */
    size_t block_bytes, v_off, bias_off;
    size_t scratch_stride; /* floats of select scratch per (token, KV head) */
    int offload, max_blocks, pool_blocks, max_c;
    int prefetch; /* blocks read ahead per (slot, layer, KV head) and step; 0: none */
    int n_layers, n_kv, head_dim, block_size, kernel, stride;
};

__device__ __forceinline__ size_t cu_kv_head_index(const cuda_kv &kv, int slot, int layer,
                                                   int head)
{
    return ((size_t)slot * kv.n_layers + (size_t)layer) * kv.n_kv + (size_t)head;
}

/* Byte offset in the arena of the block of (group, layer, KV head): the host's
 * nosa_kv_block_index (kv_geometry.h) times the block's bytes. */
__device__ __forceinline__ uint64_t cu_arena_block_offset(const cuda_kv &kv, uint32_t group,
                                                          int layer, int head)
{
    return (((uint64_t)group * (uint64_t)kv.n_layers + (uint64_t)layer) * (uint64_t)kv.n_kv +
            (uint64_t)head) *
           (uint64_t)kv.block_bytes;
}

/* The block that holds position pos while it is open. */
__device__ __forceinline__ uint8_t *cu_kv_open_block(const cuda_kv &kv, size_t ih, int pos)
{
    if (kv.offload) return kv.open + ih * kv.block_bytes;
    return kv.blocks + (ih * (size_t)kv.max_blocks + (size_t)(pos / kv.block_size)) *
                           kv.block_bytes;
}

/* Per-step inputs of token i of a batch: its slot and position. */
struct cuda_step {
    const int32_t *slot; /* [n] */
    const int32_t *pos;  /* [n] */
    int n;
};

#endif
