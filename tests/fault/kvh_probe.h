/* kvh_probe.h: what the fault harness reads from a kv-host over its control socket
 * (proto/kvhost.proto): stats and the block tables of given sequences, to check that a
 * kv-host restarted with --recover keeps every sequence exactly. */
#ifndef NOSA_KVH_PROBE_H
#define NOSA_KVH_PROBE_H

#include <stddef.h>
#include <stdint.h>

#define KVH_PROBE_MAX_SEQS 64
#define KVH_PROBE_MAX_GROUPS 1024

struct kvh_probe_table {
    uint64_t seq_id;
    int known;                  /* 0: the kv-host answered UNKNOWN_ID */
    uint32_t n_groups;
    uint32_t groups[KVH_PROBE_MAX_GROUPS];
};

struct kvh_probe_snapshot {
    uint64_t n_groups, free_groups, n_seqs, generation;
    int n_tables;
    struct kvh_probe_table tables[KVH_PROBE_MAX_SEQS];
};

/* Reads stats and the tables of seq_ids[0..n) from the kv-host at endpoint. 0 or -1 with
 * err set. */
int kvh_probe_snapshot(const char *endpoint, const uint64_t *seq_ids, int n,
                       struct kvh_probe_snapshot *out, char *err, size_t errlen);

/* Allocates n_groups groups for each of seq_ids[0..n) (one batched request): gives an arena
 * some state before a fault. 0 or -1 with err set. */
int kvh_probe_fill(const char *endpoint, const uint64_t *seq_ids, int n, uint32_t n_groups,
                   char *err, size_t errlen);

/* Compares two snapshots (the generation may differ); prints each difference. Returns the
 * number of differences. */
int kvh_probe_compare(const struct kvh_probe_snapshot *before,
                      const struct kvh_probe_snapshot *after);

#endif
