/* worker_serve.c: the serving loop of nosa-worker (worker.h, docs/WORKER.md): coordinator
 * messages in, engine steps, tokens and finished jobs out after each step, heartbeats. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"
#include "worker.h"
#include "worker_assign.h"
#include "worker_clock.h"

volatile sig_atomic_t g_worker_stop;

/* Coordinator messages taken per loop turn before the next step. */
#define SERVE_MAX_MSGS_PER_TURN 64
/* Longest wait for a message when nothing runs (heartbeats are timed separately). */
#define SERVE_IDLE_POLL_MS 100

int worker_serve_init(struct worker *w, char *err, size_t errlen)
{
    size_t n = (size_t)w->cfg.max_seqs;
    w->jobs = calloc(n, sizeof(*w->jobs));
    w->finished = calloc(n, sizeof(*w->finished));
    w->tokens_cap = 2 * n;
    w->tokens = calloc(w->tokens_cap, sizeof(*w->tokens));
    w->failing = calloc(n, sizeof(*w->failing));
    w->progress = calloc(n, sizeof(*w->progress));
    w->ended = calloc(2 * n, sizeof(*w->ended));
    w->ended_ids = calloc(2 * n, sizeof(*w->ended_ids));
    if (!w->jobs || !w->finished || !w->tokens || !w->failing || !w->progress || !w->ended ||
        !w->ended_ids) {
        nosa_set_error(err, errlen, "out of memory for %zu job slots", n);
        return -ENOMEM;
    }
    worker_stats_init(&w->stats, worker_now_s());
    return 0;
}

void worker_serve_free(struct worker *w)
{
    free(w->jobs);
    free(w->finished);
    free(w->tokens);
    free(w->failing);
    free(w->progress);
    for (size_t i = 0; w->ended && i < 2 * (size_t)w->cfg.max_seqs; i++) free(w->ended[i].tokens);
    free(w->ended);
    free(w->ended_ids);
    w->ended = NULL;
    w->ended_ids = NULL;
    w->failing = NULL;
    w->progress = NULL;
    w->jobs = NULL;
    w->finished = NULL;
    w->tokens = NULL;
}

/* ------------------------------------------------------------------ the job list */
static int job_find(const struct worker *w, uint64_t job_id)
{
    for (size_t i = 0; i < w->n_jobs; i++)
        if (w->jobs[i] == job_id) return (int)i;
    return -1;
}

/* Keeps the link's running_jobs (sent in the next Register) in step with the list. */
static void jobs_changed(struct worker *w)
{
    char err[128];
    if (worker_link_set_running(w->link, w->jobs, w->n_jobs, err, sizeof(err)))
        LOG_WARN("worker", "running jobs for Register: %s", err);
}

static void job_remove(struct worker *w, uint64_t job_id)
{
    int i = job_find(w, job_id);
    if (i < 0) return;
    w->jobs[i] = w->jobs[--w->n_jobs];
    jobs_changed(w);
}

/* ------------------------------------------------------------------ engine events */
static int push_token(struct worker *w, uint64_t job_id, uint32_t index, int32_t id)
{
    if (w->n_tokens == w->tokens_cap) {
        size_t cap = 2 * w->tokens_cap;
        struct worker_token *t = realloc(w->tokens, cap * sizeof(*t));
        if (!t) return -ENOMEM;
        w->tokens = t;
        w->tokens_cap = cap;
    }
    w->tokens[w->n_tokens++] = (struct worker_token){job_id, index, id};
    return 0;
}

/* Keeps f and its tokens in the ring of ended jobs (the oldest goes), and lists the ring's
 * jobs for the next Register. */
static void remember_ended(struct worker *w, const struct worker_finished *f,
                           const int32_t *tokens)
{
    size_t cap = 2 * (size_t)w->cfg.max_seqs;
    struct worker_ended *e = &w->ended[w->next_ended];
    if (f->generated_tokens > e->cap) {
        int32_t *t = realloc(e->tokens, f->generated_tokens * sizeof(*t));
        if (!t) {
            LOG_ERROR("worker", "out of memory keeping job %llu's tokens: its end is not told "
                      "again after a coordinator restart", (unsigned long long)f->job_id);
            return;
        }
        e->tokens = t;
        e->cap = f->generated_tokens;
    }
    e->fin = *f;
    if (f->generated_tokens) memcpy(e->tokens, tokens, f->generated_tokens * sizeof(*tokens));
    w->ended_ids[w->next_ended] = f->job_id;
    w->next_ended = (w->next_ended + 1) % cap;
    if (w->n_ended < cap) w->n_ended++;
    char err[128];
    if (worker_link_set_finished(w->link, w->ended_ids, w->n_ended, err, sizeof(err)))
        LOG_WARN("worker", "finished jobs for Register: %s", err);
}

