/* tokenizer.c: see tokenizer.h. */
#include "tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "parse.h"

int nosa_tokenizer_init(struct nosa_tokenizer *t, const struct nosa_model_config *cfg, char *err,
                        size_t errlen)
{
    if (cfg->vocab_size < NOSA_TOKENIZER_BYTES) {
        nosa_set_error(err, errlen,
                       "the byte tokenizer needs vocab_size >= %d, the model has %d",
                       NOSA_TOKENIZER_BYTES, cfg->vocab_size);
        return -EINVAL;
    }
    t->vocab_size = cfg->vocab_size;
    t->bos_id = cfg->bos_token_id;
    t->eos_id = cfg->eos_token_id;
    return 0;
}

int nosa_tokenizer_encode(const struct nosa_tokenizer *t, const char *text, size_t len,
                          int add_bos, int32_t *ids, size_t cap, size_t *n_out, char *err,
                          size_t errlen)
{
    size_t bos = add_bos && t->bos_id >= 0 ? 1 : 0;
    if (len > SIZE_MAX - bos) return -EOVERFLOW;
    *n_out = len + bos;
    if (len + bos > cap) {
        nosa_set_error(err, errlen, "text of %zu bytes needs %zu token ids, room for %zu", len,
                       len + bos, cap);
        return -ENOSPC;
    }
    if (bos) ids[0] = t->bos_id;
    for (size_t i = 0; i < len; i++) ids[bos + i] = (int32_t)(unsigned char)text[i];
    return 0;
}

int nosa_tokenizer_token_text(const struct nosa_tokenizer *t, int32_t id,
                              char buf[NOSA_TOKEN_TEXT_MAX])
{
    if (id < 0 || id >= t->vocab_size) return -EINVAL;
    buf[0] = '\0';
    if (id == t->bos_id || id == t->eos_id) return 0;
    if (id < NOSA_TOKENIZER_BYTES) {
        buf[0] = (char)(unsigned char)id;
        buf[1] = '\0';
        return 1;
    }
    return snprintf(buf, NOSA_TOKEN_TEXT_MAX, "<|%d|>", (int)id);
}

int nosa_tokenizer_decode(const struct nosa_tokenizer *t, const int32_t *ids, size_t n, char *out,
                          size_t cap, size_t *len_out, char *err, size_t errlen)
{
    size_t len = 0;
    char piece[NOSA_TOKEN_TEXT_MAX];
    if (cap == 0) {
        nosa_set_error(err, errlen, "no room for the decoded text");
        return -ENOSPC;
    }
    for (size_t i = 0; i < n; i++) {
        int k = nosa_tokenizer_token_text(t, ids[i], piece);
        if (k < 0) {
            nosa_set_error(err, errlen, "token %zu: id %d is outside the vocabulary [0, %d)", i,
                           (int)ids[i], t->vocab_size);
            return -EINVAL;
        }
        if (len + (size_t)k + 1 > cap) {
            nosa_set_error(err, errlen, "decoded text does not fit in %zu bytes", cap);
            return -ENOSPC;
        }
        memcpy(out + len, piece, (size_t)k);
        len += (size_t)k;
    }
    out[len] = '\0';
    *len_out = len;
    return 0;
}

int nosa_tokenizer_parse_ids(const char *s, int vocab_size, int32_t *ids, size_t cap,
                             size_t *n_out, char *err, size_t errlen)
{
    size_t n = 0;
    const char *p = s;
    char num[32], perr[128];
    for (;;) {
        while (*p == ' ') p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ') p++;
        size_t k = (size_t)(p - start);
        while (*p == ' ') p++;
        if (k == 0 || k >= sizeof(num) || (*p && *p != ',')) {
            nosa_set_error(err, errlen, "token list: item %zu is not a number (expected "
                           "comma-separated ids like 1,2,3)", n + 1);
            return -EINVAL;
        }
        memcpy(num, start, k);
        num[k] = '\0';
        long v;
        if (nosa_parse_long(num, 0, (long)vocab_size - 1, &v, perr, sizeof(perr))) {
            nosa_set_error(err, errlen, "token list: item %zu: %s (vocabulary of %d)", n + 1,
                           perr, vocab_size);
            return -EINVAL;
        }
        if (n == cap) {
            nosa_set_error(err, errlen, "token list: more than %zu ids", cap);
            return -ENOSPC;
        }
        ids[n++] = (int32_t)v;
        if (!*p) break;
        p++; /* the comma */
    }
    *n_out = n;
    return 0;
}
