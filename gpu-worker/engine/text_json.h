/* text_json.h: writing generated text into JSON exactly and validly. Token bytes are not
 * always UTF-8 (a byte tokenizer can emit half a character, or NUL), while JSON must be.
 * Rule: every valid UTF-8 sequence is kept as is, control characters and '"' '\' are escaped
 * (NUL as \u0000), and each byte that is not part of a valid UTF-8 sequence becomes U+FFFD.
 * The token ids stay the exact record; this is their readable rendering. */
#ifndef NOSA_TEXT_JSON_H
#define NOSA_TEXT_JSON_H

#include <stddef.h>
#include <stdio.h>

/* Writes bytes[len] as a JSON string literal, quotes included. Returns 0 or -EIO. */
int nosa_json_write_string(FILE *out, const char *bytes, size_t len);

/* Length of the valid UTF-8 sequence starting at s (at most n bytes), or 0 when s[0] does not
 * start one. */
size_t nosa_utf8_sequence_length(const unsigned char *s, size_t n);

#endif
