/* workers.c: see workers.h. */
#include "workers.h"

#include <stdio.h>
#include <string.h>

int coord_workers_by_peer(const struct coord_workers *t, const struct nosa_msg_peer *peer)
{
    for (int i = 0; i < t->n; i++)
        if (t->w[i].peer.len == peer->len && memcmp(t->w[i].peer.id, peer->id, peer->len) == 0)
            return i;
    return -1;
}

int coord_workers_by_name(const struct coord_workers *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->w[i].name, name) == 0) return i;
    return -1;
}

int coord_workers_slot(struct coord_workers *t, const char *name)
{
    int i = coord_workers_by_name(t, name);
    if (i >= 0) return i;
    if (t->n == COORD_MAX_WORKERS) return -1;
    i = t->n++;
    memset(&t->w[i], 0, sizeof t->w[i]);
    nosa__serve__step_stats__init(&t->w[i].stats);
    t->w[i].pidfd = -1;
    snprintf(t->w[i].name, sizeof t->w[i].name, "%s", name);
    t->w[i].kvhost = COORD_KVHOST_UNKNOWN;
    return i;
}

uint64_t coord_job_groups(uint64_t tokens, uint32_t block_size)
{
    if (block_size == 0) return 0;
    return (tokens + block_size - 1) / block_size;
}

uint64_t coord_job_groups_held(uint32_t prompt, uint32_t generated, uint32_t fresh_from,
                               uint32_t block_size)
{
    if (block_size == 0 || generated == 0 || generated <= fresh_from) return 0;
    return ((uint64_t)prompt + generated - 1) / block_size;
}

/* The arena of kv-host k when it is known, else NULL. */
static const struct coord_arena *arena_of(const struct coord_arenas *arenas, int k)
{
    return arenas && k >= 0 && k < arenas->n && arenas->a[k].known ? &arenas->a[k] : NULL;
}

void coord_arena_snapshot(struct coord_jobs *jobs, const struct coord_workers *t, int kvhost)
{
    for (size_t i = 0; i < jobs->n; i++) {
        struct coord_job *j = jobs->jobs[i];
        if (j->state != COORD_JOB_RUNNING || j->kvhost != kvhost || j->worker < 0) continue;
        j->held_at_stats = coord_job_groups_held(j->prompt_tokens, j->tok.n, j->fresh_from,
                                                 t->w[j->worker].block_size);
    }
}

void coord_arena_reserve_job(struct coord_arenas *arenas, int kvhost, const struct coord_job *j,
                             uint32_t block_size, uint64_t held)
{
    if (!arena_of(arenas, kvhost)) return;
    uint64_t need = coord_job_groups((uint64_t)j->prompt_tokens + j->max_tokens, block_size);
    if (need > held) arenas->a[kvhost].reserved_groups += need - held;
}

void coord_arenas_reserve(const struct coord_jobs *jobs, const struct coord_workers *t,
                          struct coord_arenas *arenas)
{
    for (int k = 0; k < arenas->n; k++) arenas->a[k].reserved_groups = 0;
    for (size_t i = 0; i < jobs->n; i++) {
        const struct coord_job *j = jobs->jobs[i];
        if (j->state != COORD_JOB_RUNNING || j->worker < 0) continue;
        coord_arena_reserve_job(arenas, j->kvhost, j, t->w[j->worker].block_size,
                                j->held_at_stats);
    }
}

static int context_ok(const struct coord_worker *w, uint64_t tokens)
{
    return !w->max_context || tokens <= w->max_context;
}

/* Whether worker w could take a job of `tokens` tokens were it idle: context and the size
 * of its arena (when known). */
static int could_ever(const struct coord_worker *w, uint64_t tokens,
                      const struct coord_arenas *arenas)
{
    const struct coord_arena *a = arena_of(arenas, w->kvhost);
    return context_ok(w, tokens) && (!a || coord_job_groups(tokens, w->block_size) <= a->n_groups);
}

int coord_workers_pick(const struct coord_workers *t, uint64_t tokens, int kvhost,
                       const struct coord_arenas *arenas, uint64_t now_ms)
{
    int only = -1; /* the job's kv-host, while a live worker of it could take the job */
    for (int i = 0; i < t->n && kvhost >= 0 && only < 0; i++)
        if (t->w[i].alive && t->w[i].kvhost == kvhost && could_ever(&t->w[i], tokens, arenas))
            only = kvhost;
    int best = -1;
    uint32_t best_free = 0;
    for (int i = 0; i < t->n; i++) {
        const struct coord_worker *w = &t->w[i];
        if (!w->alive || now_ms < w->full_until_ms || w->assigned >= w->max_seqs) continue;
        if ((only >= 0 && w->kvhost != only) || !context_ok(w, tokens)) continue;
        const struct coord_arena *a = arena_of(arenas, w->kvhost);
        if (a) {
            uint64_t need = coord_job_groups(tokens, w->block_size);
            uint64_t avail = a->free_groups > a->reserved_groups
                                 ? a->free_groups - a->reserved_groups
                                 : 0;
            if (need > avail) continue;
        }
        uint32_t free_slots = w->max_seqs - w->assigned;
        if (free_slots > best_free) {
            best = i;
            best_free = free_slots;
        }
    }
    return best;
}

int coord_workers_never_fit(const struct coord_workers *t, const struct coord_arenas *arenas,
                            uint64_t tokens, char *why, size_t whylen)
{
    if (t->n == 0) return 0;
    uint32_t max_context = 0;
    const struct coord_worker *biggest = NULL; /* of a long enough context: the largest arena */
    for (int i = 0; i < t->n; i++) {
        const struct coord_worker *w = &t->w[i];
        if (could_ever(w, tokens, arenas)) return 0;
        if (w->max_context > max_context) max_context = w->max_context;
        /* could_ever failed with the context fitting: its arena is known, and too small */
        if (context_ok(w, tokens) && (!biggest || arena_of(arenas, w->kvhost)->n_groups >
                                                      arena_of(arenas, biggest->kvhost)->n_groups))
            biggest = w;
    }
    if (!biggest)
        snprintf(why, whylen, "longer than every registered worker's max_context (%u)",
                 max_context);
    else
        snprintf(why, whylen, "it needs %llu groups of %u tokens, more than the largest arena "
                 "a worker with that context uses (%llu groups)",
                 (unsigned long long)coord_job_groups(tokens, biggest->block_size),
                 biggest->block_size,
                 (unsigned long long)arena_of(arenas, biggest->kvhost)->n_groups);
    return 1;
}

int coord_workers_alive(const struct coord_workers *t)
{
    int n = 0;
    for (int i = 0; i < t->n; i++) n += t->w[i].alive;
    return n;
}
