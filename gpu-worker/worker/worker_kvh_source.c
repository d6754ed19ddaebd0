/* worker_kvh_source.c: see worker_kvh_source.h. */
#include "worker_kvh_source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "worker_clock.h"

struct worker_kvh_source {
    struct worker_kvh_options opts; /* strings and hook borrowed from the caller */
    struct kvh_client *client;
    struct kvh_attach_info info;
    struct kvh_mapping map;
    struct nosa_kv_arena arena;
    struct kvh_seq_alloc *seqs; /* [max_seqs] */
    uint32_t *first_index;      /* [max_seqs] */
    uint32_t *groups;           /* [groups_cap] */
    size_t groups_cap;
    uint32_t *table;            /* [max_blocks_per_seq] */
    struct worker_kvh_failure *failures; /* [max_seqs] */
    size_t n_failures;
    /* Sequences the engine let go of, freed on the kv-host by flush_frees (after the worker
     * sent their JobFinished). [frees_cap]: max_seqs, grown if ever exceeded. */
    uint64_t *pending_frees;
    size_t n_pending_frees, frees_cap;
};

static void record_failure(struct worker_kvh_source *s, uint64_t seq_id, int foreign_writer,
                           const char *reason)
{
    for (size_t i = 0; i < s->n_failures; i++)
        if (s->failures[i].seq_id == seq_id) return;
    if (s->n_failures == (size_t)s->opts.max_seqs) return;
    struct worker_kvh_failure *f = &s->failures[s->n_failures++];
    f->seq_id = seq_id;
    f->foreign_writer = foreign_writer;
    snprintf(f->reason, sizeof(f->reason), "%s", reason);
}

size_t worker_kvh_source_failures(const struct worker_kvh_source *s,
                                  const struct worker_kvh_failure **out)
{
    *out = s->failures;
    return s->n_failures;
}

void worker_kvh_source_clear_failures(struct worker_kvh_source *s) { s->n_failures = 0; }

/* After a timed-out request: 1 to try again (the hook ran), 0 when retry_ms has passed. */
static int keep_trying(struct worker_kvh_source *s, int rc, int64_t deadline, const char *what,
                       const char *err)
{
    if (rc != -ETIMEDOUT || worker_now_ms() >= deadline) return 0;
    if (s->opts.waiting && s->opts.waiting(s->opts.waiting_user)) return 0;
    LOG_WARN("worker", "kv-host %s: %s: trying again", what, err);
    return 1;
}

static int64_t deadline_ms(const struct worker_kvh_source *s)
{
    return worker_now_ms() + s->opts.retry_ms;
}

static int table_once(struct worker_kvh_source *s, uint64_t seq_id, uint32_t *n, char *err,
                      size_t errlen)
{
    int rc = kvh_client_table(s->client, seq_id, s->table, s->opts.max_blocks_per_seq, n, err,
                              errlen);
    if (rc == -ENOENT) {
        *n = 0; /* it never completed a block */
        return 0;
    }
    if (rc == -ENOBUFS) {
        nosa_set_error(err, errlen, "sequence %llu: kv-host table of %u blocks exceeds the %u "
                       "this worker's context needs", (unsigned long long)seq_id, *n,
                       s->opts.max_blocks_per_seq);
        return -E2BIG;
    }
    return rc;
}

int worker_kvh_source_table(struct worker_kvh_source *s, uint64_t seq_id,
                            const uint32_t **groups, uint32_t *n_groups, char *err,
                            size_t errlen)
{
    int64_t deadline = deadline_ms(s);
    int rc;
    while ((rc = table_once(s, seq_id, n_groups, err, errlen)) &&
           keep_trying(s, rc, deadline, "table", err))
        ;
    *groups = s->table;
    return rc;
}

/* A timed-out alloc may have been applied: compare each table with what was asked. Returns
 * 1 applied (the new groups copied out), 0 not applied, or a negated errno. */
static int alloc_reconcile(struct worker_kvh_source *s, struct nosa_block_alloc *reqs, int n,
                           char *err, size_t errlen)
{
    int applied = 0;
    for (int i = 0; i < n; i++) {
        uint32_t len = 0;
        int rc = table_once(s, reqs[i].seq_id, &len, err, errlen);
        if (rc) return rc;
        if (len == reqs[i].first_index + reqs[i].n_groups) {
            memcpy(reqs[i].groups, s->table + reqs[i].first_index,
                   reqs[i].n_groups * sizeof(uint32_t));
            applied++;
        } else if (len != reqs[i].first_index) {
            nosa_set_error(err, errlen, "sequence %llu: kv-host table has %u blocks, the "
                           "worker expected %u or %u", (unsigned long long)reqs[i].seq_id, len,
                           reqs[i].first_index, reqs[i].first_index + reqs[i].n_groups);
            return -EPROTO;
        }
    }
    if (applied != 0 && applied != n) {
        nosa_set_error(err, errlen, "a timed-out allocation was applied to %d of %d sequences",
                       applied, n);
        return -EPROTO;
    }
    return applied ? 1 : 0;
}