void worker_serve_on_event(void *user, const struct nosa_engine_event *ev)
{
    struct worker *w = user;
    if (ev->type == NOSA_ENGINE_EVENT_TOKEN) {
        if (push_token(w, ev->seq_id, ev->index, ev->token))
            LOG_ERROR("worker", "out of memory queueing token %u of job %llu", ev->index,
                      (unsigned long long)ev->seq_id);
        return;
    }
    if (ev->type == NOSA_ENGINE_EVENT_PREFILLED) { /* one per job and step, the latest kept */
        size_t i = 0;
        while (i < w->n_progress && w->progress[i].job_id != ev->seq_id) i++;
        if (i == w->n_progress) {
            if (w->n_progress == (size_t)w->cfg.max_seqs) return; /* cannot happen: one a job */
            w->n_progress++;
        }
        w->progress[i] = (struct worker_progress){ev->seq_id, ev->prompt_done};
        return;
    }
    if (ev->type != NOSA_ENGINE_EVENT_FINISHED) return;
    /* Each job finishes once and the list is flushed after every step or cancel, so the
     * job slots bound this list. */
    if (w->n_finished == (size_t)w->cfg.max_seqs) {
        LOG_ERROR("worker", "finished-job list full; job %llu not reported",
                  (unsigned long long)ev->seq_id);
        return;
    }
    struct worker_finished *f = &w->finished[w->n_finished++];
    f->job_id = ev->seq_id;
    f->reason = ev->reason;
    snprintf(f->error, sizeof(f->error), "%s", ev->error ? ev->error : "");
    for (size_t i = 0; i < w->n_failing; i++)
        if (w->failing[i].seq_id == ev->seq_id && ev->reason == NOSA_FINISH_CANCELLED) {
            f->reason = NOSA_FINISH_ERROR;
            snprintf(f->error, sizeof(f->error), "%s", w->failing[i].reason);
        }
    f->prompt_tokens = ev->prompt_tokens;
    f->generated_tokens = ev->generated_tokens;
    f->recomputed_tokens = ev->recomputed_tokens;
    remember_ended(w, f, ev->generated);
    job_remove(w, ev->seq_id);
    LOG_INFO("worker", "job %llu finished reason=%s generated=%u recomputed=%u%s%s",
             (unsigned long long)ev->seq_id, nosa_finish_reason_name(ev->reason),
             ev->generated_tokens, ev->recomputed_tokens, f->error[0] ? " error=" : "",
             f->error);
}

/* ------------------------------------------------------------------ sending */
static void send_or_log(struct worker *w, Nosa__Serve__WorkerMsg *msg, const char *what)
{
    char err[256];
    if (worker_link_send(w->link, msg, err, sizeof(err)))
        LOG_ERROR("worker", "send %s: %s", what, err);
}

/* Sends w->tokens[0..n_tokens) as one TokensBatch, grouped by job in order of first
 * appearance, then the prefill progress of jobs with no token yet, and empties both lists. */
