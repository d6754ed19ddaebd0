/* test_model_config.c: built-in configurations, validation (one case per rule), attention
 * mode names, and the random initialisation (determinism, documented statistics). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "model.h"
#include "test_util.h"

static void test_builtins(void)
{
    char err[256];
    struct nosa_model_config c;
    CHECK(nosa_model_config_builtin("tiny", &c, err, sizeof(err)) == 0, "tiny");
    CHECK(nosa_model_config_validate(&c, err, sizeof(err)) == 0, "tiny valid: %s", err);
    CHECK(c.vocab_size >= 258 && c.sparse.block_size == 4 * c.sparse.compress_stride &&
              c.sparse.compress_kernel == 2 * c.sparse.compress_stride,
          "tiny ratios");
    CHECK(nosa_model_config_builtin("1b", &c, err, sizeof(err)) == 0, "1b");
    CHECK(nosa_model_config_validate(&c, err, sizeof(err)) == 0, "1b valid: %s", err);
    CHECK(c.head_dim == 128 && c.n_kv_heads == 2 && c.n_heads == 16 && c.hidden_size == 2048,
          "1b shape");
    CHECK(c.sparse.block_size == 64 && c.sparse.budget_blocks == 64 &&
              c.sparse.query_aware_blocks == 33 && c.sparse.compress_kernel == 32 &&
              c.sparse.compress_stride == 16 && c.sparse.window_blocks == 16 &&
              c.sparse.sink_blocks == 1 && c.max_position == 131072,
          "1b sparse reference settings");
    err[0] = 0;
    CHECK(nosa_model_config_builtin("huge", &c, err, sizeof(err)) == -EINVAL, "unknown");
    CHECK(strstr(err, "huge") != NULL, "error names the config: %s", err);
}

struct bad_case {
    const char *what;   /* expected in the error message */
    void (*mutate)(struct nosa_model_config *c);
};

static void m_vocab(struct nosa_model_config *c) { c->vocab_size = 0; }
static void m_hidden(struct nosa_model_config *c) { c->hidden_size = -1; }
static void m_layers(struct nosa_model_config *c) { c->n_layers = NOSA_MAX_LAYERS + 1; }
static void m_kv(struct nosa_model_config *c) { c->n_kv_heads = 3; }
static void m_kv_gt(struct nosa_model_config *c) { c->n_kv_heads = c->n_heads + 1; }
static void m_hd(struct nosa_model_config *c) { c->head_dim = 15; }
static void m_theta(struct nosa_model_config *c) { c->rope_theta = NAN; }
static void m_eps(struct nosa_model_config *c) { c->rms_eps = 0.0f; }
static void m_bos(struct nosa_model_config *c) { c->bos_token_id = c->vocab_size; }
static void m_eos(struct nosa_model_config *c) { c->eos_token_id = -2; }
static void m_bias(struct nosa_model_config *c) { c->attention_bias = 2; }
static void m_block(struct nosa_model_config *c) { c->sparse.block_size = 9; }
static void m_kernel(struct nosa_model_config *c) { c->sparse.compress_kernel = 3; }
static void m_kernel_big(struct nosa_model_config *c)
{
    c->sparse.compress_kernel = 2 * c->sparse.block_size;
}
static void m_qa_small(struct nosa_model_config *c) { c->sparse.query_aware_blocks = 3; }
static void m_qa_big(struct nosa_model_config *c)
{
    c->sparse.query_aware_blocks = c->sparse.budget_blocks + 1;
}
static void m_budget(struct nosa_model_config *c) { c->sparse.budget_blocks = 0; }
static void m_pos(struct nosa_model_config *c) { c->max_position = 0; }

static void test_validate(void)
{
    static const struct bad_case cases[] = {
        {"vocab_size", m_vocab},           {"hidden_size", m_hidden},
        {"num_hidden_layers", m_layers},   {"multiple of num_key_value_heads", m_kv},
        {"num_key_value_heads", m_kv_gt},  {"head_dim", m_hd},
        {"rope_theta", m_theta},           {"rms_norm_eps", m_eps},
        {"bos_token_id", m_bos},           {"eos_token_id", m_eos},
        {"attention_bias", m_bias},        {"compress_stride", m_block},
        {"compress_kernel", m_kernel},     {"exceeds block_size", m_kernel_big},
        {"forced blocks", m_qa_small},     {"query_aware_blocks", m_qa_big},
        {"budget_blocks", m_budget},       {"max_position_embeddings", m_pos},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct nosa_model_config c;
        char err[256] = "";
        REQUIRE(nosa_model_config_builtin("tiny", &c, NULL, 0) == 0, "tiny");
        cases[i].mutate(&c);
        int rc = nosa_model_config_validate(&c, err, sizeof(err));
        CHECK(rc == -EINVAL, "case %zu (%s): rc %d", i, cases[i].what, rc);
        CHECK(strstr(err, cases[i].what) != NULL, "case %zu: '%s' not in '%s'", i,
              cases[i].what, err);
    }
}

static void test_modes(void)
{
    enum nosa_attn_mode m;
    const char *names[] = {"dense", "infllmv2", "nosa"};
    for (int i = 0; i < 3; i++) {
        CHECK(nosa_attn_mode_parse(names[i], &m) == 0 && (int)m == i, "%s", names[i]);
        CHECK(strcmp(nosa_attn_mode_name((enum nosa_attn_mode)i), names[i]) == 0, "%s", names[i]);
    }
    CHECK(nosa_attn_mode_parse("Dense", &m) == -EINVAL, "case-sensitive");
    CHECK(nosa_attn_mode_parse("", &m) == -EINVAL, "empty");
    CHECK(nosa_attn_mode_parse(NULL, &m) == -EINVAL, "NULL");
    CHECK(strcmp(nosa_attn_mode_name((enum nosa_attn_mode)7), "unknown") == 0, "bad enum");
}

