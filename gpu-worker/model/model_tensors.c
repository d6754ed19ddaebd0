/* model_tensors.c: the tensor table (names, shapes, roles) and the fields it fills, reading a
 * weight view as f32, the model's allocation and destruction, and the documented random
 * initialisation (docs/MODEL.md "Initialisation"). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "model_internal.h"
#include "safetensors.h"

/* Hugging Face Llama names, plus the eviction head's as thunlp/NOSA names them (docs/NOSA.md). */
static const char *role_suffix(enum nosa_tensor_role r)
{
    switch (r) {
    case NOSA_TENSOR_EMBED: return "model.embed_tokens.weight";
    case NOSA_TENSOR_FINAL_NORM: return "model.norm.weight";
    case NOSA_TENSOR_LM_HEAD: return "lm_head.weight";
    case NOSA_TENSOR_ATTN_NORM: return "input_layernorm.weight";
    case NOSA_TENSOR_WQ: return "self_attn.q_proj.weight";
    case NOSA_TENSOR_BQ: return "self_attn.q_proj.bias";
    case NOSA_TENSOR_WK: return "self_attn.k_proj.weight";
    case NOSA_TENSOR_BK: return "self_attn.k_proj.bias";
    case NOSA_TENSOR_WV: return "self_attn.v_proj.weight";
    case NOSA_TENSOR_BV: return "self_attn.v_proj.bias";
    case NOSA_TENSOR_WO: return "self_attn.o_proj.weight";
    case NOSA_TENSOR_EVICT_DELTA_W: return "self_attn.delta.weight";
    case NOSA_TENSOR_EVICT_DELTA_B: return "self_attn.delta.bias";
    case NOSA_TENSOR_EVICT_A: return "self_attn.A";
    case NOSA_TENSOR_MLP_NORM: return "post_attention_layernorm.weight";
    case NOSA_TENSOR_GATE: return "mlp.gate_proj.weight";
    case NOSA_TENSOR_UP: return "mlp.up_proj.weight";
    case NOSA_TENSOR_DOWN: return "mlp.down_proj.weight";
    }
    return "?";
}

static void desc_set(struct nosa_tensor_desc *d, enum nosa_tensor_role role, int layer,
                     int64_t rows, int64_t cols, int ndim)
{
    d->role = role;
    d->layer = layer;
    if (layer < 0)
        snprintf(d->name, sizeof(d->name), "%s", role_suffix(role));
    else
        snprintf(d->name, sizeof(d->name), "model.layers.%d.%s", layer, role_suffix(role));
    d->ndim = ndim;
    d->shape[0] = rows;
    d->shape[1] = ndim == 2 ? cols : 1;
    d->numel = (size_t)rows * (size_t)d->shape[1];
}

int nosa_tensor_table_build(const struct nosa_model_config *c, struct nosa_tensor_desc **out,
                            size_t *n_out)
{
    const size_t per_layer = 18;
    struct nosa_tensor_desc *t = calloc(3 + per_layer * (size_t)c->n_layers, sizeof(*t));
    if (!t) return -ENOMEM;
    const int64_t h = c->hidden_size, q = (int64_t)c->n_heads * c->head_dim;
    const int64_t kv = (int64_t)c->n_kv_heads * c->head_dim, ff = c->intermediate_size;
    size_t n = 0;
    desc_set(&t[n++], NOSA_TENSOR_EMBED, -1, c->vocab_size, h, 2);
    for (int l = 0; l < c->n_layers; l++) {
        desc_set(&t[n++], NOSA_TENSOR_ATTN_NORM, l, h, 0, 1);
        desc_set(&t[n++], NOSA_TENSOR_WQ, l, q, h, 2);
        if (c->attention_bias) desc_set(&t[n++], NOSA_TENSOR_BQ, l, q, 0, 1);
        desc_set(&t[n++], NOSA_TENSOR_WK, l, kv, h, 2);
        if (c->attention_bias) desc_set(&t[n++], NOSA_TENSOR_BK, l, kv, 0, 1);
        desc_set(&t[n++], NOSA_TENSOR_WV, l, kv, h, 2);
        if (c->attention_bias) desc_set(&t[n++], NOSA_TENSOR_BV, l, kv, 0, 1);
        desc_set(&t[n++], NOSA_TENSOR_WO, l, h, q, 2);
        desc_set(&t[n++], NOSA_TENSOR_EVICT_DELTA_W, l, c->n_kv_heads, kv, 2);
        if (c->attention_bias) desc_set(&t[n++], NOSA_TENSOR_EVICT_DELTA_B, l, c->n_kv_heads, 0, 1);
        desc_set(&t[n++], NOSA_TENSOR_EVICT_A, l, c->n_kv_heads, 0, 1);
        desc_set(&t[n++], NOSA_TENSOR_MLP_NORM, l, h, 0, 1);
        desc_set(&t[n++], NOSA_TENSOR_GATE, l, ff, h, 2);
        desc_set(&t[n++], NOSA_TENSOR_UP, l, ff, h, 2);
        desc_set(&t[n++], NOSA_TENSOR_DOWN, l, h, ff, 2);
    }
    desc_set(&t[n++], NOSA_TENSOR_FINAL_NORM, -1, h, 0, 1);
    if (!c->tie_word_embeddings) desc_set(&t[n++], NOSA_TENSOR_LM_HEAD, -1, c->vocab_size, h, 2);
    *out = t;
    *n_out = n;
    return 0;
}

