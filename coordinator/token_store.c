/* token_store.c: see token_store.h. */
#include "token_store.h"

#include <stdlib.h>
#include <string.h>

int token_store_append(struct token_store *s, int32_t id, const uint8_t *text, size_t len)
{
    if (s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 64;
        int32_t *ids = realloc(s->ids, cap * sizeof *ids);
        if (!ids) return -1;
        s->ids = ids;
        uint32_t *ends = realloc(s->text_end, cap * sizeof *ends);
        if (!ends) return -1;
        s->text_end = ends;
        s->cap = cap;
    }
    if (s->text_len + len > s->text_cap) {
        size_t cap = s->text_cap ? s->text_cap : 256;
        while (cap < s->text_len + len) cap *= 2;
        uint8_t *grown = realloc(s->text, cap);
        if (!grown) return -1;
        s->text = grown;
        s->text_cap = cap;
    }
    if (len) memcpy(s->text + s->text_len, text, len);
    s->text_len += len;
    s->ids[s->n] = id;
    s->text_end[s->n] = (uint32_t)s->text_len;
    s->n++;
    return 0;
}

const uint8_t *token_store_text(const struct token_store *s, uint32_t i, size_t *len)
{
    uint32_t start = i ? s->text_end[i - 1] : 0;
    *len = s->text_end[i] - start;
    return s->text ? s->text + start : (const uint8_t *)"";
}

void token_store_free(struct token_store *s)
{
    free(s->ids);
    free(s->text_end);
    free(s->text);
    memset(s, 0, sizeof *s);
}
