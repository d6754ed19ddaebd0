/* kvh_store.c: allocator, tables, transactions and recovery in the arena (kvh_store.h).
 * Every step of a transaction is a fault point (docs/FAULTS.md) and is separated from the
 * next by a compiler barrier, so the stores reach the shared mapping in program order: a
 * process killed at any instruction leaves them as some prefix of that order. */
#include "kvh_store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fault.h"
#include "log.h"

#define KVH_HEADER_AREA 4096u /* header, state slots: one page */

static void store_barrier(void)
{
    atomic_signal_fence(memory_order_seq_cst);
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

int kvh_store_plan(uint64_t arena_bytes, const struct nosa_kv_geometry *g, uint64_t blocks_align,
                   struct kvh_store_plan *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    uint64_t group_bytes = nosa_kv_group_bytes(g);
    if (!group_bytes || !blocks_align) {
        nosa_set_error(err, errlen, "kvh store: empty geometry or alignment");
        return -EINVAL;
    }
    out->arena_bytes = arena_bytes;
    out->state_offset = sizeof(struct kvh_header);
    out->journal_offset = KVH_HEADER_AREA;
    out->owners_offset = align_up(out->journal_offset + sizeof(struct kvh_journal), 4096);
    uint64_t n = 0;
    if (arena_bytes > out->owners_offset)
        n = (arena_bytes - out->owners_offset) / (group_bytes + sizeof(struct kvh_owner));
    if (n > UINT32_MAX) n = UINT32_MAX; /* group ids are uint32 in the protocol */
    while (n > 0 && align_up(out->owners_offset + n * sizeof(struct kvh_owner), blocks_align) +
                            n * group_bytes > arena_bytes)
        n--;
    if (n == 0) {
        nosa_set_error(err, errlen,
                       "arena of %" PRIu64 " bytes holds no group of %" PRIu64
                       " bytes after its %" PRIu64 " bytes of header and journal",
                       arena_bytes, group_bytes, out->owners_offset);
        return -ENOSPC;
    }
    out->n_groups = n;
    out->blocks_offset =
        align_up(out->owners_offset + n * sizeof(struct kvh_owner), blocks_align);
    return 0;
}

static void owner_write(struct kvh_owner *o, uint32_t state, uint64_t seq_id, uint32_t index,
                        uint64_t txn, const char *torn_point)
{
    o->seq_id = seq_id;
    o->txn = txn;
    store_barrier();
    NOSA_FAULT_POINT(torn_point); /* half a record written */
    o->index = index;
    o->state = state;
    o->reserved = 0;
    struct kvh_owner tmp = *o;
    o->checksum = kvh_owner_checksum(&tmp);
    store_barrier();
}

/* Makes a new state current: written into the other slot, checksum last. */
static void state_commit(struct kvh_store *st, uint64_t generation, uint64_t done_txn)
{
    const struct kvh_state *cur = &st->state_slots[st->cur_slot];
    int next = 1 - st->cur_slot;
    struct kvh_state *s = &st->state_slots[next];
    s->seq_no = cur->seq_no + 1;
    s->generation = generation;
    s->done_txn = done_txn;
    s->reserved = 0;
    store_barrier();
    NOSA_FAULT_POINT("kvhost.commit.torn");
    struct kvh_state tmp = *s;
    s->checksum = kvh_state_checksum(&tmp);
    store_barrier();
    st->cur_slot = next;
}

static void journal_write(struct kvh_store *st, uint64_t txn, uint32_t op, const uint64_t *ids,
                          uint32_t n_ids)
{
    struct kvh_journal *j = st->journal;
    j->txn = txn;
    j->op = op;
    j->n_ids = n_ids;
    j->reserved = 0;
    if (n_ids) memcpy(j->ids, ids, n_ids * sizeof(*ids));
    store_barrier();
    NOSA_FAULT_POINT("kvhost.journal.torn");
    j->checksum = kvh_journal_checksum(j);
    store_barrier();
}

static void store_bind(struct kvh_store *st, uint8_t *base, uint64_t arena_bytes)
{
    st->base = base;
    st->arena_bytes = arena_bytes;
    st->hdr = (const struct kvh_header *)base;
    st->state_slots = (struct kvh_state *)(base + st->hdr->state_offset);
    st->journal = (struct kvh_journal *)(base + st->hdr->journal_offset);
    st->owners = (struct kvh_owner *)(base + st->hdr->owners_offset);
    st->n_groups = st->hdr->n_groups;
    st->geom = (struct nosa_kv_geometry){
        .n_layers = st->hdr->n_layers,
        .n_kv_heads = st->hdr->n_kv_heads,
        .block_size = st->hdr->block_size,
        .head_dim = st->hdr->head_dim,
        .dtype = st->hdr->dtype,
    };
}

int kvh_store_format(uint8_t *base, const struct kvh_store_plan *plan,
                     const struct nosa_kv_geometry *g, struct kvh_store *out, char *err,
                     size_t errlen)
{
    memset(out, 0, sizeof(*out));
    struct kvh_header *h = (struct kvh_header *)base;
    h->magic = 0; /* an interrupted format never looks like an arena */
    store_barrier();
    struct kvh_owner *owners = (struct kvh_owner *)(base + plan->owners_offset);
    for (uint64_t i = 0; i < plan->n_groups; i++)
        owner_write(&owners[i], KVH_OWNER_FREE, 0, 0, 0, "kvhost.format.owner_torn");
    struct kvh_state *slots = (struct kvh_state *)(base + plan->state_offset);
    memset(slots, 0, 2 * sizeof(*slots));
    slots[0].generation = 0; /* recovery below makes it 1 */
    slots[0].checksum = kvh_state_checksum(&slots[0]);
    memset(base + plan->journal_offset, 0, sizeof(struct kvh_journal)); /* no intent */
    *h = (struct kvh_header){
        .layout_version = KVH_LAYOUT_VERSION,
        .header_bytes = sizeof(struct kvh_header),
        .arena_bytes = plan->arena_bytes,
        .n_layers = g->n_layers,
        .n_kv_heads = g->n_kv_heads,
        .block_size = g->block_size,
        .head_dim = g->head_dim,
        .dtype = g->dtype,
        .block_bytes = nosa_kv_block_bytes(g),
        .group_bytes = nosa_kv_group_bytes(g),
        .n_groups = plan->n_groups,
        .state_offset = plan->state_offset,
        .journal_offset = plan->journal_offset,
        .owners_offset = plan->owners_offset,
        .blocks_offset = plan->blocks_offset,
        .created_unix = (uint64_t)time(NULL),
    };
    h->checksum = kvh_header_checksum(h);
    store_barrier();
    NOSA_FAULT_POINT("kvhost.format.header");
    h->magic = KVH_MAGIC;
    store_barrier();
    return kvh_store_recover(base, plan->arena_bytes, out, err, errlen);
}

static int header_check(const struct kvh_header *h, uint64_t arena_bytes, char *err,
                        size_t errlen)
{
    if (arena_bytes < KVH_HEADER_AREA) {
        nosa_set_error(err, errlen, "arena is %" PRIu64 " bytes, too small for a header",
                       arena_bytes);
        return -EINVAL;
    }
    if (h->magic != KVH_MAGIC) {
        nosa_set_error(err, errlen,
                       "bad magic 0x%016" PRIx64 " (not a nosa kv-host arena, or its creation "
                       "was interrupted)", h->magic);
        return -EINVAL;
    }
    if (h->layout_version != KVH_LAYOUT_VERSION || h->header_bytes != sizeof(*h)) {
        nosa_set_error(err, errlen, "layout version %u (header %u bytes), this build reads %u",
                       h->layout_version, h->header_bytes, KVH_LAYOUT_VERSION);
        return -EINVAL;
    }
    if (h->checksum != kvh_header_checksum(h)) {
        nosa_set_error(err, errlen, "header checksum mismatch (0x%08x stored, 0x%08x computed)",
                       h->checksum, kvh_header_checksum(h));
        return -EINVAL;
    }
    if (h->arena_bytes != arena_bytes) {
        nosa_set_error(err, errlen, "arena is %" PRIu64 " bytes, its header says %" PRIu64
                       " (truncated?)", arena_bytes, h->arena_bytes);
        return -EINVAL;
    }
    struct nosa_kv_geometry g = {h->n_layers, h->n_kv_heads, h->block_size, h->head_dim,
                                 h->dtype};
    struct kvh_store_plan plan;
    char plan_err[160];
    if (g.dtype != NOSA_KV_DTYPE_BF16 || !g.n_layers || !g.n_kv_heads || !g.block_size ||
        !g.head_dim || h->block_bytes != nosa_kv_block_bytes(&g) ||
        h->group_bytes != nosa_kv_group_bytes(&g) ||
        kvh_store_plan(arena_bytes, &g, 4096, &plan, plan_err, sizeof(plan_err)) ||
        h->state_offset != plan.state_offset || h->journal_offset != plan.journal_offset ||
        h->owners_offset != plan.owners_offset || h->n_groups == 0 ||
        h->n_groups > plan.n_groups || h->blocks_offset % 4096 ||
        h->blocks_offset < h->owners_offset + h->n_groups * sizeof(struct kvh_owner) ||
        h->blocks_offset + h->n_groups * h->group_bytes > arena_bytes) {
        nosa_set_error(err, errlen, "header geometry or offsets are inconsistent");
        return -EINVAL;
    }
    return 0;
}

/* Index of the current state slot, or -1 when neither checksum holds. */
static int state_pick(const struct kvh_state *slots)
{
    int ok0 = slots[0].checksum == kvh_state_checksum(&slots[0]);
    int ok1 = slots[1].checksum == kvh_state_checksum(&slots[1]);
    if (ok0 && ok1) return slots[1].seq_no > slots[0].seq_no ? 1 : 0;
    return ok0 ? 0 : ok1 ? 1 : -1;
}

static int owner_valid(const struct kvh_owner *o)
{
    return o->checksum == kvh_owner_checksum(o) &&
           (o->state == KVH_OWNER_FREE || o->state == KVH_OWNER_USED);
}

/* Finishes the open transaction (txn > done_txn): every record it may have touched ends free.
 * Idempotent, so a crash here is recovered by the next run. */
static int txn_settle(struct kvh_store *st, const struct kvh_journal *j, char *err,
                      size_t errlen)
{
    struct kvh_seqmap freeing = {0};
    if (j->op == KVH_JOURNAL_FREE) {
        for (uint32_t i = 0; i < j->n_ids; i++)
            if (!kvh_seqmap_get_or_insert(&freeing, j->ids[i])) {
                kvh_seqmap_free(&freeing);
                nosa_set_error(err, errlen, "recovery: out of memory");
                return -ENOMEM;
            }
    } else if (j->op != KVH_JOURNAL_ALLOC) {
        nosa_set_error(err, errlen, "journal of txn %" PRIu64 " has unknown op %u", j->txn,
                       j->op);
        return -EINVAL;
    }
    uint64_t settled = 0;
    for (uint64_t g = 0; g < st->n_groups; g++) {
        struct kvh_owner *o = &st->owners[g];
        int undo;
        if (!owner_valid(o)) undo = 1; /* torn by the crash: only this txn writes records */
        else if (o->state != KVH_OWNER_USED) undo = 0;
        else if (j->op == KVH_JOURNAL_ALLOC) undo = o->txn == j->txn;
        else undo = kvh_seqmap_find(&freeing, o->seq_id) != NULL;
        if (!undo) continue;
        owner_write(o, KVH_OWNER_FREE, o->seq_id, 0, j->txn, "kvhost.recover.owner_torn");
        NOSA_FAULT_POINT("kvhost.recover.owner");
        settled++;
    }
    kvh_seqmap_free(&freeing);
    LOG_INFO("kvhost", "recovery: %s of txn %" PRIu64 " was interrupted, %s it: %" PRIu64
             " groups freed", j->op == KVH_JOURNAL_ALLOC ? "alloc" : "free", j->txn,
             j->op == KVH_JOURNAL_ALLOC ? "undid" : "finished", settled);
    return 0;
}

/* Builds the free stack and the table index from the owner records. */
static int index_build(struct kvh_store *st, char *err, size_t errlen)
{
    st->free_stack = malloc((size_t)st->n_groups * sizeof(*st->free_stack));
    if (!st->free_stack) {
        nosa_set_error(err, errlen, "out of memory for %" PRIu64 " groups", st->n_groups);
        return -ENOMEM;
    }
    for (uint64_t g = st->n_groups; g-- > 0;) {
        const struct kvh_owner *o = &st->owners[g];
        if (!owner_valid(o)) {
            nosa_set_error(err, errlen, "owner record of group %" PRIu64 " is corrupted "
                           "(checksum or state) outside any open transaction", g);
            return -EINVAL;
        }
        if (o->state == KVH_OWNER_FREE) {
            st->free_stack[st->n_free++] = (uint32_t)g;
            continue;
        }
        struct kvh_seq *s = kvh_seqmap_get_or_insert(&st->seqs, o->seq_id);
        if (!s || kvh_seqmap_reserve(s, 1)) {
            nosa_set_error(err, errlen, "out of memory for the table of seq %" PRIu64,
                           o->seq_id);
            return -ENOMEM;
        }
        s->groups[s->n_groups++] = UINT32_MAX; /* counted now, placed below */
    }
    for (uint64_t g = 0; g < st->n_groups; g++) {
        const struct kvh_owner *o = &st->owners[g];
        if (o->state != KVH_OWNER_USED) continue;
        struct kvh_seq *s = kvh_seqmap_find(&st->seqs, o->seq_id);
        if (o->index >= s->n_groups) {
            nosa_set_error(err, errlen, "table of seq %" PRIu64 " has a hole: group %" PRIu64
                           " is logical block %u of %u", o->seq_id, g, o->index, s->n_groups);
            return -EINVAL;
        }
        if (s->groups[o->index] != UINT32_MAX) {
            nosa_set_error(err, errlen, "table of seq %" PRIu64 ": logical block %u is in "
                           "groups %u and %" PRIu64, o->seq_id, o->index,
                           s->groups[o->index], g);
            return -EINVAL;
        }
        s->groups[o->index] = (uint32_t)g;
    }
    return 0;
}

int kvh_store_recover(uint8_t *base, uint64_t arena_bytes, struct kvh_store *out, char *err,
                      size_t errlen)
{
    memset(out, 0, sizeof(*out));
    int rc = header_check((const struct kvh_header *)base, arena_bytes, err, errlen);
    if (rc) return rc;
    store_bind(out, base, arena_bytes);
    out->cur_slot = state_pick(out->state_slots);
    if (out->cur_slot < 0) {
        nosa_set_error(err, errlen, "both state slots fail their checksums");
        return -EINVAL;
    }
    const struct kvh_state *cur = &out->state_slots[out->cur_slot];
    const struct kvh_journal *j = out->journal;
    int open_txn = j->n_ids <= KVH_JOURNAL_MAX_IDS && j->checksum == kvh_journal_checksum(j) &&
                   j->txn > cur->done_txn;
    uint64_t done_txn = cur->done_txn;
    if (open_txn) {
        rc = txn_settle(out, j, err, errlen);
        if (rc) goto fail;
        done_txn = j->txn;
    }
    rc = index_build(out, err, errlen);
    if (rc) goto fail;
    out->next_txn = done_txn + 1;
    state_commit(out, cur->generation + 1, done_txn);
    return 0;
fail:
    kvh_store_close(out);
    return rc;
}

void kvh_store_close(struct kvh_store *st)
{
    kvh_seqmap_free(&st->seqs);
    free(st->free_stack);
    memset(st, 0, sizeof(*st));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* -EINVAL naming the first id listed twice. */
static int ids_unique(const uint64_t *ids, size_t n, char *err, size_t errlen)
{
    if (n < 2) return 0;
    uint64_t *sorted = malloc(n * sizeof(*sorted));
    if (!sorted) {
        nosa_set_error(err, errlen, "out of memory for %zu ids", n);
        return -ENOMEM;
    }
    memcpy(sorted, ids, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_u64);
    int rc = 0;
    for (size_t i = 1; i < n && !rc; i++)
        if (sorted[i] == sorted[i - 1]) {
            nosa_set_error(err, errlen, "seq %" PRIu64 " is listed twice", sorted[i]);
            rc = -EINVAL;
        }
    free(sorted);
    return rc;
}

int kvh_store_alloc(struct kvh_store *st, const struct kvh_seq_alloc *reqs, size_t n,
                    uint32_t *first_index, uint32_t *groups, char *err, size_t errlen)
{
    if (n > KVH_JOURNAL_MAX_IDS) {
        nosa_set_error(err, errlen, "%zu sequences in one alloc, the limit is %u", n,
                       KVH_JOURNAL_MAX_IDS);
        return -E2BIG;
    }
    uint64_t ids[KVH_JOURNAL_MAX_IDS], total = 0;
    for (size_t i = 0; i < n; i++) {
        ids[i] = reqs[i].seq_id;
        total += reqs[i].n_groups;
        const struct kvh_seq *s = kvh_store_table(st, reqs[i].seq_id);
        if (s && (uint64_t)s->n_groups + reqs[i].n_groups > UINT32_MAX) {
            nosa_set_error(err, errlen, "seq %" PRIu64 " would pass 2^32 groups",
                           reqs[i].seq_id);
            return -E2BIG;
        }
    }
    int rc = ids_unique(ids, n, err, errlen);
    if (rc) return rc;
    if (total > st->n_free) {
        nosa_set_error(err, errlen, "out of space: %" PRIu64 " groups asked for %zu sequences, %"
                       PRIu64 " of %" PRIu64 " free", total, n, st->n_free, st->n_groups);
        return -ENOSPC;
    }
    /* Everything that can fail happens before the arena is touched. */
    for (size_t i = 0; i < n; i++) {
        if (!reqs[i].n_groups) continue;
        struct kvh_seq *s = kvh_seqmap_get_or_insert(&st->seqs, reqs[i].seq_id);
        if (!s || kvh_seqmap_reserve(s, reqs[i].n_groups)) {
            for (size_t k = 0; k <= i; k++) {
                const struct kvh_seq *t = kvh_seqmap_find(&st->seqs, reqs[k].seq_id);
                if (t && !t->n_groups) kvh_seqmap_remove(&st->seqs, reqs[k].seq_id);
            }
            nosa_set_error(err, errlen, "out of memory for the table of seq %" PRIu64,
                           reqs[i].seq_id);
            return -ENOMEM;
        }
    }
    uint64_t txn = st->next_txn++;
    journal_write(st, txn, KVH_JOURNAL_ALLOC, NULL, 0);
    NOSA_FAULT_POINT("kvhost.alloc.journal");
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        struct kvh_seq *s = kvh_seqmap_find(&st->seqs, reqs[i].seq_id);
        first_index[i] = s ? s->n_groups : 0;
        for (uint32_t k = 0; k < reqs[i].n_groups; k++) {
            uint32_t g = st->free_stack[--st->n_free];
            owner_write(&st->owners[g], KVH_OWNER_USED, reqs[i].seq_id, s->n_groups, txn,
                        "kvhost.alloc.owner_torn");
            NOSA_FAULT_POINT("kvhost.alloc.owner");
            s->groups[s->n_groups++] = g;
            groups[at++] = g;
        }
    }
    state_commit(st, kvh_store_generation(st), txn);
    NOSA_FAULT_POINT("kvhost.alloc.committed");
    return 0;
}

int kvh_store_free(struct kvh_store *st, const uint64_t *seq_ids, size_t n,
                   uint64_t *freed_groups, char *err, size_t errlen)
{
    *freed_groups = 0;
    if (n > KVH_JOURNAL_MAX_IDS) {
        nosa_set_error(err, errlen, "%zu sequences in one free, the limit is %u", n,
                       KVH_JOURNAL_MAX_IDS);
        return -E2BIG;
    }
    for (size_t i = 0; i < n; i++)
        if (!kvh_store_table(st, seq_ids[i])) {
            nosa_set_error(err, errlen, "unknown sequence id %" PRIu64, seq_ids[i]);
            return -ENOENT;
        }
    int rc = ids_unique(seq_ids, n, err, errlen);
    if (rc) return rc;
    uint64_t txn = st->next_txn++;
    journal_write(st, txn, KVH_JOURNAL_FREE, seq_ids, (uint32_t)n);
    NOSA_FAULT_POINT("kvhost.free.journal");
    for (size_t i = 0; i < n; i++) {
        const struct kvh_seq *s = kvh_store_table(st, seq_ids[i]);
        for (uint32_t k = 0; k < s->n_groups; k++) {
            uint32_t g = s->groups[k];
            owner_write(&st->owners[g], KVH_OWNER_FREE, seq_ids[i], 0, txn,
                        "kvhost.free.owner_torn");
            NOSA_FAULT_POINT("kvhost.free.owner");
            st->free_stack[st->n_free++] = g;
        }
        *freed_groups += s->n_groups;
    }
    state_commit(st, kvh_store_generation(st), txn);
    NOSA_FAULT_POINT("kvhost.free.committed");
    for (size_t i = 0; i < n; i++) kvh_seqmap_remove(&st->seqs, seq_ids[i]);
    return 0;
}

const struct kvh_seq *kvh_store_table(const struct kvh_store *st, uint64_t seq_id)
{
    const struct kvh_seq *s = kvh_seqmap_find(&st->seqs, seq_id);
    return s && s->n_groups ? s : NULL;
}
