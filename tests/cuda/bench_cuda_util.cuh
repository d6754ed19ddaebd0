/* bench_cuda_util: what the single-kernel benchmarks (bench_cuda_attention, bench_cuda_select)
 * share: a CUDA check that exits with the program's name, the median time of a launch
 * sequence, and the model and batch-size list of their command line. The including file defines
 * BENCH_NAME (a string literal) first. */
#ifndef NOSA_BENCH_CUDA_UTIL_CUH
#define NOSA_BENCH_CUDA_UTIL_CUH
#include <algorithm>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include <cuda_runtime.h>

extern "C" {
#include "model.h"
#include "parse.h"
}

#define CK(call)                                                                            \
    do {                                                                                    \
        cudaError_t e_ = (call);                                                            \
        if (e_ != cudaSuccess) {                                                            \
            fprintf(stderr, "%s: %s:%d: %s: %s\n", BENCH_NAME, __FILE__, __LINE__, #call,   \
                    cudaGetErrorString(e_));                                                \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

/* Median of `reps` timed runs of f (CUDA events on the default stream), in ms, after one
 * untimed warm-up run; before() runs ahead of each, untimed (e.g. overwriting the L2). */
template <typename F, typename B> static double bench_median_ms(F f, int reps, B before)
{
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    before();
    f();
    std::vector<double> t;
    for (int r = 0; r < reps; r++) {
        before();
        CK(cudaEventRecord(a));
        f();
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms);
    }
    CK(cudaGetLastError());
    cudaEventDestroy(a), cudaEventDestroy(b);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

template <typename F> static double bench_median_ms(F f, int reps)
{
    return bench_median_ms(f, reps, [] {});
}

/* The built-in model config `name` into *mc; prints the error and returns -1 on an unknown
 * name. */
static int bench_model_config(const char *name, struct nosa_model_config *mc)
{
    char err[256];
    if (nosa_model_config_builtin(name, mc, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: model: %s\n", BENCH_NAME, err);
        return -1;
    }
    return 0;
}

/* Comma-separated batch sizes (1..4096) into out; prints the error and returns -1 on a bad
 * list. */
static int bench_parse_batches(const char *s, std::vector<int> *out)
{
    char list[256], err[256];
    if (snprintf(list, sizeof(list), "%s", s) >= (int)sizeof(list)) {
        fprintf(stderr, "%s: batch list longer than %zu bytes\n", BENCH_NAME, sizeof(list));
        return -1;
    }
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        long n = 0;
        if (nosa_parse_long(tok, 1, 4096, &n, err, sizeof(err)) != 0) {
            fprintf(stderr, "%s: batch '%s': %s\n", BENCH_NAME, tok, err);
            return -1;
        }
        out->push_back((int)n);
    }
    if (out->empty()) {
        fprintf(stderr, "%s: empty batch list\n", BENCH_NAME);
        return -1;
    }
    return 0;
}
#endif
