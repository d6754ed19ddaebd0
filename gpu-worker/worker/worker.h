/* worker.h: one nosa-worker process: what it holds and the two halves that use it,
 * worker_main.c (start-up and teardown: flags, model, backend, kv-host, engine, link) and
 * worker_serve.c (the serving loop: coordinator messages, engine steps, tokens, heartbeats).
 *
 * This module owns nothing itself; struct worker is owned by main, which frees each member
 * in reverse order of creation. */
#ifndef NOSA_WORKER_H
#define NOSA_WORKER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "host_id.h"
#include "model.h"
#include "tokenizer.h"
#include "worker_config.h"
#include "worker_kvh_source.h"
#include "worker_link.h"
#include "worker_stats.h"

/* A token of the step in progress, waiting to be sent in the step's TokensBatch. */
struct worker_token {
    uint64_t job_id;
    uint32_t index;
    int32_t id;
};

/* A job's prefill progress in the step in progress (no token yet), sent in its TokensBatch. */
struct worker_progress {
    uint64_t job_id;
    uint32_t prompt_done;
};

/* A job that left the engine during the step in progress (error text copied). */
struct worker_finished {
    uint64_t job_id;
    enum nosa_finish_reason reason;
    char error[256];
    uint32_t prompt_tokens, generated_tokens, recomputed_tokens;
};

/* A job that ended here lately, kept so that its end can be told again to a coordinator
 * that restarted before reading it (Register.finished_jobs). */
struct worker_ended {
    struct worker_finished fin;
    int32_t *tokens;              /* its generated tokens, malloc'd [cap] */
    uint32_t cap;
};

struct worker {
    struct worker_config cfg;
    struct nosa_model *model;
    struct nosa_tokenizer tok;
    const struct nosa_backend_ops *backend;
    void *zctx;
    struct nosa_msg_security *sec;
    struct worker_kvh_source *kvh;
    struct nosa_engine *engine;
    struct worker_link *link;
    char host_id[NOSA_HOST_ID_MAX]; /* sent in Register: the coordinator may fence us */

    /* serving state (worker_serve.c) */
    uint64_t *jobs;                  /* ids of the jobs in the engine, [cfg.max_seqs] */
    size_t n_jobs;
    struct worker_token *tokens;     /* this step's tokens, [tokens_cap] */
    size_t n_tokens, tokens_cap;
    struct worker_finished *finished; /* this step's finished jobs, [cfg.max_seqs] */
    size_t n_finished;
    struct worker_progress *progress; /* this step's prefill progress, [cfg.max_seqs] */
    size_t n_progress;
    struct worker_ended *ended;      /* the last ended jobs, a ring of [2 * cfg.max_seqs] */
    uint64_t *ended_ids;             /* their ids, for Register, [2 * cfg.max_seqs] */
    size_t n_ended, next_ended;
    /* Jobs being ended because the kv-host failed them: cancelled in the engine, reported
     * as FINISH_ERROR with the reason (worker_serve_on_event). */
    struct worker_kvh_failure *failing; /* [cfg.max_seqs] */
    size_t n_failing;
    struct worker_stats stats;
    struct nosa_engine_capacity capacity; /* as of the last loop turn (the kv-host wait hook) */
    int64_t next_heartbeat_ms;
    int shutdown;                    /* Shutdown received */
};

/* Set by SIGTERM / SIGINT. */
extern volatile sig_atomic_t g_worker_stop;

/* Allocates the serving state (before the engine is created: the engine's events land
 * there). */
int worker_serve_init(struct worker *w, char *err, size_t errlen);
void worker_serve_free(struct worker *w);
/* The engine's event callback (user = the worker). */
void worker_serve_on_event(void *user, const struct nosa_engine_event *ev);
/* The kv-host source's wait hook: a heartbeat when one is due (user = the worker); non-zero
 * once the worker is stopping (no more retries). */
int worker_serve_on_kvh_wait(void *user);
/* Serves until a signal or Shutdown (0), the first registration times out (-ETIMEDOUT), the
 * link fails (-EIO) or the backend fails (-EFAULT); err says which. */
int worker_serve_run(struct worker *w, char *err, size_t errlen);

#endif
