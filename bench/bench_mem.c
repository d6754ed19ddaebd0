/* bench_mem.c: device memory for nosa-bench. Measured with cudaMemGetInfo when the benchmark
 * is built with the CUDA runtime; otherwise (and for the cpu backend) estimated from the model
 * shape and the placement, with the estimate's terms documented below and in docs/BENCH.md. */
#include <errno.h>
#include <math.h>
#include <stdio.h>

#include "bench.h"
#include "log.h"

#ifdef BENCH_HAVE_CUDART
#include <cuda_runtime_api.h>

int bench_mem_device_info(int device, uint64_t *free_b, uint64_t *total_b, char *err,
                          size_t errlen)
{
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) {
        nosa_set_error(err, errlen, "cudaSetDevice(%d): %s", device, cudaGetErrorString(e));
        return -ENODEV;
    }
    size_t f = 0, t = 0;
    e = cudaMemGetInfo(&f, &t);
    if (e != cudaSuccess) {
        nosa_set_error(err, errlen, "cudaMemGetInfo: %s", cudaGetErrorString(e));
        return -EIO;
    }
    *free_b = f;
    *total_b = t;
    return 0;
}

int bench_mem_device_name(int device, char *out, size_t len)
{
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) return -ENODEV;
    snprintf(out, len, "%s", prop.name);
    return 0;
}
#else
int bench_mem_device_info(int device, uint64_t *free_b, uint64_t *total_b, char *err,
                          size_t errlen)
{
    (void)device;
    *free_b = 0;
    *total_b = 0;
    nosa_set_error(err, errlen, "nosa-bench was built without the CUDA runtime");
    return -ENOTSUP;
}

int bench_mem_device_name(int device, char *out, size_t len)
{
    (void)device;
    snprintf(out, len, "none");
    return -ENOTSUP;
}
#endif

/* Per slot, at max_context tokens:
 *   KV blocks: resident: every block of the context; offload: the pool (pool_blocks, default
 *     2 x budget) plus the open block; per (layer, KV head), kv_geometry.h block bytes each.
 *   compressed keys (bf16, one per compress_stride tokens) and the per-token eviction scores
 *     (f32): both stay on the device in every placement (NOSA.md).
 * Scratch buffers proportional to the batch (activations, logits) are left out. */
double bench_mem_estimate_per_seq(const struct nosa_model_config *cfg, int offload,
                                  int pool_blocks, int max_context)
{
    struct nosa_kv_geometry g = nosa_model_kv_geometry(cfg);
    double lh = (double)cfg->n_layers * cfg->n_kv_heads;
    double bs = cfg->sparse.block_size;
    double blocks = offload ? (double)(pool_blocks > 0 ? pool_blocks
                                                       : 2 * cfg->sparse.budget_blocks) + 1.0
                            : ceil(max_context / bs);
    double kv = blocks * lh * (double)nosa_kv_block_bytes(&g);
    double ckeys = ceil((double)max_context / cfg->sparse.compress_stride) * lh *
                   cfg->head_dim * 2.0;
    double cis = (double)max_context * lh * 4.0;
    return kv + ckeys + cis;
}

double bench_mem_estimate_weights(const struct nosa_model_config *cfg)
{
    double h = cfg->hidden_size, q = (double)cfg->n_heads * cfg->head_dim;
    double kv = (double)cfg->n_kv_heads * cfg->head_dim;
    double per_layer = h * q * 2.0 + h * kv * 2.0 + 3.0 * h * cfg->intermediate_size + 2.0 * h +
                       (double)cfg->n_kv_heads * (kv + 2.0);
    double embed = (double)cfg->vocab_size * h * (cfg->tie_word_embeddings ? 1.0 : 2.0);
    return 2.0 * (embed + h + per_layer * cfg->n_layers); /* bf16 */
}
