/* tokenizer.h: the byte-level tokenizer every model can use, and token-id list input.
 *
 * Text is UTF-8 (or any bytes): byte b becomes token id b (0..255), optionally after the
 * model's BOS. Decoding is the reverse: ids 0..255 are their byte; BOS and EOS render as
 * nothing; any other id (a trained model's vocabulary beyond bytes) renders as the visible
 * placeholder "<|ID|>" (decimal), so output never silently loses a token. A model needs
 * vocab_size >= 256 to use it. Token-id input is a comma-separated list of decimal ids
 * ("1,2,3"; spaces around ids allowed), each checked against the vocabulary. */
#ifndef NOSA_TOKENIZER_H
#define NOSA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define NOSA_TOKENIZER_BYTES 256
/* The longest rendering of one token, with its NUL: "<|" 10 digits "|>" + NUL. */
#define NOSA_TOKEN_TEXT_MAX 16

struct nosa_tokenizer {
    int vocab_size;
    int bos_id; /* -1: none */
    int eos_id; /* -1: none */
};

/* -EINVAL (err says why) when the model's vocabulary cannot hold the 256 byte tokens. */
int nosa_tokenizer_init(struct nosa_tokenizer *t, const struct nosa_model_config *cfg, char *err,
                        size_t errlen);
/* Encodes len bytes of text into ids[cap], with BOS first when add_bos and the model has one.
 * *n_out is the number of ids the text needs; -ENOSPC when that exceeds cap. */
int nosa_tokenizer_encode(const struct nosa_tokenizer *t, const char *text, size_t len,
                          int add_bos, int32_t *ids, size_t cap, size_t *n_out, char *err,
                          size_t errlen);
/* Renders one token into buf[NOSA_TOKEN_TEXT_MAX]; returns its length in bytes (0 for BOS
 * and EOS; a byte token may be NUL itself), or -EINVAL for an id outside the vocabulary. */
int nosa_tokenizer_token_text(const struct nosa_tokenizer *t, int32_t id,
                              char buf[NOSA_TOKEN_TEXT_MAX]);
/* Renders n ids into out[cap] (NUL-terminated); *len_out is the byte length without the NUL.
 * -ENOSPC when out is too small, -EINVAL for an id outside the vocabulary. */
int nosa_tokenizer_decode(const struct nosa_tokenizer *t, const int32_t *ids, size_t n, char *out,
                          size_t cap, size_t *len_out, char *err, size_t errlen);
/* Parses "1,2,3" into ids[cap]: at least one id, each in [0, vocab_size). */
int nosa_tokenizer_parse_ids(const char *s, int vocab_size, int32_t *ids, size_t cap,
                             size_t *n_out, char *err, size_t errlen);

#endif
