/* bench_cuda_attention: the sparse decode attention kernel alone (attention_launch: the
 * partial kernel and the combine), at a model shape, against the device's HBM copy rate, for
 * issue 5's "at least 70% of HBM copy bandwidth for the bytes it reads". Not a ctest.
 *
 *   bench_cuda_attention [model=1b] [batches=16,64,128,256] [miss_every=8]
 *
 * The blocks are drawn at random from a 4 GiB pool (far beyond L2), budget_blocks selected
 * plus a full open block per (token, KV head), as a sparse decode step reads them. Prints
 * the device-to-device copy rate (cudaMemcpyAsync, 1 GiB, bytes read + written per second),
 * then per batch and split size (blocks per CTA; "auto" = what the backend picks): the median
 * time of 20 launches alone and of 20 runs of 16 launches queued back to back (per launch: a
 * step replays its kernels from a graph, so the host's launch calls are not in its time), the
 * bytes of the blocks read / that time as a fraction of the copy rate, the partial kernel and
 * the combine queued on their own; then the same with every miss_every-th selected block a
 * miss read from mapped, pinned host memory (and installed in the pool), as an offloaded
 * step. */
#define BENCH_NAME "bench_cuda_attention"
#include "bench_cuda_util.cuh"

#include "attention.cuh"

