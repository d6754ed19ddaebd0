/* model_save.c: writes a model folder (config.json + model.safetensors) in the layout the
 * loader reads and the released NOSA checkpoints use, streaming one tensor at a time. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bf16.h"
#include "log.h"
#include "model_internal.h"

#define SAVE_CHUNK 65536 /* values converted per fwrite */

static int make_dir(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (mkdir(dir, 0755) == 0) return 0;
    if (errno == EEXIST && stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
    int e = errno == EEXIST ? ENOTDIR : errno;
    nosa_set_error(err, errlen, "%s: cannot create directory: %s", dir, strerror(e));
    return -e;
}

/* The safetensors header: every tensor's dtype, shape and byte range, in table order. */
static char *build_header(const struct nosa_tensor_desc *t, size_t n, size_t elem,
                          const char *st_dtype, size_t *len_out)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    char *text = NULL;
    if (!meta || !cJSON_AddStringToObject(meta, "format", "pt")) goto out;
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_AddObjectToObject(root, t[i].name);
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        if (!o || !shape || !offs || !cJSON_AddStringToObject(o, "dtype", st_dtype)) goto out;
        for (int d = 0; d < t[i].ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += t[i].numel * elem;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    }
    char *json = cJSON_PrintUnformatted(root);
    if (!json) goto out;
    /* Pad with spaces so the data section starts 8-byte aligned (f32 tensors map in place). */
    size_t len = strlen(json), padded = (len + 8 + 7) / 8 * 8 - 8;
    text = malloc(padded + 1);
    if (text) {
        memcpy(text, json, len);
        memset(text + len, ' ', padded - len);
        text[padded] = '\0';
        *len_out = padded;
    }
    free(json);
out:
    cJSON_Delete(root);
    return text;
}

/* Writes n elements of src as bf16 or f32: the bytes as they are when src already has that
 * dtype, else converted in chunks through buf (room for SAVE_CHUNK floats). */
static int write_tensor(FILE *f, struct nosa_weight src, size_t n, int bf16, void *buf)
{
    size_t esz = bf16 ? sizeof(nosa_bf16) : sizeof(float);
    if (src.dtype == (bf16 ? NOSA_WEIGHT_BF16 : NOSA_WEIGHT_F32))
        return fwrite(src.data, esz, n, f) == n ? 0 : -EIO;
    for (size_t i = 0; i < n; i += SAVE_CHUNK) {
        size_t k = n - i < SAVE_CHUNK ? n - i : SAVE_CHUNK;
        for (size_t j = 0; j < k; j++) {
            float v = nosa_weight_at(src, i + j);
            if (bf16) ((nosa_bf16 *)buf)[j] = nosa_f32_to_bf16(v);
            else ((float *)buf)[j] = v;
        }
        if (fwrite(buf, esz, k, f) != k) return -EIO;
    }
    return 0;
}

/* Closes f and renames tmp to final; reports the first write error with its path. */
static int finish_file(FILE *f, int rc, const char *tmp, const char *final, char *err,
                       size_t errlen)
{
    if (fflush(f) != 0 || ferror(f)) rc = rc ? rc : -EIO;
    if (fclose(f) != 0) rc = rc ? rc : -EIO;
    if (!rc && rename(tmp, final) != 0) rc = -errno;
    if (rc) {
        if (!err || !err[0]) nosa_set_error(err, errlen, "%s: write failed: %s", final,
                                            strerror(-rc));
        unlink(tmp);
    }
    return rc;
}