static double softplus(double x) { return x > 20 ? x : log1p(exp(x)); }

static void test_init_random(void)
{
    char err[256];
    struct nosa_model_config c;
    struct nosa_model *a = NULL, *b = NULL, *d = NULL;
    REQUIRE(nosa_model_config_builtin("tiny", &c, err, sizeof(err)) == 0, "tiny");
    c.attention_bias = 1;
    REQUIRE(nosa_model_init_random(&c, 42, &a, err, sizeof(err)) == 0, "init: %s", err);
    REQUIRE(nosa_model_init_random(&c, 42, &b, err, sizeof(err)) == 0, "init: %s", err);
    REQUIRE(nosa_model_init_random(&c, 43, &d, err, sizeof(err)) == 0, "init: %s", err);
    const size_t h = (size_t)c.hidden_size, kvd = (size_t)c.n_kv_heads * c.head_dim;
    /* A random model is f32 in its own buffer. */
    CHECK(a->tok_embed.dtype == NOSA_WEIGHT_F32 && a->layers[1].w_down.dtype == NOSA_WEIGHT_F32,
          "f32 weights");
    CHECK(memcmp(a->tok_embed.data, b->tok_embed.data, (size_t)c.vocab_size * h * 4) == 0,
          "same seed");
    CHECK(memcmp(a->layers[1].w_down.data, b->layers[1].w_down.data,
                 h * c.intermediate_size * 4) == 0,
          "same seed, last tensor");
    CHECK(memcmp(a->tok_embed.data, d->tok_embed.data, h * 4) != 0, "other seed differs");
    CHECK(a->lm_head.data != a->tok_embed.data && a->lm_head.data, "untied lm_head");
    for (int l = 0; l < c.n_layers; l++) {
        const struct nosa_layer_weights *w = &a->layers[l];
        CHECK(w->attn_norm && w->wq.data && w->wk.data && w->wv.data && w->wo.data &&
                  w->mlp_norm && w->w_gate.data && w->w_up.data && w->w_down.data &&
                  w->evict_delta_w.data && w->evict_A && w->bq && w->bk && w->bv &&
                  w->evict_delta_b,
              "layer %d: every weight set", l);
    }
    /* Embedding rows: unit RMS (untied). Projection matrix std: 1/sqrt(fan_in). */
    double s2 = 0;
    for (size_t i = 0; i < (size_t)c.vocab_size * h; i++) {
        float e = nosa_weight_at(a->tok_embed, i);
        s2 += e * e;
    }
    CHECK_NEAR(sqrt(s2 / ((double)c.vocab_size * h)), 1.0, 0.02, "embedding rms");
    s2 = 0;
    for (size_t i = 0; i < kvd * h; i++) {
        float e = nosa_weight_at(a->layers[0].wv, i);
        s2 += e * e;
    }
    CHECK_NEAR(sqrt(s2 / (double)(kvd * h)) * sqrt((double)h), 1.0, 0.05, "wv std*sqrt(fan_in)");
    for (size_t i = 0; i < h; i++)
        CHECK(fabsf(a->layers[0].attn_norm[i] - 1.0f) < 0.09f, "norm %zu near 1", i);
    for (int k = 0; k < c.n_kv_heads; k++)
        CHECK(a->layers[0].evict_A[k] >= 0.5f && a->layers[0].evict_A[k] < 1.5f, "A range");

    /* cis of layer 0 over the byte tokens: O(1) and varying across tokens. */
    double cmin = 1e9, cmax = -1e9;
    for (int tok = 0; tok < 256; tok++) {
        float e[64];
        double ss = 0, xn[64], v[32];
        nosa_weight_read_f32(a->tok_embed, (size_t)tok * h, h, e);
        for (size_t i = 0; i < h; i++) ss += (double)e[i] * e[i];
        double r = 1.0 / sqrt(ss / (double)h + c.rms_eps);
        for (size_t i = 0; i < h; i++) xn[i] = e[i] * r * a->layers[0].attn_norm[i];
        for (size_t o = 0; o < kvd; o++) {
            v[o] = a->layers[0].bv[o];
            for (size_t i = 0; i < h; i++)
                v[o] += nosa_weight_at(a->layers[0].wv, o * h + i) * xn[i];
        }
        for (int k = 0; k < c.n_kv_heads; k++) {
            double z = a->layers[0].evict_delta_b[k];
            for (size_t i = 0; i < kvd; i++)
                z += nosa_weight_at(a->layers[0].evict_delta_w, k * kvd + i) * v[i];
            double cis = a->layers[0].evict_A[k] * softplus(z);
            cmin = fmin(cmin, cis);
            cmax = fmax(cmax, cis);
        }
    }
    CHECK(cmin > 0.0 && cmax < 8.0 && cmax - cmin > 0.5, "cis O(1), varying: [%g, %g]", cmin,
          cmax);

    nosa_model_free(a);
    nosa_model_free(b);
    nosa_model_free(d);
    nosa_model_free(NULL);

    /* Tied: lm_head aliases the embedding, which is scaled to 1/sqrt(hidden). */
    c.tie_word_embeddings = 1;
    REQUIRE(nosa_model_init_random(&c, 1, &a, err, sizeof(err)) == 0, "init tied: %s", err);
    CHECK(a->lm_head.data == a->tok_embed.data, "tied");
    nosa_model_free(a);
    c.n_kv_heads = 3;
    CHECK(nosa_model_init_random(&c, 1, &a, err, sizeof(err)) == -EINVAL, "invalid cfg refused");
}

int main(void)
{
    test_builtins();
    test_validate();
    test_modes();
    test_init_random();
    return test_report("test_model_config");
}
