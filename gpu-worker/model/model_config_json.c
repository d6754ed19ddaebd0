/* model_config_json.c: config.json <-> struct nosa_model_config.
 *
 * Reads the Hugging Face Llama keys with Hugging Face's defaults for optional ones, and the
 * sparse settings from a "sparse_config" object named as in InfLLM-V2 / MiniCPM4 configs and
 * thunlp/NOSA's attention module (docs/MODEL.md "config.json"); a config without it (the
 * released NOSA checkpoints hard-code these values) gets the reference values. What we cannot
 * run correctly (rope_scaling, another activation, MLP biases) is refused, not ignored. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "model_internal.h"

/* Reads key as an integer in [lo, hi]; absent keys keep *out (the default) unless required. */
static int get_int(const cJSON *obj, const char *key, int required, long lo, long hi, int *out,
                   const char *where, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (!required) return 0;
        nosa_set_error(err, errlen, "%s: required key '%s' is missing", where, key);
        return -EINVAL;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= (double)lo && d <= (double)hi) || floor(d) != d) {
        nosa_set_error(err, errlen, "%s: key '%s' must be an integer in [%ld, %ld]", where, key,
                       lo, hi);
        return -EINVAL;
    }
    *out = (int)d;
    return 0;
}

static int get_float(const cJSON *obj, const char *key, float *out, const char *where, char *err,
                     size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e30) {
        nosa_set_error(err, errlen, "%s: key '%s' must be a finite number", where, key);
        return -EINVAL;
    }
    *out = (float)v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *obj, const char *key, int *out, const char *where, char *err,
                    size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) {
        nosa_set_error(err, errlen, "%s: key '%s' must be true or false", where, key);
        return -EINVAL;
    }
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return 0;
}

/* bos/eos_token_id: an integer, a list (Llama 3 lists several eos ids: we take the first), or
 * null (none). */
static int get_token_id(const cJSON *obj, const char *key, int *out, const char *where,
                        char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) return 0;
    if (cJSON_IsNull(v)) {
        *out = -1;
        return 0;
    }
    if (cJSON_IsArray(v)) {
        if (cJSON_GetArraySize(v) == 0) {
            *out = -1;
            return 0;
        }
        v = cJSON_GetArrayItem(v, 0);
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(d >= -1.0 && d <= (double)INT_MAX) || floor(d) != d) {
        nosa_set_error(err, errlen, "%s: key '%s' must be a token id, a list of them, or null",
                       where, key);
        return -EINVAL;
    }
    *out = (int)d;
    return 0;
}

static int parse_sparse(const cJSON *root, struct nosa_sparse_config *s, const char *where,
                        char *err, size_t errlen)
{
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(root, "sparse_config");
    if (!sc || cJSON_IsNull(sc)) return 0;
    if (!cJSON_IsObject(sc)) {
        nosa_set_error(err, errlen, "%s: 'sparse_config' must be an object", where);
        return -EINVAL;
    }
    int window_tokens = s->window_blocks * s->block_size;
    int select = s->query_aware_blocks - s->sink_blocks - s->window_blocks;
    int rc;
    if ((rc = get_int(sc, "block_size", 0, 1, 4096, &s->block_size, where, err, errlen)) ||
        (rc = get_int(sc, "topk", 0, 1, 65536, &s->budget_blocks, where, err, errlen)) ||
        (rc = get_int(sc, "kernel_size", 0, 1, 4096, &s->compress_kernel, where, err, errlen)) ||
        (rc = get_int(sc, "kernel_stride", 0, 1, 4096, &s->compress_stride, where, err,
                      errlen)) ||
        (rc = get_int(sc, "init_blocks", 0, 0, 65536, &s->sink_blocks, where, err, errlen)) ||
        (rc = get_int(sc, "window_size", 0, 0, 1 << 26, &window_tokens, where, err, errlen)) ||
        (rc = get_int(sc, "select_blocks", 0, 0, 65536, &select, where, err, errlen)))
        return rc;
    if (window_tokens % s->block_size != 0) {
        nosa_set_error(err, errlen,
                       "%s: sparse_config.window_size %d is not a multiple of block_size %d",
                       where, window_tokens, s->block_size);
        return -EINVAL;
    }
    s->window_blocks = window_tokens / s->block_size;
    /* As the reference counts its query-aware stage: init + local + select blocks. */
    s->query_aware_blocks = s->sink_blocks + s->window_blocks + select;
    return 0;
}

