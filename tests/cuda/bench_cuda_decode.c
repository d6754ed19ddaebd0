/* bench_cuda_decode: times the cuda backend's decode step on a model shape (default "1b"),
 * for the GPU rows of bench/RESULTS.md. Not a ctest (it needs a large GPU and minutes).
 *
 * Contexts are built without a long prefill: the arena is filled with random KV blocks
 * (bf16 keys/values in [-1, 1), eviction scores in [0, 2)) and each sequence is resumed from
 * it (seq_resume rebuilds compressed keys and scores on the GPU), then decoded.
 *
 *   bench_cuda_decode [model=1b] [batch=16] [context=16384] [steps=30] [only=<mode name>]
 * Prints per mode: median step time, tokens/s, blocks transferred and bytes moved per step,
 * the hit rate, the seq_resume time of the whole batch, and the step's time split (the
 * backend's CUDA-event phases, mean per step): GEMM, attention, selection, delta copy, the
 * rest; the delta copy's bandwidth (bytes from the arena / copy time) and the attention's
 * (bytes of the blocks it reads, selected + open, / attention time). */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "bf16.h"
#include "model.h"
#include "parse.h"

static uint64_t g_rng = 88172645463325252ull;
static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 32);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static long arg_long(int argc, char **argv, int i, long def, long max)
{
    long v = def;
    char err[128];
    if (argc > i && nosa_parse_long(argv[i], 1, max, &v, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_cuda_decode: argument %d: %s\n", i, err);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "1b";
    int batch = (int)arg_long(argc, argv, 2, 16, 4096);
    int ctx = (int)arg_long(argc, argv, 3, 16384, 1 << 20);
    int steps = (int)arg_long(argc, argv, 4, 30, 100000);
    const char *only = argc > 5 ? argv[5] : NULL;
    char err[256];
    struct nosa_model_config cfg;
    struct nosa_model *m = NULL;
    if (nosa_model_config_builtin(name, &cfg, err, sizeof(err)) ||
        nosa_model_init_random(&cfg, 7, &m, err, sizeof(err))) {
        fprintf(stderr, "bench_cuda_decode: %s\n", err);
        return 1;
    }
    int bs = cfg.sparse.block_size, nb = ctx / bs, max_ctx = (nb + 1) * bs + steps + bs;
    struct nosa_kv_arena arena = {0};
    arena.geom = (struct nosa_kv_geometry){(uint32_t)cfg.n_layers, (uint32_t)cfg.n_kv_heads,
                                           (uint32_t)bs, (uint32_t)cfg.head_dim,
                                           NOSA_KV_DTYPE_BF16};
    size_t gb = nosa_kv_group_bytes(&arena.geom), bb = nosa_kv_block_bytes(&arena.geom);
    int groups_per_seq = max_ctx / bs + 1;
    arena.n_groups = (uint64_t)batch * (uint64_t)groups_per_seq;
    void *mem = NULL;
    if (posix_memalign(&mem, 4096, gb * arena.n_groups)) {
        fprintf(stderr, "bench_cuda_decode: no memory for the arena\n");
        return 1;
    }
    arena.base = mem;
    /* Random blocks: K, V bf16 in [-1, 1), cis in [0, 2). */
    size_t kvb = nosa_kv_block_kv_bytes(&arena.geom);
    for (uint64_t blk = 0; blk < arena.n_groups * cfg.n_layers * cfg.n_kv_heads; blk++) {
        uint8_t *p = arena.base + blk * bb;
        nosa_bf16 *kv = (nosa_bf16 *)(void *)p;
        for (size_t j = 0; j < kvb; j++)
            kv[j] = nosa_f32_to_bf16((float)(rnd() >> 8) * 0x1p-23f - 1.0f);
        float *cis = (float *)(void *)(p + nosa_kv_block_bias_offset(&arena.geom));
        for (int t = 0; t < bs; t++) cis[t] = (float)(rnd() >> 8) * 0x1p-23f;
    }
    uint32_t *groups = malloc(sizeof(uint32_t) * (size_t)batch * (size_t)groups_per_seq);
    struct nosa_seq_blocks *tabs = malloc(sizeof(*tabs) * (size_t)batch);
    int *slots = malloc(sizeof(int) * (size_t)batch);
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)batch);
    float *logits = malloc(sizeof(float) * (size_t)batch * (size_t)cfg.vocab_size);
    double *t = malloc(sizeof(double) * (size_t)steps);
    if (!groups || !tabs || !slots || !toks || !logits || !t) return 1;
    struct nosa_decode_out out = {.logits = logits}; /* every row's logits, as before */
    for (int s = 0; s < batch; s++) {
        for (int g = 0; g < groups_per_seq; g++)
            groups[s * groups_per_seq + g] = (uint32_t)(s * groups_per_seq + g);
        tabs[s].groups = groups + (size_t)s * groups_per_seq;
        tabs[s].n_groups = (uint32_t)groups_per_seq;
        slots[s] = s;
    }
    static const struct { const char *name; enum nosa_attn_mode mode; int offload; } runs[] = {
        {"dense-resident", NOSA_ATTN_DENSE, 0},
        {"infllmv2-offload", NOSA_ATTN_INFLLMV2, 1},
        {"nosa-resident", NOSA_ATTN_NOSA, 0},
        {"nosa-offload", NOSA_ATTN_NOSA, 1},
    };
    printf("model=%s batch=%d context=%d steps=%d block_bytes=%zu\n", name, batch, nb * bs,
           steps, bb);
    printf("%-18s %8s %9s %10s %10s %8s %8s | %7s %7s %7s %7s %7s | %7s %7s\n", "mode",
           "step_ms", "tok_per_s", "blocks_in", "MB_in/step", "hit_rate", "resume_s", "gemm",
           "attn", "select", "copy", "other", "copy_GBs", "attn_GBs");
    for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
        if (only && strcmp(only, runs[r].name) != 0) continue;
        struct nosa_backend_config bc = {.mode = runs[r].mode, .offload = runs[r].offload,
                                         .max_seqs = batch, .max_context = max_ctx,
                                         .arena = &arena};
        struct nosa_backend *b = NULL;
        if (nosa_backend_cuda_ops.create(m, &bc, &b, err, sizeof(err))) {
            fprintf(stderr, "bench_cuda_decode: %s: %s\n", runs[r].name, err);
            return 1;
        }
        double t_resume = now_s();
        for (int s = 0; s < batch; s++) {
            if (nosa_backend_cuda_ops.seq_resume(b, s, &tabs[s], (uint32_t)nb, err,
                                                 sizeof(err))) {
                fprintf(stderr, "bench_cuda_decode: resume: %s\n", err);
                return 1;
            }
        }
        t_resume = now_s() - t_resume;
        uint64_t in = 0, sel = 0, hits = 0;
        double ph[5] = {0}; /* gemm, attn, select, copy, wall */
        for (int i = 0; i < steps + 3; i++) {
            for (int s = 0; s < batch; s++) toks[s] = (int32_t)(rnd() % 256);
            if (nosa_backend_cuda_ops.decode(b, batch, slots, toks, tabs, &out, err,
                                             sizeof(err))) {
                fprintf(stderr, "bench_cuda_decode: decode: %s\n", err);
                return 1;
            }
            struct nosa_step_stats st;
            nosa_backend_cuda_ops.stats(b, &st);
            if (i < 3) continue; /* warm-up; the first steps also fill the pool */
            t[i - 3] = st.seconds;
            in += st.blocks_transferred, sel += st.blocks_selected, hits += st.block_hits;
            ph[0] += st.gemm_s, ph[1] += st.attn_s, ph[2] += st.select_s, ph[3] += st.copy_s;
            ph[4] += st.seconds;
        }
        qsort(t, (size_t)steps, sizeof(double), cmp_double);
        double med = t[steps / 2];
        /* Blocks attention reads: the selected ones and each head's open block. */
        double att_bytes = ((double)sel + (double)steps * batch * cfg.n_layers * cfg.n_kv_heads) *
                           (double)bb;
        double ms = 1e3 / steps;
        printf("%-18s %8.3f %9.0f %10.1f %10.2f %8.4f %8.2f | %7.3f %7.3f %7.3f %7.3f %7.3f | "
               "%7.1f %7.1f\n",
               runs[r].name, med * 1e3, batch / med, (double)in / steps,
               (double)in * bb / steps / 1e6, sel ? (double)hits / (double)sel : 0.0, t_resume,
               ph[0] * ms, ph[1] * ms, ph[2] * ms, ph[3] * ms,
               (ph[4] - ph[0] - ph[1] - ph[2] - ph[3]) * ms,
               ph[3] > 0 ? (double)in * bb / ph[3] / 1e9 : 0.0,
               ph[1] > 0 ? att_bytes / ph[1] / 1e9 : 0.0);
        nosa_backend_cuda_ops.destroy(b);
    }
    free(groups), free(tabs), free(slots), free(toks), free(logits), free(t), free(mem);
    nosa_model_free(m);
    return 0;
}