/* kvh_client_alloc of s->seqs, tried again while the kv-host does not answer. 0 allocated
 * (s->first_index, s->groups filled), 1 an earlier timed-out try turned out applied (reqs'
 * groups filled from the tables), or a negated errno. */
static int alloc_with_retries(struct worker_kvh_source *s, struct nosa_block_alloc *reqs, int n,
                              char *err, size_t errlen)
{
    int64_t deadline = deadline_ms(s);
    for (;;) {
        int rc = kvh_client_alloc(s->client, s->seqs, (size_t)n, s->first_index, s->groups, err,
                                  errlen);
        if (rc == 0) return 0;
        if (!keep_trying(s, rc, deadline, "alloc", err)) return rc;
        int applied;
        while ((applied = alloc_reconcile(s, reqs, n, err, errlen)) == -ETIMEDOUT &&
               keep_trying(s, applied, deadline, "table", err))
            ;
        if (applied != 0) return applied;
    }
}

static int source_alloc(void *ctx, struct nosa_block_alloc *reqs, int n, char *err,
                        size_t errlen)
{
    struct worker_kvh_source *s = ctx;
    if (n <= 0 || n > s->opts.max_seqs) {
        nosa_set_error(err, errlen, "allocation for %d sequences (at most %d)", n,
                       s->opts.max_seqs);
        return -EINVAL;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        s->seqs[i].seq_id = reqs[i].seq_id;
        s->seqs[i].n_groups = reqs[i].n_groups;
        total += reqs[i].n_groups;
    }
    if (total > s->groups_cap) {
        /* Rare (a long prefill chunk): grows once to the largest request seen. */
        uint32_t *g = realloc(s->groups, total * sizeof(*g));
        if (!g) {
            nosa_set_error(err, errlen, "out of memory for %zu group ids", total);
            return -ENOMEM;
        }
        s->groups = g;
        s->groups_cap = total;
    }
    int rc = alloc_with_retries(s, reqs, n, err, errlen);
    if (rc < 0) {
        /* -ENOSPC is the engine's to handle (it holds prefills back, then ends decoders). */
        if (rc != -ENOSPC)
            for (int i = 0; i < n; i++) record_failure(s, reqs[i].seq_id, 0, err);
        return rc;
    }
    if (rc == 1) return 0; /* a timed-out try had been applied: reconciled */
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        /* The groups are ours either way (the kv-host gave them to this sequence), so the
         * step can use them; but the table has another writer: the job is ended after it. */
        if (s->first_index[i] != reqs[i].first_index) {
            char why[256];
            snprintf(why, sizeof(why), "kv-host table of sequence %llu changed under this "
                     "worker: new groups at block %u, the worker's table has %u",
                     (unsigned long long)reqs[i].seq_id, s->first_index[i], reqs[i].first_index);
            LOG_ERROR("worker", "%s", why);
            record_failure(s, reqs[i].seq_id, 1, why);
        }
        memcpy(reqs[i].groups, s->groups + at, reqs[i].n_groups * sizeof(uint32_t));
        at += reqs[i].n_groups;
    }
    return 0;
}

static int free_one(struct worker_kvh_source *s, uint64_t seq_id, char *err, size_t errlen)
{
    int64_t deadline = deadline_ms(s);
    int rc;
    while ((rc = kvh_client_free(s->client, &seq_id, 1, NULL, err, errlen)) &&
           keep_trying(s, rc, deadline, "free", err))
        ;
    /* Unknown: it never completed a block, or a timed-out try already freed it. */
    return rc == -ENOENT ? 0 : rc;
}

static int free_now(struct worker_kvh_source *s, const uint64_t *seq_ids, int n, char *err,
                    size_t errlen)
{
    int rc = kvh_client_free(s->client, seq_ids, (size_t)n, NULL, err, errlen);
    if (rc == 0) return 0;
    /* All or nothing on the kv-host: one unknown id would keep the others' groups. */
    int first_rc = 0;
    for (int i = 0; i < n; i++) {
        rc = free_one(s, seq_ids[i], err, errlen);
        if (rc && !first_rc) first_rc = rc;
    }
    return first_rc;
}

/* The engine's free_seqs: only queued. The engine lets go of a sequence inside the step that
 * finished it, before the worker has sent the step's tokens and JobFinished; freed then, a
 * worker killed before those sends would leave the coordinator a job that resumes without
 * its table (a full prefill). */