static int write_config(const struct nosa_model_config *cfg, const char *dir, int bf16,
                        char *err, size_t errlen)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof(path), "%s/config.json", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    char *json = nosa_model_config_to_json(cfg, bf16 ? "bfloat16" : "float32");
    if (!json) {
        nosa_set_error(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    FILE *f = fopen(tmp, "w");
    int rc = 0;
    if (!f) {
        rc = -errno;
        nosa_set_error(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
    } else {
        if (fputs(json, f) < 0 || fputc('\n', f) == EOF) rc = -EIO;
        rc = finish_file(f, rc, tmp, path, err, errlen);
    }
    free(json);
    return rc;
}

int nosa_model_write(const struct nosa_model_config *cfg, const char *dir, const char *dtype,
                     nosa_tensor_source_fn get, void *ctx, char *err, size_t errlen)
{
    int bf16, rc;
    if (err && errlen) err[0] = '\0';
    if (dtype && strcmp(dtype, "bf16") == 0) bf16 = 1;
    else if (dtype && strcmp(dtype, "f32") == 0) bf16 = 0;
    else {
        nosa_set_error(err, errlen, "dtype '%s' is not supported (bf16 or f32)",
                       dtype ? dtype : "(null)");
        return -EINVAL;
    }
    if ((rc = nosa_model_config_validate(cfg, err, errlen)) || (rc = make_dir(dir, err, errlen)))
        return rc;
    struct nosa_tensor_desc *t = NULL;
    size_t n = 0, hlen = 0;
    char *header = NULL, path[4096], tmp[4200];
    void *buf = malloc(SAVE_CHUNK * sizeof(float));
    FILE *f = NULL;
    if (!buf || (rc = nosa_tensor_table_build(cfg, &t, &n)) ||
        !(header = build_header(t, n, bf16 ? 2 : 4, bf16 ? "BF16" : "F32", &hlen))) {
        nosa_set_error(err, errlen, "%s: out of memory building the safetensors header", dir);
        rc = -ENOMEM;
        goto out;
    }
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (!(f = fopen(tmp, "wb"))) {
        rc = -errno;
        nosa_set_error(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    uint64_t h64 = hlen; /* little-endian host: checked in safetensors.c */
    if (fwrite(&h64, 8, 1, f) != 1 || fwrite(header, 1, hlen, f) != hlen) rc = -EIO;
    for (size_t i = 0; i < n && !rc; i++) {
        struct nosa_weight src = get(ctx, &t[i], i, err, errlen);
        if (!src.data) rc = -ENOMEM;
        else rc = write_tensor(f, src, t[i].numel, bf16, buf);
    }
    rc = finish_file(f, rc, tmp, path, err, errlen);
    if (!rc) rc = write_config(cfg, dir, bf16, err, errlen);
out:
    free(header);
    free(t);
    free(buf);
    return rc;
}

static struct nosa_weight source_model(void *ctx, const struct nosa_tensor_desc *desc,
                                       size_t index, char *err, size_t errlen)
{
    return nosa_tensor_get(ctx, desc);
}

int nosa_model_save(const struct nosa_model *m, const char *dir, const char *dtype, char *err,
                    size_t errlen)
{
    /* The source callback's context is untyped; source_model only reads through it. */
    return nosa_model_write(&m->cfg, dir, dtype, source_model, (void *)(uintptr_t)m, err, errlen);
}

struct random_source {
    const struct nosa_model_config *cfg;
    uint64_t seed;
    float *scratch;
};

static struct nosa_weight source_random(void *ctx, const struct nosa_tensor_desc *desc,
                                        size_t index, char *err, size_t errlen)
{
    struct random_source *r = ctx;
    nosa_tensor_fill_random(r->cfg, desc, index, r->seed, r->scratch);
    return (struct nosa_weight){r->scratch, NOSA_WEIGHT_F32};
}

int nosa_model_write_random(const struct nosa_model_config *cfg, uint64_t seed, const char *dir,
                            const char *dtype, char *err, size_t errlen)
{
    int rc = nosa_model_config_validate(cfg, err, errlen);
    if (rc) return rc;
    struct nosa_tensor_desc *t = NULL;
    size_t n = 0, max = 0;
    if ((rc = nosa_tensor_table_build(cfg, &t, &n))) return rc;
    for (size_t i = 0; i < n; i++) max = t[i].numel > max ? t[i].numel : max;
    free(t);
    struct random_source src = {.cfg = cfg, .seed = seed, .scratch = malloc(max * sizeof(float))};
    if (!src.scratch) {
        nosa_set_error(err, errlen, "out of memory: %zu floats for the largest tensor", max);
        return -ENOMEM;
    }
    rc = nosa_model_write(cfg, dir, dtype, source_random, &src, err, errlen);
    free(src.scratch);
    return rc;
}