extern "C" {
#include "kv_geometry.h"
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 32);
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "1b";
    const char *batches = argc > 2 ? argv[2] : "16,64,128,256";
    long miss_every = 8;
    struct nosa_model_config mc;
    char err[256];
    std::vector<int> batch_list;
    if (bench_model_config(name, &mc) != 0) return 2;
    if (argc > 3 && nosa_parse_long(argv[3], 1, 1 << 20, &miss_every, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_cuda_attention: miss_every: %s\n", err);
        return 2;
    }
    if (bench_parse_batches(batches, &batch_list) != 0) return 2;
    int n_kv = mc.n_kv_heads, rep = mc.n_heads / mc.n_kv_heads, d = mc.head_dim;
    int bs = mc.sparse.block_size, n_sel = mc.sparse.budget_blocks, n_ent = n_sel + 1;
    struct nosa_kv_geometry g = {1, (uint32_t)n_kv, (uint32_t)bs, (uint32_t)d, 1};
    size_t bb = nosa_kv_block_bytes(&g);
    cuda_kv kv;
    memset(&kv, 0, sizeof(kv));
    kv.block_bytes = bb, kv.v_off = nosa_kv_block_v_offset(&g);
    kv.bias_off = nosa_kv_block_bias_offset(&g);
    kv.max_blocks = n_sel, kv.n_layers = 1, kv.n_kv = n_kv, kv.head_dim = d, kv.block_size = bs;
    int resident = 0;
    CK(attention_init(kv, 0, &resident));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device %s, %d SMs, L2 %d MB; shape %s: n_kv %d rep %d head_dim %d block %d tokens "
           "(%zu bytes), %d blocks per (token, KV head); %d attention CTAs resident\n",
           prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20, name, n_kv, rep, d, bs,
           bb, n_ent, resident);

    size_t copy_bytes = 1ull << 30;
    uint8_t *ca, *cb;
    CK(cudaMalloc((void **)&ca, copy_bytes));
    CK(cudaMalloc((void **)&cb, copy_bytes));
    CK(cudaMemset(ca, 1, copy_bytes));
    double copy_ms = bench_median_ms(
        [&] { CK(cudaMemcpyAsync(cb, ca, copy_bytes, cudaMemcpyDeviceToDevice)); }, 10);
    double copy_gbs = 2.0 * (double)copy_bytes / (copy_ms * 1e-3) / 1e9;
    printf("HBM copy (device to device, 1 GiB): %.3f ms, %.0f GB/s read + written\n", copy_ms,
           copy_gbs);
    cudaFree(ca), cudaFree(cb);

    size_t pool_blocks = (4ull << 30) / bb;
    uint8_t *pool;
    CK(cudaMalloc((void **)&pool, pool_blocks * bb));
    {
        /* Finite bf16 values (0x3c00 = 0.0078125) and zero biases: the data do not matter
         * for the timing, only that nothing overflows. */
        const size_t per = 256;
        std::vector<uint16_t> blk(per * bb / 2, 0x3c00);
        for (size_t k = 0; k < per; k++)
            for (size_t x = kv.bias_off / 2; x < bb / 2; x++) blk[k * bb / 2 + x] = 0;
        for (size_t p = 0; p < pool_blocks; p += per)
            CK(cudaMemcpy(pool + p * bb, blk.data(), std::min(per, pool_blocks - p) * bb,
                          cudaMemcpyHostToDevice));
    }
    size_t host_bytes = 1ull << 30;
    uint8_t *host, *host_dev;
    CK(cudaHostAlloc((void **)&host, host_bytes, cudaHostAllocMapped));
    CK(cudaHostGetDevicePointer((void **)&host_dev, host, 0));
    for (size_t o = 0; o + 1 < host_bytes; o += 2) /* the pool's values, block by block */
        host[o] = 0, host[o + 1] = (o % bb) < kv.bias_off ? 0x3c : 0;
    size_t host_blocks = host_bytes / bb;
    float scale = 1.0f;

    printf("%-6s %-6s %-9s %8s %7s %8s %7s %8s %8s %9s %9s\n", "batch", "split", "reads",
           "ms alone", "of copy", "ms queue", "of copy", "partial", "combine", "miss MB",
           "miss GB/s");
    for (int n : batch_list) {
        int lists = n * n_kv;
        /* n_sets draws of the blocks, launched in turn when queued: one draw read again
         * back to back would be served partly from L2 at small batches. */
        const int n_sets = 4;
        const uint8_t **dptrs[n_sets], **dmiss[n_sets];
        size_t n_miss = 0;
        for (int k = 0; k < n_sets; k++) {
            std::vector<const uint8_t *> ptrs((size_t)lists * (n_sel + 1));
            std::vector<const uint8_t *> miss((size_t)lists * n_sel, NULL);
            n_miss = 0;
            for (int l = 0; l < lists; l++)
                for (int e = 0; e < n_ent; e++) {
                    ptrs[(size_t)l * (n_sel + 1) + e] =
                        pool + (size_t)(rnd() % pool_blocks) * bb;
                    if (e < n_sel && e % miss_every == miss_every - 1) {
                        miss[(size_t)l * n_sel + e] =
                            host_dev + (size_t)(rnd() % host_blocks) * bb;
                        n_miss++;
                    }
                }
            CK(cudaMalloc((void **)&dptrs[k], ptrs.size() * sizeof(void *)));
            CK(cudaMemcpy(dptrs[k], ptrs.data(), ptrs.size() * sizeof(void *),
                          cudaMemcpyHostToDevice));
            CK(cudaMalloc((void **)&dmiss[k], miss.size() * sizeof(void *)));
            CK(cudaMemcpy(dmiss[k], miss.data(), miss.size() * sizeof(void *),
                          cudaMemcpyHostToDevice));
        }
        std::vector<int32_t> ne(lists, n_ent), slot(n), pos(n, n_sel * bs + bs - 1);
        for (int s = 0; s < n; s++) slot[s] = s;
        int32_t *dne, *dslot, *dpos;
        float *dq, *dout, *dpart;
        int ld = (n_kv * rep + 2 * n_kv) * d;
        CK(cudaMalloc((void **)&dne, lists * sizeof(int32_t)));
        CK(cudaMemcpy(dne, ne.data(), lists * sizeof(int32_t), cudaMemcpyHostToDevice));
        CK(cudaMalloc((void **)&dslot, n * sizeof(int32_t)));
        CK(cudaMemcpy(dslot, slot.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice));
        CK(cudaMalloc((void **)&dpos, n * sizeof(int32_t)));
        CK(cudaMemcpy(dpos, pos.data(), n * sizeof(int32_t), cudaMemcpyHostToDevice));
        CK(cudaMalloc((void **)&dq, (size_t)n * ld * sizeof(float)));
        CK(cudaMemset(dq, 0, (size_t)n * ld * sizeof(float)));
        CK(cudaMalloc((void **)&dout, (size_t)n * n_kv * rep * d * sizeof(float)));
        CK(cudaMalloc((void **)&dpart, (size_t)lists * n_ent * rep * (d + 2) * sizeof(float)));
        cuda_step st = {dslot, dpos, n};
        double bytes = (double)lists * n_ent * (double)bb;
        int autoc = attention_chunk_for(lists, n_ent, resident);
        int splits[] = {autoc, 1, 2, 3, 4, 8, 16};
        const int n_splits = (int)(sizeof(splits) / sizeof(splits[0]));
        const int rounds = 4 * n_sets; /* launches per queued timing */
        for (int k = 0; k < n_splits; k++) {
            int chunk = splits[k];
            if (k > 0 && chunk == autoc) continue;
            int n_chunks = (n_ent + chunk - 1) / chunk;
            for (int with_miss = 0; with_miss < 2; with_miss++) {
                auto miss_of = [&](int r) { return with_miss ? dmiss[r % n_sets] : NULL; };
                /* alone: one launch pair between the events (the GPU also waits for the
                 * host's launch calls); queued: `rounds` pairs back to back, as in a step's
                 * graph, per pair; then each kernel queued on its own. */
                double ms = bench_median_ms([&] {
                    attention_launch(dout, dpart, dq, ld, dptrs[0], miss_of(0), dne, kv, st,
                                     rep, scale, chunk, n_chunks, 0);
                }, 20);
                double qms = bench_median_ms([&] {
                    for (int r = 0; r < rounds; r++)
                        attention_launch(dout, dpart, dq, ld, dptrs[r % n_sets], miss_of(r),
                                         dne, kv, st, rep, scale, chunk, n_chunks, 0);
                }, 20) / rounds;
                double pms = bench_median_ms([&] {
                    for (int r = 0; r < rounds; r++)
                        attention_partial_launch(dpart, dq, ld, dptrs[r % n_sets], miss_of(r),
                                                 dne, kv, st, rep, scale, chunk, n_chunks, 0);
                }, 20) / rounds;
                double cms = bench_median_ms([&] {
                    for (int r = 0; r < rounds; r++)
                        attention_combine_launch(dout, dpart, kv, n, rep, n_chunks, 0);
                }, 20) / rounds;
                double gbs = bytes / (ms * 1e-3) / 1e9, qgbs = bytes / (qms * 1e-3) / 1e9;
                double mmb = with_miss ? (double)n_miss * bb / 1e6 : 0.0;
                char split[16];
                snprintf(split, sizeof(split), "%d%s", chunk, k == 0 ? " auto" : "");
                printf("%-6d %-6s %-9s %8.4f %6.1f%% %8.4f %6.1f%% %8.4f %8.4f %9.1f", n, split,
                       with_miss ? "w/ misses" : "pool", ms, 100.0 * gbs / copy_gbs, qms,
                       100.0 * qgbs / copy_gbs, pms, cms, mmb);
                if (with_miss) printf(" %9.1f", mmb * 1e6 / (qms * 1e-3) / 1e9);
                printf("\n");
            }
        }
        for (int k = 0; k < n_sets; k++) cudaFree(dptrs[k]), cudaFree(dmiss[k]);
        cudaFree(dne), cudaFree(dslot), cudaFree(dpos);
        cudaFree(dq), cudaFree(dout), cudaFree(dpart);
    }
    cudaFreeHost(host);
    cudaFree(pool);
    return 0;
}
