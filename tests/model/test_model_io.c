/* test_model_io.c: config.json parsing, the safetensors round trip (f32 and bf16, tied,
 * sharded with and without an index), weight matrices used in place in the mapping (copied
 * only when misaligned), streaming random write == init + save, and every
 * loader error path on hand-made corrupt files: each must fail cleanly with an error that
 * names the file and the tensor. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bf16.h"
#include "log.h"
#include "model.h"
#include "model_internal.h"
#include "safetensors.h"
#include "test_util.h"

static char g_root[256];

static void path_in(char *buf, size_t len, const char *dir, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    REQUIRE(f, "open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    REQUIRE(buf && fread(buf, 1, (size_t)n, f) == (size_t)n, "read %s", path);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_all(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    REQUIRE(f && fwrite(data, 1, len, f) == len && fclose(f) == 0, "write %s", path);
}

/* A safetensors file from a header text and a data section. */
static void write_st(const char *path, const char *header, const void *data, size_t data_len)
{
    size_t hl = strlen(header);
    uint64_t h64 = hl;
    FILE *f = fopen(path, "wb");
    REQUIRE(f, "create %s", path);
    REQUIRE(fwrite(&h64, 8, 1, f) == 1 && fwrite(header, 1, hl, f) == hl, "write");
    REQUIRE(data_len == 0 || fwrite(data, 1, data_len, f) == data_len, "write data");
    REQUIRE(fclose(f) == 0, "close");
}

/* A fresh model folder: tiny (with biases, so every tensor kind exists), f32 or bf16. */
static void make_model(const char *dir, const char *dtype, int tied, struct nosa_model **out)
{
    struct nosa_model_config c;
    char err[512];
    REQUIRE(nosa_model_config_builtin("tiny", &c, err, sizeof(err)) == 0, "tiny");
    c.attention_bias = 1;
    c.tie_word_embeddings = tied;
    struct nosa_model *m = NULL;
    REQUIRE(nosa_model_init_random(&c, 7, &m, err, sizeof(err)) == 0, "init: %s", err);
    REQUIRE(nosa_model_save(m, dir, dtype, err, sizeof(err)) == 0, "save: %s", err);
    if (out) *out = m;
    else nosa_model_free(m);
}

/* Compares every tensor of a and b; bf16: b must be a's values rounded to bf16. */
static void compare_models(struct nosa_model *a, struct nosa_model *b, int bf16,
                           const char *what)
{
    struct nosa_tensor_desc *t;
    size_t n;
    CHECK(memcmp(&a->cfg, &b->cfg, sizeof(a->cfg)) == 0, "%s: config", what);
    REQUIRE(nosa_tensor_table_build(&a->cfg, &t, &n) == 0, "table");
    for (size_t i = 0; i < n; i++) {
        struct nosa_weight x = nosa_tensor_get(a, &t[i]), y = nosa_tensor_get(b, &t[i]);
        REQUIRE(x.data && y.data, "%s: %s set", what, t[i].name);
        size_t bad = 0;
        for (size_t j = 0; j < t[i].numel; j++) {
            float xj = nosa_weight_at(x, j), yj = nosa_weight_at(y, j);
            float want = bf16 ? nosa_bf16_to_f32(nosa_f32_to_bf16(xj)) : xj;
            bad += memcmp(&want, &yj, sizeof(float)) != 0;
        }
        CHECK(bad == 0, "%s: %s: %zu values differ", what, t[i].name, bad);
    }
    CHECK((a->lm_head.data == a->tok_embed.data) == (b->lm_head.data == b->tok_embed.data),
          "%s: tying", what);
    free(t);
}

