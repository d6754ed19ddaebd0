/* backend_cuda.h: what the cuda backend offers beyond backend.h (nosa_backend_cuda_ops), for
 * its tests and benchmarks.
 *
 * Environment, read at create: NOSA_CUDA_GRAPHS=0 runs every decode step without CUDA graphs
 * (default: a step is captured once its launch shape has repeated, then replayed). */
#ifndef NOSA_BACKEND_CUDA_H
#define NOSA_BACKEND_CUDA_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Decode steps captured as CUDA graphs and steps replayed from one, since create. */
void nosa_backend_cuda_graph_counts(const struct nosa_backend *b, unsigned long *captures,
                                    unsigned long *launches);

#ifdef __cplusplus
}
#endif
#endif
