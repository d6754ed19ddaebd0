/* safetensors.c: see safetensors.h. Every length and offset from the file is bounded before
 * it is used; the JSON is parsed by cJSON with an explicit length. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data are little-endian; this reader maps them as host values"
#endif

/* Integers in JSON are doubles in cJSON: exact up to 2^53, which bounds every value we take. */
#define ST_MAX_JSON_INT 9007199254740992.0

const char *nosa_st_dtype_name(enum nosa_st_dtype d)
{
    return d == NOSA_ST_F32 ? "F32" : "BF16";
}

static int json_u64(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > ST_MAX_JSON_INT || floor(d) != d) return -1;
    *out = (uint64_t)d;
    return 0;
}

static int parse_tensor(const char *path, const cJSON *item, uint64_t data_len,
                        struct nosa_st_tensor *t, char *err, size_t errlen)
{
    const char *name = item->string;
    if (!cJSON_IsObject(item)) {
        nosa_set_error(err, errlen, "%s: tensor '%s': entry is not an object", path, name);
        return -EINVAL;
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs)) {
        nosa_set_error(err, errlen,
                       "%s: tensor '%s': needs string 'dtype', arrays 'shape' and 'data_offsets'",
                       path, name);
        return -EINVAL;
    }
    uint64_t elem;
    if (strcmp(dt->valuestring, "F32") == 0) {
        t->dtype = NOSA_ST_F32;
        elem = 4;
    } else if (strcmp(dt->valuestring, "BF16") == 0) {
        t->dtype = NOSA_ST_BF16;
        elem = 2;
    } else {
        nosa_set_error(err, errlen,
                       "%s: tensor '%s': dtype %.32s is not supported (F32 and BF16 are)", path,
                       name, dt->valuestring);
        return -ENOTSUP;
    }
    int nd = cJSON_GetArraySize(shape);
    if (nd < 0 || nd > NOSA_ST_MAX_DIMS) {
        nosa_set_error(err, errlen, "%s: tensor '%s': %d dimensions (at most %d)", path, name, nd,
                       NOSA_ST_MAX_DIMS);
        return -EINVAL;
    }
    t->ndim = nd;
    uint64_t numel = 1;
    int i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape)
    {
        uint64_t v;
        if (json_u64(d, &v) || (v && numel > UINT64_MAX / 8 / v)) {
            nosa_set_error(err, errlen, "%s: tensor '%s': bad or overflowing shape", path, name);
            return -EINVAL;
        }
        t->shape[i++] = (int64_t)v;
        numel *= v;
    }
    uint64_t b, e;
    if (cJSON_GetArraySize(offs) != 2 || json_u64(cJSON_GetArrayItem(offs, 0), &b) ||
        json_u64(cJSON_GetArrayItem(offs, 1), &e) || b > e) {
        nosa_set_error(err, errlen, "%s: tensor '%s': data_offsets must be [begin, end]", path,
                       name);
        return -EINVAL;
    }
    if (e > data_len) {
        nosa_set_error(err, errlen,
                       "%s: tensor '%s': data_offsets [%llu, %llu] beyond the data section "
                       "(%llu bytes; file truncated?)",
                       path, name, (unsigned long long)b, (unsigned long long)e,
                       (unsigned long long)data_len);
        return -EINVAL;
    }
    if (e - b != numel * elem) {
        nosa_set_error(err, errlen,
                       "%s: tensor '%s': %llu bytes at data_offsets, but shape and dtype say %llu",
                       path, name, (unsigned long long)(e - b),
                       (unsigned long long)(numel * elem));
        return -EINVAL;
    }
    t->numel = numel;
    t->nbytes = e - b;
    t->data = (const uint8_t *)(uintptr_t)b; /* offset for now; rebased after sorting */
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct nosa_st_tensor *)a)->name,
                  ((const struct nosa_st_tensor *)b)->name);
}

static int cmp_offset(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)(*(const struct nosa_st_tensor *const *)a)->data;
    uintptr_t y = (uintptr_t)(*(const struct nosa_st_tensor *const *)b)->data;
    return x < y ? -1 : x > y;
}