static void send_tokens(struct worker *w)
{
    size_t n = w->n_tokens, n_entries = w->n_tokens + w->n_progress;
    if (n_entries == 0) return;
    Nosa__Serve__JobTokens *jobs = calloc(n_entries, sizeof(*jobs));
    Nosa__Serve__JobTokens **job_ptrs = calloc(n_entries, sizeof(*job_ptrs));
    Nosa__Serve__Token *toks = calloc(n, sizeof(*toks));
    Nosa__Serve__Token **tok_ptrs = calloc(n, sizeof(*tok_ptrs));
    char(*text)[NOSA_TOKEN_TEXT_MAX] = calloc(n ? n : 1, sizeof(*text));
    if (!jobs || !job_ptrs || (n && (!toks || !tok_ptrs)) || !text) {
        LOG_ERROR("worker", "out of memory sending %zu tokens", n);
        goto done;
    }
    size_t n_jobs = 0, at = 0;
    /* Group: for each job in order of first appearance, its tokens in order. */
    for (size_t i = 0; i < n; i++) {
        uint64_t id = w->tokens[i].job_id;
        size_t j;
        for (j = 0; j < n_jobs; j++)
            if (jobs[j].job_id == id) break;
        if (j < n_jobs) continue;
        nosa__serve__job_tokens__init(&jobs[n_jobs]);
        jobs[n_jobs].job_id = id;
        jobs[n_jobs].tokens = &tok_ptrs[at];
        for (size_t k = i; k < n; k++) {
            if (w->tokens[k].job_id != id) continue;
            Nosa__Serve__Token *t = &toks[at];
            nosa__serve__token__init(t);
            t->index = w->tokens[k].index;
            t->id = w->tokens[k].id;
            int len = nosa_tokenizer_token_text(&w->tok, t->id, text[at]);
            t->text.data = (uint8_t *)text[at];
            t->text.len = len > 0 ? (size_t)len : 0;
            tok_ptrs[at++] = t;
            jobs[n_jobs].n_tokens++;
        }
        job_ptrs[n_jobs] = &jobs[n_jobs];
        n_jobs++;
    }
    for (size_t i = 0; i < w->n_progress; i++) {
        nosa__serve__job_tokens__init(&jobs[n_jobs]);
        jobs[n_jobs].job_id = w->progress[i].job_id;
        jobs[n_jobs].prompt_done = w->progress[i].prompt_done;
        job_ptrs[n_jobs] = &jobs[n_jobs];
        n_jobs++;
    }
    Nosa__Serve__TokensBatch batch = NOSA__SERVE__TOKENS_BATCH__INIT;
    batch.jobs = job_ptrs;
    batch.n_jobs = n_jobs;
    Nosa__Serve__WorkerMsg msg = NOSA__SERVE__WORKER_MSG__INIT;
    msg.body_case = NOSA__SERVE__WORKER_MSG__BODY_TOKENS;
    msg.tokens = &batch;
    send_or_log(w, &msg, "TokensBatch");
    NOSA_FAULT_POINT("worker.step.tokens_sent");
done:
    free(jobs);
    free(job_ptrs);
    free(toks);
    free(tok_ptrs);
    free(text);
    w->n_tokens = 0;
    w->n_progress = 0;
}

static Nosa__ErrorCode finish_error_code(const struct worker_finished *f)
{
    return f->reason == NOSA_FINISH_ERROR ? NOSA__ERROR_CODE__ERROR_INTERNAL
                                          : NOSA__ERROR_CODE__ERROR_NONE;
}

static void send_job_finished(struct worker *w, uint64_t job_id, Nosa__Serve__FinishReason reason,
                              Nosa__ErrorCode code, const char *error, uint32_t prompt_tokens,
                              uint32_t generated_tokens, uint32_t recomputed_tokens)
{
    Nosa__Serve__JobFinished fin = NOSA__SERVE__JOB_FINISHED__INIT;
    Nosa__Error e = NOSA__ERROR__INIT;
    fin.job_id = job_id;
    fin.reason = reason;
    fin.prompt_tokens = prompt_tokens;
    fin.generated_tokens = generated_tokens;
    fin.recomputed_tokens = recomputed_tokens;
    if (code != NOSA__ERROR_CODE__ERROR_NONE) {
        e.code = code;
        e.message = (char *)error;
        fin.error = &e;
    }
    Nosa__Serve__WorkerMsg msg = NOSA__SERVE__WORKER_MSG__INIT;
    msg.body_case = NOSA__SERVE__WORKER_MSG__BODY_FINISHED;
    msg.finished = &fin;
    send_or_log(w, &msg, "JobFinished");
}

static Nosa__Serve__FinishReason proto_reason(enum nosa_finish_reason r)
{
    switch (r) {
    case NOSA_FINISH_LENGTH: return NOSA__SERVE__FINISH_REASON__FINISH_LENGTH;
    case NOSA_FINISH_EOS: return NOSA__SERVE__FINISH_REASON__FINISH_EOS;
    case NOSA_FINISH_CANCELLED: return NOSA__SERVE__FINISH_REASON__FINISH_CANCELLED;
    default: return NOSA__SERVE__FINISH_REASON__FINISH_ERROR;
    }
}

