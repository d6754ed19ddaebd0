/* pool: block delta, slot replacement, completion install and the read-ahead (see pool.cuh).
 * One warp per (token, KV head): lanes scan the pool, a warp minimum picks the victim. */
#include "pool.cuh"
#include "select.cuh"

/* Eviction order (gpu-worker/cpu/kv.h): free slots first (lowest slot), then the blocks
 * not selected by this step (stamp below now) by ascending score, ties to the oldest stamp,
 * then the lowest slot; with take_current, this step's blocks after all of those, by slot.
 * Compared as (hi, lo); {UINT64_MAX, UINT64_MAX} when the slot may not be taken. */
struct victim_key {
    uint64_t hi, lo;
};

static __device__ __forceinline__ bool victim_before(victim_key a, victim_key b)
{
    return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo);
}

static __device__ __forceinline__ victim_key victim_key_of(const int32_t *block_of,
                                                           const uint32_t *stamp,
                                                           const float *slot_score, int p,
                                                           uint32_t now, bool take_current)
{
    if (block_of[p] < 0) return {0u, (uint64_t)p};
    if (stamp[p] >= now) {
        if (!take_current) return {UINT64_MAX, UINT64_MAX};
        return {(uint64_t)2u << 32, ((uint64_t)stamp[p] << 32) | (uint64_t)p};
    }
    return {((uint64_t)1u << 32) | order_key(slot_score[p]),
            ((uint64_t)stamp[p] << 32) | (uint64_t)p};
}

/* The slot to take (every lane gets it), -1 when none may be taken. */
static __device__ int warp_victim(const cuda_kv &kv, const int32_t *block_of,
                                  const uint32_t *stamp, const float *slot_score, uint32_t now,
                                  bool take_current)
{
    victim_key best = {UINT64_MAX, UINT64_MAX};
    for (int p = threadIdx.x % 32; p < kv.pool_blocks; p += 32) {
        victim_key k = victim_key_of(block_of, stamp, slot_score, p, now, take_current);
        if (victim_before(k, best)) best = k;
    }
    for (int o = 16; o > 0; o >>= 1) {
        victim_key other = {__shfl_xor_sync(0xffffffffu, best.hi, o),
                            __shfl_xor_sync(0xffffffffu, best.lo, o)};
        if (victim_before(other, best)) best = other;
    }
    return best.hi == UINT64_MAX ? -1 : (int)(best.lo & 0xffffffffu);
}

static __global__ void pool_delta_kernel(cuda_kv kv, cuda_step st, int layer, pool_lists pl,
                                         const uint8_t *arena, const uint32_t *groups,
                                         int groups_ld, float *scratch, int rep,
                                         unsigned long long *stats)
{
    int i = blockIdx.x, h = blockIdx.y, lane = threadIdx.x;
    int pos = st.pos[i], slot = st.slot[i];
    size_t ih = cu_kv_head_index(kv, slot, layer, h);
    size_t li = (size_t)i * kv.n_kv + (size_t)h;
    const int32_t *sel = kv.last_sel + ih * (size_t)kv.max_blocks;
    int n = kv.n_sel[ih];
    const uint8_t **ptrs = pl.ptrs + li * ((size_t)kv.max_blocks + 1u);
    size_t bb = kv.block_bytes;
    if (!kv.offload) {
        uint8_t *base = kv.blocks + ih * (size_t)kv.max_blocks * bb;
        for (int e = lane; e < n; e += 32) ptrs[e] = base + (size_t)sel[e] * bb;
        if (lane == 0) {
            ptrs[n] = cu_kv_open_block(kv, ih, pos);
            pl.n_ent[li] = n + 1;
            atomicAdd(&stats[POOL_STATS * layer + 0], (unsigned long long)n);
            atomicAdd(&stats[POOL_STATS * layer + 2], (unsigned long long)n);
        }
        return;
    }
    int32_t *pool_of = kv.pool_of + ih * (size_t)kv.max_blocks;
    int32_t *block_of = kv.block_of + ih * (size_t)kv.pool_blocks;
    uint32_t *stamp = kv.stamp + ih * (size_t)kv.pool_blocks;
    uint8_t *pool = kv.blocks + ih * (size_t)kv.pool_blocks * bb;
    float *slot_score = kv.slot_score + ih * (size_t)kv.pool_blocks;
    uint32_t now = (uint32_t)pos + 1u;
    /* Each slot's score, read once here (independent loads) rather than through block_of
     * in every victim search; a slot refilled below is this step's and needs none. */
    const float *score = select_scratch_bq(kv, scratch, (int)li, rep);
#pragma unroll 4
    for (int p = lane; p < kv.pool_blocks; p += 32)
        if (block_of[p] >= 0) slot_score[p] = __ldg(score + block_of[p]);
    const uint8_t **src = pl.miss_src + li * (size_t)kv.max_blocks;
    /* Hits first, so that no block this step selects can become a victim. */
    int hits = 0;
    for (int e = lane; e < n; e += 32) {
        int p = pool_of[sel[e]];
        ptrs[e] = NULL;
        if (p < 0) continue;
        stamp[p] = now;
        ptrs[e] = pool + (size_t)p * bb;
        src[e] = NULL;
        hits++;
    }
    for (int o = 16; o > 0; o >>= 1) hits += __shfl_xor_sync(0xffffffffu, hits, o);
    __syncwarp();
    const uint32_t *grp = groups + (size_t)slot * (size_t)groups_ld;
    int misses = 0;
    for (int e = 0; e < n; e++) {
        if (ptrs[e]) continue; /* uniform across the warp: written before the sync */
        int p = warp_victim(kv, block_of, stamp, slot_score, now, false);
        int m = sel[e];
        if (lane == 0) {
            /* create() sizes the pool for the largest selection, so p >= 0. */
            if (block_of[p] >= 0) pool_of[block_of[p]] = -1;
            block_of[p] = m;
            pool_of[m] = p;
            stamp[p] = now;
            src[e] = arena + cu_arena_block_offset(kv, grp[m], layer, h);
            ptrs[e] = pool + (size_t)p * bb;
        }
        misses++;
        __syncwarp();
    }
    if (lane == 0) {
        ptrs[n] = kv.open + ih * bb;
        pl.n_ent[li] = n + 1;
        atomicAdd(&stats[POOL_STATS * layer + 0], (unsigned long long)n);
        atomicAdd(&stats[POOL_STATS * layer + 1], (unsigned long long)misses);
        atomicAdd(&stats[POOL_STATS * layer + 2], (unsigned long long)hits);
    }
}