static void test_round_trip(void)
{
    char dir[300], err[512];
    struct nosa_model *a, *b = NULL;
    static const char *dtypes[] = {"f32", "bf16"};
    for (int tied = 0; tied < 2; tied++) {
        for (int d = 0; d < 2; d++) {
            snprintf(dir, sizeof(dir), "%s/rt_%s_%d", g_root, dtypes[d], tied);
            make_model(dir, dtypes[d], tied, &a);
            int rc = nosa_model_load(dir, &b, err, sizeof(err));
            CHECK(rc == 0, "load %s: %s", dir, err);
            if (rc) {
                nosa_model_free(a);
                continue;
            }
            compare_models(a, b, d == 1, dir);
            nosa_model_free(a);
            nosa_model_free(b);
        }
    }
}

/* nosa-mkmodel's streaming writer produces the same bytes as init_random + save. */
static void test_write_random_matches(void)
{
    char d1[300], d2[300], p1[400], p2[400], err[512];
    struct nosa_model_config c;
    struct nosa_model *m;
    REQUIRE(nosa_model_config_builtin("tiny", &c, err, sizeof(err)) == 0, "tiny");
    snprintf(d1, sizeof(d1), "%s/stream", g_root);
    snprintf(d2, sizeof(d2), "%s/whole", g_root);
    REQUIRE(nosa_model_write_random(&c, 99, d1, "bf16", err, sizeof(err)) == 0, "%s", err);
    REQUIRE(nosa_model_init_random(&c, 99, &m, err, sizeof(err)) == 0, "%s", err);
    REQUIRE(nosa_model_save(m, d2, "bf16", err, sizeof(err)) == 0, "%s", err);
    nosa_model_free(m);
    static const char *files[] = {"model.safetensors", "config.json"};
    for (int i = 0; i < 2; i++) {
        size_t n1, n2;
        path_in(p1, sizeof(p1), d1, files[i]);
        path_in(p2, sizeof(p2), d2, files[i]);
        char *a = read_all(p1, &n1), *b = read_all(p2, &n2);
        CHECK(n1 == n2 && memcmp(a, b, n1) == 0, "%s identical", files[i]);
        free(a);
        free(b);
    }
}

/* Loads dir and expects failure with every string of want[] in the message. */
static void expect_load_error(const char *dir, int want_rc, const char *want1, const char *want2,
                              const char *what)
{
    char err[512] = "";
    struct nosa_model *m = NULL;
    int rc = nosa_model_load(dir, &m, err, sizeof(err));
    CHECK(rc == want_rc, "%s: rc %d, want %d (%s)", what, rc, want_rc, err);
    CHECK(m == NULL, "%s: no model on failure", what);
    CHECK(want1 == NULL || strstr(err, want1), "%s: '%s' not in '%s'", what, want1, err);
    CHECK(want2 == NULL || strstr(err, want2), "%s: '%s' not in '%s'", what, want2, err);
    nosa_model_free(m);
}

/* Rewrites dir/model.safetensors with its header passed through mutate (when not NULL) and
 * padded with spaces so the data section (unchanged) starts misalign bytes past a multiple of
 * 8 in the file. */
static void rewrite_header(const char *dir, void (*mutate)(cJSON *root), size_t misalign)
{
    char p[400];
    size_t n;
    path_in(p, sizeof(p), dir, "model.safetensors");
    char *b = read_all(p, &n);
    uint64_t hl;
    memcpy(&hl, b, 8);
    cJSON *root = cJSON_ParseWithLength(b + 8, hl);
    REQUIRE(root, "parse own header");
    if (mutate) mutate(root);
    char *json = cJSON_PrintUnformatted(root);
    REQUIRE(json, "print header");
    size_t len = strlen(json), pad = (misalign + 64 - (8 + len) % 8) % 8;
    char *h = malloc(len + pad + 1);
    REQUIRE(h, "alloc");
    memcpy(h, json, len);
    memset(h + len, ' ', pad);
    h[len + pad] = '\0';
    write_st(p, h, b + 8 + hl, n - 8 - hl);
    free(h);
    free(json);
    cJSON_Delete(root);
    free(b);
}

