/* coord.h: nosa-coordinator's server: the worker link and the client link (both ZeroMQ
 * ROUTER, polled together), the job table, the workers, the journal, the kv-host stats and
 * the metrics, driven by one loop (docs/COORDINATOR.md).
 *
 * This module owns the sockets, the ZeroMQ context, the kv-host clients and the metrics
 * server; coord_close releases them all and removes the ipc socket files. */
#ifndef NOSA_COORD_H
#define NOSA_COORD_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "rundir.h"

#define COORD_ENDPOINT_MAX 512
/* kv-hosts the coordinator follows: one per NUMA node, so a few. */
#define COORD_MAX_KVHOSTS 16

struct coord_options {
    char run_dir[NOSA_RUNDIR_MAX];
    char workers_ep[COORD_ENDPOINT_MAX];
    char clients_ep[COORD_ENDPOINT_MAX];
    /* --kvhost, repeatable (none: only those the workers register with) */
    char kvhost_eps[COORD_MAX_KVHOSTS][COORD_ENDPOINT_MAX];
    int n_kvhosts;
    char journal[NOSA_RUNDIR_MAX];
    char metrics_address[64];
    int metrics_port;                   /* 0 = off */
    int heartbeat_timeout_ms;
    uint64_t journal_compact_bytes;     /* 0: COORD_JOURNAL_COMPACT_MIN_BYTES */
    int insecure;
};

struct coord;

/* Opens the journal (replaying its jobs), binds both links, connects to the kv-hosts and
 * starts the metrics server. Returns 0 or -1 with err naming what failed. */
int coord_open(const struct coord_options *opt, struct coord **out, char *err, size_t errlen);
/* Serves until *stop is set (by a signal handler). Returns 0, or -1 with err on a socket
 * failure. */
int coord_run(struct coord *c, volatile sig_atomic_t *stop, char *err, size_t errlen);
void coord_close(struct coord *c);

#endif
