/* jobs.h: the coordinator's job table: every job it knows (queued, running, recovering after a
 * restart, and the most recent finished ones, kept for `nosa status --job`), their generated
 * tokens (deduplicated by index: a worker re-sends from index 0 after a reconnect), the queue
 * order, and who streams each job (its subscribed client).
 *
 * This module owns the jobs' memory. It knows nothing of sockets or the journal: the caller
 * (coord.c) journals what changes and sends what this table says. Ids grow; lookups are a
 * binary search over the table, which is kept in id order. */
#ifndef NOSA_COORD_JOBS_H
#define NOSA_COORD_JOBS_H

#include <stddef.h>
#include <stdint.h>

#include "nosa_msg.h"
#include "token_store.h"

enum coord_job_state {
    COORD_JOB_QUEUED = 0,     /* waiting for a worker (maybe with tokens: a resume) */
    COORD_JOB_RUNNING = 1,    /* assigned to worker `worker` */
    COORD_JOB_RECOVERING = 2, /* read back from the journal: waiting for its worker to
                               * re-register and claim it, else queued at recover_deadline */
    COORD_JOB_FINISHED = 3,
};

/* A job's `kvhost` when no kv-host holds its sequence (new, or freed), and when one may but
 * which is not known (read back from the journal: any may hold it). */
#define COORD_KVHOST_NONE (-1)
#define COORD_KVHOST_UNKNOWN (-2)

/* Finished jobs kept (oldest dropped first) so their result can still be asked for. */
#define COORD_JOBS_KEEP_FINISHED 1024

struct coord_job {
    uint64_t id;
    enum coord_job_state state;
    uint8_t *spec;          /* the packed JobSpec as accepted (job_id set): Assign and journal */
    size_t spec_len;
    uint32_t prompt_tokens; /* as counted at submit (text: bytes + BOS) */
    uint64_t client_key;    /* JobSpec.client_key: a submit sent again finds the job by it */
    uint32_t max_tokens;
    uint64_t queue_seq;     /* queue order: smaller goes first (a moved job keeps its place) */
    int worker;             /* index in the worker table while RUNNING, else -1 */
    int prev_worker;        /* the worker it was taken from when requeued, else -1: told to
                             * stop if it is still dead when the job moves elsewhere */
    uint32_t assigned_at;   /* its worker's registrations when it was assigned there */
    uint32_t prompt_done;   /* no token yet: prompt tokens its worker reported prefilled (the
                             * next Assign resumes from their blocks) */
    uint64_t recover_deadline_ms;
    int cancel_requested;
    int kvhost;             /* index of the kv-host holding its sequence, or COORD_KVHOST_* */
    uint32_t fresh_from;    /* tokens it had when it last started there without a table
                             * (coord_job_groups_held) */
    uint64_t held_at_stats; /* groups it held at least at that kv-host's last stats read
                             * (0 when assigned since) */

    struct token_store tok; /* generated tokens */

    /* when finished */
    int reason;             /* Nosa__Serve__FinishReason */
    int error_code;         /* Nosa__ErrorCode */
    char error[256];
    uint32_t recomputed_tokens;

    /* the client streaming it (submit with stream, or attach) */
    int has_client;
    struct nosa_msg_peer client;
    uint64_t client_request_id;
};

struct coord_jobs {
    struct coord_job **jobs; /* by id, ascending */
    size_t n, cap;
    uint64_t next_id;        /* the next id to give (ids start at 1) */
    uint64_t next_queue_seq;
    uint64_t completed, failed; /* since the coordinator started (or from the journal) */
};

void coord_jobs_init(struct coord_jobs *t);
void coord_jobs_free(struct coord_jobs *t);

/* Adds a job with id (from next_id, or the journal's), copying spec. Returns it or NULL
 * (out of memory, or the id exists) with err set. next_id moves past id. */
struct coord_job *coord_jobs_add(struct coord_jobs *t, uint64_t id, const uint8_t *spec,
                                 size_t spec_len, uint32_t prompt_tokens, uint32_t max_tokens,
                                 char *err, size_t errlen);
struct coord_job *coord_jobs_find(const struct coord_jobs *t, uint64_t id);

/* Appends token `index` if it is the next one. Returns 1 when appended, 0 when it is a
 * duplicate (index already held), -1 when it would leave a gap or memory ran out (err). */
int coord_job_add_token(struct coord_job *j, uint32_t index, int32_t id, const uint8_t *text,
                        size_t text_len, char *err, size_t errlen);

/* Puts a job (back) at the queue: at its old place when it had one (a moved job), else last. */
void coord_job_enqueue(struct coord_jobs *t, struct coord_job *j);
/* The queued job to place next given a predicate (NULL: any), or NULL. */
struct coord_job *coord_jobs_next_queued(const struct coord_jobs *t,
                                         int (*fits)(const struct coord_job *, void *),
                                         void *arg);
/* Marks the job finished (counts it completed or failed). The table is not changed: a loop
 * over it may finish jobs as it goes. */
void coord_job_finish(struct coord_jobs *t, struct coord_job *j, int reason, int error_code,
                      const char *error, uint32_t recomputed_tokens);
/* Drops the oldest finished jobs beyond COORD_JOBS_KEEP_FINISHED (once per loop turn, outside
 * any loop over the table: pointers to the dropped jobs become invalid). */
void coord_jobs_drop_old_finished(struct coord_jobs *t);

/* Counts by state. */
size_t coord_jobs_count(const struct coord_jobs *t, enum coord_job_state state);
const char *coord_job_state_name(enum coord_job_state s);

#endif
