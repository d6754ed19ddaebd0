/* backend_cuda.h: what the cuda backend offers beyond backend.h (nosa_backend_cuda_ops), for
 * its tests and benchmarks.
 *
 * Environment, read at create: NOSA_CUDA_GRAPHS=0 runs every decode step without CUDA graphs
 * (default: a step is captured once its launch shape has repeated, then replayed);
 * NOSA_CUDA_PIPELINE=K (1..8, default 1: none) splits an offloaded sparse decode step's
 * tokens into at most K chunks of at least NOSA_CUDA_PIPELINE_TOKENS (default 32) tokens, one
 * chunk's selection running while the previous chunk's attention reads its misses (not with
 * the read-ahead, prefetch_blocks > 0). Values out of range fail the create. */
#ifndef NOSA_BACKEND_CUDA_H
#define NOSA_BACKEND_CUDA_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Decode steps captured as CUDA graphs and steps replayed from one, since create. */
void nosa_backend_cuda_graph_counts(const struct nosa_backend *b, unsigned long *captures,
                                    unsigned long *launches);

/* Decode steps that ran the selection/attention pipeline (more than one chunk), since
 * create. */
unsigned long nosa_backend_cuda_pipelined_steps(const struct nosa_backend *b);

#ifdef __cplusplus
}
#endif
#endif
