/* kvh_seqmap.h: the kv-host's in-memory index of sequences: seq_id -> its block table.
 * Rebuilt from the arena's owner records at start (kvh_store.c); the arena stays the truth.
 *
 * This module owns: an open-addressing hash table (linear probing, backward-shift delete)
 * and each sequence's group array. Entry pointers are valid until the next insert or
 * remove. */
#ifndef NOSA_KVH_SEQMAP_H
#define NOSA_KVH_SEQMAP_H

#include <stddef.h>
#include <stdint.h>

struct kvh_seq {
    uint64_t seq_id;
    uint32_t n_groups; /* groups[0 .. n_groups) is the table */
    uint32_t cap;
    uint32_t *groups;
    int used;          /* slot holds a sequence */
};

struct kvh_seqmap {
    struct kvh_seq *slots;
    size_t n_slots; /* power of two, or 0 before the first insert */
    size_t count;
};

struct kvh_seq *kvh_seqmap_find(const struct kvh_seqmap *m, uint64_t seq_id);
/* Returns the existing entry or a new empty one; NULL when out of memory. */
struct kvh_seq *kvh_seqmap_get_or_insert(struct kvh_seqmap *m, uint64_t seq_id);
/* Makes room for extra more groups in s's table. 0 or -ENOMEM (s unchanged). */
int kvh_seqmap_reserve(struct kvh_seq *s, uint32_t extra);
/* Forgets seq_id (no-op when absent). */
void kvh_seqmap_remove(struct kvh_seqmap *m, uint64_t seq_id);
void kvh_seqmap_free(struct kvh_seqmap *m);

#endif