/* The field of m that d fills: a matrix is a typed view, a vector an f32 array, so exactly
 * one of the two pointers is set. */
struct tensor_slot {
    struct nosa_weight *matrix;
    const float **vector;
};

static struct tensor_slot tensor_slot(struct nosa_model *m, const struct nosa_tensor_desc *d)
{
    struct nosa_layer_weights *lw = d->layer >= 0 ? &m->layers[d->layer] : NULL;
    struct tensor_slot s = {NULL, NULL};
    switch (d->role) {
    case NOSA_TENSOR_EMBED: s.matrix = &m->tok_embed; break;
    case NOSA_TENSOR_FINAL_NORM: s.vector = &m->final_norm; break;
    case NOSA_TENSOR_LM_HEAD: s.matrix = &m->lm_head; break;
    case NOSA_TENSOR_ATTN_NORM: s.vector = &lw->attn_norm; break;
    case NOSA_TENSOR_WQ: s.matrix = &lw->wq; break;
    case NOSA_TENSOR_BQ: s.vector = &lw->bq; break;
    case NOSA_TENSOR_WK: s.matrix = &lw->wk; break;
    case NOSA_TENSOR_BK: s.vector = &lw->bk; break;
    case NOSA_TENSOR_WV: s.matrix = &lw->wv; break;
    case NOSA_TENSOR_BV: s.vector = &lw->bv; break;
    case NOSA_TENSOR_WO: s.matrix = &lw->wo; break;
    case NOSA_TENSOR_EVICT_DELTA_W: s.matrix = &lw->evict_delta_w; break;
    case NOSA_TENSOR_EVICT_DELTA_B: s.vector = &lw->evict_delta_b; break;
    case NOSA_TENSOR_EVICT_A: s.vector = &lw->evict_A; break;
    case NOSA_TENSOR_MLP_NORM: s.vector = &lw->mlp_norm; break;
    case NOSA_TENSOR_GATE: s.matrix = &lw->w_gate; break;
    case NOSA_TENSOR_UP: s.matrix = &lw->w_up; break;
    case NOSA_TENSOR_DOWN: s.matrix = &lw->w_down; break;
    }
    return s;
}

void nosa_tensor_set(struct nosa_model *m, const struct nosa_tensor_desc *d, struct nosa_weight w)
{
    struct tensor_slot s = tensor_slot(m, d);
    if (s.matrix) *s.matrix = w;
    else *s.vector = w.data; /* the callers convert vectors to f32 */
}

struct nosa_weight nosa_tensor_get(const struct nosa_model *m, const struct nosa_tensor_desc *d)
{
    /* The slot is only read here; tensor_slot takes a non-const model to serve both. */
    struct tensor_slot s = tensor_slot((struct nosa_model *)(uintptr_t)m, d);
    if (s.matrix) return *s.matrix;
    return (struct nosa_weight){*s.vector, NOSA_WEIGHT_F32};
}

void nosa_weight_read_f32(struct nosa_weight w, size_t first, size_t n, float *dst)
{
    for (size_t i = 0; i < n; i++) dst[i] = nosa_weight_at(w, first + i);
}

/* splitmix64: tiny, fast, well mixed; one independent stream per tensor. */
static uint64_t splitmix64_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [-a, a): 24 random bits make an exact float in [0, 1), so the values are
 * bit-identical on every machine (no libm involved). */
static void fill_uniform(float *dst, size_t n, float center, float a, uint64_t *state)
{
    for (size_t i = 0; i < n; i++) {
        float u = (float)(splitmix64_next(state) >> 40) * 0x1p-24f;
        dst[i] = center + a * (2.0f * u - 1.0f);
    }
}

/* U(-a, a) has standard deviation a / sqrt(3). */
static float uniform_half_width(double stddev)
{
    return (float)(stddev * sqrt(3.0));
}