#define WK0 "model.layers.0.self_attn.k_proj.weight"
#define N0 "model.layers.0.input_layernorm.weight"
#define N1 "model.layers.0.post_attention_layernorm.weight"

static void set_offsets(cJSON *t, double b, double e)
{
    cJSON_ReplaceItemInObject(t, "data_offsets", cJSON_CreateDoubleArray((double[]){b, e}, 2));
}
static void mut_dtype(cJSON *r)
{
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, WK0), "dtype", cJSON_CreateString("F16"));
}
static void mut_shape(cJSON *r)
{
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, WK0), "shape",
                              cJSON_CreateDoubleArray((double[]){64, 32}, 2));
}
static void mut_missing(cJSON *r) { cJSON_DeleteItemFromObject(r, WK0); }
static void mut_beyond(cJSON *r) { set_offsets(cJSON_GetObjectItem(r, N0), 1e9, 1e9 + 256); }
static void mut_overlap(cJSON *r)
{
    cJSON *a = cJSON_GetObjectItem(r, N0), *o = cJSON_GetObjectItem(a, "data_offsets");
    set_offsets(cJSON_GetObjectItem(r, N1), cJSON_GetArrayItem(o, 0)->valuedouble,
                cJSON_GetArrayItem(o, 1)->valuedouble);
}
static void mut_bytes(cJSON *r)
{
    cJSON *o = cJSON_GetObjectItem(cJSON_GetObjectItem(r, N0), "data_offsets");
    set_offsets(cJSON_GetObjectItem(r, N0), cJSON_GetArrayItem(o, 0)->valuedouble,
                cJSON_GetArrayItem(o, 1)->valuedouble - 4);
}
static void mut_negative(cJSON *r)
{
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, N0), "shape",
                              cJSON_CreateDoubleArray((double[]){-64}, 1));
}
static void mut_huge(cJSON *r)
{
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, N0), "shape",
                              cJSON_CreateDoubleArray((double[]){4e15, 4e15, 4e15}, 3));
}
static void mut_o_bias(cJSON *r)
{
    /* An empty o_proj bias at the end of the data: its presence alone must be refused. */
    double end = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, r)
    {
        cJSON *o = cJSON_GetObjectItem(it, "data_offsets");
        if (o && cJSON_GetArrayItem(o, 1)->valuedouble > end)
            end = cJSON_GetArrayItem(o, 1)->valuedouble;
    }
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "dtype", "F32");
    cJSON_AddItemToObject(t, "shape", cJSON_CreateDoubleArray((double[]){0}, 1));
    cJSON_AddItemToObject(t, "data_offsets", cJSON_CreateDoubleArray((double[]){end, end}, 2));
    cJSON_AddItemToObject(r, "model.layers.1.self_attn.o_proj.bias", t);
}
static void mut_not_object(cJSON *r)
{
    cJSON_ReplaceItemInObject(r, N0, cJSON_CreateNumber(3));
}

static int in_mapping(const struct nosa_model *m, const void *p)
{
    const unsigned char *q = p;
    for (size_t i = 0; i < m->storage->n_files; i++) {
        const struct nosa_st_file *f = m->storage->files[i];
        if (q >= f->map && q < f->map + f->map_len) return 1;
    }
    return 0;
}

/* Weight matrices are used in place in the file mapping with the file's dtype, f32 and
 * bf16; vectors too when f32. A file whose data section is misaligned (1 byte: both dtypes)
 * still loads the same values, from copies. */
