/* local_blocks.h: an in-process block source (block_source.h) over a private anonymous
 * arena, for nosa-generate and the tests: the same group format as the kv-host arena, a free
 * list of groups, and per-sequence block tables. It outlives the engines that use it, so a
 * test can stop one engine and resume its sequences in another from the same arena.
 *
 * This module owns: the arena mapping (mmap, freed by destroy), the free list and the tables,
 * all allocated at create (nothing on the decode path). */
#ifndef NOSA_LOCAL_BLOCKS_H
#define NOSA_LOCAL_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#include "block_source.h"
#include "kv_geometry.h"
#include "model.h"

struct nosa_local_blocks;

/* An arena of n_groups groups, tables for up to max_seqs sequences of up to
 * max_blocks_per_seq blocks each. Returns 0 or a negated errno with err. */
int nosa_local_blocks_create(const struct nosa_kv_geometry *geom, uint64_t n_groups,
                             int max_seqs, uint32_t max_blocks_per_seq,
                             struct nosa_local_blocks **out, char *err, size_t errlen);
void nosa_local_blocks_destroy(struct nosa_local_blocks *lb); /* accepts NULL */

/* The source to hand to nosa_engine_create; valid while lb lives. */
struct nosa_block_source nosa_local_blocks_source(struct nosa_local_blocks *lb);

/* A sequence's table (valid until the next call on lb); -ENOENT for an unknown id. */
int nosa_local_blocks_table(const struct nosa_local_blocks *lb, uint64_t seq_id,
                            const uint32_t **groups, uint32_t *n_groups);
uint64_t nosa_local_blocks_free_groups(const struct nosa_local_blocks *lb);
int nosa_local_blocks_seqs(const struct nosa_local_blocks *lb); /* sequences with a table */

#endif
