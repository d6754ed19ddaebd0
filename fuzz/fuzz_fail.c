/* fuzz_fail.c: see fuzz_target.h. */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_target.h"

void nosa_fuzz_fail(const char *target, const char *what)
{
    fprintf(stderr, "fuzz %s: invariant broken: %s\n", target, what);
    abort();
}
