/* safetensors.c: fuzz target for the safetensors header parser (nosa_st_parse, the part of
 * nosa_st_file_open that reads what the file says). The input is the JSON header; the data
 * section is a fixed zeroed buffer, so data_offsets are checked against a real length. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "model/safetensors.h"

/* Room for the tiny model (tests/model), so its real header is a seed that parses. */
#define FUZZ_ST_DATA_BYTES (1u << 20)
static uint8_t g_data_section[FUZZ_ST_DATA_BYTES];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct nosa_st_file f = {0};
    char err[256];
    int rc = nosa_st_parse("fuzz", (const char *)data, size, g_data_section,
                           sizeof(g_data_section), &f, err, sizeof(err));
    if (rc == 0) {
        /* What the loader relies on after a successful parse. */
        for (size_t i = 0; i < f.n_tensors; i++) {
            const struct nosa_st_tensor *t = &f.tensors[i];
            if (nosa_st_file_find(&f, t->name) != t)
                nosa_fuzz_fail("safetensors", "a parsed tensor is not found by its name");
            if (t->data < g_data_section ||
                t->nbytes > (uint64_t)(g_data_section + sizeof(g_data_section) - t->data))
                nosa_fuzz_fail("safetensors", "tensor bytes outside the data section");
        }
    } else if (err[0] == '\0') {
        nosa_fuzz_fail("safetensors", "refused without an error message");
    }
    /* nosa_st_parse leaves what it allocated in f either way; f is not mapped. */
    free(f.tensors);
    free(f.names);
    return 0;
}
