/* worker_link.h: the worker's link to the coordinator (proto/serve.proto: WorkerMsg out,
 * CoordMsg in) over one ZeroMQ DEALER socket, and the registration that goes with it.
 *
 * This module owns: the DEALER socket and its connection monitor, registering (Register at
 * start, again after every reconnection or when the coordinator says it does not know this
 * worker, resent until a RegisterAck comes), the heartbeat interval the coordinator asked
 * for, the outbox of messages sent while unregistered (flushed, in order, after the ack), and
 * answering frames it cannot accept (undecodable, wrong version, no body) with an Error.
 * Messages for the worker's jobs (Assign, CancelJob, Shutdown) go to the caller.
 *
 * It also owns the pulse thread: while the caller is inside a long engine step (a GPU's
 * first, warming steps; a long prefill chunk; resuming moved jobs) it sends no heartbeats
 * itself, so the pulse thread sends one (the last counts, no step statistics) whenever none
 * went out for a heartbeat interval, as long as the caller showed progress
 * (worker_link_progress) within max_stall_ms: a step stuck longer than that stops the pulses
 * and the coordinator declares the worker dead. Every function takes the link's mutex, so
 * the socket is only ever used by one thread at a time (ZeroMQ sockets are not thread-safe;
 * the mutex gives the memory barrier a hand-over needs). The getters take none: only the
 * caller's thread changes what they read. */
#ifndef NOSA_WORKER_LINK_H
#define NOSA_WORKER_LINK_H

#include <stddef.h>
#include <stdint.h>

#include "nosa_msg.h"
#include "serve.pb-c.h"

struct worker_link;

/* Connects to endpoint (CURVE when sec holds client keys). reg is copied, its strings
 * borrowed: they must outlive the link (its running_jobs are filled per registration by
 * worker_link_set_running). Nothing is sent until worker_link_poll runs. */
int worker_link_open(void *zctx, const struct nosa_msg_security *sec, const char *endpoint,
                     const Nosa__Serve__Register *reg, int heartbeat_ms, int max_stall_ms,
                     struct worker_link **out, char *err, size_t errlen);
void worker_link_close(struct worker_link *l); /* accepts NULL */

/* The job ids to list in the next Register (copied): those it runs, and those it finished
 * lately (Register.finished_jobs). */
int worker_link_set_running(struct worker_link *l, const uint64_t *job_ids, size_t n,
                            char *err, size_t errlen);
int worker_link_set_finished(struct worker_link *l, const uint64_t *job_ids, size_t n,
                             char *err, size_t errlen);

/* Sends msg (its version is filled in). While unregistered it is kept, in order, and sent
 * after the next RegisterAck. -1 with err only when the outbox is over its limit or memory
 * runs out. */
int worker_link_send(struct worker_link *l, Nosa__Serve__WorkerMsg *msg, char *err,
                     size_t errlen);

enum worker_link_event {
    WORKER_LINK_IDLE = 0,       /* nothing for the caller (timeout, or handled internally) */
    WORKER_LINK_MESSAGE = 1,    /* *out holds an Assign, CancelJob or Shutdown */
    WORKER_LINK_REGISTERED = 2, /* a RegisterAck just arrived (the first one, or again) */
};

/* Waits up to timeout_ms (0: just looks) for one event. *out, when set, is the caller's:
 * nosa__serve__coord_msg__free_unpacked(*out, NULL). Negative on a socket failure. */
int worker_link_poll(struct worker_link *l, int timeout_ms, Nosa__Serve__CoordMsg **out,
                     char *err, size_t errlen);

int worker_link_registered(const struct worker_link *l);
/* 1 while so much output waits for a slow coordinator that the worker should not step. */
int worker_link_backlogged(const struct worker_link *l);
/* 1 once the link has ever been registered. */
int worker_link_ever_registered(const struct worker_link *l);
/* The interval to send heartbeats at (the coordinator's, once it said one). */
int worker_link_heartbeat_ms(const struct worker_link *l);

/* The caller is making progress (a loop turn, a wait it is answering): pulses may go on for
 * max_stall_ms from now. */
void worker_link_progress(struct worker_link *l);

/* Replies an Error (code, message) to the coordinator. Sent even while unregistered. */
int worker_link_send_error(struct worker_link *l, Nosa__ErrorCode code, const char *message,
                           char *err, size_t errlen);

#endif