static int check_unsupported(const cJSON *root, const char *where, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (v && !cJSON_IsNull(v)) {
        nosa_set_error(err, errlen, "%s: rope_scaling is not supported (plain RoPE only)", where);
        return -ENOTSUP;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (v && !(cJSON_IsString(v) && strcmp(v->valuestring, "silu") == 0)) {
        nosa_set_error(err, errlen, "%s: hidden_act must be \"silu\" (SwiGLU MLP)", where);
        return -ENOTSUP;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "mlp_bias");
    if (v && !cJSON_IsFalse(v) && !cJSON_IsNull(v)) {
        nosa_set_error(err, errlen, "%s: mlp_bias is not supported", where);
        return -ENOTSUP;
    }
    return 0;
}

int nosa_model_config_from_json(const char *text, size_t len, const char *where,
                                struct nosa_model_config *out, char *err, size_t errlen)
{
    struct nosa_model_config c;
    int rc = nosa_model_config_builtin("1b", &c, err, errlen); /* reference sparse settings */
    if (rc) return rc;
    /* Hugging Face LlamaConfig defaults for the optional keys. */
    c.max_position = 2048;
    c.rope_theta = 10000.0f;
    c.rms_eps = 1e-6f;
    c.attention_bias = 0;
    c.tie_word_embeddings = 0;
    c.bos_token_id = 1;
    c.eos_token_id = 2;
    c.head_dim = 0;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(root)) {
        nosa_set_error(err, errlen, "%s: not a valid JSON object", where);
        rc = -EINVAL;
        goto out;
    }
    if ((rc = get_int(root, "vocab_size", 1, 1, INT_MAX, &c.vocab_size, where, err, errlen)) ||
        (rc = get_int(root, "hidden_size", 1, 1, INT_MAX, &c.hidden_size, where, err, errlen)) ||
        (rc = get_int(root, "intermediate_size", 1, 1, INT_MAX, &c.intermediate_size, where, err,
                      errlen)) ||
        (rc = get_int(root, "num_hidden_layers", 1, 1, INT_MAX, &c.n_layers, where, err,
                      errlen)) ||
        (rc = get_int(root, "num_attention_heads", 1, 1, INT_MAX, &c.n_heads, where, err,
                      errlen)))
        goto out;
    c.n_kv_heads = c.n_heads;
    if ((rc = get_int(root, "num_key_value_heads", 0, 1, INT_MAX, &c.n_kv_heads, where, err,
                      errlen)) ||
        (rc = get_int(root, "head_dim", 0, 1, INT_MAX, &c.head_dim, where, err, errlen)) ||
        (rc = get_int(root, "max_position_embeddings", 0, 1, INT_MAX, &c.max_position, where,
                      err, errlen)) ||
        (rc = get_float(root, "rope_theta", &c.rope_theta, where, err, errlen)) ||
        (rc = get_float(root, "rms_norm_eps", &c.rms_eps, where, err, errlen)) ||
        (rc = get_bool(root, "attention_bias", &c.attention_bias, where, err, errlen)) ||
        (rc = get_bool(root, "tie_word_embeddings", &c.tie_word_embeddings, where, err,
                       errlen)) ||
        (rc = get_token_id(root, "bos_token_id", &c.bos_token_id, where, err, errlen)) ||
        (rc = get_token_id(root, "eos_token_id", &c.eos_token_id, where, err, errlen)) ||
        (rc = parse_sparse(root, &c.sparse, where, err, errlen)) ||
        (rc = check_unsupported(root, where, err, errlen)))
        goto out;
    if (c.head_dim == 0) { /* Hugging Face's default: hidden_size / num_attention_heads */
        if (c.hidden_size % c.n_heads != 0) {
            nosa_set_error(err, errlen,
                           "%s: no head_dim and hidden_size %d is not a multiple of "
                           "num_attention_heads %d",
                           where, c.hidden_size, c.n_heads);
            rc = -EINVAL;
            goto out;
        }
        c.head_dim = c.hidden_size / c.n_heads;
    }
    char verr[256];
    if ((rc = nosa_model_config_validate(&c, verr, sizeof(verr)))) {
        nosa_set_error(err, errlen, "%s: %s", where, verr);
        goto out;
    }
    *out = c;
out:
    cJSON_Delete(root);
    return rc;
}

