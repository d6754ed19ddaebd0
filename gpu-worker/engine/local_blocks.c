/* local_blocks.c: see local_blocks.h. */
#include "local_blocks.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"

struct local_table {
    int used;
    uint64_t seq_id;
    uint32_t n_groups;
    uint32_t *groups; /* [max_blocks_per_seq], part of lb->table_groups */
};

struct nosa_local_blocks {
    struct nosa_kv_arena arena;
    size_t map_bytes;
    uint32_t *free_list; /* [n_groups]: free group ids, a stack */
    uint64_t n_free;
    int max_seqs;
    uint32_t max_blocks;
    struct local_table *tables;
    uint32_t *table_groups; /* [max_seqs * max_blocks] */
};

int nosa_local_blocks_create(const struct nosa_kv_geometry *geom, uint64_t n_groups,
                             int max_seqs, uint32_t max_blocks_per_seq,
                             struct nosa_local_blocks **out, char *err, size_t errlen)
{
    *out = NULL;
    size_t group_bytes = nosa_kv_group_bytes(geom);
    if (n_groups < 1 || n_groups > UINT32_MAX || max_seqs < 1 || max_blocks_per_seq < 1 ||
        group_bytes == 0 || n_groups > SIZE_MAX / group_bytes) {
        nosa_set_error(err, errlen,
                       "local blocks: n_groups = %llu (group %zu bytes), max_seqs = %d, "
                       "max_blocks_per_seq = %u: each must be >= 1 and the arena addressable",
                       (unsigned long long)n_groups, group_bytes, max_seqs, max_blocks_per_seq);
        return -EINVAL;
    }
    struct nosa_local_blocks *lb = calloc(1, sizeof(*lb));
    if (!lb) goto no_memory;
    lb->map_bytes = group_bytes * (size_t)n_groups;
    /* Anonymous and lazily faulted: only the groups a run writes cost memory. */
    void *base = mmap(NULL, lb->map_bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        nosa_set_error(err, errlen, "local blocks: mmap of %zu bytes failed: %s",
                       lb->map_bytes, strerror(errno));
        free(lb);
        return -ENOMEM;
    }
    lb->arena.base = base;
    lb->arena.n_groups = n_groups;
    lb->arena.geom = *geom;
    lb->max_seqs = max_seqs;
    lb->max_blocks = max_blocks_per_seq;
    lb->free_list = malloc((size_t)n_groups * sizeof(*lb->free_list));
    lb->tables = calloc((size_t)max_seqs, sizeof(*lb->tables));
    lb->table_groups = calloc((size_t)max_seqs * max_blocks_per_seq, sizeof(uint32_t));
    if (!lb->free_list || !lb->tables || !lb->table_groups) {
        nosa_local_blocks_destroy(lb);
        goto no_memory;
    }
    /* The stack pops group 0 first, so a fresh arena hands out ascending ids. */
    for (uint64_t i = 0; i < n_groups; i++) lb->free_list[i] = (uint32_t)(n_groups - 1 - i);
    lb->n_free = n_groups;
    for (int s = 0; s < max_seqs; s++)
        lb->tables[s].groups = lb->table_groups + (size_t)s * max_blocks_per_seq;
    *out = lb;
    return 0;
no_memory:
    nosa_set_error(err, errlen, "local blocks: out of memory for %d tables", max_seqs);
    return -ENOMEM;
}

void nosa_local_blocks_destroy(struct nosa_local_blocks *lb)
{
    if (!lb) return;
    if (lb->arena.base) munmap(lb->arena.base, lb->map_bytes);
    free(lb->free_list);
    free(lb->tables);
    free(lb->table_groups);
    free(lb);
}

static struct local_table *find_table(const struct nosa_local_blocks *lb, uint64_t seq_id)
{
    for (int s = 0; s < lb->max_seqs; s++)
        if (lb->tables[s].used && lb->tables[s].seq_id == seq_id) return &lb->tables[s];
    return NULL;
}

static struct local_table *unused_table(const struct nosa_local_blocks *lb, int skip)
{
    for (int s = 0; s < lb->max_seqs; s++)
        if (!lb->tables[s].used && skip-- == 0) return &lb->tables[s];
    return NULL;
}

