/* model_load.c: nosa_model_load: a Hugging Face style folder (config.json, one or more
 * *.safetensors, optionally model.safetensors.index.json) into struct nosa_model.
 * Weight matrices, f32 or bf16, are used in place in the mapping; the vectors of a bf16 file
 * (converted to f32) and any matrix the file leaves misaligned (copied, with a warning) go
 * into one owned buffer. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bf16.h"
#include "log.h"
#include "model_internal.h"
#include "safetensors.h"

#define LOAD_MAX_JSON (64u * 1024u * 1024u) /* config.json and the shard index */
#define LOAD_MAX_SHARDS 4096

static int read_text_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        nosa_set_error(err, errlen, "%s: cannot open: %s", path, strerror(e));
        if (fd >= 0) close(fd);
        return -e;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > (off_t)LOAD_MAX_JSON) {
        nosa_set_error(err, errlen, "%s: not a regular file of at most %u bytes", path,
                       LOAD_MAX_JSON);
        close(fd);
        return -EINVAL;
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        nosa_set_error(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            nosa_set_error(err, errlen, "%s: read: %s", path, strerror(e));
            free(buf);
            close(fd);
            return -e;
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcmp(s + n - k, suffix) == 0;
}

/* A shard name from the index must stay inside dir. */
static int shard_name_ok(const char *s)
{
    return s[0] != '.' && !strchr(s, '/') && has_suffix(s, ".safetensors");
}

/* Collects the shard file names (malloc'd strings, sorted, unique) from the index or from
 * the directory listing. */
static int list_shards(const char *dir, char ***names_out, size_t *n_out, char *err,
                       size_t errlen)
{
    char path[4096], **names = NULL;
    size_t n = 0;
    int rc = 0;
    char *text = NULL;
    size_t len;
    cJSON *root = NULL;
    DIR *d = NULL;
    if (!(names = calloc(LOAD_MAX_SHARDS, sizeof(*names)))) return -ENOMEM;
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    if (access(path, F_OK) == 0) {
        if ((rc = read_text_file(path, &text, &len, err, errlen))) goto out;
        root = cJSON_ParseWithLength(text, len);
        const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
        if (!cJSON_IsObject(map)) {
            nosa_set_error(err, errlen, "%s: not JSON with a 'weight_map' object", path);
            rc = -EINVAL;
            goto out;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, map)
        {
            if (!cJSON_IsString(it) || !shard_name_ok(it->valuestring)) {
                nosa_set_error(err, errlen, "%s: tensor '%s' maps to a bad shard file name",
                               path, it->string ? it->string : "?");
                rc = -EINVAL;
                goto out;
            }
            int seen = 0;
            for (size_t i = 0; i < n && !seen; i++) seen = strcmp(names[i], it->valuestring) == 0;
            if (seen) continue;
            if (n == LOAD_MAX_SHARDS || !(names[n] = strdup(it->valuestring))) {
                nosa_set_error(err, errlen, "%s: too many shards or out of memory", path);
                rc = -ENOMEM;
                goto out;
            }
            n++;
        }
    } else {
        if (!(d = opendir(dir))) {
            rc = -errno;
            nosa_set_error(err, errlen, "%s: cannot open model directory: %s", dir,
                           strerror(errno));
            goto out;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!shard_name_ok(e->d_name)) continue;
            if (n == LOAD_MAX_SHARDS || !(names[n] = strdup(e->d_name))) {
                nosa_set_error(err, errlen, "%s: too many shards or out of memory", dir);
                rc = -ENOMEM;
                goto out;
            }
            n++;
        }
    }
    if (n == 0) {
        nosa_set_error(err, errlen, "%s: no *.safetensors file in the model directory", dir);
        rc = -ENOENT;
        goto out;
    }
    qsort(names, n, sizeof(*names), cmp_str);
out:
    if (d) closedir(d);
    cJSON_Delete(root);
    free(text);
    if (rc) {
        for (size_t i = 0; i < n; i++) free(names[i]);
        free(names);
        return rc;
    }
    *names_out = names;
    *n_out = n;
    return 0;
}

static void format_shape(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t off = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? ", " : "",
                                (long long)shape[i]);
    if (off < len) snprintf(buf + off, len - off, "]");
}

