/* backend_config.c: the checks of a backend configuration that every backend shares
 * (nosa_backend_config_check in backend.h), so both refuse the same input with the same
 * words; what only one backend refuses stays in it. */
#include <errno.h>
#include <stdint.h>

#include "backend.h"
#include "log.h"

int nosa_backend_config_check(const struct nosa_model *model,
                              const struct nosa_backend_config *cfg, const char *backend,
                              size_t arena_align, char *err, size_t errlen)
{
    const struct nosa_model_config *mc = &model->cfg;
    int rc = nosa_model_config_validate(mc, err, errlen);
    if (rc) return rc;
    if (cfg->mode != NOSA_ATTN_DENSE && cfg->mode != NOSA_ATTN_INFLLMV2 &&
        cfg->mode != NOSA_ATTN_NOSA) {
        nosa_set_error(err, errlen, "%s backend: unknown attention mode %d", backend,
                       (int)cfg->mode);
        return -EINVAL;
    }
    if (cfg->max_seqs < 1 || cfg->max_context < 1 || cfg->max_context > mc->max_position) {
        nosa_set_error(err, errlen,
                       "%s backend: max_seqs = %d must be >= 1 and max_context = %d in [1, %d]",
                       backend, cfg->max_seqs, cfg->max_context, mc->max_position);
        return -EINVAL;
    }
    if (cfg->offload && !cfg->arena) {
        nosa_set_error(err, errlen, "%s backend: offload needs a host arena", backend);
        return -EINVAL;
    }
    if (!cfg->arena) return 0;
    const struct nosa_kv_geometry *g = &cfg->arena->geom;
    if (g->n_layers != (uint32_t)mc->n_layers || g->n_kv_heads != (uint32_t)mc->n_kv_heads ||
        g->block_size != (uint32_t)mc->sparse.block_size ||
        g->head_dim != (uint32_t)mc->head_dim || g->dtype != NOSA_KV_DTYPE_BF16) {
        nosa_set_error(err, errlen,
                       "%s backend: arena geometry (layers %u, kv heads %u, block %u, "
                       "head_dim %u, dtype %u) does not match the model (%d, %d, %d, %d, bf16)",
                       backend, g->n_layers, g->n_kv_heads, g->block_size, g->head_dim,
                       g->dtype, mc->n_layers, mc->n_kv_heads, mc->sparse.block_size,
                       mc->head_dim);
        return -EINVAL;
    }
    if (!cfg->arena->base || (uintptr_t)cfg->arena->base % arena_align != 0) {
        nosa_set_error(err, errlen,
                       "%s backend: the arena is not mapped, or its base %p is not %zu-byte "
                       "aligned",
                       backend, (void *)cfg->arena->base, arena_align);
        return -EINVAL;
    }
    return 0;
}
