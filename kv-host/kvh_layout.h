/* kvh_layout.h: the arena's layout in shared memory, the contract between nosa-kvhost runs
 * (a restarted kv-host re-opens what a crashed one left) and the documentation (KVHOST.md).
 * Offsets only, never pointers; every record has a checksum; sizes are asserted. Fields are
 * only ever added at the end of a struct, with a layout version bump.
 *
 *   [header]           offset 0, written once at creation (magic last)
 *   [state slot 0, 1]  double-buffered mutable state: generation and the last committed txn
 *   [journal]          the intent of the transaction in progress (one at a time)
 *   [owners]           one record per group: free, or (seq_id, logical index): this array is
 *                      the allocator's state and every sequence's block table at once, so a
 *                      group can never belong to two tables, nor to a table and the free set
 *   [blocks]           n_groups groups (kv_geometry.h), page aligned; the only part clients map
 */
#ifndef NOSA_KVH_LAYOUT_H
#define NOSA_KVH_LAYOUT_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#define KVH_MAGIC 0x3148564b41534f4eull /* "NOSAKVH1" read as little-endian bytes */
#define KVH_LAYOUT_VERSION 1u
/* Sequences one free request may list (the journal records them to finish a torn free). */
#define KVH_JOURNAL_MAX_IDS 4096u

struct kvh_header {
    uint64_t magic;
    uint32_t layout_version;
    uint32_t header_bytes; /* sizeof(struct kvh_header) */
    uint64_t arena_bytes;
    uint32_t n_layers, n_kv_heads, block_size, head_dim, dtype, reserved0;
    uint64_t block_bytes, group_bytes;
    uint64_t n_groups;
    uint64_t state_offset;   /* 2 x struct kvh_state */
    uint64_t journal_offset; /* struct kvh_journal */
    uint64_t owners_offset;  /* n_groups x struct kvh_owner */
    uint64_t blocks_offset;  /* n_groups x group_bytes */
    uint64_t created_unix;
    uint32_t checksum;       /* zlib crc32 of the bytes after magic, before it */
    uint32_t reserved1;
};
_Static_assert(sizeof(struct kvh_header) == 120, "kvh_header layout");

/* The current state is the valid slot with the higher seq_no; an update writes the other one,
 * so a torn update leaves the previous state current. */
struct kvh_state {
    uint64_t seq_no;
    uint64_t generation; /* bumped on every start of the kv-host */
    uint64_t done_txn;   /* last committed transaction */
    uint32_t checksum;
    uint32_t reserved;
};
_Static_assert(sizeof(struct kvh_state) == 32, "kvh_state layout");

enum kvh_journal_op {
    KVH_JOURNAL_ALLOC = 1, /* undone by recovery: owners with txn == journal txn are freed */
    KVH_JOURNAL_FREE = 2,  /* redone by recovery: every group of the listed seqs is freed */
};

/* A transaction is open iff the journal checksum holds and txn > state.done_txn. */
struct kvh_journal {
    uint64_t txn;
    uint32_t op;
    uint32_t n_ids;
    uint32_t checksum; /* over txn, op, n_ids and ids[0 .. n_ids) */
    uint32_t reserved;
    uint64_t ids[KVH_JOURNAL_MAX_IDS];
};
_Static_assert(offsetof(struct kvh_journal, ids) == 24, "kvh_journal layout");

enum kvh_owner_state {
    KVH_OWNER_FREE = 1,
    KVH_OWNER_USED = 2,
};

struct kvh_owner {
    uint64_t seq_id;
    uint64_t txn;    /* transaction that last wrote the record */
    uint32_t index;  /* logical block number in seq_id's table */
    uint32_t state;  /* enum kvh_owner_state */
    uint32_t checksum;
    uint32_t reserved;
};
_Static_assert(sizeof(struct kvh_owner) == 32, "kvh_owner layout");

/* CRC-32 (zlib's) of len bytes. */
static inline uint32_t kvh_crc32(const void *data, size_t len)
{
    return (uint32_t)crc32_z(0u, (const Bytef *)data, len);
}

static inline uint32_t kvh_owner_checksum(const struct kvh_owner *o)
{
    return kvh_crc32(o, offsetof(struct kvh_owner, checksum));
}
static inline uint32_t kvh_state_checksum(const struct kvh_state *s)
{
    return kvh_crc32(s, offsetof(struct kvh_state, checksum));
}
static inline uint32_t kvh_header_checksum(const struct kvh_header *h)
{
    /* The magic is written after the checksum (last of all), so it is not covered. */
    return kvh_crc32((const uint8_t *)h + sizeof(h->magic),
                      offsetof(struct kvh_header, checksum) - sizeof(h->magic));
}
/* The journal record's fixed part, then only the ids it uses. */
static inline uint32_t kvh_journal_checksum(const struct kvh_journal *j)
{
    uLong crc = crc32_z(0u, (const Bytef *)j, offsetof(struct kvh_journal, checksum));
    uint32_t n = j->n_ids <= KVH_JOURNAL_MAX_IDS ? j->n_ids : KVH_JOURNAL_MAX_IDS;
    return (uint32_t)crc32_z(crc, (const Bytef *)j->ids, n * sizeof(j->ids[0]));
}

#endif