static void send_finished_record(struct worker *w, const struct worker_finished *f)
{
    send_job_finished(w, f->job_id, proto_reason(f->reason), finish_error_code(f), f->error,
                      f->prompt_tokens, f->generated_tokens, f->recomputed_tokens);
}

/* Frees on the kv-host the sequences of the jobs whose JobFinished went out. */
static void flush_frees(struct worker *w)
{
    char err[256];
    if (worker_kvh_source_flush_frees(w->kvh, err, sizeof(err)))
        LOG_ERROR("worker", "freeing finished jobs' kv-host sequences (the coordinator frees "
                  "them on JobFinished): %s", err);
}

/* Sends what the last step (or cancel) produced: its tokens first, then the jobs that
 * ended, and only then frees their kv-host sequences (the engine queued them during the
 * step): a worker killed before JobFinished went out leaves each job its table to resume
 * from. Called only after the engine call returned (the resume rule, PROCESSES.md). */
static void send_step_output(struct worker *w)
{
    send_tokens(w);
    for (size_t i = 0; i < w->n_finished; i++) {
        send_finished_record(w, &w->finished[i]);
        NOSA_FAULT_POINT("worker.finished.sent");
    }
    w->n_finished = 0;
    flush_frees(w);
}

static void push_tokens(struct worker *w, uint64_t job_id, const int32_t *ids, uint32_t n)
{
    for (uint32_t k = 0; k < n; k++)
        if (push_token(w, job_id, k, ids[k])) {
            LOG_ERROR("worker", "out of memory re-sending job %llu", (unsigned long long)job_id);
            return;
        }
}

/* After a (re)registration: every running job's tokens from index 0, so a coordinator that
 * restarted has all of them (it dedupes by index), then the lately ended jobs' tokens and
 * ends (Register listed them): a restarted coordinator may never have read those. */
static void resend_running(struct worker *w)
{
    for (size_t i = 0; i < w->n_jobs; i++) {
        struct nosa_engine_seq_info info;
        if (nosa_engine_seq_info(w->engine, w->jobs[i], &info) == 0)
            push_tokens(w, w->jobs[i], info.generated, info.n_generated);
    }
    for (size_t i = 0; i < w->n_ended; i++)
        push_tokens(w, w->ended[i].fin.job_id, w->ended[i].tokens,
                    w->ended[i].fin.generated_tokens);
    send_tokens(w);
    for (size_t i = 0; i < w->n_ended; i++) send_finished_record(w, &w->ended[i].fin);
}

static void send_heartbeat(struct worker *w, int leaving)
{
    Nosa__Serve__Heartbeat hb = NOSA__SERVE__HEARTBEAT__INIT;
    Nosa__Serve__StepStats st = NOSA__SERVE__STEP_STATS__INIT;
    worker_stats_take(&w->stats, worker_now_s(), nosa_engine_totals(w->engine), &st);
    hb.worker_name = w->cfg.name;
    hb.running = (uint32_t)w->capacity.running;
    hb.free_slots = (uint32_t)w->capacity.free_slots;
    hb.stats = &st;
    hb.leaving = leaving;
    Nosa__Serve__WorkerMsg msg = NOSA__SERVE__WORKER_MSG__INIT;
    msg.body_case = NOSA__SERVE__WORKER_MSG__BODY_HEARTBEAT;
    msg.heartbeat = &hb;
    send_or_log(w, &msg, "Heartbeat");
}

static void heartbeat_if_due(struct worker *w)
{
    int64_t now = worker_now_ms();
    if (now < w->next_heartbeat_ms) return;
    w->next_heartbeat_ms = now + worker_link_heartbeat_ms(w->link);
    /* Unregistered, a heartbeat would only wait in the outbox: Register says it all. */
    if (worker_link_registered(w->link)) send_heartbeat(w, 0);
}

int worker_serve_on_kvh_wait(void *user)
{
    struct worker *w = user;
    if (w->link) { /* waiting on a kv-host that is coming back is not a hung step */
        worker_link_progress(w->link);
        heartbeat_if_due(w);
    }
    return g_worker_stop != 0;
}

