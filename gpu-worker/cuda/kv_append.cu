/* kv_append: append to the open block and incremental compression (see kv_append.cuh). */
#include "kv_append.cuh"

/* Pushes token pos (key as stored, bf16 bits) into the ring of head ih and emits a
 * compressed key when a window completes. Called by every thread of the CTA; thread x
 * handles dimensions x, x + blockDim.x, ... */
static __device__ void push_token(const cuda_kv &kv, size_t ih, int pos, const uint16_t *key,
                                  float cis)
{
    int d = kv.head_dim, k = kv.kernel, row = pos % k;
    uint16_t *ring = kv.key_ring + ih * (size_t)k * (size_t)d;
    float *cring = kv.cis_ring + ih * (size_t)k;
    for (int x = threadIdx.x; x < d; x += blockDim.x) ring[row * d + x] = key[x];
    if (threadIdx.x == 0) cring[row] = cis;
    __syncthreads();
    int end = pos + 1;
    if (end < k || (end - k) % kv.stride != 0) return;
    int start = end - k, c = start / kv.stride;
    uint16_t *kc = kv.kc + (ih * (size_t)kv.max_c + (size_t)c) * (size_t)d;
    for (int x = threadIdx.x; x < d; x += blockDim.x)
        kc[x] = cu_f32_to_bf16(cu_window_mean(
            [&](int j) { return cu_bf16_to_f32(ring[((start + j) % k) * d + x]); }, k));
    if (threadIdx.x == 0)
        kv.ce[ih * (size_t)kv.max_c + (size_t)c] =
            cu_window_mean([&](int j) { return cring[(start + j) % k]; }, k);
}

static __global__ void kv_append_kernel(cuda_kv kv, cuda_step st, int layer, const float *qkv,
                                        int ld, int k_off, int v_off, const float *cis)
{
    extern __shared__ uint16_t key_sh[];
    int i = blockIdx.x, h = blockIdx.y, d = kv.head_dim;
    int pos = st.pos[i];
    size_t ih = cu_kv_head_index(kv, st.slot[i], layer, h);
    uint8_t *blk = cu_kv_open_block(kv, ih, pos);
    int t = pos % kv.block_size;
    if (t == 0) {
        uint4 z = make_uint4(0, 0, 0, 0);
        for (size_t o = threadIdx.x; o < kv.block_bytes / 16; o += blockDim.x)
            ((uint4 *)blk)[o] = z;
        __syncthreads();
    }
    const float *kr = qkv + (size_t)i * (size_t)ld + k_off + (size_t)h * (size_t)d;
    const float *vr = qkv + (size_t)i * (size_t)ld + v_off + (size_t)h * (size_t)d;
    uint16_t *kdst = (uint16_t *)blk + (size_t)t * (size_t)d;
    uint16_t *vdst = (uint16_t *)(blk + kv.v_off) + (size_t)t * (size_t)d;
    for (int x = threadIdx.x; x < d; x += blockDim.x) {
        uint16_t kb = cu_f32_to_bf16(kr[x]);
        key_sh[x] = kb;
        kdst[x] = kb;
        vdst[x] = cu_f32_to_bf16(vr[x]);
    }
    float c = cis[(size_t)i * (size_t)kv.n_kv + (size_t)h];
    if (threadIdx.x == 0) ((float *)(blk + kv.bias_off))[t] = c;
    __syncthreads();
    push_token(kv, ih, pos, key_sh, c);
}

void kv_append_launch(cuda_kv kv, cuda_step st, int layer, const float *qkv, int ld, int k_off,
                      int v_off, const float *cis, cudaStream_t s)
{
    int threads = kv.head_dim < 128 ? 32 : 128;
    kv_append_kernel<<<dim3(st.n, kv.n_kv), threads, (size_t)kv.head_dim * sizeof(uint16_t),
                       s>>>(kv, st, layer, qkv, ld, k_off, v_off, cis);
}
