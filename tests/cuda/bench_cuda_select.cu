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
#include <algorithm>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "score.cuh"
#include "select.cuh"

extern "C" {
#include "model.h"
#include "parse.h"
}

#define CK(call)                                                                            \
    do {                                                                                    \
        cudaError_t e_ = (call);                                                            \
        if (e_ != cudaSuccess) {                                                            \
            fprintf(stderr, "bench_cuda_select: %s:%d: %s: %s\n", __FILE__, __LINE__,       \
                    #call, cudaGetErrorString(e_));                                         \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

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

/* Median of 20 runs of f, each after `flush` bytes were overwritten, in us. */
template <typename F> static double time_us(F f, uint8_t *flush, size_t flush_bytes)
{
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<double> t;
    for (int r = 0; r < 21; r++) {
        CK(cudaMemsetAsync(flush, r, flush_bytes));
        CK(cudaEventRecord(a));
        f();
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (r > 0) t.push_back(ms * 1e3); /* the first run warms up */
    }
    CK(cudaGetLastError());
    cudaEventDestroy(a), cudaEventDestroy(b);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "1b";
    const char *batches = argc > 3 ? argv[3] : "16,64,256";
    long ctx = 131072;
    struct nosa_model_config mc;
    char err[256], list[256];
    std::vector<int> batch_list;
    if (nosa_model_config_builtin(name, &mc, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_cuda_select: model: %s\n", err);
        return 2;
    }
    const struct nosa_sparse_config *sc = &mc.sparse;
    if (argc > 2 &&
        nosa_parse_long(argv[2], sc->compress_kernel, 1L << 24, &ctx, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_cuda_select: context: %s\n", err);
        return 2;
    }
    if (snprintf(list, sizeof(list), "%s", batches) >= (int)sizeof(list)) {
        fprintf(stderr, "bench_cuda_select: batch list longer than %zu bytes\n", sizeof(list));
        return 2;
    }
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        long n = 0;
        if (nosa_parse_long(tok, 1, 4096, &n, err, sizeof(err)) != 0) {
            fprintf(stderr, "bench_cuda_select: batch '%s': %s\n", tok, err);
            return 2;
        }
        batch_list.push_back((int)n);
    }
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
    /* As the backend sets them (backend_cuda.cu): the open block is not counted. */
    select_params p = {2 /* nosa */,
                       rep,
                       sc->budget_blocks - 1,
                       sc->query_aware_blocks - 1,
                       sc->sink_blocks,
                       sc->window_blocks,
                       sc->block_size / sc->compress_stride,
                       sc->compress_kernel / sc->compress_stride,
                       1.0f / sqrtf((float)d)};
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
        double score_us = time_us(score, flush, flush_bytes);
        double select_us = time_us(select, flush, flush_bytes); /* over the logits above */
        double both_us = time_us([&] { score(), select(); }, flush, flush_bytes);
        double bytes = (double)nh * n_c * ((double)d * 2.0 + (double)rep * 4.0);
        printf("%-6d %10.2f %9.1f %10.2f %10.2f %10.2f\n", n, score_us, bytes / 1e6,
               bytes / (score_us * 1e-6) / 1e12, select_us, both_us);
        cudaFree(kc), cudaFree(ce), cudaFree(qkv), cudaFree(scratch);
        cudaFree(last_sel), cudaFree(n_sel), cudaFree(dslot), cudaFree(dpos);
    }
    cudaFree(flush);
    return 0;
}