/* ------------------------------------------------------------------ coordinator messages */
static void reply_error(struct worker *w, Nosa__ErrorCode code, const char *message)
{
    char err[256];
    if (worker_link_send_error(w->link, code, message, err, sizeof(err)))
        LOG_ERROR("worker", "send Error: %s", err);
}

static Nosa__ErrorCode add_error_code(int rc)
{
    switch (rc) {
    case -EBUSY: return NOSA__ERROR_CODE__ERROR_NO_SPACE;
    case -E2BIG:
    case -ENOTSUP: return NOSA__ERROR_CODE__ERROR_REFUSED;
    case -EINVAL: return NOSA__ERROR_CODE__ERROR_BAD_MESSAGE;
    default: return NOSA__ERROR_CODE__ERROR_INTERNAL;
    }
}

static void refuse_job(struct worker *w, const struct worker_job_request *req,
                       Nosa__ErrorCode code, const char *why)
{
    LOG_WARN("worker", "job %llu refused: %s", (unsigned long long)req->job_id, why);
    send_job_finished(w, req->job_id, NOSA__SERVE__FINISH_REASON__FINISH_ERROR, code, why,
                      req->n_prompt, req->n_generated, 0);
}

/* Puts a checked job into the engine: a new one after dropping any stale kv-host sequence
 * of its id, a resumed one over the table the kv-host holds. */
static int start_job(struct worker *w, const struct worker_job_request *req, char *err,
                     size_t errlen)
{
    struct nosa_engine_seq_params p = {
        .seq_id = req->job_id,
        .prompt = req->prompt,
        .n_prompt = req->n_prompt,
        .sampling = {.max_tokens = req->max_tokens,
                     .temperature = req->temperature,
                     .top_p = req->top_p,
                     .seed = req->seed,
                     .stop_at_eos = req->stop_at_eos},
    };
    int rc;
    uint32_t bs = (uint32_t)w->model->cfg.sparse.block_size;
    if (req->n_generated == 0 && req->prompt_done == 0) {
        /* A job moved before it reported anything: what its first worker wrote is not
         * needed (the prompt is prefilled again), and the table must start empty. */
        if ((rc = worker_kvh_source_forget(w->kvh, req->job_id, err, errlen))) return rc;
    } else {
        const uint32_t *groups;
        uint32_t n_groups;
        if ((rc = worker_kvh_source_table(w->kvh, req->job_id, &groups, &n_groups, err,
                                          errlen)))
            return rc;
        /* What the first worker reported vouches for blocks in the arena: its tokens (each
         * needed every token before it appended), or, before its first token, the prompt
         * tokens it had prefilled. */
        uint32_t committed = req->n_generated
                                 ? nosa_engine_committed_blocks(req->n_prompt, req->n_generated, bs)
                                 : req->prompt_done / bs;
        p.generated = req->generated;
        p.n_generated = req->n_generated;
        p.groups = groups;
        p.n_groups = n_groups;
        /* The table may be longer (groups the first worker allocated for a step whose tokens
         * never arrived) or, if something went wrong, shorter: only blocks both the table
         * and the report vouch for are restored; the engine prefills the rest. */
        p.n_complete_blocks = committed < n_groups ? committed : n_groups;
        p.n_appended_before = req->n_generated ? req->n_prompt + req->n_generated
                                               : req->prompt_done;
    }
    return nosa_engine_add(w->engine, &p, err, errlen);
}