/* Checks every request before anything changes (all or nothing). */
static int check_requests(const struct nosa_local_blocks *lb,
                          const struct nosa_block_alloc *reqs, int n, char *err, size_t errlen)
{
    uint64_t total = 0;
    int new_seqs = 0;
    for (int i = 0; i < n; i++) {
        const struct nosa_block_alloc *r = &reqs[i];
        const struct local_table *t = find_table(lb, r->seq_id);
        uint32_t have = t ? t->n_groups : 0;
        for (int j = 0; j < i; j++)
            if (reqs[j].seq_id == r->seq_id) {
                nosa_set_error(err, errlen, "local blocks: sequence %llu listed twice",
                               (unsigned long long)r->seq_id);
                return -EINVAL;
            }
        if (r->n_groups < 1 || !r->groups) {
            nosa_set_error(err, errlen, "local blocks: sequence %llu asks for %u groups",
                           (unsigned long long)r->seq_id, r->n_groups);
            return -EINVAL;
        }
        if (r->first_index != have) {
            nosa_set_error(err, errlen,
                           "local blocks: sequence %llu: caller's table has %u groups, ours %u",
                           (unsigned long long)r->seq_id, r->first_index, have);
            return -EPROTO;
        }
        if ((uint64_t)have + r->n_groups > lb->max_blocks) {
            nosa_set_error(err, errlen,
                           "local blocks: sequence %llu: %u + %u groups exceed %u per sequence",
                           (unsigned long long)r->seq_id, have, r->n_groups, lb->max_blocks);
            return -ENOSPC;
        }
        new_seqs += !t;
        total += r->n_groups;
    }
    if (new_seqs > 0 && !unused_table(lb, new_seqs - 1)) {
        nosa_set_error(err, errlen, "local blocks: no table left for %d new sequences",
                       new_seqs);
        return -ENOSPC;
    }
    if (total > lb->n_free) {
        nosa_set_error(err, errlen, "local blocks: %llu groups asked, %llu free",
                       (unsigned long long)total, (unsigned long long)lb->n_free);
        return -ENOSPC;
    }
    return 0;
}

static int local_alloc(void *ctx, struct nosa_block_alloc *reqs, int n, char *err,
                       size_t errlen)
{
    struct nosa_local_blocks *lb = ctx;
    int rc = check_requests(lb, reqs, n, err, errlen);
    if (rc) return rc;
    for (int i = 0; i < n; i++) {
        struct local_table *t = find_table(lb, reqs[i].seq_id);
        if (!t) {
            t = unused_table(lb, 0);
            t->used = 1;
            t->seq_id = reqs[i].seq_id;
            t->n_groups = 0;
        }
        for (uint32_t g = 0; g < reqs[i].n_groups; g++) {
            uint32_t id = lb->free_list[--lb->n_free];
            t->groups[t->n_groups++] = id;
            reqs[i].groups[g] = id;
        }
    }
    return 0;
}

static int local_free(void *ctx, const uint64_t *seq_ids, int n, char *err, size_t errlen)
{
    struct nosa_local_blocks *lb = ctx;
    for (int i = 0; i < n; i++)
        if (!find_table(lb, seq_ids[i])) {
            nosa_set_error(err, errlen, "local blocks: unknown sequence %llu",
                           (unsigned long long)seq_ids[i]);
            return -ENOENT;
        }
    for (int i = 0; i < n; i++) {
        struct local_table *t = find_table(lb, seq_ids[i]);
        if (!t) continue; /* listed twice: freed by the first */
        while (t->n_groups > 0) lb->free_list[lb->n_free++] = t->groups[--t->n_groups];
        t->used = 0;
    }
    return 0;
}

struct nosa_block_source nosa_local_blocks_source(struct nosa_local_blocks *lb)
{
    struct nosa_block_source s = {
        .ctx = lb,
        .arena = &lb->arena,
        .alloc = local_alloc,
        .free_seqs = local_free,
    };
    return s;
}

int nosa_local_blocks_table(const struct nosa_local_blocks *lb, uint64_t seq_id,
                            const uint32_t **groups, uint32_t *n_groups)
{
    const struct local_table *t = find_table(lb, seq_id);
    if (!t) return -ENOENT;
    *groups = t->groups;
    *n_groups = t->n_groups;
    return 0;
}

uint64_t nosa_local_blocks_free_groups(const struct nosa_local_blocks *lb)
{
    return lb->n_free;
}

int nosa_local_blocks_seqs(const struct nosa_local_blocks *lb)
{
    int n = 0;
    for (int s = 0; s < lb->max_seqs; s++) n += lb->tables[s].used;
    return n;
}
