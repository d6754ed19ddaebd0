/* worker_kvh_source.h: the engine's block source (engine/block_source.h) over the node's
 * kv-host (kv-host/kvh_client.h): the worker's connection to the kv-host, the attach, the
 * arena mapping the backend reads and writes, and the alloc/free/table requests.
 *
 * This module owns: the kv-host client, the mapping, the scratch buffers of the batched
 * requests (sized at open for max_seqs sequences) and the queue of deferred frees. A kv-host that does not answer (it is
 * being restarted with --recover) is retried until retry_ms passes; a timed-out request that
 * may have taken effect is reconciled against the sequence's table before it is sent again,
 * so no group is allocated twice. The caller's `waiting` hook runs between tries (the worker
 * sends heartbeats from it, so the coordinator does not declare it dead meanwhile).
 *
 * Frees are deferred: the engine's free_seqs only queues the sequences, and the worker
 * sends the queue with worker_kvh_source_flush_frees once the step's tokens and JobFinished
 * messages are handed to the coordinator socket. So the kv-host holds a sequence's table
 * until the coordinator knows its job has finished (a worker killed earlier leaves a job
 * that resumes from its table). Close does not flush: what is still queued then belongs
 * to jobs whose JobFinished was never sent, and their tables serve the resume.
 *
 * A failure that concerns some sequences only is recorded per sequence (failures()), so the
 * worker can end those jobs with the reason and keep the others: a sequence whose kv-host
 * table was changed by another writer (its groups are still handed out, so the engine's
 * step goes on, and the job is ended after it), or every sequence of a request the kv-host
 * refused or did not answer (the engine's step then fails before any compute). */
#ifndef NOSA_WORKER_KVH_SOURCE_H
#define NOSA_WORKER_KVH_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "block_source.h"
#include "kvh_client.h"

struct worker_kvh_source;

struct worker_kvh_options {
    const char *endpoint;
    const char *client_name;
    void *zmq_ctx;
    const struct nosa_msg_security *sec;
    int max_seqs;
    uint32_t max_blocks_per_seq; /* table length a resumed sequence may have */
    int timeout_ms;              /* per request */
    int retry_ms;                /* keep retrying an unanswered kv-host this long */
    int (*waiting)(void *user);  /* between tries; non-zero: give up (may be NULL) */
    void *waiting_user;
};

/* Connects, attaches with the model's geometry (expect) and maps the arena. The first
 * attach is tried until retry_ms passes too (the kv-host may still be starting). */
int worker_kvh_source_open(const struct worker_kvh_options *opts,
                           const struct nosa_kv_geometry *expect,
                           struct worker_kvh_source **out, char *err, size_t errlen);
void worker_kvh_source_close(struct worker_kvh_source *s); /* accepts NULL */

struct worker_kvh_failure {
    uint64_t seq_id;
    int foreign_writer; /* its table changed under us: another worker resumed the job */
    char reason[256];
};

/* The sequences whose allocation failed since the last clear, and why. */
size_t worker_kvh_source_failures(const struct worker_kvh_source *s,
                                  const struct worker_kvh_failure **out);
void worker_kvh_source_clear_failures(struct worker_kvh_source *s);

/* The block source for nosa_engine_create (valid while s lives). */
struct nosa_block_source worker_kvh_source_get(struct worker_kvh_source *s);
const struct kvh_attach_info *worker_kvh_source_info(const struct worker_kvh_source *s);

/* The table of seq_id as the kv-host holds it, into the source's scratch (valid until the
 * next call on s). A sequence the kv-host does not know has an empty table (it never
 * completed a block). */
int worker_kvh_source_table(struct worker_kvh_source *s, uint64_t seq_id,
                            const uint32_t **groups, uint32_t *n_groups, char *err,
                            size_t errlen);
/* Frees on the kv-host the sequences the engine let go of since the last flush (call it
 * after their JobFinished went out). The queue is emptied even when a free fails (logged by
 * the caller): the coordinator frees a finished job's sequence on JobFinished as well. */
int worker_kvh_source_flush_frees(struct worker_kvh_source *s, char *err, size_t errlen);

/* Frees whatever table the kv-host holds for seq_id (a job started afresh whose id ran
 * before); a sequence it does not know is the usual case and no error. */
int worker_kvh_source_forget(struct worker_kvh_source *s, uint64_t seq_id, char *err,
                             size_t errlen);

#endif
