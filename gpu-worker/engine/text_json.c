/* text_json.c: see text_json.h. */
#include "text_json.h"

#include <errno.h>

static int is_cont(unsigned char c)
{
    return (c & 0xC0u) == 0x80u;
}

size_t nosa_utf8_sequence_length(const unsigned char *s, size_t n)
{
    if (n == 0) return 0;
    unsigned char c = s[0];
    if (c < 0x80u) return 1;
    /* The second byte's range excludes overlong forms, surrogates and code points past
     * U+10FFFF (RFC 3629 section 4). */
    unsigned char lo = 0x80u, hi = 0xBFu;
    size_t len;
    if (c >= 0xC2u && c <= 0xDFu) len = 2;
    else if (c >= 0xE0u && c <= 0xEFu) {
        len = 3;
        if (c == 0xE0u) lo = 0xA0u;
        if (c == 0xEDu) hi = 0x9Fu;
    } else if (c >= 0xF0u && c <= 0xF4u) {
        len = 4;
        if (c == 0xF0u) lo = 0x90u;
        if (c == 0xF4u) hi = 0x8Fu;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (!is_cont(s[i])) return 0;
    return len;
}

int nosa_json_write_string(FILE *out, const char *bytes, size_t len)
{
    const unsigned char *s = (const unsigned char *)bytes;
    fputc('"', out);
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        size_t n = nosa_utf8_sequence_length(s + i, len - i);
        if (n == 0) {
            fputs("\\ufffd", out);
            i++;
            continue;
        }
        if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
        else if (c == '\n') fputs("\\n", out);
        else if (c == '\t') fputs("\\t", out);
        else if (c == '\r') fputs("\\r", out);
        else if (c < 0x20u || c == 0x7Fu) fprintf(out, "\\u%04x", c);
        else fwrite(s + i, 1, n, out);
        i += n;
    }
    fputc('"', out);
    return ferror(out) ? -EIO : 0;
}