static int source_free(void *ctx, const uint64_t *seq_ids, int n, char *err, size_t errlen)
{
    struct worker_kvh_source *s = ctx;
    size_t need = s->n_pending_frees + (size_t)n;
    if (need > s->frees_cap) {
        uint64_t *q = realloc(s->pending_frees, need * sizeof(*q));
        if (!q) {
            LOG_WARN("worker", "out of memory queueing %d kv-host frees: freeing them now", n);
            return free_now(s, seq_ids, n, err, errlen);
        }
        s->pending_frees = q;
        s->frees_cap = need;
    }
    memcpy(s->pending_frees + s->n_pending_frees, seq_ids, (size_t)n * sizeof(*seq_ids));
    s->n_pending_frees = need;
    return 0;
}

int worker_kvh_source_flush_frees(struct worker_kvh_source *s, char *err, size_t errlen)
{
    if (s->n_pending_frees == 0) return 0;
    int rc = free_now(s, s->pending_frees, (int)s->n_pending_frees, err, errlen);
    /* Failed or not, the ids leave the queue: a sequence the kv-host still holds is freed by
     * the coordinator on JobFinished (docs/WORKER.md). */
    s->n_pending_frees = 0;
    return rc;
}

int worker_kvh_source_forget(struct worker_kvh_source *s, uint64_t seq_id, char *err,
                             size_t errlen)
{
    /* An allocation of 0 groups only reports the table length, and is no error for a
     * sequence the kv-host does not know (the common case: nothing to free, nothing logged). */
    struct kvh_seq_alloc probe = {.seq_id = seq_id, .n_groups = 0};
    uint32_t len = 0, no_groups;
    int64_t deadline = deadline_ms(s);
    int rc;
    while ((rc = kvh_client_alloc(s->client, &probe, 1, &len, &no_groups, err, errlen)) &&
           keep_trying(s, rc, deadline, "alloc", err))
        ;
    if (rc) return rc;
    if (len == 0) return 0;
    LOG_INFO("worker", "sequence %llu: dropping a stale kv-host table of %u blocks",
             (unsigned long long)seq_id, len);
    return free_one(s, seq_id, err, errlen);
}

static int attach(struct worker_kvh_source *s, const struct nosa_kv_geometry *expect, char *err,
                  size_t errlen)
{
    int64_t deadline = deadline_ms(s);
    int rc;
    while ((rc = kvh_client_attach(s->client, expect, &s->info, err, errlen)) &&
           keep_trying(s, rc, deadline, "attach", err))
        ;
    if (rc) return rc;
    return kvh_mapping_open(&s->info, &s->map, err, errlen);
}

int worker_kvh_source_open(const struct worker_kvh_options *opts,
                           const struct nosa_kv_geometry *expect,
                           struct worker_kvh_source **out, char *err, size_t errlen)
{
    *out = NULL;
    struct worker_kvh_source *s = calloc(1, sizeof(*s));
    if (!s) {
        nosa_set_error(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->opts = *opts;
    int rc = -ENOMEM;
    size_t n = (size_t)opts->max_seqs;
    s->seqs = calloc(n, sizeof(*s->seqs));
    s->first_index = calloc(n, sizeof(*s->first_index));
    s->table = calloc(opts->max_blocks_per_seq ? opts->max_blocks_per_seq : 1, sizeof(*s->table));
    s->failures = calloc(n, sizeof(*s->failures));
    s->pending_frees = calloc(n, sizeof(*s->pending_frees));
    s->frees_cap = n;
    if (!s->seqs || !s->first_index || !s->table || !s->failures || !s->pending_frees) {
        nosa_set_error(err, errlen, "out of memory");
        goto fail;
    }
    struct kvh_client_options copts = {
        .timeout_ms = opts->timeout_ms,
        .client_name = opts->client_name,
        .zmq_ctx = opts->zmq_ctx,
        .sec = opts->sec,
    };
    char why[512];
    if ((rc = kvh_client_connect(opts->endpoint, &copts, &s->client, why, sizeof(why))) ||
        (rc = attach(s, expect, why, sizeof(why)))) {
        nosa_set_error(err, errlen, "kv-host %s: %s", opts->endpoint, why);
        goto fail;
    }
    s->arena.base = s->map.blocks;
    s->arena.n_groups = s->map.n_groups;
    s->arena.geom = s->map.geom;
    *out = s;
    return 0;
fail:
    worker_kvh_source_close(s);
    return rc;
}

void worker_kvh_source_close(struct worker_kvh_source *s)
{
    if (!s) return;
    kvh_mapping_close(&s->map);
    kvh_client_close(s->client);
    free(s->seqs);
    free(s->first_index);
    free(s->groups);
    free(s->table);
    free(s->failures);
    free(s->pending_frees);
    free(s);
}

struct nosa_block_source worker_kvh_source_get(struct worker_kvh_source *s)
{
    struct nosa_block_source src = {
        .ctx = s,
        .arena = &s->arena,
        .alloc = source_alloc,
        .free_seqs = source_free,
    };
    return src;
}

const struct kvh_attach_info *worker_kvh_source_info(const struct worker_kvh_source *s)
{
    return &s->info;
}