static void test_in_place(void)
{
    char dir[300], err[512];
    static const char *dtypes[] = {"f32", "bf16"};
    for (int d = 0; d < 2; d++) {
        for (size_t shift = 0; shift < 2; shift++) {
            struct nosa_model *a, *b;
            snprintf(dir, sizeof(dir), "%s/inplace_%s_%zu", g_root, dtypes[d], shift);
            make_model(dir, dtypes[d], 0, &a);
            if (shift) rewrite_header(dir, NULL, shift);
            REQUIRE(nosa_model_load(dir, &b, err, sizeof(err)) == 0, "load %s: %s", dir, err);
            compare_models(a, b, d == 1, dir);
            struct nosa_tensor_desc *t;
            size_t n, copied = 0;
            REQUIRE(nosa_tensor_table_build(&b->cfg, &t, &n) == 0, "table");
            for (size_t i = 0; i < n; i++) {
                struct nosa_weight w = nosa_tensor_get(b, &t[i]);
                int matrix = t[i].ndim == 2, mapped = in_mapping(b, w.data);
                int want_mapped = !shift && (matrix || d == 0);
                enum nosa_weight_dtype want_dtype =
                    matrix && d == 1 ? NOSA_WEIGHT_BF16 : NOSA_WEIGHT_F32;
                CHECK(mapped == want_mapped, "%s: %s: in the mapping %d, want %d", dir,
                      t[i].name, mapped, want_mapped);
                CHECK(w.dtype == want_dtype, "%s: %s: dtype %d, want %d", dir, t[i].name,
                      (int)w.dtype, (int)want_dtype);
                if (!mapped) {
                    const unsigned char *o = b->storage->owned, *q = w.data;
                    CHECK(o && q >= o && q + t[i].numel * (d == 1 && matrix ? 2 : 4) <=
                                             o + b->storage->owned_bytes,
                          "%s: %s: copy inside the owned buffer", dir, t[i].name);
                    copied++;
                }
            }
            CHECK(copied > 0 || b->storage->owned_bytes == 0, "%s: nothing copied, %zu bytes owned",
                  dir, b->storage->owned_bytes);
            free(t);
            nosa_model_free(a);
            nosa_model_free(b);
        }
    }
}

static void test_corrupt_safetensors(void)
{
    static const struct {
        const char *what;
        void (*mutate)(cJSON *);
        int rc;
        const char *msg1, *msg2;
    } cases[] = {
        {"unsupported dtype", mut_dtype, -ENOTSUP, WK0, "F16"},
        {"wrong shape", mut_shape, -EINVAL, WK0, "shape [64, 32]"},
        {"missing tensor", mut_missing, -ENOENT, WK0, "missing"},
        {"offset beyond file", mut_beyond, -EINVAL, N0, "beyond"},
        {"overlap", mut_overlap, -EINVAL, N1, "overlap"},
        {"byte count", mut_bytes, -EINVAL, N0, "shape and dtype say"},
        {"negative dim", mut_negative, -EINVAL, N0, "shape"},
        {"overflowing shape", mut_huge, -EINVAL, N0, "overflowing"},
        {"entry not object", mut_not_object, -EINVAL, N0, "not an object"},
        {"o_proj bias", mut_o_bias, -ENOTSUP, "model.layers.1.self_attn.o_proj.bias",
         "not supported"},
    };
    char dir[300];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(dir, sizeof(dir), "%s/corrupt%zu", g_root, i);
        make_model(dir, "f32", 0, NULL);
        rewrite_header(dir, cases[i].mutate, 0);
        expect_load_error(dir, cases[i].rc, cases[i].msg1, cases[i].msg2, cases[i].what);
        /* Every message also names the file (or folder) at fault. */
        expect_load_error(dir, cases[i].rc, dir, NULL, cases[i].what);
    }
}

