/* test_util.h: the few macros our C tests share. A test program runs its cases, counts
 * failed checks, prints "N passed, N failed" and exits non-zero on any failure; a test that
 * cannot run here (no GPU) prints why and exits 77, which ctest reports as skipped. */
#ifndef NOSA_TEST_UTIL_H
#define NOSA_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int g_test_checks_failed;
static int g_test_checks_passed;

#define TEST_SKIP_EXIT 77

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (cond) {                                                                   \
            g_test_checks_passed++;                                                   \
        } else {                                                                      \
            g_test_checks_failed++;                                                   \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
        }                                                                             \
    } while (0)

#define CHECK_NEAR(a, b, tol, what)                                                   \
    CHECK(fabs((double)(a) - (double)(b)) <= (tol), "%s: %.9g vs %.9g (tol %g)", (what), \
          (double)(a), (double)(b), (double)(tol))

/* Aborts the test program: for a failed precondition that makes later checks meaningless. */
#define REQUIRE(cond, ...)                                                            \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "FATAL %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

/* A whole file as a malloc'd NUL-terminated string (a log, a process's output), or NULL. */
static inline char *test_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0, r;
    char *buf = (char *)malloc(cap); /* casts: the CUDA tests include this as C++ */
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            char *grown = (char *)realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    return buf;
}

static inline int test_report(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, g_test_checks_passed, g_test_checks_failed);
    return g_test_checks_failed ? 1 : 0;
}

#endif
