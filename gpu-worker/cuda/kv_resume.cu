/* kv_resume: parallel rebuild of a resumed slot (see kv_resume.cuh). */
#include "kv_append.cuh"
#include "kv_resume.cuh"

#define RESUME_THREADS 128

/* Block m of (layer, head) of the slot: the local copy when resident (after the copy
 * kernel), else the arena's. */
static __device__ const uint8_t *resume_block(const cuda_kv &kv, int slot, int layer, int head,
                                              int m, const uint8_t *arena,
                                              const uint32_t *groups)
{
    if (!kv.offload)
        return kv.blocks +
               (cu_kv_head_index(kv, slot, layer, head) * (size_t)kv.max_blocks + (size_t)m) *
                   kv.block_bytes;
    return arena + cu_arena_block_offset(kv, groups[m], layer, head);
}

static __global__ void kv_resume_copy_kernel(cuda_kv kv, int slot, const uint8_t *arena,
                                             const uint32_t *groups)
{
    int m = blockIdx.x, layer = blockIdx.y / kv.n_kv, h = blockIdx.y % kv.n_kv;
    const uint4 *src = (const uint4 *)(arena + cu_arena_block_offset(kv, groups[m], layer, h));
    uint4 *dst = (uint4 *)(kv.blocks +
                           (cu_kv_head_index(kv, slot, layer, h) * (size_t)kv.max_blocks +
                            (size_t)m) * kv.block_bytes);
    for (size_t o = threadIdx.x; o < kv.block_bytes / 16; o += blockDim.x) dst[o] = src[o];
}

/* Token p's key element x and eviction score. */
struct resume_token_view {
    const cuda_kv *kv;
    int slot, layer, head;
    const uint8_t *arena;
    const uint32_t *groups;
    __device__ const uint8_t *block(int p) const
    {
        return resume_block(*kv, slot, layer, head, p / kv->block_size, arena, groups);
    }
    __device__ uint16_t key(int p, int x) const
    {
        return ((const uint16_t *)block(p))[(size_t)(p % kv->block_size) * kv->head_dim + x];
    }
    __device__ float score(int p) const
    {
        return ((const float *)(block(p) + kv->bias_off))[p % kv->block_size];
    }
};

static __global__ void kv_resume_compress_kernel(cuda_kv kv, int slot, const uint8_t *arena,
                                                 const uint32_t *groups)
{
    int c = blockIdx.x, layer = blockIdx.y / kv.n_kv, h = blockIdx.y % kv.n_kv;
    resume_token_view tv = {&kv, slot, layer, h, arena, groups};
    size_t ih = cu_kv_head_index(kv, slot, layer, h);
    int start = c * kv.stride;
    uint16_t *kc = kv.kc + (ih * (size_t)kv.max_c + (size_t)c) * (size_t)kv.head_dim;
    for (int x = threadIdx.x; x < kv.head_dim; x += blockDim.x)
        kc[x] = cu_f32_to_bf16(cu_window_mean(
            [&](int j) { return cu_bf16_to_f32(tv.key(start + j, x)); }, kv.kernel));
    if (threadIdx.x == 0)
        kv.ce[ih * (size_t)kv.max_c + (size_t)c] =
            cu_window_mean([&](int j) { return tv.score(start + j); }, kv.kernel);
}

/* Ring rows p % kernel for the last `kernel` tokens p < end, as appending leaves them. */
static __global__ void kv_resume_ring_kernel(cuda_kv kv, int slot, int end, const uint8_t *arena,
                                             const uint32_t *groups)
{
    int layer = blockIdx.x / kv.n_kv, h = blockIdx.x % kv.n_kv, k = kv.kernel, d = kv.head_dim;
    resume_token_view tv = {&kv, slot, layer, h, arena, groups};
    size_t ih = cu_kv_head_index(kv, slot, layer, h);
    uint16_t *ring = kv.key_ring + ih * (size_t)k * (size_t)d;
    for (int p = end - k > 0 ? end - k : 0; p < end; p++) {
        for (int x = threadIdx.x; x < d; x += blockDim.x) ring[(p % k) * d + x] = tv.key(p, x);
        if (threadIdx.x == 0) kv.cis_ring[ih * (size_t)k + (size_t)(p % k)] = tv.score(p);
    }
}

void kv_resume_launch(cuda_kv kv, int slot, int n_blocks, const uint8_t *arena_dev,
                      const uint32_t *groups, cudaStream_t s)
{
    if (n_blocks <= 0) return;
    int heads = kv.n_layers * kv.n_kv, end = n_blocks * kv.block_size;
    int n_c = end < kv.kernel ? 0 : (end - kv.kernel) / kv.stride + 1;
    if (!kv.offload)
        kv_resume_copy_kernel<<<dim3(n_blocks, heads), 256, 0, s>>>(kv, slot, arena_dev, groups);
    if (n_c > 0)
        kv_resume_compress_kernel<<<dim3(n_c, heads), RESUME_THREADS, 0, s>>>(kv, slot,
                                                                               arena_dev, groups);
    kv_resume_ring_kernel<<<heads, RESUME_THREADS, 0, s>>>(kv, slot, end, arena_dev, groups);
}