static void test_corrupt_files(void)
{
    char dir[300], p[400], err[512];
    size_t n;
    snprintf(dir, sizeof(dir), "%s/files", g_root);
    make_model(dir, "bf16", 0, NULL);
    path_in(p, sizeof(p), dir, "model.safetensors");
    char *orig = read_all(p, &n);

    write_all(p, orig, n / 2); /* truncated data */
    expect_load_error(dir, -EINVAL, "model.safetensors", "truncated", "truncated data");
    write_all(p, orig, 5); /* shorter than the length field */
    expect_load_error(dir, -EINVAL, "model.safetensors", "truncated", "5-byte file");
    write_all(p, orig, 100); /* header cut */
    expect_load_error(dir, -EINVAL, "model.safetensors", "header length", "truncated header");
    write_st(p, "{\"a\": {\"dtype\": \"F32\", ", "", 0); /* bad JSON, length consistent */
    expect_load_error(dir, -EINVAL, "model.safetensors", "not a valid JSON", "bad JSON");
    write_st(p, "[1, 2]", "", 0);
    expect_load_error(dir, -EINVAL, "model.safetensors", "JSON object", "JSON array");
    uint64_t huge = UINT64_MAX;
    memcpy(orig, &huge, 8);
    write_all(p, orig, n);
    expect_load_error(dir, -EINVAL, "model.safetensors", "header length", "huge length");
    free(orig);

    unlink(p);
    expect_load_error(dir, -ENOENT, dir, "no *.safetensors", "no weights");

    path_in(p, sizeof(p), dir, "config.json");
    unlink(p);
    expect_load_error(dir, -ENOENT, "config.json", NULL, "missing config.json");
    write_all(p, "{\"vocab_size\": 512,", 19);
    expect_load_error(dir, -EINVAL, "config.json", "not a valid JSON", "bad config JSON");
    write_all(p, "{\"vocab_size\": 512}", 19);
    expect_load_error(dir, -EINVAL, "config.json", "hidden_size", "missing key");
    expect_load_error("/nonexistent/nosa", -ENOENT, "/nonexistent/nosa/config.json", NULL,
                      "missing dir");
    (void)err;
}

/* Two shards, listed by an index and, separately, found by the directory scan. */
static void test_shards(void)
{
    char dir[300], p[400], err[512];
    size_t n;
    struct nosa_model *a, *b = NULL;
    snprintf(dir, sizeof(dir), "%s/shards", g_root);
    make_model(dir, "f32", 0, &a);
    path_in(p, sizeof(p), dir, "model.safetensors");
    char *file = read_all(p, &n);
    unlink(p);
    uint64_t hl;
    memcpy(&hl, file, 8);
    cJSON *root = cJSON_ParseWithLength(file + 8, hl);
    cJSON *h[2] = {cJSON_CreateObject(), cJSON_CreateObject()};
    cJSON *index = cJSON_CreateObject(), *map = cJSON_AddObjectToObject(index, "weight_map");
    char *data[2] = {malloc(n), malloc(n)};
    size_t used[2] = {0, 0}, k = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        if (strcmp(it->string, "__metadata__") == 0) continue;
        int s = (k++ % 2); /* alternate tensors between the shards */
        cJSON *o = cJSON_GetObjectItem(it, "data_offsets");
        size_t beg = (size_t)cJSON_GetArrayItem(o, 0)->valuedouble;
        size_t len = (size_t)cJSON_GetArrayItem(o, 1)->valuedouble - beg;
        memcpy(data[s] + used[s], file + 8 + hl + beg, len);
        cJSON *t = cJSON_Duplicate(it, 1);
        set_offsets(t, (double)used[s], (double)(used[s] + len));
        cJSON_AddItemToObject(h[s], it->string, t);
        cJSON_AddStringToObject(map, it->string, s ? "model-00002-of-00002.safetensors"
                                                   : "model-00001-of-00002.safetensors");
        used[s] += len;
    }
    for (int s = 0; s < 2; s++) {
        char *txt = cJSON_PrintUnformatted(h[s]);
        snprintf(p, sizeof(p), "%s/model-0000%d-of-00002.safetensors", dir, s + 1);
        write_st(p, txt, data[s], used[s]);
        free(txt);
    }
    /* Without an index: found by the directory scan. */
    CHECK(nosa_model_load(dir, &b, err, sizeof(err)) == 0, "2 shards by scan: %s", err);
    if (b) compare_models(a, b, 0, "shards by scan");
    nosa_model_free(b);
    b = NULL;
    /* With an index, plus a stray file it does not list (ignored). */
    char *txt = cJSON_PrintUnformatted(index);
    path_in(p, sizeof(p), dir, "model.safetensors.index.json");
    write_all(p, txt, strlen(txt));
    free(txt);
    path_in(p, sizeof(p), dir, "stray.safetensors");
    write_all(p, "garbage", 7);
    CHECK(nosa_model_load(dir, &b, err, sizeof(err)) == 0, "2 shards by index: %s", err);
    if (b) compare_models(a, b, 0, "shards by index");
    nosa_model_free(b);
    b = NULL;
    /* An index pointing outside the folder is refused. */
    cJSON_ReplaceItemInObject(map, WK0, cJSON_CreateString("../evil.safetensors"));
    txt = cJSON_PrintUnformatted(index);
    path_in(p, sizeof(p), dir, "model.safetensors.index.json");
    write_all(p, txt, strlen(txt));
    free(txt);
    expect_load_error(dir, -EINVAL, WK0, "bad shard file name", "index escape");
    /* A tensor in two shards is refused. */
    unlink(p);
    path_in(p, sizeof(p), dir, "stray.safetensors");
    char hdr[512];
    snprintf(hdr, sizeof(hdr), "{\"%s\": {\"dtype\": \"F32\", \"shape\": [64], "
             "\"data_offsets\": [0, 256]}}", N0);
    float zeros[64] = {0};
    write_st(p, hdr, zeros, sizeof(zeros));
    expect_load_error(dir, -EINVAL, N0, "is in both", "duplicate across shards");
    cJSON_Delete(root);
    cJSON_Delete(h[0]);
    cJSON_Delete(h[1]);
    cJSON_Delete(index);
    free(data[0]);
    free(data[1]);
    free(file);
    nosa_model_free(a);
}

