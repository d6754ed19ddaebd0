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
    t->w[i].pidfd = -1;
    snprintf(t->w[i].name, sizeof t->w[i].name, "%s", name);
    return i;
}

uint64_t coord_job_groups(uint32_t tokens, uint32_t block_size)
{
    if (block_size == 0) return 0;
    return ((uint64_t)tokens + block_size - 1) / block_size;
}

int coord_workers_pick(const struct coord_workers *t, uint32_t tokens,
                       const struct coord_arena *arena, uint64_t now_ms)
{
    int best = -1;
    uint32_t best_free = 0;
    for (int i = 0; i < t->n; i++) {
        const struct coord_worker *w = &t->w[i];
        if (!w->alive || now_ms < w->full_until_ms || w->assigned >= w->max_seqs) continue;
        if (w->max_context && tokens > w->max_context) continue;
        if (arena && arena->known) {
            uint64_t need = coord_job_groups(tokens, w->block_size);
            uint64_t avail = arena->free_groups > arena->reserved_groups
                                 ? arena->free_groups - arena->reserved_groups
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

uint32_t coord_workers_max_context(const struct coord_workers *t)
{
    uint32_t m = 0;
    for (int i = 0; i < t->n; i++)
        if (t->w[i].alive && t->w[i].max_context > m) m = t->w[i].max_context;
    return m;
}

int coord_workers_alive(const struct coord_workers *t)
{
    int n = 0;
    for (int i = 0; i < t->n; i++) n += t->w[i].alive;
    return n;
}
