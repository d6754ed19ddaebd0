/* kvh_store.h: the block allocator and every sequence's block table, kept in the arena
 * (kvh_layout.h) so that they survive the kv-host, plus the in-memory index over them.
 *
 * This module owns: formatting a fresh arena region, recovering one a previous kv-host left
 * (verify, finish or undo the transaction a crash interrupted, rebuild the index), and the
 * transactions themselves: alloc (all or nothing) and free. It works on any memory region,
 * so tests run it on an anonymous shared mapping; kvh_arena.c provides the real one.
 *
 * Update order (crash safety, docs/KVHOST.md): journal intent -> owner records -> commit the
 * state slot. A kill at any point leaves either the state before the request or the state
 * after it, never a group in two places or in none. */
#ifndef NOSA_KVH_STORE_H
#define NOSA_KVH_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "kv_geometry.h"
#include "kvh_client.h"
#include "kvh_layout.h"
#include "kvh_seqmap.h"

_Static_assert(KVH_JOURNAL_MAX_IDS == KVH_MAX_SEQS_PER_REQUEST,
               "a free request's ids must fit the journal");

struct kvh_store_plan {
    uint64_t arena_bytes;
    uint64_t n_groups;
    uint64_t state_offset, journal_offset, owners_offset, blocks_offset;
};

struct kvh_store {
    uint8_t *base;
    uint64_t arena_bytes;
    const struct kvh_header *hdr;
    struct kvh_state *state_slots; /* [2] */
    struct kvh_journal *journal;
    struct kvh_owner *owners;
    struct nosa_kv_geometry geom;
    uint64_t n_groups;
    int cur_slot;                  /* state_slots[cur_slot] is current */
    uint64_t next_txn;
    uint32_t *free_stack;          /* free group ids; the top is reused first */
    uint64_t n_free;
    struct kvh_seqmap seqs;
};

/* Where things go in an arena of arena_bytes for geometry g; the block array starts at a
 * multiple of blocks_align (page or huge page size). -ENOSPC when not one group fits. */
int kvh_store_plan(uint64_t arena_bytes, const struct nosa_kv_geometry *g, uint64_t blocks_align,
                   struct kvh_store_plan *out, char *err, size_t errlen);

/* Writes a fresh layout into base (plan from kvh_store_plan; every group free, generation 1)
 * and opens it. The header's magic is written last: a region whose formatting was
 * interrupted is refused by recovery. */
int kvh_store_format(uint8_t *base, const struct kvh_store_plan *plan,
                     const struct nosa_kv_geometry *g, struct kvh_store *out, char *err,
                     size_t errlen);

/* Opens a region a previous kv-host formatted: checks the header (magic, version, checksum,
 * size, geometry, offsets), picks the current state, undoes an interrupted alloc or finishes
 * an interrupted free, checks every owner record and that each table is whole (logical
 * blocks 0..n-1, each once), bumps the generation. -EINVAL (err names what is wrong) for a
 * region it must refuse; nothing is written then. */
int kvh_store_recover(uint8_t *base, uint64_t arena_bytes, struct kvh_store *out, char *err,
                      size_t errlen);

/* Frees the in-memory index (the region is left as it is). Accepts a zeroed store. */
void kvh_store_close(struct kvh_store *st);

/* Appends reqs[i].n_groups groups to each sequence (kvh_client.h semantics): first_index[i]
 * and groups[] (in request order) on success. -ENOSPC (nothing allocated), -EINVAL (a seq
 * listed twice), -E2BIG (more than KVH_JOURNAL_MAX_IDS entries or a table past 2^32 groups),
 * -ENOMEM; err says which. */
int kvh_store_alloc(struct kvh_store *st, const struct kvh_seq_alloc *reqs, size_t n,
                    uint32_t *first_index, uint32_t *groups, char *err, size_t errlen);

/* Frees every group of each listed sequence. -ENOENT (an unknown id, named), -EINVAL (listed
 * twice), -E2BIG (over KVH_JOURNAL_MAX_IDS): nothing freed then. */
int kvh_store_free(struct kvh_store *st, const uint64_t *seq_ids, size_t n,
                   uint64_t *freed_groups, char *err, size_t errlen);

/* The table of seq_id, or NULL when it owns no group. */
const struct kvh_seq *kvh_store_table(const struct kvh_store *st, uint64_t seq_id);

static inline uint64_t kvh_store_generation(const struct kvh_store *st)
{
    return st->state_slots[st->cur_slot].generation;
}

#endif
