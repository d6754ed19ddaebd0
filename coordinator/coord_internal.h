/* coord_internal.h: the coordinator's state and the helpers its link handlers share
 * (coord.c: loop, journal, scheduling; coord_client.c: the client link; coord_worker.c:
 * the worker link). Not for use outside coordinator/. */
#ifndef NOSA_COORD_INTERNAL_H
#define NOSA_COORD_INTERNAL_H

#include <stdint.h>

#include "coord.h"
#include "host_id.h"
#include "jobs.h"
#include "journal.h"
#include "kvhosts.h"
#include "metrics.h"
#include "nosa_msg.h"
#include "serve.pb-c.h"
#include "workers.h"

struct coord {
    struct coord_options opt;
    void *ctx, *workers_sock, *clients_sock;
    struct nosa_msg_security *sec;
    struct coord_jobs jobs;
    struct coord_workers workers;
    struct coord_journal journal;
    int journal_open;
    int draining;
    struct coord_kvhosts kvhosts;
    int check_fit; /* workers or arenas changed: look for queued jobs none can ever take */
    struct coord_metrics_server *metrics;
    uint64_t next_metrics_ms;
    char host_id[NOSA_HOST_ID_MAX]; /* workers with the same one are fenced (fence.h) */
    uint64_t last_tick_ms;          /* the periodic work's last run */
};

uint64_t coord_now_ms(void);

/* Sending (failures are logged: a vanished peer is not the coordinator's failure). */
void coord_send_worker(struct coord *c, int worker, Nosa__Serve__CoordMsg *msg);
void coord_send_client(struct coord *c, const struct nosa_msg_peer *peer,
                       Nosa__Serve__ClientReply *reply);
void coord_send_client_error(struct coord *c, const struct nosa_msg_peer *peer,
                             uint64_t request_id, int code, const char *message);
void coord_send_worker_error(struct coord *c, const struct nosa_msg_peer *peer, int code,
                             const char *message);

/* Streams job tokens [from, n_tokens) to its client, if it has one. */
void coord_stream_tokens(struct coord *c, const struct coord_job *j, uint32_t from);
/* Journals the job's end (fsync), marks it finished, tells its client, and (when it ran on a
 * live worker) frees the worker's slot. */
void coord_finish_job(struct coord *c, struct coord_job *j, int reason, int error_code,
                      const char *error, uint32_t recomputed_tokens);
/* The JobFinished message of a finished job (its error points into e and into j). */
void coord_finished_msg(const struct coord_job *j, Nosa__Serve__JobFinished *f, Nosa__Error *e);
/* Puts a job whose worker is gone back in the queue (it keeps its tokens: a resume), or
 * finishes it when nothing is left to generate. */
void coord_requeue_job(struct coord *c, struct coord_job *j);
/* Declares a worker dead (why logged) and requeues its jobs. A worker on this host is fenced
 * first (killed; its jobs are requeued once it has exited: coord_worker_fence_done). One
 * elsewhere is not told to stop: if only slow to answer it re-registers and claims back the
 * jobs that have not moved; a job moving elsewhere is cancelled on it
 * (coord_cancel_on_worker). */
void coord_worker_dead(struct coord *c, int worker, const char *why);
/* A worker said it stops (Heartbeat.leaving): not alive, not fenced, its jobs move now. */
void coord_worker_left(struct coord *c, int worker);
/* For a worker being fenced: once its process has exited (or the wait is over), its jobs
 * move. Returns 1 while it is still being fenced. */
int coord_worker_fence_done(struct coord *c, int worker, uint64_t now);
/* Sends CancelJob for job_id to a worker: a job must never run on two workers. */
void coord_cancel_on_worker(struct coord *c, int worker, uint64_t job_id);
/* Frees sequence job_id in kv-host `kvhost` (a job's or a worker's `kvhost`: nothing for
 * COORD_KVHOST_NONE, every kv-host for COORD_KVHOST_UNKNOWN) after the job ended: a worker
 * that died between its JobFinished and its own free leaks nothing; an unknown sequence is
 * fine. */
void coord_free_sequence(struct coord *c, int kvhost, uint64_t job_id);
/* The same for an ended job whose worker will not free it: where its sequence is; then it has
 * none (COORD_KVHOST_NONE). */
void coord_free_job_sequence(struct coord *c, struct coord_job *j);

/* 1 when no registered worker can ever take a job of this prompt and max_tokens (context or
 * arena too small, coord_workers_never_fit), with why saying the sizes. */
int coord_never_fits(struct coord *c, uint32_t prompt, uint32_t max_tokens, char *why,
                     size_t whylen);

/* Link handlers: one received frame each. */
void coord_on_client_frame(struct coord *c, const struct nosa_msg_peer *peer,
                           const uint8_t *data, size_t len);
void coord_on_worker_frame(struct coord *c, const struct nosa_msg_peer *peer,
                           const uint8_t *data, size_t len);

/* Journals where job j's sequence is, its fresh_from and prompt_done (a PLACE record: after
 * each assignment or claim, and as its prefill advances), so a restarted coordinator resumes
 * it from there (no fsync; a failure is only logged). */
void coord_journal_place(struct coord *c, const struct coord_job *j);
/* Journals new tokens [from, n_tokens) of a job (no fsync; a failure is only logged). */
void coord_journal_tokens(struct coord *c, const struct coord_job *j, uint32_t from);

/* A JobTokens message over tokens [from, to) of job j, pointing into j and into storage
 * this struct owns (coord_tokens_msg_free). */
struct coord_tokens_msg {
    Nosa__Serve__JobTokens msg;
    Nosa__Serve__Token *tokens;
    Nosa__Serve__Token **ptrs;
};
int coord_tokens_msg_init(struct coord_tokens_msg *m, const struct coord_job *j, uint32_t from,
                          uint32_t to);
void coord_tokens_msg_free(struct coord_tokens_msg *m);

#endif
