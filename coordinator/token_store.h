/* token_store.h: a job's generated tokens in order: their ids and their text bytes (one
 * buffer, with where each token's bytes end). Used by the coordinator's job table and by the
 * `nosa` CLI for the stream it prints.
 *
 * This module owns the arrays; a zeroed struct is an empty store. */
#ifndef NOSA_TOKEN_STORE_H
#define NOSA_TOKEN_STORE_H

#include <stddef.h>
#include <stdint.h>

struct token_store {
    int32_t *ids;
    uint32_t *text_end; /* token i's bytes are text[text_end[i-1] .. text_end[i]) */
    uint32_t n, cap;
    uint8_t *text;
    size_t text_len, text_cap;
};

/* Appends one token. 0, or -1 when out of memory (the store is unchanged). */
int token_store_append(struct token_store *s, int32_t id, const uint8_t *text, size_t len);
/* Token i's bytes (*len of them). */
const uint8_t *token_store_text(const struct token_store *s, uint32_t i, size_t *len);
void token_store_free(struct token_store *s);

#endif