/* Tensors must not share bytes: a crafted file could otherwise alias two weights. */
static int check_overlaps(const char *path, struct nosa_st_file *f, char *err, size_t errlen)
{
    if (f->n_tensors < 2) return 0;
    const struct nosa_st_tensor **order = malloc(f->n_tensors * sizeof(*order));
    if (!order) {
        nosa_set_error(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    for (size_t i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, f->n_tensors, sizeof(*order), cmp_offset);
    int rc = 0;
    for (size_t i = 1; i < f->n_tensors && !rc; i++) {
        uint64_t prev_end = (uint64_t)(uintptr_t)order[i - 1]->data + order[i - 1]->nbytes;
        if ((uint64_t)(uintptr_t)order[i]->data < prev_end) {
            nosa_set_error(err, errlen, "%s: tensors '%s' and '%s' overlap in the data section",
                           path, order[i - 1]->name, order[i]->name);
            rc = -EINVAL;
        }
    }
    free(order);
    return rc;
}

int nosa_st_parse(const char *path, const char *header, size_t header_len, const uint8_t *data,
                  uint64_t data_len, struct nosa_st_file *f, char *err, size_t errlen)
{
    int rc = -EINVAL;
    cJSON *root = cJSON_ParseWithLength(header, header_len);
    if (!cJSON_IsObject(root)) {
        nosa_set_error(err, errlen, "%s: safetensors header is not a valid JSON object", path);
        goto out;
    }
    size_t n = 0, name_bytes = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        if (!it->string) {
            nosa_set_error(err, errlen, "%s: safetensors header entry without a name", path);
            goto out;
        }
        if (strcmp(it->string, "__metadata__") == 0) continue;
        n++;
        name_bytes += strlen(it->string) + 1;
    }
    f->tensors = calloc(n ? n : 1, sizeof(*f->tensors));
    f->names = malloc(name_bytes ? name_bytes : 1);
    if (!f->tensors || !f->names) {
        nosa_set_error(err, errlen, "%s: out of memory for %zu tensors", path, n);
        rc = -ENOMEM;
        goto out;
    }
    char *np = f->names;
    cJSON_ArrayForEach(it, root)
    {
        if (strcmp(it->string, "__metadata__") == 0) continue;
        struct nosa_st_tensor *t = &f->tensors[f->n_tensors];
        size_t len = strlen(it->string) + 1;
        memcpy(np, it->string, len);
        t->name = np;
        np += len;
        if ((rc = parse_tensor(path, it, data_len, t, err, errlen))) goto out;
        f->n_tensors++;
    }
    if ((rc = check_overlaps(path, f, err, errlen))) goto out;
    qsort(f->tensors, f->n_tensors, sizeof(*f->tensors), cmp_name);
    for (size_t i = 0; i < f->n_tensors; i++) {
        if (i > 0 && strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
            nosa_set_error(err, errlen, "%s: tensor '%s' appears twice", path, f->tensors[i].name);
            rc = -EINVAL;
            goto out;
        }
        f->tensors[i].data = data + (uintptr_t)f->tensors[i].data;
    }
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

int nosa_st_file_open(const char *path, struct nosa_st_file **out, char *err, size_t errlen)
{
    int rc, fd = -1;
    struct stat st;
    struct nosa_st_file *f = calloc(1, sizeof(*f));
    if (!f || !(f->path = strdup(path))) {
        nosa_set_error(err, errlen, "%s: out of memory", path);
        rc = -ENOMEM;
        goto fail;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = -errno;
        nosa_set_error(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 8) {
        nosa_set_error(err, errlen, "%s: truncated safetensors file (%lld bytes, need >= 8)",
                       path, (long long)st.st_size);
        rc = -EINVAL;
        goto fail;
    }
    f->map_len = (size_t)st.st_size;
    /* Prefault in one call: page faults one by one cost more than the read on VMs. */
    f->map = mmap(NULL, f->map_len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        rc = -errno;
        nosa_set_error(err, errlen, "%s: mmap: %s", path, strerror(errno));
        goto fail;
    }
    uint64_t hlen;
    memcpy(&hlen, f->map, 8);
    if (hlen > NOSA_ST_MAX_HEADER || hlen > f->map_len - 8) {
        nosa_set_error(err, errlen,
                       "%s: header length %llu exceeds the file (%zu bytes) or the 100 MiB "
                       "limit: truncated or corrupt header",
                       path, (unsigned long long)hlen, f->map_len);
        rc = -EINVAL;
        goto fail;
    }
    rc = nosa_st_parse(path, (const char *)f->map + 8, (size_t)hlen, f->map + 8 + hlen,
                       f->map_len - 8 - hlen, f, err, errlen);
    if (rc) goto fail;
    close(fd);
    *out = f;
    return 0;
fail:
    if (fd >= 0) close(fd);
    nosa_st_file_close(f);
    return rc;
}

const struct nosa_st_tensor *nosa_st_file_find(const struct nosa_st_file *f, const char *name)
{
    struct nosa_st_tensor key = {.name = name};
    if (!f->n_tensors) return NULL;
    return bsearch(&key, f->tensors, f->n_tensors, sizeof(key), cmp_name);
}

void nosa_st_file_close(struct nosa_st_file *f)
{
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    free(f->tensors);
    free(f->names);
    free(f->path);
    free(f);
}
