/* block_source.h: where the engine gets arena groups (kv_geometry.h) for its sequences' block
 * tables. An interface (function pointers + context) so the same engine runs over the
 * kv-host client in nosa-worker and over a private in-process arena (local_blocks.h) in
 * nosa-generate and the tests.
 *
 * The source holds every sequence's table (as kv-host does); the engine keeps a copy. It
 * asks once per step, for all the sequences whose next tokens complete a block not yet in
 * their table, and frees a sequence's groups when the sequence leaves. */
#ifndef NOSA_BLOCK_SOURCE_H
#define NOSA_BLOCK_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

/* One sequence's part of a batched allocation. */
struct nosa_block_alloc {
    uint64_t seq_id;      /* in */
    uint32_t first_index; /* in: the table length the engine knows; the new groups are logical
                           * blocks first_index .. first_index + n_groups - 1. A source whose
                           * table length differs must refuse (-EPROTO): the two disagree. */
    uint32_t n_groups;    /* in, >= 1 */
    uint32_t *groups;     /* out: n_groups group ids, in logical order */
};

struct nosa_block_source {
    void *ctx;
    /* The arena as mapped in this process; the backend reads and writes blocks there. */
    const struct nosa_kv_arena *arena;
    /* Appends groups to the table of each of n sequences (an unknown sequence is created).
     * All or nothing: on any failure nothing is allocated. -ENOSPC when the arena cannot
     * satisfy every request; other negated errnos for transport or protocol failures. */
    int (*alloc)(void *ctx, struct nosa_block_alloc *reqs, int n, char *err, size_t errlen);
    /* Frees every group of each of n sequences and forgets them. */
    int (*free_seqs)(void *ctx, const uint64_t *seq_ids, int n, char *err, size_t errlen);
};

#endif
