/* workers.h: the coordinator's table of workers (registered, alive or declared dead) and the
 * admission rule: which worker, if any, takes a queued job now.
 *
 * A worker is known by its name; its ROUTER identity changes when it reconnects, and a
 * re-registration under the same name replaces it. Dead workers stay listed (status) until
 * they register again. This module owns no sockets: pure bookkeeping, unit-tested. */
#ifndef NOSA_COORD_WORKERS_H
#define NOSA_COORD_WORKERS_H

#include <stddef.h>
#include <stdint.h>

#include "nosa_msg.h"

#define COORD_MAX_WORKERS 64
#define COORD_WORKER_NAME_MAX 64

struct coord_step_stats {
    double tokens_per_s, step_seconds, blocks_moved_per_step, bytes_moved_per_step;
    double cache_hit_rate;
    uint64_t steps, tokens;
};

struct coord_worker {
    char name[COORD_WORKER_NAME_MAX];
    char backend[16], mode[16], model[256];
    struct nosa_msg_peer peer;
    int alive;
    uint32_t max_seqs, max_context, block_size;
    int32_t gpu, pid, numa_node;
    uint32_t assigned;         /* jobs we have assigned it that have not ended */
    uint32_t hb_running, hb_free_slots;
    uint64_t last_seen_ms;
    uint64_t full_until_ms;    /* it answered ERROR_NO_SPACE: no assignments until then */
    uint32_t registrations;    /* Registers answered: an Assign is stamped with this count */
    int pidfd;                 /* the registered process when it runs on this host, else -1 */
    uint64_t fence_until_ms;   /* declared dead and killed: its jobs move once it exited */
    struct coord_step_stats stats;
};

struct coord_workers {
    struct coord_worker w[COORD_MAX_WORKERS];
    int n;
};

/* The worker with this identity (alive or not), or -1. */
int coord_workers_by_peer(const struct coord_workers *t, const struct nosa_msg_peer *peer);
int coord_workers_by_name(const struct coord_workers *t, const char *name);
/* The slot for name: its old one, or a new one; -1 when the table is full. */
int coord_workers_slot(struct coord_workers *t, const char *name);

/* What a placement needs to know about the arena (from kv-host stats), if anything. */
struct coord_arena {
    int known;               /* stats were read recently */
    uint64_t free_groups;    /* as of the last stats */
    uint64_t reserved_groups; /* promised to jobs assigned since those stats */
};

/* Groups (logical blocks) a job of this many tokens needs in the arena. */
uint64_t coord_job_groups(uint32_t tokens, uint32_t block_size);

/* The worker that takes a job of `tokens` tokens (prompt + max_tokens) now: alive, not full,
 * a free slot, a long enough context, and (when the arena is known) room in the arena; among
 * those the one with most free slots (ties: the lowest index). -1 when none can now. */
int coord_workers_pick(const struct coord_workers *t, uint32_t tokens,
                       const struct coord_arena *arena, uint64_t now_ms);

/* The longest context any live worker takes, 0 when none is alive. */
uint32_t coord_workers_max_context(const struct coord_workers *t);
int coord_workers_alive(const struct coord_workers *t);

#endif