static int cfg_json(const char *text, struct nosa_model_config *c, char *err, size_t errlen)
{
    return nosa_model_config_from_json(text, strlen(text), "cfg", c, err, errlen);
}

static void test_config_json(void)
{
    struct nosa_model_config c, d;
    char err[512];
    static const char *base = "\"vocab_size\": 300, \"hidden_size\": 64, "
                              "\"intermediate_size\": 96, \"num_hidden_layers\": 2, "
                              "\"num_attention_heads\": 4";
    char text[1024];
    /* Defaults: head_dim = hidden / heads, kv = heads, Hugging Face defaults, reference
     * sparse settings. */
    snprintf(text, sizeof(text), "{%s}", base);
    REQUIRE(cfg_json(text, &c, err, sizeof(err)) == 0, "minimal: %s", err);
    CHECK(c.head_dim == 16 && c.n_kv_heads == 4 && c.max_position == 2048 &&
              c.rope_theta == 10000.0f && c.rms_eps == 1e-6f && c.bos_token_id == 1 &&
              c.eos_token_id == 2 && !c.tie_word_embeddings && !c.attention_bias,
          "defaults");
    CHECK(c.sparse.block_size == 64 && c.sparse.budget_blocks == 64 &&
              c.sparse.query_aware_blocks == 33 && c.sparse.window_blocks == 16,
          "reference sparse defaults");
    snprintf(text, sizeof(text),
             "{%s, \"eos_token_id\": [7, 8], \"bos_token_id\": null, \"head_dim\": 8, "
             "\"sparse_config\": {\"block_size\": 8, \"topk\": 10, \"kernel_size\": 4, "
             "\"kernel_stride\": 2, \"init_blocks\": 1, \"window_size\": 16, "
             "\"select_blocks\": 3}, \"rope_scaling\": null, \"hidden_act\": \"silu\"}",
             base);
    REQUIRE(cfg_json(text, &c, err, sizeof(err)) == 0, "full: %s", err);
    CHECK(c.eos_token_id == 7 && c.bos_token_id == -1 && c.head_dim == 8, "ids, head_dim");
    CHECK(c.sparse.block_size == 8 && c.sparse.budget_blocks == 10 &&
              c.sparse.compress_kernel == 4 && c.sparse.compress_stride == 2 &&
              c.sparse.sink_blocks == 1 && c.sparse.window_blocks == 2 &&
              c.sparse.query_aware_blocks == 6,
          "sparse_config mapping");
    static const struct {
        const char *extra, *msg;
    } bad[] = {
        {"\"rope_scaling\": {\"type\": \"llama3\"}", "rope_scaling"},
        {"\"hidden_act\": \"gelu\"", "hidden_act"},
        {"\"mlp_bias\": true", "mlp_bias"},
        {"\"num_key_value_heads\": 3", "num_key_value_heads"},
        {"\"head_dim\": 2.5", "head_dim"},
        {"\"attention_bias\": 1", "attention_bias"},
        {"\"rope_theta\": \"big\"", "rope_theta"},
        {"\"eos_token_id\": 300", "eos_token_id"},
        {"\"sparse_config\": {\"window_size\": 100}", "window_size"},
        {"\"sparse_config\": 5", "sparse_config"},
        {"\"max_position_embeddings\": 1e300", "max_position_embeddings"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "{%s, %s}", base, bad[i].extra);
        err[0] = '\0';
        CHECK(cfg_json(text, &c, err, sizeof(err)) < 0, "bad %zu accepted", i);
        CHECK(strstr(err, bad[i].msg) && strstr(err, "cfg"), "bad %zu: '%s' not in '%s'", i,
              bad[i].msg, err);
    }
    CHECK(cfg_json("{\"vocab_size\": 300, \"hidden_size\": 65, \"intermediate_size\": 9, "
                   "\"num_hidden_layers\": 1, \"num_attention_heads\": 4}",
                   &c, err, sizeof(err)) == -EINVAL && strstr(err, "head_dim"),
          "head_dim default needs divisibility: %s", err);
    /* to_json -> from_json is the identity on both built-ins. */
    static const char *names[] = {"tiny", "1b"};
    for (int i = 0; i < 2; i++) {
        REQUIRE(nosa_model_config_builtin(names[i], &c, err, sizeof(err)) == 0, "builtin");
        char *j = nosa_model_config_to_json(&c, "bfloat16");
        REQUIRE(j, "to_json");
        CHECK(cfg_json(j, &d, err, sizeof(err)) == 0 && memcmp(&c, &d, sizeof(c)) == 0,
              "%s: json round trip: %s", names[i], err);
        free(j);
    }
}

