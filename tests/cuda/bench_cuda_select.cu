/* bench_cuda_select: the decode step's block selection alone, at a model's shape (default
 * the built-in 1b) and one context (default 131072 tokens), for a list of batch sizes:
 *
 *   bench_cuda_select [model] [context] [batches]      e.g. bench_cuda_select 1b 131072 16,64,256
 *
 * One layer's scoring (score_launch: every compressed key of each (token, KV head) against
 * its query heads) and then its selection (select_launch, nosa mode: the group softmax
 * sum, pooling to blocks, the two top-k stages), each launch timed alone after the L2 was
 * overwritten (a step's layers read other data in between), median of 20. Prints each
 * kernel's time in us and the scoring's bytes (compressed keys read + logits written) per
 * second. Random finite inputs: the kernels' work does not depend on the values. */
#include <math.h>

#define BENCH_NAME "bench_cuda_select"
#include "bench_cuda_util.cuh"

#include "score.cuh"
#include "select.cuh"

/* Finite bf16 values of either sign in [2^-15, 2) from a hash of the index. */
static __global__ void fill_bf16_kernel(uint16_t *x, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
        x[i] = (uint16_t)((0x3800u + (h & 0x7ffu)) | ((h & 0x10000u) ? 0x8000u : 0u));
    }
}

/* Floats in [lo, lo + 1) from a hash of the index. */
static __global__ void fill_f32_kernel(float *x, size_t n, float lo)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2246822519u + 374761393u;
        h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
        x[i] = lo + (float)(h >> 8) * (1.0f / 16777216.0f);
    }
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "1b";
    const char *batches = argc > 3 ? argv[3] : "16,64,256";
    long ctx = 131072;
    struct nosa_model_config mc;
    char err[256];
    std::vector<int> batch_list;
    if (bench_model_config(name, &mc) != 0) return 2;
    const struct nosa_sparse_config *sc = &mc.sparse;
    if (argc > 2 &&
        nosa_parse_long(argv[2], sc->compress_kernel, 1L << 24, &ctx, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_cuda_select: context: %s\n", err);
        return 2;
    }
    if (bench_parse_batches(batches, &batch_list) != 0) return 2;
    int n_kv = mc.n_kv_heads, rep = mc.n_heads / mc.n_kv_heads, d = mc.head_dim;
    if (!score_supported(d)) {
        fprintf(stderr, "bench_cuda_select: head_dim %d is not one the scoring is built for\n",
                d);
        return 2;
    }
    cuda_kv kv;
    memset(&kv, 0, sizeof(kv));
    kv.n_layers = 1, kv.n_kv = n_kv, kv.head_dim = d, kv.block_size = sc->block_size;
    kv.kernel = sc->compress_kernel, kv.stride = sc->compress_stride;
    kv.max_blocks = (int)((ctx + sc->block_size - 1) / sc->block_size);
    kv.max_c = (int)((ctx - kv.kernel) / kv.stride + 1);
    kv.scratch_stride = select_scratch_floats(kv, rep);
    select_params p = select_params_of(sc, NOSA_ATTN_NOSA, rep, 1.0f / sqrtf((float)d));
    int pos = (int)ctx - 1, n_c = (pos + 1 - kv.kernel) / kv.stride + 1;
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    size_t flush_bytes = 2 * (size_t)prop.l2CacheSize;
    uint8_t *flush;
    CK(cudaMalloc((void **)&flush, flush_bytes));
    printf("device %s, %d SMs, L2 %d MB; shape %s: n_kv %d rep %d head_dim %d, context %ld: "
           "%d compressed keys, %d blocks per (token, KV head); budget %d, query-aware %d\n",
           prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, name, n_kv, rep, d, ctx,
           n_c, pos / kv.block_size, sc->budget_blocks, sc->query_aware_blocks);
    printf("%-6s %10s %9s %10s %10s %10s\n", "batch", "score us", "MB", "TB/s", "select us",
           "both us");
    for (int n : batch_list) {
        size_t nh = (size_t)n * (size_t)n_kv, nk = nh * (size_t)kv.max_c * (size_t)d;
        int ld = (n_kv * rep + 2 * n_kv) * d;
        uint16_t *kc;
        float *ce, *qkv, *scratch;
        int32_t *last_sel, *n_sel, *dslot, *dpos;
        CK(cudaMalloc((void **)&kc, nk * sizeof(uint16_t)));
        CK(cudaMalloc((void **)&ce, nh * (size_t)kv.max_c * sizeof(float)));
        CK(cudaMalloc((void **)&qkv, (size_t)n * ld * sizeof(float)));
        CK(cudaMalloc((void **)&scratch, nh * kv.scratch_stride * sizeof(float)));
        CK(cudaMalloc((void **)&last_sel, nh * (size_t)kv.max_blocks * sizeof(int32_t)));
        CK(cudaMalloc((void **)&n_sel, nh * sizeof(int32_t)));
        fill_bf16_kernel<<<4096, 256>>>(kc, nk);
        fill_f32_kernel<<<1024, 256>>>(ce, nh * (size_t)kv.max_c, -0.5f);
        fill_f32_kernel<<<1024, 256>>>(qkv, (size_t)n * ld, -0.5f);
        CK(cudaGetLastError());
        std::vector<int32_t> slot(n), posv(n, pos);
        for (int i = 0; i < n; i++) slot[i] = i;
        CK(cudaMalloc((void **)&dslot, n * sizeof(int32_t)));
        CK(cudaMalloc((void **)&dpos, n * sizeof(int32_t)));
        CK(cudaMemcpy(dslot, slot.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dpos, posv.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice));
        kv.kc = kc, kv.ce = ce, kv.last_sel = last_sel, kv.n_sel = n_sel;
        cuda_step st = {dslot, dpos, n};
        auto score = [&] { score_launch(kv, st, 0, p, qkv, ld, scratch, n_c, 0); };
        auto select = [&] { select_launch(kv, st, 0, p, scratch, 0); };
        /* Each launch after the L2 was overwritten, median of 20, in us. */
        auto flush_l2 = [&] { CK(cudaMemsetAsync(flush, 0x5a, flush_bytes)); };
        double score_us = 1e3 * bench_median_ms(score, 20, flush_l2);
        double select_us = 1e3 * bench_median_ms(select, 20, flush_l2); /* the logits above */
        double both_us = 1e3 * bench_median_ms([&] { score(), select(); }, 20, flush_l2);
        double bytes = (double)nh * n_c * ((double)d * 2.0 + (double)rep * 4.0);
        printf("%-6d %10.2f %9.1f %10.2f %10.2f %10.2f\n", n, score_us, bytes / 1e6,
               bytes / (score_us * 1e-6) / 1e12, select_us, both_us);
        cudaFree(kc), cudaFree(ce), cudaFree(qkv), cudaFree(scratch);
        cudaFree(last_sel), cudaFree(n_sel), cudaFree(dslot), cudaFree(dpos);
    }
    cudaFree(flush);
    return 0;
}
