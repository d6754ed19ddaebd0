/* kvh_client.h: the client side of nosa-kvhost (proto/kvhost.proto, docs/KVHOST.md), used by
 * the worker, the coordinator and tests. CMake target nosa_kvh_client.
 *
 * This module owns: one DEALER socket to a kv-host (and a ZeroMQ context unless the caller
 * lends one), the request/reply calls (attach, alloc, free, table, stats), and the read/write
 * mapping of the arena's block array. One client per thread; calls block until the reply or
 * the timeout.
 *
 * Errors: every call returns 0 or a negated errno and writes a message into err. When the
 * kv-host answered with an Error, err holds its message and the return value says its code:
 *   -ENOSPC    ERROR_NO_SPACE (nothing was allocated)
 *   -ENOENT    ERROR_UNKNOWN_ID (nothing was changed)
 *   -EPROTO    ERROR_BAD_MESSAGE / ERROR_BAD_VERSION (geometry mismatch at attach included)
 *   -E2BIG     ERROR_TOO_LARGE
 *   -EPERM     ERROR_REFUSED / ERROR_UNAUTHORIZED
 *   -EIO       ERROR_INTERNAL, or a reply that does not answer the request
 *   -ETIMEDOUT no reply within the timeout ("kv-host ENDPOINT did not answer REQUEST in N ms");
 *              a reply that arrives later is recognised by its request_id and dropped, so the
 *              client stays usable. A request that timed out may still have taken effect.
 *
 * Restarts: a kv-host restarted with --recover serves the same arena and sequences under a
 * new generation (AttachReply/StatsReply); the shm object and its mapping stay valid. */
#ifndef NOSA_KVH_CLIENT_H
#define NOSA_KVH_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "kv_geometry.h"

#define KVH_CLIENT_DEFAULT_TIMEOUT_MS 5000
#define KVH_SHM_NAME_MAX 256
/* Sequences one alloc or free may list; more is -E2BIG (ERROR_TOO_LARGE). */
#define KVH_MAX_SEQS_PER_REQUEST 4096u

struct nosa_msg_security;
struct kvh_client;

struct kvh_client_options {
    int timeout_ms;            /* per request; <= 0: KVH_CLIENT_DEFAULT_TIMEOUT_MS */
    const char *client_name;   /* KvhRequest.client, for the kv-host's logs; NULL: "client" */
    void *zmq_ctx;             /* NULL: the client creates (and terminates) its own context */
    const struct nosa_msg_security *sec; /* tcp policy/keys (nosa_msg_connect_secure); NULL ok */
};

/* Connects a DEALER socket to endpoint ("ipc://D/kvh0.sock", "tcp://127.0.0.1:5555"). ZeroMQ
 * connects lazily: a kv-host that is not there shows up as -ETIMEDOUT on the first call. An
 * ipc socket this user may not reach (another user's) is -EACCES at once.
 * opts may be NULL (defaults). */
int kvh_client_connect(const char *endpoint, const struct kvh_client_options *opts,
                       struct kvh_client **out, char *err, size_t errlen);
/* Closes the socket (linger 0) and the context it created. Accepts NULL. */
void kvh_client_close(struct kvh_client *c);

/* What Attach returns: where the arena is and what it holds. */
struct kvh_attach_info {
    char shm_name[KVH_SHM_NAME_MAX]; /* shm_open name, "/nosa-<uid>-<kv-host name>" */
    uint64_t arena_bytes;            /* size of the whole shm object */
    uint64_t blocks_offset;          /* byte offset of group 0 (page aligned) */
    uint64_t n_groups;               /* groups in the block array */
    uint64_t block_bytes;            /* nosa_kv_block_bytes(&geom) */
    uint64_t group_bytes;            /* nosa_kv_group_bytes(&geom) */
    uint64_t generation;             /* bumped on every (re)start of the kv-host */
    struct nosa_kv_geometry geom;
};

/* Attach. expect: the geometry the caller will write (the kv-host refuses a different one with
 * -EPROTO naming the field), or NULL to accept whatever the arena holds. */
int kvh_client_attach(struct kvh_client *c, const struct nosa_kv_geometry *expect,
                      struct kvh_attach_info *out, char *err, size_t errlen);

/* The block array, mapped read/write (MAP_SHARED). Only [blocks_offset, arena_bytes) is mapped:
 * clients cannot touch the arena's header, journal or tables. A struct nosa_kv_arena
 * (gpu-worker/backend.h) is { .base = m.blocks, .n_groups = m.n_groups, .geom = m.geom }. */
struct kvh_mapping {
    uint8_t *blocks;     /* group 0, layer 0, head 0 */
    uint64_t n_groups;
    uint64_t group_bytes;
    uint64_t block_bytes;
    struct nosa_kv_geometry geom;
    size_t map_bytes;    /* length of the mapping at blocks (for munmap, cudaHostRegister) */
};

/* Opens info->shm_name, checks its size against info->arena_bytes and maps the block array. */
int kvh_mapping_open(const struct kvh_attach_info *info, struct kvh_mapping *out, char *err,
                     size_t errlen);
/* Unmaps and zeroes m. Accepts a zeroed or already closed mapping. */
void kvh_mapping_close(struct kvh_mapping *m);

/* The block of (group, layer, KV head): K, then V, then the bias (kv_geometry.h). */
static inline uint8_t *kvh_mapping_block(const struct kvh_mapping *m, uint32_t group,
                                         uint32_t layer, uint32_t head)
{
    return m->blocks + nosa_kv_block_index(&m->geom, group, layer, head) * m->block_bytes;
}

/* Allocation for many sequences in one request, all or nothing (-ENOSPC: nothing allocated).
 * seqs[i] asks n_groups new groups appended to sequence seq_id's table (created if unknown;
 * n_groups 0 creates nothing and just reports first_index). A seq_id listed twice is -EPROTO.
 * On success first_index[i] is the logical block number of the first new group of seqs[i]
 * and groups[] receives the new group ids, seqs[0]'s first, in request order; its capacity is
 * the sum of every n_groups. */
struct kvh_seq_alloc {
    uint64_t seq_id;
    uint32_t n_groups;
};
int kvh_client_alloc(struct kvh_client *c, const struct kvh_seq_alloc *seqs, size_t n_seqs,
                     uint32_t *first_index, uint32_t *groups, char *err, size_t errlen);

/* Frees every group of each listed sequence and forgets it. All or nothing: an unknown id is
 * -ENOENT (naming it) and nothing is freed. freed_groups may be NULL. */
int kvh_client_free(struct kvh_client *c, const uint64_t *seq_ids, size_t n_seqs,
                    uint64_t *freed_groups, char *err, size_t errlen);

/* A sequence's whole block table: groups[m] = group of logical block m. *n_groups is set to
 * the table's length; when it exceeds cap, -ENOBUFS and groups holds the first cap entries.
 * A sequence that owns no group is unknown (-ENOENT). */
int kvh_client_table(struct kvh_client *c, uint64_t seq_id, uint32_t *groups, uint32_t cap,
                     uint32_t *n_groups, char *err, size_t errlen);

struct kvh_stats {
    uint64_t n_groups;
    uint64_t free_groups;
    uint64_t n_seqs;
    uint64_t arena_bytes;
    uint64_t generation;
    uint64_t requests; /* served since the kv-host started */
    uint64_t errors;   /* of those, answered with an Error */
    int numa_node;     /* -1 when not bound */
};
int kvh_client_stats(struct kvh_client *c, struct kvh_stats *out, char *err, size_t errlen);

#endif
