/* fuzz_argv.h: an input as a command line, for the argument-parser targets (cli,
 * daemon_args): the bytes split at NUL bytes are argv[1..] (a NUL ends each word, the last
 * word may lack one: "" is no word, "a\0" one, "a\0\0" two), argv[argc] is NULL as from main. */
#ifndef NOSA_FUZZ_ARGV_H
#define NOSA_FUZZ_ARGV_H

#include <stddef.h>
#include <stdint.h>

struct nosa_fuzz_argv {
    int argc;
    char **argv; /* [argc + 1] */
    char *text;  /* the words */
};

/* Aborts when out of memory (not a finding to save). */
void nosa_fuzz_argv_split(const uint8_t *data, size_t size, const char *argv0,
                          struct nosa_fuzz_argv *out);
void nosa_fuzz_argv_free(struct nosa_fuzz_argv *a);

#endif