/* Finds desc's tensor in exactly one shard and checks its shape. */
static int find_tensor(const struct nosa_model_storage *s, const char *dir,
                       const struct nosa_tensor_desc *desc, const struct nosa_st_tensor **out,
                       const char **file, char *err, size_t errlen)
{
    const struct nosa_st_tensor *t = NULL;
    for (size_t i = 0; i < s->n_files; i++) {
        const struct nosa_st_tensor *u = nosa_st_file_find(s->files[i], desc->name);
        if (!u) continue;
        if (t) {
            nosa_set_error(err, errlen, "%s: tensor '%s' is in both %s and %s", dir, desc->name,
                           *file, s->files[i]->path);
            return -EINVAL;
        }
        t = u;
        *file = s->files[i]->path;
    }
    if (!t) {
        nosa_set_error(err, errlen, "%s: tensor '%s' (needed by config.json) is missing from "
                       "the %zu safetensors file(s)", dir, desc->name, s->n_files);
        return -ENOENT;
    }
    int ok = t->ndim == desc->ndim && t->shape[0] == desc->shape[0] &&
             (desc->ndim == 1 || t->shape[1] == desc->shape[1]);
    if (!ok) {
        char got[128], want[128];
        format_shape(got, sizeof(got), t->ndim, t->shape);
        format_shape(want, sizeof(want), desc->ndim, desc->shape);
        nosa_set_error(err, errlen, "%s: tensor '%s': shape %s, but config.json needs %s",
                       *file, desc->name, got, want);
        return -EINVAL;
    }
    *out = t;
    return 0;
}

/* A weight matrix is used in place in the mapping, as f32 or bf16, when its data are aligned
 * to its element size (our writer pads the header so the data section starts 8-byte
 * aligned); a vector (norm weight, bias, A) only when it is aligned f32: the backends read
 * vectors as f32 arrays. */
static int in_place(const struct nosa_tensor_desc *d, const struct nosa_st_tensor *t)
{
    size_t align = t->dtype == NOSA_ST_F32 ? _Alignof(float) : _Alignof(nosa_bf16);
    return (uintptr_t)t->data % align == 0 && (d->ndim == 2 || t->dtype == NOSA_ST_F32);
}

/* Bytes t takes in the owned buffer: a misaligned matrix is copied as it is (same dtype), a
 * vector converted to f32; rounded up so every copy starts float-aligned. */
static size_t owned_size(const struct nosa_tensor_desc *d, const struct nosa_st_tensor *t)
{
    if (in_place(d, t)) return 0;
    size_t n = d->ndim == 2 ? t->nbytes : t->numel * sizeof(float);
    return (n + _Alignof(float) - 1) / _Alignof(float) * _Alignof(float);
}

/* The view of t: in place, or its copy at *p (then advanced past it). */
static struct nosa_weight place_tensor(const struct nosa_tensor_desc *d,
                                       const struct nosa_st_tensor *t, unsigned char **p)
{
    struct nosa_weight w = {t->data, t->dtype == NOSA_ST_BF16 ? NOSA_WEIGHT_BF16 : NOSA_WEIGHT_F32};
    if (in_place(d, t)) return w;
    if (d->ndim == 2 || t->dtype == NOSA_ST_F32) {
        memcpy(*p, t->data, t->nbytes);
    } else {
        float *dst = (float *)(void *)*p;
        for (uint64_t i = 0; i < t->numel; i++) {
            nosa_bf16 h; /* t->data may be misaligned */
            memcpy(&h, t->data + 2 * i, sizeof(h));
            dst[i] = nosa_bf16_to_f32(h);
        }
        w.dtype = NOSA_WEIGHT_F32;
    }
    w.data = *p;
    *p += owned_size(d, t);
    return w;
}

/* The reference's o_proj takes a bias when attention_bias is set; model.h has no field for
 * it, so a file that has one is refused rather than run without it. */
static int check_o_proj_bias(const struct nosa_model *m, char *err, size_t errlen)
{
    char name[NOSA_TENSOR_NAME_MAX];
    for (int l = 0; l < m->cfg.n_layers; l++) {
        snprintf(name, sizeof(name), "model.layers.%d.self_attn.o_proj.bias", l);
        for (size_t i = 0; i < m->storage->n_files; i++) {
            if (nosa_st_file_find(m->storage->files[i], name)) {
                nosa_set_error(err, errlen, "%s: tensor '%s': an o_proj bias is not supported",
                               m->storage->files[i]->path, name);
                return -ENOTSUP;
            }
        }
    }
    return 0;
}

