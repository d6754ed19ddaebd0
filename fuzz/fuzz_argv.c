/* fuzz_argv.c: see fuzz_argv.h. */
#include "fuzz_argv.h"

#include <stdlib.h>
#include <string.h>

void nosa_fuzz_argv_split(const uint8_t *data, size_t size, const char *argv0,
                          struct nosa_fuzz_argv *out)
{
    int argc = 1;
    for (size_t i = 0; i < size; i++) argc += data[i] == '\0';
    if (size > 0 && data[size - 1] != '\0') argc++; /* the last word has no NUL of its own */
    out->argc = argc;
    out->text = malloc(size + 1);
    out->argv = calloc((size_t)argc + 1, sizeof *out->argv);
    if (!out->text || !out->argv) abort();
    memcpy(out->text, data, size);
    out->text[size] = '\0';
    out->argv[0] = (char *)argv0;
    char *word = out->text;
    for (int i = 1; i < argc; i++) {
        out->argv[i] = word;
        word += strlen(word) + 1;
    }
}

void nosa_fuzz_argv_free(struct nosa_fuzz_argv *a)
{
    free(a->argv);
    free(a->text);
}
