/* model.h: the model every backend runs. A Llama-style decoder (RMSNorm, RoPE, GQA, SwiGLU)
 * plus NOSA's eviction head, and the sparse-attention settings that go with it.
 *
 * This module owns: the configuration (parsed from config.json), the weights, and the
 * random-weight generator behind nosa-mkmodel. The weight matrices are typed views
 * (struct nosa_weight: f32 or bf16 elements), used in place in the mapped safetensors files;
 * the small vectors (norm weights, biases, A) are host f32 arrays. Backends read the weights;
 * they never free them. Weight matrices use the Hugging Face layout: [out][in], row-major, so
 * y = W x is y[o] = sum_i W[o*in + i] * x[i]. */
#ifndef NOSA_MODEL_H
#define NOSA_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "bf16.h"
#include "kv_geometry.h"

#define NOSA_MAX_LAYERS 256

enum nosa_attn_mode {
    NOSA_ATTN_DENSE = 0,    /* full attention over the whole context */
    NOSA_ATTN_INFLLMV2 = 1, /* query-aware top-k blocks + sink + local window */
    NOSA_ATTN_NOSA = 2,     /* query-aware share, then query-agnostic (eviction head) rest */
};

const char *nosa_attn_mode_name(enum nosa_attn_mode m);
/* Returns 0 and sets *out for "dense", "infllmv2", "nosa"; -EINVAL otherwise. */
int nosa_attn_mode_parse(const char *s, enum nosa_attn_mode *out);

/* Sparse attention settings (NOSA.md "Parameters"); defaults are the reference values. */
struct nosa_sparse_config {
    int block_size;         /* tokens per KV block: 64 */
    int budget_blocks;      /* selected blocks per (seq, layer, KV head): 64 */
    int query_aware_blocks; /* forced + query-chosen, NOSA's first stage: 33 */
    int compress_kernel;    /* keys per compressed key: 32 */
    int compress_stride;    /* tokens between compressed keys: 16 */
    int window_blocks;      /* full blocks before the current one kept as local window: 16 */
    int sink_blocks;        /* leading blocks always selected: 1 */
};

struct nosa_model_config {
    int vocab_size;
    int hidden_size;
    int intermediate_size;
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int max_position; /* context limit in tokens */
    float rope_theta;
    float rms_eps;
    int attention_bias;      /* q/k/v projections and the eviction head's delta have a bias */
    int tie_word_embeddings; /* lm_head shares tok_embed */
    int bos_token_id;        /* -1 when none */
    int eos_token_id;        /* -1 when none */
    struct nosa_sparse_config sparse;
};

/* How a weight matrix's elements are stored. */
enum nosa_weight_dtype {
    NOSA_WEIGHT_F32 = 0,
    NOSA_WEIGHT_BF16 = 1,
};

/* A weight matrix where it lies (in place in a mapped safetensors file, or in the model's own
 * buffer): elements of dtype, aligned to their size, row-major; the shape is the config's.
 * bf16 -> f32 is exact, so reading either dtype as f32 gives the file's values. */
struct nosa_weight {
    const void *data;
    enum nosa_weight_dtype dtype;
};

/* Element i of w as f32. */
static inline float nosa_weight_at(struct nosa_weight w, size_t i)
{
    return w.dtype == NOSA_WEIGHT_BF16 ? nosa_bf16_to_f32(((const nosa_bf16 *)w.data)[i])
                                       : ((const float *)w.data)[i];
}
/* dst[0 .. n) = elements [first, first + n) of w as f32 (row r of [rows][cols]: first =
 * r * cols, n = cols). */
void nosa_weight_read_f32(struct nosa_weight w, size_t first, size_t n, float *dst);

struct nosa_layer_weights {
    const float *attn_norm;  /* [hidden] */
    struct nosa_weight wq;   /* [n_heads*head_dim][hidden] */
    struct nosa_weight wk;   /* [n_kv_heads*head_dim][hidden] */
    struct nosa_weight wv;   /* [n_kv_heads*head_dim][hidden] */
    const float *bq, *bk, *bv; /* biases, NULL unless attention_bias */
    struct nosa_weight wo;   /* [hidden][n_heads*head_dim] */
    const float *mlp_norm;   /* [hidden] */
    struct nosa_weight w_gate; /* [intermediate][hidden] */
    struct nosa_weight w_up;   /* [intermediate][hidden] */
    struct nosa_weight w_down; /* [hidden][intermediate] */
    /* Eviction head: cis[h] = A[h] * softplus(delta(v))[h], v = all KV heads' values. */
    struct nosa_weight evict_delta_w; /* [n_kv_heads][n_kv_heads*head_dim] */
    const float *evict_delta_b; /* [n_kv_heads], NULL unless attention_bias */
    const float *evict_A;       /* [n_kv_heads] */
};

struct nosa_model_storage; /* private: mappings and the model's own buffer */

struct nosa_model {
    struct nosa_model_config cfg;
    struct nosa_weight tok_embed; /* [vocab][hidden] */
    const float *final_norm;      /* [hidden] */
    struct nosa_weight lm_head;   /* [vocab][hidden]; the same view as tok_embed when tied */
    struct nosa_layer_weights layers[NOSA_MAX_LAYERS];
    struct nosa_model_storage *storage;
};

/* Named built-in configurations for nosa-mkmodel: "tiny" (unit tests) and "1b" (benchmarks,
 * the paper's 1B shape). Returns -EINVAL for an unknown name. */
int nosa_model_config_builtin(const char *name, struct nosa_model_config *out, char *err,
                              size_t errlen);
/* Checks every field for range and consistency (heads divide, head_dim even, ...). */
int nosa_model_config_validate(const struct nosa_model_config *cfg, char *err, size_t errlen);
/* The KV block geometry of a model (bf16 K and V): what its kv-host arena must have. */
struct nosa_kv_geometry nosa_model_kv_geometry(const struct nosa_model_config *cfg);

/* Loads DIR/config.json and DIR/ *.safetensors. Returns 0, or a negated errno with err naming
 * the file and tensor at fault. */
int nosa_model_load(const char *dir, struct nosa_model **out, char *err, size_t errlen);
/* Random weights with the documented initialisation (docs/MODEL.md), deterministic in seed. */
int nosa_model_init_random(const struct nosa_model_config *cfg, uint64_t seed,
                           struct nosa_model **out, char *err, size_t errlen);
/* Writes config.json + model.safetensors (dtype "bf16" or "f32") into dir (created). */
int nosa_model_save(const struct nosa_model *m, const char *dir, const char *dtype, char *err,
                    size_t errlen);
void nosa_model_free(struct nosa_model *m);

#endif