static int load_weights(struct nosa_model *m, const char *dir, char *err, size_t errlen)
{
    struct nosa_model_storage *s = m->storage;
    struct nosa_tensor_desc *descs = NULL;
    const struct nosa_st_tensor **found = NULL;
    size_t n = 0, owned = 0, misaligned = 0, in_files = 0;
    const char *first_misaligned = NULL;
    int rc = nosa_tensor_table_build(&m->cfg, &descs, &n);
    if (rc || !(found = calloc(n, sizeof(*found)))) {
        nosa_set_error(err, errlen, "%s: out of memory", dir);
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *file = NULL;
        if ((rc = find_tensor(s, dir, &descs[i], &found[i], &file, err, errlen))) goto out;
        owned += owned_size(&descs[i], found[i]);
        if (descs[i].ndim == 2 && !in_place(&descs[i], found[i]) && !misaligned++)
            first_misaligned = descs[i].name;
    }
    if ((rc = nosa_model_storage_alloc(s, owned))) {
        nosa_set_error(err, errlen, "%s: out of memory copying %zu bytes of weights", dir, owned);
        goto out;
    }
    /* Expected to be rare (files written by other tools); it costs memory, so say so. */
    if (misaligned)
        LOG_WARN("model", "weight matrices not aligned in their file are copied dir=%s "
                 "matrices=%zu first=%s", dir, misaligned, first_misaligned);
    unsigned char *p = s->owned;
    for (size_t i = 0; i < n; i++)
        nosa_tensor_set(m, &descs[i], place_tensor(&descs[i], found[i], &p));
    nosa_model_finish(m);
    if ((rc = check_o_proj_bias(m, err, errlen))) goto out;
    for (size_t i = 0; i < s->n_files; i++) in_files += s->files[i]->n_tensors;
    if (in_files > n)
        LOG_WARN("model", "ignoring tensors the model does not use dir=%s unused=%zu", dir,
                 in_files - n);
out:
    free(found);
    free(descs);
    return rc;
}

int nosa_model_config_load_file(const char *path, struct nosa_model_config *out, char *err,
                                size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    int rc = read_text_file(path, &text, &len, err, errlen);
    if (!rc) rc = nosa_model_config_from_json(text, len, path, out, err, errlen);
    free(text);
    return rc;
}

int nosa_model_load(const char *dir, struct nosa_model **out, char *err, size_t errlen)
{
    char path[4096], **shards = NULL;
    size_t n_shards = 0;
    struct nosa_model_config cfg;
    struct nosa_model *m = NULL;
    int rc;
    if (snprintf(path, sizeof(path), "%s/config.json", dir) >= (int)sizeof(path)) {
        nosa_set_error(err, errlen, "model directory path too long");
        return -ENAMETOOLONG;
    }
    if ((rc = nosa_model_config_load_file(path, &cfg, err, errlen))) goto out;
    if ((rc = nosa_model_alloc(&cfg, &m, err, errlen))) goto out;
    if ((rc = list_shards(dir, &shards, &n_shards, err, errlen))) goto out;
    if (!(m->storage->files = calloc(n_shards, sizeof(*m->storage->files)))) {
        rc = -ENOMEM;
        nosa_set_error(err, errlen, "%s: out of memory", dir);
        goto out;
    }
    for (size_t i = 0; i < n_shards; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, shards[i]);
        if ((rc = nosa_st_file_open(path, &m->storage->files[i], err, errlen))) goto out;
        m->storage->n_files++;
    }
    if ((rc = load_weights(m, dir, err, errlen))) goto out;
    LOG_INFO("model", "loaded dir=%s layers=%d hidden=%d vocab=%d shards=%zu copied_bytes=%zu",
             dir, cfg.n_layers, cfg.hidden_size, cfg.vocab_size, n_shards,
             m->storage->owned_bytes);
    *out = m;
    m = NULL;
out:
    for (size_t i = 0; i < n_shards; i++) free(shards[i]);
    free(shards);
    nosa_model_free(m);
    return rc;
}