/* The shortest decimal that reads back as the same float: 1e-05, not 9.99999974737875e-06. */
static double float_shortest(float f)
{
    char buf[32];
    for (int prec = 1; prec < 10; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f) return d;
    }
    return (double)f;
}

char *nosa_model_config_to_json(const struct nosa_model_config *c, const char *torch_dtype)
{
    const struct nosa_sparse_config *s = &c->sparse;
    cJSON *root = cJSON_CreateObject(), *sc = cJSON_CreateObject();
    cJSON *arch = cJSON_CreateStringArray((const char *const[]){"LlamaForCausalLM"}, 1);
    char *text = NULL;
    if (!root || !sc || !arch) goto out;
    cJSON_AddItemToObject(root, "architectures", arch);
    arch = NULL;
    cJSON_AddStringToObject(root, "model_type", "llama");
    cJSON_AddNumberToObject(root, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(root, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(root, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(root, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(root, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(root, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(root, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(root, "max_position_embeddings", c->max_position);
    cJSON_AddNumberToObject(root, "rope_theta", float_shortest(c->rope_theta));
    cJSON_AddNumberToObject(root, "rms_norm_eps", float_shortest(c->rms_eps));
    cJSON_AddBoolToObject(root, "attention_bias", c->attention_bias);
    cJSON_AddBoolToObject(root, "mlp_bias", 0);
    cJSON_AddStringToObject(root, "hidden_act", "silu");
    cJSON_AddBoolToObject(root, "tie_word_embeddings", c->tie_word_embeddings);
    if (c->bos_token_id >= 0) cJSON_AddNumberToObject(root, "bos_token_id", c->bos_token_id);
    else cJSON_AddNullToObject(root, "bos_token_id");
    if (c->eos_token_id >= 0) cJSON_AddNumberToObject(root, "eos_token_id", c->eos_token_id);
    else cJSON_AddNullToObject(root, "eos_token_id");
    cJSON_AddStringToObject(root, "torch_dtype", torch_dtype);
    cJSON_AddNumberToObject(sc, "block_size", s->block_size);
    cJSON_AddNumberToObject(sc, "topk", s->budget_blocks);
    cJSON_AddNumberToObject(sc, "kernel_size", s->compress_kernel);
    cJSON_AddNumberToObject(sc, "kernel_stride", s->compress_stride);
    cJSON_AddNumberToObject(sc, "init_blocks", s->sink_blocks);
    cJSON_AddNumberToObject(sc, "window_size", (double)s->window_blocks * s->block_size);
    cJSON_AddNumberToObject(sc, "select_blocks",
                            s->query_aware_blocks - s->sink_blocks - s->window_blocks);
    cJSON_AddItemToObject(root, "sparse_config", sc);
    sc = NULL;
    text = cJSON_Print(root);
out:
    cJSON_Delete(arch);
    cJSON_Delete(sc);
    cJSON_Delete(root);
    return text;
}
