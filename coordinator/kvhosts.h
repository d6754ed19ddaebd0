/* kvhosts.h: the kv-hosts a coordinator follows (one per NUMA node): a client to each, its
 * arena as last read (stats every KVH_POLL_MS, feeding admission, status and metrics), and
 * freeing a job's sequence in the kv-host that holds it: at once when it answers, else
 * queued and sent once it answers again, so no free is lost to a slow or restarting kv-host.
 * Each change of a queue goes to the owner's callback (the coordinator journals it), and a
 * journal's changes are replayed into the queues at a restart, so no free is lost to a
 * coordinator that restarts while a kv-host does not answer either.
 *
 * A kv-host is known by its endpoint string: those given with --kvhost, and any other a
 * worker registers with (Register.kvhost_endpoint), so a worker's arena is its own. The
 * same kv-host under two spellings of its endpoint would be counted twice: node.sh and the
 * workers use the same ipc://D/kvh<N>.sock. This module owns the kv-host clients. */
#ifndef NOSA_COORD_KVHOSTS_H
#define NOSA_COORD_KVHOSTS_H

#include <stddef.h>
#include <stdint.h>

#include "coord.h"
#include "kvh_client.h"
#include "nosa_msg.h"
#include "workers.h"

struct coord_kvhost {
    char endpoint[COORD_ENDPOINT_MAX];
    struct kvh_client *client;
    struct kvh_stats stats; /* the last read */
    int up;                 /* its last request was answered */
    uint64_t next_poll_ms;
    uint64_t *pending;      /* sequences to free once it answers again */
    size_t n_pending, pending_cap;
};

/* A queue of frees changed: seq was queued (1) for the kv-host at endpoint, or left it (0:
 * sent, or dropped because a worker there runs the job again). */
typedef void (*coord_kvhosts_queue_fn)(void *arg, const char *endpoint, uint64_t seq,
                                       int queued);

struct coord_kvhosts {
    struct coord_kvhost h[COORD_MAX_KVHOSTS];
    struct coord_arenas arenas; /* arenas.a[i] is h[i]'s; arenas.n kv-hosts in all */
    void *zmq_ctx;
    const struct nosa_msg_security *sec;
    coord_kvhosts_queue_fn on_queue; /* NULL: nobody is told */
    void *on_queue_arg;
};

/* An empty table whose clients will use zmq_ctx and sec. */
void coord_kvhosts_init(struct coord_kvhosts *t, void *zmq_ctx,
                        const struct nosa_msg_security *sec);
/* The index of endpoint, connecting a client to it when it is new. -1 with err when the table
 * is full or the connect is refused (the endpoint's security policy). */
int coord_kvhosts_get(struct coord_kvhosts *t, const char *endpoint, char *err, size_t errlen);
/* Reads kv-host i's stats when they are due: 1 when read now (its arena known and up to
 * date; the queued frees are sent), 0 when not due, -1 when it did not answer (tried again
 * after a back-off). An arena read once stays known: until the next read, admission goes on
 * from the last one (what its jobs allocate since is reserved, what they free only adds). */
int coord_kvhosts_poll(struct coord_kvhosts *t, int i, uint64_t now_ms);
/* Frees sequence seq in kv-host i (an unknown sequence is fine). While it does not answer,
 * the free is queued for its next answer (asking now would stall the coordinator's loop). */
void coord_kvhosts_free(struct coord_kvhosts *t, int i, uint64_t seq, uint64_t now_ms);
/* Drops a queued free of seq in kv-host i: a worker there runs the job again, so its table
 * there is live. */
void coord_kvhosts_keep(struct coord_kvhosts *t, int i, uint64_t seq);
/* From now on, fn(arg, ...) is told each change of a queue of frees. */
void coord_kvhosts_watch_queues(struct coord_kvhosts *t, coord_kvhosts_queue_fn fn, void *arg);
/* Applies a change told before a restart (read back from the journal) to the queue of the
 * kv-host at endpoint, following it when it is new; the callback is not told. -1 with err
 * when it cannot be followed (coord_kvhosts_get). */
int coord_kvhosts_replay_queue(struct coord_kvhosts *t, const char *endpoint, uint64_t seq,
                               int queued, char *err, size_t errlen);
void coord_kvhosts_close(struct coord_kvhosts *t);

#endif
