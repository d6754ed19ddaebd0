/* writeback: completed blocks to the arena (see writeback.cuh). */
#include "writeback.cuh"

static __global__ void writeback_kernel(cuda_kv kv, cuda_step st, int layer, uint8_t *arena,
                                        const uint32_t *groups, int groups_ld)
{
    int i = blockIdx.x, h = blockIdx.y, pos = st.pos[i], slot = st.slot[i];
    if ((pos + 1) % kv.block_size != 0) return;
    size_t ih = cu_kv_head_index(kv, slot, layer, h);
    uint32_t group = groups[(size_t)slot * (size_t)groups_ld + (size_t)(pos / kv.block_size)];
    const uint4 *src = (const uint4 *)cu_kv_open_block(kv, ih, pos);
    uint4 *dst = (uint4 *)(arena + cu_arena_block_offset(kv, group, layer, h));
    for (size_t o = threadIdx.x; o < kv.block_bytes / 16; o += blockDim.x) dst[o] = src[o];
}

void writeback_launch(cuda_kv kv, cuda_step st, int layer, uint8_t *arena_dev,
                      const uint32_t *groups, int groups_ld, cudaStream_t s)
{
    writeback_kernel<<<dim3(st.n, kv.n_kv), 256, 0, s>>>(kv, st, layer, arena_dev, groups,
                                                         groups_ld);
}