static void test_save_errors(void)
{
    char err[512], p[400];
    struct nosa_model *m;
    struct nosa_model_config c;
    REQUIRE(nosa_model_config_builtin("tiny", &c, err, sizeof(err)) == 0, "tiny");
    REQUIRE(nosa_model_init_random(&c, 1, &m, err, sizeof(err)) == 0, "init");
    CHECK(nosa_model_save(m, g_root, "f16", err, sizeof(err)) == -EINVAL && strstr(err, "f16"),
          "bad dtype: %s", err);
    path_in(p, sizeof(p), g_root, "plainfile");
    write_all(p, "x", 1);
    CHECK(nosa_model_save(m, p, "f32", err, sizeof(err)) == -ENOTDIR && strstr(err, p),
          "out is a file: %s", err);
    nosa_model_free(m);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(void)
{
    snprintf(g_root, sizeof(g_root), "/tmp/nosa_test_model_io.XXXXXX");
    REQUIRE(mkdtemp(g_root), "mkdtemp");
    g_nosa_log_level = NOSA_LOG_ERROR;
    test_config_json();
    test_round_trip();
    test_in_place();
    test_write_random_matches();
    test_corrupt_safetensors();
    test_corrupt_files();
    test_shards();
    test_save_errors();
    nftw(g_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return test_report("test_model_io");
}
