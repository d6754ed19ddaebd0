/* kvh_seqmap.c: seq_id -> block table hash map (kvh_seqmap.h). */
#include "kvh_seqmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static size_t slot_of(uint64_t seq_id, size_t n_slots)
{
    /* splitmix64 finaliser: job ids are often consecutive. */
    uint64_t z = seq_id + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (size_t)z & (n_slots - 1);
}

struct kvh_seq *kvh_seqmap_find(const struct kvh_seqmap *m, uint64_t seq_id)
{
    if (!m->n_slots) return NULL;
    for (size_t i = slot_of(seq_id, m->n_slots);; i = (i + 1) & (m->n_slots - 1)) {
        struct kvh_seq *s = &m->slots[i];
        if (!s->used) return NULL;
        if (s->seq_id == seq_id) return s;
    }
}

static void place(struct kvh_seq *slots, size_t n_slots, const struct kvh_seq *entry)
{
    size_t i = slot_of(entry->seq_id, n_slots);
    while (slots[i].used) i = (i + 1) & (n_slots - 1);
    slots[i] = *entry;
}

static int grow(struct kvh_seqmap *m)
{
    size_t n = m->n_slots ? m->n_slots * 2 : 64;
    struct kvh_seq *slots = calloc(n, sizeof(*slots));
    if (!slots) return -ENOMEM;
    for (size_t i = 0; i < m->n_slots; i++)
        if (m->slots[i].used) place(slots, n, &m->slots[i]);
    free(m->slots);
    m->slots = slots;
    m->n_slots = n;
    return 0;
}

struct kvh_seq *kvh_seqmap_get_or_insert(struct kvh_seqmap *m, uint64_t seq_id)
{
    struct kvh_seq *s = kvh_seqmap_find(m, seq_id);
    if (s) return s;
    if ((m->count + 1) * 2 > m->n_slots && grow(m)) return NULL;
    struct kvh_seq entry = {.seq_id = seq_id, .used = 1};
    place(m->slots, m->n_slots, &entry);
    m->count++;
    return kvh_seqmap_find(m, seq_id);
}

int kvh_seqmap_reserve(struct kvh_seq *s, uint32_t extra)
{
    uint64_t need = (uint64_t)s->n_groups + extra;
    if (need <= s->cap) return 0;
    if (need > UINT32_MAX) return -ENOMEM;
    uint64_t cap = s->cap ? s->cap : 8;
    while (cap < need) cap *= 2;
    if (cap > UINT32_MAX) cap = UINT32_MAX;
    uint32_t *g = realloc(s->groups, cap * sizeof(*g));
    if (!g) return -ENOMEM;
    s->groups = g;
    s->cap = (uint32_t)cap;
    return 0;
}

void kvh_seqmap_remove(struct kvh_seqmap *m, uint64_t seq_id)
{
    struct kvh_seq *s = kvh_seqmap_find(m, seq_id);
    if (!s) return;
    free(s->groups);
    size_t mask = m->n_slots - 1, hole = (size_t)(s - m->slots);
    memset(s, 0, sizeof(*s));
    m->count--;
    /* Backward shift: move later entries of the probe run into the hole when their home slot
     * does not lie cyclically in (hole, i]. */
    for (size_t i = (hole + 1) & mask; m->slots[i].used; i = (i + 1) & mask) {
        size_t home = slot_of(m->slots[i].seq_id, m->n_slots);
        int home_in_range = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
        if (home_in_range) continue;
        m->slots[hole] = m->slots[i];
        memset(&m->slots[i], 0, sizeof(m->slots[i]));
        hole = i;
    }
}

void kvh_seqmap_free(struct kvh_seqmap *m)
{
    for (size_t i = 0; i < m->n_slots; i++) free(m->slots[i].groups);
    free(m->slots);
    memset(m, 0, sizeof(*m));
}
