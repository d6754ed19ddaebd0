/* test_arena.h: an in-process stand-in for the kv-host arena, for backend tests (cpu, cuda).
 * A page-aligned array of whole pages holding groups in the kv_geometry.h format, a bump
 * allocator that hands out groups, and per-sequence block tables that grow on demand, so a
 * test can call a backend with offload exactly as the worker would, without a kv-host.
 * Header-only; every function aborts the test (exit 1) when the arena is exhausted, since a
 * test that runs out has a wrong size, not a condition to handle. */
#ifndef NOSA_TEST_ARENA_H
#define NOSA_TEST_ARENA_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kv_geometry.h"

#define TEST_ARENA_MAX_BLOCKS 4096 /* logical blocks per test sequence */
#define TEST_ARENA_PAGE 4096       /* the arena owns whole pages (see test_arena_init) */

struct test_arena {
    struct nosa_kv_arena arena; /* pass &arena in nosa_backend_config */
    uint64_t next;              /* next free group */
};

struct test_seq_table {
    uint32_t groups[TEST_ARENA_MAX_BLOCKS];
    struct nosa_seq_blocks blocks; /* points at groups; pass &blocks to prefill/decode */
};

/* Groups are filled with 0xA5 so that a backend reading a block nobody wrote gets garbage
 * (and a test notices), not zeros that might look plausible. */
static inline void test_arena_init(struct test_arena *ta, const struct nosa_model_config *c,
                                   uint64_t n_groups)
{
    memset(ta, 0, sizeof(*ta));
    ta->arena.geom = nosa_model_kv_geometry(c);
    size_t bytes = nosa_kv_group_bytes(&ta->arena.geom) * (size_t)n_groups;
    /* Whole pages, as the kv-host's shared mapping: the cuda backend registers the arena's
     * pages, and two arenas sharing a page would overlap in their registrations. */
    size_t pages = (bytes + TEST_ARENA_PAGE - 1) / TEST_ARENA_PAGE * TEST_ARENA_PAGE;
    void *p = NULL;
    if (posix_memalign(&p, TEST_ARENA_PAGE, pages ? pages : TEST_ARENA_PAGE) != 0) {
        fprintf(stderr, "FATAL test_arena: cannot allocate %zu bytes\n", bytes);
        exit(1);
    }
    memset(p, 0xA5, bytes);
    ta->arena.base = p;
    ta->arena.n_groups = n_groups;
}

static inline void test_arena_free(struct test_arena *ta)
{
    free(ta->arena.base);
    memset(ta, 0, sizeof(*ta));
}

static inline uint32_t test_arena_alloc_group(struct test_arena *ta)
{
    if (ta->next >= ta->arena.n_groups) {
        fprintf(stderr, "FATAL test_arena: all %llu groups in use\n",
                (unsigned long long)ta->arena.n_groups);
        exit(1);
    }
    return (uint32_t)ta->next++;
}

static inline void test_seq_table_init(struct test_seq_table *t)
{
    t->blocks.groups = t->groups;
    t->blocks.n_groups = 0;
}

/* Makes the table cover every block complete once the sequence holds n_tokens tokens (what
 * the worker asks the kv-host for before a call), allocating groups as needed. */
static inline void test_seq_table_cover(struct test_arena *ta, struct test_seq_table *t,
                                        int n_tokens)
{
    uint32_t need = (uint32_t)n_tokens / ta->arena.geom.block_size;
    if (need > TEST_ARENA_MAX_BLOCKS) {
        fprintf(stderr, "FATAL test_arena: %u blocks exceed TEST_ARENA_MAX_BLOCKS\n", need);
        exit(1);
    }
    t->blocks.groups = t->groups;
    while (t->blocks.n_groups < need) t->groups[t->blocks.n_groups++] = test_arena_alloc_group(ta);
}

#endif
