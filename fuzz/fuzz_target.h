/* fuzz_target.h: the one entry point every fuzz target defines. The same object file links
 * either with libFuzzer (-fsanitize=fuzzer, fuzz/CMakeLists.txt) or with replay_main.c, which
 * runs saved inputs through it in ordinary builds (tests/regress). A target returns 0 and
 * aborts on a broken invariant, so a crash, a sanitizer report or an abort is a finding. */
#ifndef NOSA_FUZZ_TARGET_H
#define NOSA_FUZZ_TARGET_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reports a broken invariant with the target's name and aborts (libFuzzer saves the input). */
_Noreturn void nosa_fuzz_fail(const char *target, const char *what);

#endif