static __global__ void pool_complete_kernel(cuda_kv kv, cuda_step st, int layer)
{
    __shared__ int victim;
    int i = blockIdx.x, h = blockIdx.y;
    int pos = st.pos[i];
    if ((pos + 1) % kv.block_size != 0) return;
    size_t ih = cu_kv_head_index(kv, st.slot[i], layer, h);
    int32_t *pool_of = kv.pool_of + ih * (size_t)kv.max_blocks;
    int32_t *block_of = kv.block_of + ih * (size_t)kv.pool_blocks;
    uint32_t *stamp = kv.stamp + ih * (size_t)kv.pool_blocks;
    if (threadIdx.x < 32) {
        /* The step is done with every pool block: its own go last. The other slots' scores
         * are those pool_delta read this step. */
        int p = warp_victim(kv, block_of, stamp, kv.slot_score + ih * (size_t)kv.pool_blocks,
                            (uint32_t)pos + 1u, true);
        if (threadIdx.x == 0) {
            int m = pos / kv.block_size;
            if (block_of[p] >= 0) pool_of[block_of[p]] = -1;
            block_of[p] = m;
            pool_of[m] = p;
            stamp[p] = (uint32_t)pos + 1u;
            victim = p;
        }
    }
    __syncthreads();
    const uint4 *src = (const uint4 *)(kv.open + ih * kv.block_bytes);
    uint4 *dst = (uint4 *)(kv.blocks + (ih * (size_t)kv.pool_blocks + (size_t)victim) *
                                           kv.block_bytes);
    for (size_t o = threadIdx.x; o < kv.block_bytes / 16; o += blockDim.x) dst[o] = src[o];
}

/* The read-ahead's plan (pool.cuh): one warp per (token, KV head). */
static __global__ void pool_prefetch_plan_kernel(cuda_kv kv, cuda_step st, int layer,
                                                 float *scratch, int rep,
                                                 unsigned long long *stats)
{
    int i = blockIdx.x, h = blockIdx.y, lane = threadIdx.x;
    int pos = st.pos[i];
    size_t ih = cu_kv_head_index(kv, st.slot[i], layer, h);
    int li = i * kv.n_kv + h;
    int32_t *pool_of = kv.pool_of + ih * (size_t)kv.max_blocks;
    int32_t *block_of = kv.block_of + ih * (size_t)kv.pool_blocks;
    uint32_t *stamp = kv.stamp + ih * (size_t)kv.pool_blocks;
    float *slot_score = kv.slot_score + ih * (size_t)kv.pool_blocks;
    int32_t *ahead = kv.ahead + ih * (size_t)kv.prefetch;
    const float *score = select_scratch_bq(kv, scratch, li, rep);
    int n_blocks = pos / kv.block_size;
    uint32_t now = (uint32_t)pos + 1u;
    int n = 0;
    for (; n < kv.prefetch; n++) {
        /* The absent block that ranks first: the highest score, then the lower block; 0
         * (below every float's key) when none is absent. */
        uint64_t best = 0;
        for (int m = lane; m < n_blocks; m += 32)
            if (pool_of[m] < 0) {
                uint64_t k = ((uint64_t)order_key(score[m]) << 32) | (uint64_t)(~(uint32_t)m);
                if (k > best) best = k;
            }
        for (int o = 16; o > 0; o >>= 1) {
            uint64_t other = __shfl_xor_sync(0xffffffffu, best, o);
            if (other > best) best = other;
        }
        if (best == 0) break;
        int m = (int)~(uint32_t)best;
        float sm = score[m];
        int p = warp_victim(kv, block_of, stamp, slot_score, now, false);
        if (p < 0 || (block_of[p] >= 0 && !(sm > slot_score[p]))) break;
        if (lane == 0) {
            if (block_of[p] >= 0) pool_of[block_of[p]] = -1;
            block_of[p] = m;
            pool_of[m] = p;
            stamp[p] = now;
            slot_score[p] = sm;
            ahead[n] = p;
        }
        __syncwarp();
    }
    if (lane == 0) {
        for (int k = n; k < kv.prefetch; k++) ahead[k] = -1;
        if (n > 0) atomicAdd(&stats[POOL_STATS * layer + 3], (unsigned long long)n);
    }
}

