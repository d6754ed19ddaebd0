/* workers.h: the coordinator's table of workers (registered, alive or declared dead) and the
 * admission rule: which worker, if any, takes a queued job now, what each kv-host's arena
 * still owes the jobs running on it, and which jobs no registered worker can ever take.
 *
 * A worker is known by its name; its ROUTER identity changes when it reconnects, and a
 * re-registration under the same name replaces it. Dead workers stay listed (status) until
 * they register again. This module owns no sockets: pure bookkeeping, unit-tested. */
#ifndef NOSA_COORD_WORKERS_H
#define NOSA_COORD_WORKERS_H

#include <stddef.h>
#include <stdint.h>

#include "coord.h"
#include "jobs.h"
#include "nosa_msg.h"
#include "serve.pb-c.h"

#define COORD_MAX_WORKERS 64
#define COORD_WORKER_NAME_MAX 64

struct coord_worker {
    char name[COORD_WORKER_NAME_MAX];
    char backend[16], mode[16], model[256];
    struct nosa_msg_peer peer;
    int alive;
    uint32_t max_seqs, max_context, block_size;
    int32_t gpu, pid, numa_node;
    int kvhost;                /* index of the kv-host it attached to (its arena), or
                                * COORD_KVHOST_UNKNOWN: its jobs' sequences may be anywhere */
    uint32_t assigned;         /* jobs we have assigned it that have not ended */
    uint64_t last_seen_ms;     /* any message: liveness */
    uint64_t stats_ms;         /* the last Heartbeat with statistics (0: none yet) */
    uint64_t full_until_ms;    /* it answered ERROR_NO_SPACE: no assignments until then */
    uint32_t registrations;    /* Registers answered: an Assign is stamped with this count */
    int pidfd;                 /* the registered process when it runs on this host, else -1 */
    uint64_t fence_until_ms;   /* declared dead and killed: its jobs move once it exited */
    /* The last Heartbeat's statistics, every field as sent (status passes them on); the
     * message's unknown fields are not kept. */
    Nosa__Serve__StepStats stats;
};

struct coord_workers {
    struct coord_worker w[COORD_MAX_WORKERS];
    int n;
};

/* The worker with this identity (alive or not), or -1. */
int coord_workers_by_peer(const struct coord_workers *t, const struct nosa_msg_peer *peer);
int coord_workers_by_name(const struct coord_workers *t, const char *name);
/* The slot for name: its old one, or a new one (kv-host unknown); -1 when the table is full. */
int coord_workers_slot(struct coord_workers *t, const char *name);

/* What a placement knows of one kv-host's arena (from its stats), if anything. */
struct coord_arena {
    int known;                /* its stats have been read (the values: the last read's) */
    uint64_t n_groups;        /* the arena's size, in groups */
    uint64_t free_groups;     /* as of the last stats */
    uint64_t reserved_groups; /* owed to the jobs running on it: what each will still
                               * allocate (coord_arenas_reserve), and the whole need of each
                               * job assigned since */
};
/* Every kv-host's arena, by kv-host index (a worker's and a job's `kvhost`). */
struct coord_arenas {
    struct coord_arena a[COORD_MAX_KVHOSTS];
    int n;
};

/* Groups (logical blocks) a job of this many tokens needs in the arena over its life. The
 * engine allocates a group when a block completes and never appends the last generated
 * token, so it holds at most floor((tokens - 1) / block_size); the ceiling here is that plus
 * one, which stays enough if a backend ever allocates the open block too. */
uint64_t coord_job_groups(uint64_t tokens, uint32_t block_size);
/* Groups of its kv-host's arena a running job holds at least, from the tokens seen: the
 * worker sends a token only after the step that produced it returned, so after `generated`
 * tokens (G >= 1) of a P-token prompt the first P + G - 1 positions have been appended and
 * their complete blocks allocated: floor((P + G - 1) / block_size). A job that started on
 * this kv-host without a table there (a move across kv-hosts, or a journal's job whose
 * place was unknown) brought `fresh_from` tokens along and holds only what it allocated
 * since: nothing is vouched for until it generates one more (0). A lower bound: a chunked
 * prefill, or a step whose tokens have not arrived yet, holds more; the reservation then
 * errs on the safe side. */
uint64_t coord_job_groups_held(uint32_t prompt, uint32_t generated, uint32_t fresh_from,
                               uint32_t block_size);
/* After kv-host `kvhost`'s stats were read: remembers for each job running on it the groups
 * it held at least then (held_at_stats), so the reservation matches those stats however
 * many tokens arrive before the next read. */
void coord_arena_snapshot(struct coord_jobs *jobs, const struct coord_workers *t, int kvhost);
/* Recomputes every known arena's reserved_groups: for each job running on it, its need
 * (coord_job_groups of prompt + max_tokens) minus held_at_stats. So a job admitted against
 * free - reserved never runs the arena out, whatever the running jobs still allocate. */
void coord_arenas_reserve(const struct coord_jobs *jobs, const struct coord_workers *t,
                          struct coord_arenas *arenas);
/* Adds to kv-host kvhost's reserved_groups (when its arena is known) what job j still owes
 * it: its need on a worker of block_size tokens per block minus the `held` groups. */
void coord_arena_reserve_job(struct coord_arenas *arenas, int kvhost, const struct coord_job *j,
                             uint32_t block_size, uint64_t held);

/* The worker that takes a job of `tokens` tokens (prompt + max_tokens) now: alive, not full,
 * a free slot, a long enough context, and (when its kv-host's arena is known) room for the
 * job's groups in that arena beyond what is reserved; among those the one with most free
 * slots (ties: the lowest index). A job whose sequence is held by kv-host `kvhost` (>= 0)
 * goes only to a worker of that kv-host (it resumes from the arena) while a live one could
 * ever take it; else to any (a fresh start there). -1 when none can now. arenas may be NULL
 * (placement by slots and context only). */
int coord_workers_pick(const struct coord_workers *t, uint64_t tokens, int kvhost,
                       const struct coord_arenas *arenas, uint64_t now_ms);

/* 1 when no registered worker, alive or dead, can ever take a job of `tokens` tokens: every
 * one has a shorter max_context, or an arena (where known) with fewer groups than the job
 * needs; why then says the sizes. 0 while some worker could, or none has registered. */
int coord_workers_never_fit(const struct coord_workers *t, const struct coord_arenas *arenas,
                            uint64_t tokens, char *why, size_t whylen);

int coord_workers_alive(const struct coord_workers *t);

#endif