static void handle_assign(struct worker *w, const Nosa__Serve__Assign *a)
{
    struct worker_job_request req;
    Nosa__ErrorCode code;
    char why[512];
    if (worker_assign_parse(a, &w->tok, (uint32_t)w->cfg.max_context, &req, &code, why,
                            sizeof(why))) {
        if (req.job_id == 0) reply_error(w, code, why);
        else refuse_job(w, &req, code, why);
        return;
    }
    int eos = w->model->cfg.eos_token_id;
    if (job_find(w, req.job_id) >= 0) {
        snprintf(why, sizeof(why), "Assign: job %llu already runs on worker %s",
                 (unsigned long long)req.job_id, w->cfg.name);
        reply_error(w, NOSA__ERROR_CODE__ERROR_REFUSED, why);
    } else if (req.n_generated && req.stop_at_eos && req.generated[req.n_generated - 1] == eos) {
        /* Its last worker generated EOS and died before JobFinished went out: it is done. */
        LOG_INFO("worker", "job %llu resumed after its EOS: finished",
                 (unsigned long long)req.job_id);
        send_job_finished(w, req.job_id, NOSA__SERVE__FINISH_REASON__FINISH_EOS,
                          NOSA__ERROR_CODE__ERROR_NONE, "", req.n_prompt, req.n_generated, 0);
        if (worker_kvh_source_forget(w->kvh, req.job_id, why, sizeof(why)))
            LOG_WARN("worker", "job %llu: freeing its kv-host sequence: %s (the coordinator "
                     "frees it on JobFinished too)", (unsigned long long)req.job_id, why);
    } else if ((size_t)w->n_jobs == (size_t)w->cfg.max_seqs) {
        snprintf(why, sizeof(why), "no free slot on worker %s (%d running)", w->cfg.name,
                 w->cfg.max_seqs);
        refuse_job(w, &req, NOSA__ERROR_CODE__ERROR_NO_SPACE, why);
    } else {
        int rc = start_job(w, &req, why, sizeof(why));
        if (rc) {
            refuse_job(w, &req, add_error_code(rc), why);
        } else {
            w->jobs[w->n_jobs++] = req.job_id;
            jobs_changed(w);
            LOG_INFO("worker", "job %llu assigned prompt=%u max_tokens=%u resumed_tokens=%u",
                     (unsigned long long)req.job_id, req.n_prompt, req.max_tokens,
                     req.n_generated);
            NOSA_FAULT_POINT("worker.assign.added");
        }
    }
    worker_job_request_free(&req);
}

static void handle_cancel(struct worker *w, const Nosa__Serve__CancelJob *c)
{
    char why[256];
    if (job_find(w, c->job_id) < 0) {
        snprintf(why, sizeof(why), "CancelJob: job %llu does not run on worker %s",
                 (unsigned long long)c->job_id, w->cfg.name);
        reply_error(w, NOSA__ERROR_CODE__ERROR_UNKNOWN_ID, why);
        return;
    }
    /* A moved job's kv-host sequence is its new worker's now: not ours to free. */
    if (c->moved)
        LOG_INFO("worker", "job %llu moved to another worker: dropped, its kv-host sequence "
                 "kept", (unsigned long long)c->job_id);
    if (nosa_engine_cancel(w->engine, c->job_id, c->moved, why, sizeof(why)))
        LOG_ERROR("worker", "cancel job %llu: %s", (unsigned long long)c->job_id, why);
    send_step_output(w);
}

static void handle_message(struct worker *w, const Nosa__Serve__CoordMsg *msg)
{
    switch (msg->body_case) {
    case NOSA__SERVE__COORD_MSG__BODY_ASSIGN: handle_assign(w, msg->assign); break;
    case NOSA__SERVE__COORD_MSG__BODY_CANCEL: handle_cancel(w, msg->cancel); break;
    case NOSA__SERVE__COORD_MSG__BODY_SHUTDOWN:
        LOG_INFO("worker", "Shutdown from the coordinator");
        w->shutdown = 1;
        break;
    default: break; /* the link answers everything else */
    }
}

/* Takes what the coordinator sent: waits up to timeout_ms for the first message, then takes
 * those already queued. 0, or -EIO with err on a link failure. */
static int take_messages(struct worker *w, int timeout_ms, char *err, size_t errlen)
{
    for (int i = 0; i < SERVE_MAX_MSGS_PER_TURN && !w->shutdown && !g_worker_stop; i++) {
        Nosa__Serve__CoordMsg *msg = NULL;
        int ev = worker_link_poll(w->link, i == 0 ? timeout_ms : 0, &msg, err, errlen);
        if (ev < 0) return -EIO;
        if (ev == WORKER_LINK_IDLE) {
            if (i > 0 || timeout_ms == 0) break;
            continue; /* the first wait may have ended on an internal event */
        }
        if (ev == WORKER_LINK_REGISTERED) {
            resend_running(w);
            w->next_heartbeat_ms = 0;
        } else {
            handle_message(w, msg);
            nosa__serve__coord_msg__free_unpacked(msg, NULL);
        }
    }
    return 0;
}