/* The read-ahead's copy: PREFETCH_CTAS one-warp CTAs walk every (token, KV head, entry) and
 * copy its block from the arena (host memory, read over the link with PREFETCH_LOADS 16-byte
 * loads per thread in flight, as attention.cu reads its misses) into its slot. A CTA per
 * entry filled the GPU and stalled the step's kernels behind it; these few still hold their
 * SMs while they run, which delays the GEMMs, whose CTAs take a whole SM's registers
 * (bench/RESULTS.md, seventh session: 8-64 CTAs of 32 or 256 threads measured, this the
 * best). */
#define PREFETCH_CTAS 16
#define PREFETCH_THREADS 32
#define PREFETCH_LOADS 16

static __global__ void __launch_bounds__(PREFETCH_THREADS)
    pool_prefetch_copy_kernel(cuda_kv kv, cuda_step st, int layer, const uint8_t *arena,
                              const uint32_t *groups, int groups_ld)
{
    int per_token = kv.n_kv * kv.prefetch, n16 = (int)(kv.block_bytes / 16);
    for (int e = blockIdx.x; e < st.n * per_token; e += gridDim.x) {
        int i = e / per_token, h = (e % per_token) / kv.prefetch, k = e % kv.prefetch;
        int slot = st.slot[i];
        size_t ih = cu_kv_head_index(kv, slot, layer, h);
        int p = kv.ahead[ih * (size_t)kv.prefetch + (size_t)k];
        if (p < 0) continue;
        int m = kv.block_of[ih * (size_t)kv.pool_blocks + (size_t)p];
        uint32_t group = groups[(size_t)slot * (size_t)groups_ld + (size_t)m];
        const uint4 *__restrict__ src =
            (const uint4 *)(arena + cu_arena_block_offset(kv, group, layer, h));
        uint4 *__restrict__ dst = (uint4 *)(kv.blocks + (ih * (size_t)kv.pool_blocks +
                                                         (size_t)p) * kv.block_bytes);
        for (int u = threadIdx.x; u < n16; u += PREFETCH_LOADS * PREFETCH_THREADS) {
            uint4 w[PREFETCH_LOADS];
#pragma unroll
            for (int j = 0; j < PREFETCH_LOADS; j++)
                if (u + j * PREFETCH_THREADS < n16) w[j] = src[u + j * PREFETCH_THREADS];
#pragma unroll
            for (int j = 0; j < PREFETCH_LOADS; j++)
                if (u + j * PREFETCH_THREADS < n16) dst[u + j * PREFETCH_THREADS] = w[j];
        }
    }
}

void pool_delta_launch(cuda_kv kv, cuda_step st, int layer, pool_lists pl,
                       const uint8_t *arena_dev, const uint32_t *groups, int groups_ld,
                       float *scratch, int rep, unsigned long long *stats, cudaStream_t s)
{
    pool_delta_kernel<<<dim3(st.n, kv.n_kv), 32, 0, s>>>(kv, st, layer, pl, arena_dev, groups,
                                                          groups_ld, scratch, rep, stats);
}

void pool_complete_launch(cuda_kv kv, cuda_step st, int layer, cudaStream_t s)
{
    pool_complete_kernel<<<dim3(st.n, kv.n_kv), 128, 0, s>>>(kv, st, layer);
}

void pool_prefetch_plan_launch(cuda_kv kv, cuda_step st, int layer, float *scratch, int rep,
                               unsigned long long *stats, cudaStream_t s)
{
    pool_prefetch_plan_kernel<<<dim3(st.n, kv.n_kv), 32, 0, s>>>(kv, st, layer, scratch, rep,
                                                                  stats);
}

void pool_prefetch_copy_launch(cuda_kv kv, cuda_step st, int layer, const uint8_t *arena_dev,
                               const uint32_t *groups, int groups_ld, cudaStream_t s)
{
    int entries = st.n * kv.n_kv * kv.prefetch;
    int ctas = entries < PREFETCH_CTAS ? entries : PREFETCH_CTAS;
    pool_prefetch_copy_kernel<<<ctas, PREFETCH_THREADS, 0, s>>>(
        kv, st, layer, arena_dev, groups, groups_ld);
}
