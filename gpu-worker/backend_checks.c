/* backend_checks.c: the checks of a backend's configuration and of each call's slot, tokens
 * and block table that every backend shares (backend.h), so all refuse the same input with
 * the same words; what only one backend refuses stays in it. */
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
    if (cfg->prefetch_blocks < 0 || cfg->prefetch_blocks > NOSA_MAX_PREFETCH_BLOCKS) {
        nosa_set_error(err, errlen, "%s backend: prefetch_blocks = %d not in [0, %d]", backend,
                       cfg->prefetch_blocks, NOSA_MAX_PREFETCH_BLOCKS);
        return -EINVAL;
    }
    if (cfg->prefetch_blocks > 0 && (!cfg->offload || cfg->mode == NOSA_ATTN_DENSE)) {
        nosa_set_error(err, errlen,
                       "%s backend: prefetch_blocks = %d needs offload and a sparse mode (it "
                       "reads ahead by the query-aware block scores)",
                       backend, cfg->prefetch_blocks);
        return -EINVAL;
    }
    if (cfg->offload && !cfg->arena) {
        nosa_set_error(err, errlen, "%s backend: offload needs a host arena", backend);
        return -EINVAL;
    }
    if (!cfg->arena) return 0;
    const struct nosa_kv_geometry *g = &cfg->arena->geom, want = nosa_model_kv_geometry(mc);
    if (!nosa_kv_geometry_equal(g, &want)) {
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

void nosa_backend_limits_init(struct nosa_backend_limits *l, const char *name,
                              const struct nosa_model *model,
                              const struct nosa_backend_config *cfg)
{
    *l = (struct nosa_backend_limits){.name = name,
                                      .max_seqs = cfg->max_seqs,
                                      .max_context = cfg->max_context,
                                      .vocab = model->cfg.vocab_size,
                                      .block_size = model->cfg.sparse.block_size,
                                      .have_arena = cfg->arena != NULL,
                                      .arena_groups = cfg->arena ? cfg->arena->n_groups : 0};
}

int nosa_backend_check_slot(const struct nosa_backend_limits *l, int slot, char *err,
                            size_t errlen)
{
    if (slot < 0 || slot >= l->max_seqs) {
        nosa_set_error(err, errlen, "%s backend: slot %d out of range [0, %d)", l->name, slot,
                       l->max_seqs);
        return -EINVAL;
    }
    return 0;
}

int nosa_backend_check_blocks(const struct nosa_backend_limits *l, int slot, int n_after,
                              const struct nosa_seq_blocks *blocks, char *err, size_t errlen)
{
    if (!l->have_arena) return 0;
    uint32_t need = (uint32_t)(n_after / l->block_size);
    if (need == 0) return 0;
    if (!blocks || !blocks->groups || blocks->n_groups < need) {
        nosa_set_error(err, errlen,
                       "%s backend: slot %d needs %u blocks in its block table, has %u",
                       l->name, slot, need, blocks && blocks->groups ? blocks->n_groups : 0u);
        return -EINVAL;
    }
    for (uint32_t m = 0; m < need; m++) {
        if (blocks->groups[m] >= l->arena_groups) {
            nosa_set_error(err, errlen,
                           "%s backend: slot %d block %u maps to group %u, arena has %llu",
                           l->name, slot, m, blocks->groups[m],
                           (unsigned long long)l->arena_groups);
            return -EINVAL;
        }
    }
    return 0;
}

int nosa_backend_check_append(const struct nosa_backend_limits *l, int slot, const int *lens,
                              const int32_t *tokens, int n, const struct nosa_seq_blocks *blocks,
                              char *err, size_t errlen)
{
    int rc = nosa_backend_check_slot(l, slot, err, errlen);
    if (rc) return rc;
    int len = lens[slot];
    if (n < 1 || !tokens || n > l->max_context - len) {
        nosa_set_error(err, errlen,
                       "%s backend: slot %d holds %d tokens; %d more exceed max_context %d",
                       l->name, slot, len, n, l->max_context);
        return n < 1 || !tokens ? -EINVAL : -ENOSPC;
    }
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= l->vocab) {
            nosa_set_error(err, errlen, "%s backend: token %d out of range [0, %d)", l->name,
                           tokens[i], l->vocab);
            return -EINVAL;
        }
    }
    return nosa_backend_check_blocks(l, slot, len + n, blocks, err, errlen);
}

int nosa_backend_check_prefill(const struct nosa_backend_limits *l, const int *lens,
                               const struct nosa_prefill_req *reqs, int n_reqs, char *err,
                               size_t errlen)
{
    if (n_reqs < 1 || n_reqs > l->max_seqs || !reqs) {
        nosa_set_error(err, errlen, "%s backend: prefill of %d sequences (1 .. %d)", l->name,
                       n_reqs, l->max_seqs);
        return -EINVAL;
    }
    for (int i = 0; i < n_reqs; i++) {
        int rc = nosa_backend_check_append(l, reqs[i].slot, lens, reqs[i].tokens, reqs[i].n,
                                           reqs[i].blocks, err, errlen);
        if (rc) return rc;
        for (int j = 0; j < i; j++) {
            if (reqs[j].slot == reqs[i].slot) {
                nosa_set_error(err, errlen, "%s backend: slot %d appears twice in one prefill",
                               l->name, reqs[i].slot);
                return -EINVAL;
            }
        }
    }
    return 0;
}