/* Ends the jobs the kv-host failed during the last step (FINISH_ERROR with the reason);
 * returns how many there were. */
static size_t end_failed_jobs(struct worker *w)
{
    const struct worker_kvh_failure *f;
    size_t n = worker_kvh_source_failures(w->kvh, &f);
    w->n_failing = 0;
    for (size_t i = 0; i < n && w->n_failing < (size_t)w->cfg.max_seqs; i++)
        w->failing[w->n_failing++] = f[i];
    for (size_t i = 0; i < w->n_failing; i++) {
        char why[256];
        /* -ENOENT: it finished within the step anyway. */
        if (nosa_engine_cancel(w->engine, w->failing[i].seq_id, w->failing[i].foreign_writer,
                               why, sizeof(why)) &&
            job_find(w, w->failing[i].seq_id) >= 0)
            LOG_ERROR("worker", "ending job %llu: %s",
                      (unsigned long long)w->failing[i].seq_id, why);
    }
    w->n_failing = 0;
    worker_kvh_source_clear_failures(w->kvh);
    return n;
}

/* One engine step and what it produced. -EFAULT (err set) when the backend failed: the
 * engine is unusable then. A kv-host failure ends only the jobs it concerns. */
static int step(struct worker *w, char *err, size_t errlen)
{
    char why[512];
    worker_kvh_source_clear_failures(w->kvh);
    int rc = nosa_engine_step(w->engine, why, sizeof(why));
    if (rc >= 0) NOSA_FAULT_POINT("worker.step.after_decode");
    /* A block-source failure stops the step before any compute; the engine stays usable.
     * Tokens of a step that failed in the backend are never sent (their blocks may not be
     * in the arena). */
    size_t failed = end_failed_jobs(w);
    if (rc < 0 && failed == 0) {
        nosa_set_error(err, errlen, "engine step: %s", why);
        return -EFAULT;
    }
    if (rc < 0) LOG_WARN("worker", "step stopped by the kv-host: %s", why);
    send_step_output(w);
    return 0;
}

/* Jobs to run, and someone to send their tokens to: registered, and not so far behind
 * that more output would only pile up. */
static int can_step(const struct worker *w)
{
    return worker_link_registered(w->link) && w->capacity.running > 0 &&
           !worker_link_backlogged(w->link);
}

int worker_serve_run(struct worker *w, char *err, size_t errlen)
{
    int64_t register_deadline = worker_now_ms() + w->cfg.register_timeout_ms;
    while (!g_worker_stop && !w->shutdown) {
        worker_link_progress(w->link); /* the pulse thread covers the step that follows */
        nosa_engine_capacity(w->engine, &w->capacity);
        if (!worker_link_ever_registered(w->link) && worker_now_ms() >= register_deadline) {
            nosa_set_error(err, errlen, "coordinator %s did not answer Register within %d ms "
                           "(is nosa-coordinator running there? --register-timeout-ms)",
                           w->cfg.coordinator, w->cfg.register_timeout_ms);
            return -ETIMEDOUT;
        }
        int stepping = can_step(w);
        int64_t until_hb = w->next_heartbeat_ms - worker_now_ms();
        int timeout = stepping ? 0 : SERVE_IDLE_POLL_MS;
        if (!stepping && until_hb >= 0 && until_hb < timeout) timeout = (int)until_hb;
        if (take_messages(w, timeout, err, errlen)) return -EIO;
        if (g_worker_stop || w->shutdown) break;
        nosa_engine_capacity(w->engine, &w->capacity);
        if (can_step(w) && step(w, err, errlen)) return -EFAULT;
        heartbeat_if_due(w);
    }
    /* Every send of finished jobs flushed its frees; this is only a backstop, so no
     * sequence of a job reported finished outlives the worker on the kv-host. */
    flush_frees(w);
    /* No more steps, so no more arena writes: the coordinator may move the jobs now (a
     * process that takes a while to exit must not be declared dead and fenced). */
    if (worker_link_registered(w->link)) send_heartbeat(w, 1);
    LOG_INFO("worker", "stopping: %s, %zu jobs left in place for the coordinator to move",
             w->shutdown ? "Shutdown" : "signal", w->n_jobs);
    return 0;
}
