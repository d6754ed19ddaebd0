/* bench_arena.c: the benchmark's in-process host KV arena: one anonymous mapping holding
 * n_groups groups of the model's block geometry (kv_geometry.h), handed to backends as their
 * nosa_kv_arena. The kv-host library (nosa_kvh) adds a shared-memory file, a header and an
 * allocator; the benchmark needs none of them, only the block array, and lays out its groups
 * itself (a shared template prefix, then private groups per slot: bench_run.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"
#include "log.h"

struct bench_arena {
    struct nosa_kv_arena view;
    size_t bytes;
};

int bench_arena_create(const struct nosa_kv_geometry *geom, uint64_t n_groups,
                       struct bench_arena **out, char *err, size_t errlen)
{
    *out = NULL;
    size_t group_bytes = nosa_kv_group_bytes(geom);
    if (n_groups == 0 || group_bytes == 0 || n_groups > SIZE_MAX / group_bytes) {
        nosa_set_error(err, errlen, "arena: bad size: %llu groups of %zu bytes",
                       (unsigned long long)n_groups, group_bytes);
        return -EINVAL;
    }
    struct bench_arena *a = calloc(1, sizeof(*a));
    if (!a) {
        nosa_set_error(err, errlen, "arena: out of memory");
        return -ENOMEM;
    }
    a->bytes = (size_t)n_groups * group_bytes;
    /* NORESERVE: groups a run never touches cost nothing; pages fault in on first write. */
    void *p = mmap(NULL, a->bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        nosa_set_error(err, errlen, "arena: mmap of %zu bytes: %s", a->bytes, strerror(e));
        free(a);
        return -e;
    }
    a->view.base = p;
    a->view.n_groups = n_groups;
    a->view.geom = *geom;
    *out = a;
    return 0;
}

void bench_arena_destroy(struct bench_arena *a)
{
    if (!a) return;
    if (a->view.base) munmap(a->view.base, a->bytes);
    free(a);
}

const struct nosa_kv_arena *bench_arena_view(const struct bench_arena *a)
{
    return &a->view;
}

uint64_t bench_arena_bytes(const struct bench_arena *a)
{
    return a->bytes;
}
