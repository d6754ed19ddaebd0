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

static inline int test_report(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, g_test_checks_passed, g_test_checks_failed);
    return g_test_checks_failed ? 1 : 0;
}

#endif
