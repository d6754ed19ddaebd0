/* kvh_probe.c: stats and block tables from a kv-host through its client library
 * (kv-host/kvh_client.h), for the --recover check (kvh_probe.h). */
#include "kvh_probe.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "kvh_client.h"

int kvh_probe_snapshot(const char *endpoint, const uint64_t *seq_ids, int n,
                       struct kvh_probe_snapshot *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct kvh_client_options opts = {.timeout_ms = 3000, .client_name = "fault-harness"};
    struct kvh_client *c = NULL;
    int rc = kvh_client_connect(endpoint, &opts, &c, err, errlen);
    if (rc != 0) return -1;
    struct kvh_stats st;
    rc = kvh_client_stats(c, &st, err, errlen);
    if (rc == 0) {
        out->n_groups = st.n_groups;
        out->free_groups = st.free_groups;
        out->n_seqs = st.n_seqs;
        out->generation = st.generation;
    }
    if (n > KVH_PROBE_MAX_SEQS) n = KVH_PROBE_MAX_SEQS;
    for (int i = 0; i < n && rc == 0; i++) {
        struct kvh_probe_table *t = &out->tables[i];
        t->seq_id = seq_ids[i];
        rc = kvh_client_table(c, seq_ids[i], t->groups, KVH_PROBE_MAX_GROUPS, &t->n_groups, err,
                              errlen);
        t->known = rc == 0;
        if (rc == -ENOENT) rc = 0; /* not allocated yet (or already freed): recorded as such */
        out->n_tables = i + 1;
    }
    kvh_client_close(c);
    return rc == 0 ? 0 : -1;
}

int kvh_probe_fill(const char *endpoint, const uint64_t *seq_ids, int n, uint32_t n_groups,
                   char *err, size_t errlen)
{
    struct kvh_seq_alloc seqs[KVH_PROBE_MAX_SEQS];
    static uint32_t first[KVH_PROBE_MAX_SEQS], groups[KVH_PROBE_MAX_SEQS * KVH_PROBE_MAX_GROUPS];
    if (n > KVH_PROBE_MAX_SEQS) n = KVH_PROBE_MAX_SEQS;
    if (n_groups > KVH_PROBE_MAX_GROUPS) n_groups = KVH_PROBE_MAX_GROUPS;
    for (int i = 0; i < n; i++) seqs[i] = (struct kvh_seq_alloc){seq_ids[i], n_groups};
    struct kvh_client_options opts = {.timeout_ms = 3000, .client_name = "fault-harness"};
    struct kvh_client *c = NULL;
    if (kvh_client_connect(endpoint, &opts, &c, err, errlen) != 0) return -1;
    int rc = kvh_client_alloc(c, seqs, (size_t)n, first, groups, err, errlen);
    kvh_client_close(c);
    return rc == 0 ? 0 : -1;
}

int kvh_probe_compare(const struct kvh_probe_snapshot *before,
                      const struct kvh_probe_snapshot *after)
{
    int diffs = 0;
    const uint64_t b[3] = {before->n_groups, before->free_groups, before->n_seqs};
    const uint64_t a[3] = {after->n_groups, after->free_groups, after->n_seqs};
    static const char *const what[3] = {"n_groups", "free_groups", "n_seqs"};
    for (int i = 0; i < 3; i++) {
        if (a[i] == b[i]) continue;
        fprintf(stderr, "kv-host after --recover: %s %llu, before %llu\n", what[i],
                (unsigned long long)a[i], (unsigned long long)b[i]);
        diffs++;
    }
    for (int i = 0; i < before->n_tables && i < after->n_tables; i++) {
        const struct kvh_probe_table *tb = &before->tables[i], *ta = &after->tables[i];
        if (tb->known != ta->known || tb->n_groups != ta->n_groups ||
            memcmp(tb->groups, ta->groups, sizeof(uint32_t) * tb->n_groups) != 0) {
            fprintf(stderr, "kv-host after --recover: sequence %llu: %s %u groups, before %s %u\n",
                    (unsigned long long)tb->seq_id, ta->known ? "known," : "unknown,",
                    ta->n_groups, tb->known ? "known," : "unknown,", tb->n_groups);
            diffs++;
        }
    }
    return diffs;
}