void nosa_tensor_fill_random(const struct nosa_model_config *c, const struct nosa_tensor_desc *d,
                             size_t index, uint64_t seed, float *dst)
{
    uint64_t state = seed ^ ((uint64_t)(index + 1) * 0xD1B54A32D192ED03ull);
    splitmix64_next(&state);
    switch (d->role) {
    case NOSA_TENSOR_EMBED:
        /* Untied: rows of unit RMS, so the token signal is as strong as a layer's output.
         * Tied: the same matrix produces the logits, so 1/sqrt(hidden) keeps them O(1). */
        fill_uniform(dst, d->numel, 0.0f,
                     uniform_half_width(c->tie_word_embeddings ? 1.0 / sqrt(c->hidden_size) : 1.0),
                     &state);
        break;
    case NOSA_TENSOR_ATTN_NORM:
    case NOSA_TENSOR_MLP_NORM:
    case NOSA_TENSOR_FINAL_NORM:
        /* Near 1, but not exactly: a backend that forgets the norm weight fails its tests. */
        fill_uniform(dst, d->numel, 1.0f, uniform_half_width(0.05), &state);
        break;
    case NOSA_TENSOR_BQ:
    case NOSA_TENSOR_BK:
    case NOSA_TENSOR_BV:
    case NOSA_TENSOR_EVICT_DELTA_B:
        fill_uniform(dst, d->numel, 0.0f, uniform_half_width(0.1), &state);
        break;
    case NOSA_TENSOR_EVICT_A:
        /* A in [0.5, 1.5): cis = A * softplus(.) stays O(1) and differs between heads. */
        fill_uniform(dst, d->numel, 1.0f, 0.5f, &state);
        break;
    case NOSA_TENSOR_WQ:
    case NOSA_TENSOR_WK:
    case NOSA_TENSOR_WV:
    case NOSA_TENSOR_WO:
    case NOSA_TENSOR_EVICT_DELTA_W:
    case NOSA_TENSOR_GATE:
    case NOSA_TENSOR_UP:
    case NOSA_TENSOR_DOWN:
    case NOSA_TENSOR_LM_HEAD:
        /* Variance 1/fan_in: an input of unit RMS gives outputs of unit RMS. */
        fill_uniform(dst, d->numel, 0.0f, uniform_half_width(1.0 / sqrt((double)d->shape[1])),
                     &state);
        break;
    }
}

int nosa_model_alloc(const struct nosa_model_config *cfg, struct nosa_model **out, char *err,
                     size_t errlen)
{
    int rc = nosa_model_config_validate(cfg, err, errlen);
    if (rc) return rc;
    struct nosa_model *m = calloc(1, sizeof(*m));
    if (!m || !(m->storage = calloc(1, sizeof(*m->storage)))) {
        free(m);
        nosa_set_error(err, errlen, "out of memory allocating the model");
        return -ENOMEM;
    }
    m->cfg = *cfg;
    *out = m;
    return 0;
}

int nosa_model_storage_alloc(struct nosa_model_storage *s, size_t n)
{
    if (n == 0) return 0;
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0);
    if (p == MAP_FAILED) return -ENOMEM;
    s->owned = p;
    s->owned_bytes = n;
    return 0;
}

void nosa_model_finish(struct nosa_model *m)
{
    if (m->cfg.tie_word_embeddings) m->lm_head = m->tok_embed;
}

int nosa_model_init_random(const struct nosa_model_config *cfg, uint64_t seed,
                           struct nosa_model **out, char *err, size_t errlen)
{
    struct nosa_model *m = NULL;
    struct nosa_tensor_desc *t = NULL;
    size_t n = 0, total = 0;
    int rc = nosa_model_alloc(cfg, &m, err, errlen);
    if (rc) return rc;
    if ((rc = nosa_tensor_table_build(cfg, &t, &n))) goto oom;
    for (size_t i = 0; i < n; i++) total += t[i].numel;
    /* A validated configuration bounds total far below SIZE_MAX / 4. */
    if ((rc = nosa_model_storage_alloc(m->storage, total * sizeof(float)))) goto oom;
    float *p = m->storage->owned;
    for (size_t i = 0; i < n; i++) {
        nosa_tensor_fill_random(cfg, &t[i], i, seed, p);
        nosa_tensor_set(m, &t[i], (struct nosa_weight){p, NOSA_WEIGHT_F32});
        p += t[i].numel;
    }
    nosa_model_finish(m);
    free(t);
    *out = m;
    return 0;
oom:
    nosa_set_error(err, errlen, "out of memory: random model needs %zu floats", total);
    free(t);
    nosa_model_free(m);
    return rc;
}

void nosa_model_free(struct nosa_model *m)
{
    if (!m) return;
    if (m->storage) {
        for (size_t i = 0; i < m->storage->n_files; i++) nosa_st_file_close(m->storage->files[i]);
        free(m->storage->files);
        if (m->storage->owned) munmap(m->storage->owned, m->storage->owned_bytes);
        free(m->storage);
    }
    free(m);
}
