/* model_config.c: the built-in configurations ("tiny", "1b"), validation of any configuration,
 * and the attention mode names. Every number of the built-ins is explained in docs/MODEL.md. */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "log.h"
#include "model.h"

/* Bounds that keep every size product of validate()d configurations far from overflow
 * (vocab * hidden < 2^45 floats) while allowing any real model. */
#define CFG_MAX_VOCAB (1 << 22)
#define CFG_MAX_HIDDEN (1 << 16)
#define CFG_MAX_INTERMEDIATE (1 << 18)
#define CFG_MAX_HEADS 1024
#define CFG_MAX_HEAD_DIM 1024
#define CFG_MAX_POSITION (1 << 24)
#define CFG_MAX_BLOCK 4096
#define CFG_MAX_BUDGET 65536

static const char *const g_mode_names[] = {
    [NOSA_ATTN_DENSE] = "dense",
    [NOSA_ATTN_INFLLMV2] = "infllmv2",
    [NOSA_ATTN_NOSA] = "nosa",
};

const char *nosa_attn_mode_name(enum nosa_attn_mode m)
{
    if ((unsigned)m >= sizeof(g_mode_names) / sizeof(g_mode_names[0])) return "unknown";
    return g_mode_names[m];
}

int nosa_attn_mode_parse(const char *s, enum nosa_attn_mode *out)
{
    if (!s) return -EINVAL;
    for (size_t i = 0; i < sizeof(g_mode_names) / sizeof(g_mode_names[0]); i++) {
        if (strcmp(s, g_mode_names[i]) == 0) {
            *out = (enum nosa_attn_mode)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* tiny: small enough that a unit test runs the whole model in microseconds per token, with
 * sparse settings so small that contexts of ~100 tokens already select, evict and offload.
 * Sparse ratios as in the reference: block = 4 * stride, kernel = 2 * stride. */
static const struct nosa_model_config g_cfg_tiny = {
    .vocab_size = 512,
    .hidden_size = 64,
    .intermediate_size = 128,
    .n_layers = 2,
    .n_heads = 4,
    .n_kv_heads = 2,
    .head_dim = 16,
    .max_position = 4096,
    .rope_theta = 10000.0f,
    .rms_eps = 1e-6f,
    .attention_bias = 0,
    .tie_word_embeddings = 0,
    .bos_token_id = 256,
    .eos_token_id = 257,
    .sparse = {
        .block_size = 8,
        .budget_blocks = 10,
        .query_aware_blocks = 6,
        .compress_kernel = 4,
        .compress_stride = 2,
        .window_blocks = 2,
        .sink_blocks = 1,
    },
};

/* 1b: the paper's 1B shape as far as the reference kernels pin it (head_dim 128, 2 KV heads,
 * 16 query heads), the rest Llama-3.2-1B-like; see docs/MODEL.md for each choice. */
static const struct nosa_model_config g_cfg_1b = {
    .vocab_size = 73448,
    .hidden_size = 2048,
    .intermediate_size = 8192,
    .n_layers = 16,
    .n_heads = 16,
    .n_kv_heads = 2,
    .head_dim = 128,
    .max_position = 131072,
    .rope_theta = 500000.0f,
    .rms_eps = 1e-5f,
    .attention_bias = 0,
    .tie_word_embeddings = 1,
    .bos_token_id = 256, /* after the 256 byte tokens, as in tiny (docs/MODEL.md) */
    .eos_token_id = 257,
    .sparse = {
        .block_size = 64,
        .budget_blocks = 64,
        .query_aware_blocks = 33,
        .compress_kernel = 32,
        .compress_stride = 16,
        .window_blocks = 16,
        .sink_blocks = 1,
    },
};

int nosa_model_config_builtin(const char *name, struct nosa_model_config *out, char *err,
                              size_t errlen)
{
    if (name && strcmp(name, "tiny") == 0) {
        *out = g_cfg_tiny;
        return 0;
    }
    if (name && strcmp(name, "1b") == 0) {
        *out = g_cfg_1b;
        return 0;
    }
    nosa_set_error(err, errlen, "unknown built-in model configuration '%s' (known: tiny, 1b)",
                   name ? name : "(null)");
    return -EINVAL;
}

static int check_range(const char *what, long v, long lo, long hi, char *err, size_t errlen)
{
    if (v < lo || v > hi) {
        nosa_set_error(err, errlen, "%s = %ld is out of range [%ld, %ld]", what, v, lo, hi);
        return -EINVAL;
    }
    return 0;
}

static int validate_sparse(const struct nosa_sparse_config *s, char *err, size_t errlen)
{
    int rc;
    if ((rc = check_range("block_size", s->block_size, 1, CFG_MAX_BLOCK, err, errlen)) ||
        (rc = check_range("compress_stride", s->compress_stride, 1, CFG_MAX_BLOCK, err,
                          errlen)) ||
        (rc = check_range("compress_kernel", s->compress_kernel, 1, CFG_MAX_BLOCK, err,
                          errlen)) ||
        (rc = check_range("sink_blocks", s->sink_blocks, 0, CFG_MAX_BUDGET, err, errlen)) ||
        (rc = check_range("window_blocks", s->window_blocks, 0, CFG_MAX_BUDGET, err, errlen)) ||
        (rc = check_range("budget_blocks", s->budget_blocks, 1, CFG_MAX_BUDGET, err, errlen)))
        return rc;
    /* Compressed keys tile blocks exactly, so a block's score is a max over whole compressed
     * keys (the reference's 64/32/16 pooling window 5, stride 4, padding 1 generalises to
     * window block/stride + kernel/stride - 1, stride block/stride, padding kernel/stride - 1). */
    if (s->block_size % s->compress_stride != 0) {
        nosa_set_error(err, errlen, "block_size %d is not a multiple of compress_stride %d",
                       s->block_size, s->compress_stride);
        return -EINVAL;
    }
    if (s->compress_kernel % s->compress_stride != 0) {
        nosa_set_error(err, errlen, "compress_kernel %d is not a multiple of compress_stride %d",
                       s->compress_kernel, s->compress_stride);
        return -EINVAL;
    }
    if (s->compress_kernel > s->block_size) {
        nosa_set_error(err, errlen, "compress_kernel %d exceeds block_size %d",
                       s->compress_kernel, s->block_size);
        return -EINVAL;
    }
    /* Forced blocks (sink, window, the current block) belong to the query-aware share, which
     * belongs to the budget. */
    long forced = (long)s->sink_blocks + s->window_blocks + 1;
    if (s->query_aware_blocks < forced || s->query_aware_blocks > s->budget_blocks) {
        nosa_set_error(err, errlen,
                       "query_aware_blocks = %d must hold the %ld forced blocks (sink %d + "
                       "window %d + current 1) and not exceed budget_blocks %d",
                       s->query_aware_blocks, forced, s->sink_blocks, s->window_blocks,
                       s->budget_blocks);
        return -EINVAL;
    }
    return 0;
}

int nosa_model_config_validate(const struct nosa_model_config *c, char *err, size_t errlen)
{
    int rc;
    if ((rc = check_range("vocab_size", c->vocab_size, 1, CFG_MAX_VOCAB, err, errlen)) ||
        (rc = check_range("hidden_size", c->hidden_size, 1, CFG_MAX_HIDDEN, err, errlen)) ||
        (rc = check_range("intermediate_size", c->intermediate_size, 1, CFG_MAX_INTERMEDIATE,
                          err, errlen)) ||
        (rc = check_range("num_hidden_layers", c->n_layers, 1, NOSA_MAX_LAYERS, err, errlen)) ||
        (rc = check_range("num_attention_heads", c->n_heads, 1, CFG_MAX_HEADS, err, errlen)) ||
        (rc = check_range("num_key_value_heads", c->n_kv_heads, 1, c->n_heads, err, errlen)) ||
        (rc = check_range("head_dim", c->head_dim, 2, CFG_MAX_HEAD_DIM, err, errlen)) ||
        (rc = check_range("max_position_embeddings", c->max_position, 1, CFG_MAX_POSITION, err,
                          errlen)) ||
        (rc = check_range("attention_bias", c->attention_bias, 0, 1, err, errlen)) ||
        (rc = check_range("tie_word_embeddings", c->tie_word_embeddings, 0, 1, err, errlen)) ||
        (rc = check_range("bos_token_id", c->bos_token_id, -1, c->vocab_size - 1, err,
                          errlen)) ||
        (rc = check_range("eos_token_id", c->eos_token_id, -1, c->vocab_size - 1, err, errlen)))
        return rc;
    if (c->n_heads % c->n_kv_heads != 0) {
        nosa_set_error(err, errlen,
                       "num_attention_heads %d is not a multiple of num_key_value_heads %d",
                       c->n_heads, c->n_kv_heads);
        return -EINVAL;
    }
    if (c->head_dim % 2 != 0) { /* RoPE rotates pairs */
        nosa_set_error(err, errlen, "head_dim %d must be even (RoPE rotates pairs)",
                       c->head_dim);
        return -EINVAL;
    }
    if ((long)c->n_heads * c->head_dim > CFG_MAX_HIDDEN) {
        nosa_set_error(err, errlen, "num_attention_heads * head_dim = %ld exceeds %d",
                       (long)c->n_heads * c->head_dim, CFG_MAX_HIDDEN);
        return -EINVAL;
    }
    if (!isfinite(c->rope_theta) || !(c->rope_theta > 1.0f)) {
        nosa_set_error(err, errlen, "rope_theta = %g must be finite and > 1",
                       (double)c->rope_theta);
        return -EINVAL;
    }
    if (!isfinite(c->rms_eps) || !(c->rms_eps > 0.0f) || !(c->rms_eps < 1.0f)) {
        nosa_set_error(err, errlen, "rms_norm_eps = %g must be in (0, 1)", (double)c->rms_eps);
        return -EINVAL;
    }
    return validate_sparse(&c->sparse, err, errlen);
}

struct nosa_kv_geometry nosa_model_kv_geometry(const struct nosa_model_config *cfg)
{
    struct nosa_kv_geometry g = {
        .n_layers = (uint32_t)cfg->n_layers,
        .n_kv_heads = (uint32_t)cfg->n_kv_heads,
        .block_size = (uint32_t)cfg->sparse.block_size,
        .head_dim = (uint32_t)cfg->head_dim,
        .dtype = NOSA_KV_DTYPE_BF16,
    };
    return g;
}
