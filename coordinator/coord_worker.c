/* coord_worker.c: the worker link: Register (and re-registration after a reconnect), Heartbeat,
 * TokensBatch, JobFinished and Error from nosa-worker (serve.proto, docs/COORDINATOR.md). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "coord_internal.h"
#include "fence.h"
#include "log.h"
#include "validate.h"

#define CODE(x) NOSA__ERROR_CODE__ERROR_##x
/* A worker that answered ERROR_NO_SPACE gets no assignment for this long. */
#define FULL_BACKOFF_MS 250

static int in_list(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id) return 1;
    return 0;
}

static int listed(const Nosa__Serve__Register *r, uint64_t id)
{
    return in_list(r->running_jobs, r->n_running_jobs, id) ||
           in_list(r->finished_jobs, r->n_finished_jobs, id);
}

/* A job the worker may take back: waiting to be claimed after a restart, taken from it and
 * not placed since, or still its own. */
static int claimable(const struct coord_job *j, int wi)
{
    return j && (j->state == COORD_JOB_RECOVERING ||
                 (j->state == COORD_JOB_QUEUED && j->prev_worker == wi) ||
                 (j->state == COORD_JOB_RUNNING && j->worker == wi));
}

/* The job runs on worker wi again (claimed back). */
static void claim(struct coord *c, int wi, struct coord_job *j, const char *how)
{
    const struct coord_worker *w = &c->workers.w[wi];
    if (j->state != COORD_JOB_RUNNING) {
        LOG_INFO("coordinator", "job %llu claimed by %s (it has %u of its tokens here)%s",
                 (unsigned long long)j->id, w->name, j->tok.n, how);
        /* Its sequence is where this worker runs it; what it holds there is known again
         * from its next token and the next stats (coord_job_groups_held). */
        if (j->kvhost != w->kvhost) j->fresh_from = j->tok.n;
        j->kvhost = w->kvhost;
        j->held_at_stats = 0;
        coord_journal_place(c, j);
    }
    j->state = COORD_JOB_RUNNING;
    j->worker = wi;
    j->prev_worker = -1;
}

/* Reconciles the jobs a (re-)registering worker says it runs with the table. A listed job
 * goes back to it when it has not been placed on another worker since it left this one (or it
 * waits to be claimed after a restart); one that moved on (or ended, or is unknown) is
 * cancelled there, so only one worker ever runs a job. A second Register on the same live
 * connection (two UNAUTHORIZED answers crossed its first) was written before the Assigns
 * sent since the first one's ack reached the worker: those jobs are not lost, they are on
 * their way in order, so only jobs assigned before that ack count as gone. */
static void reconcile(struct coord *c, int wi, const Nosa__Serve__Register *r, int same_conn)
{
    const struct coord_worker *w = &c->workers.w[wi];
    for (size_t i = 0; i < c->jobs.n; i++) { /* ours there that it no longer runs: lost */
        struct coord_job *j = c->jobs.jobs[i];
        int in_flight = same_conn && j->assigned_at == w->registrations - 1;
        if (j->state == COORD_JOB_RUNNING && j->worker == wi && !listed(r, j->id) &&
            !in_flight) {
            LOG_INFO("coordinator", "job %llu is no longer on %s: moved",
                     (unsigned long long)j->id, r->worker_name);
            coord_requeue_job(c, j);
        }
    }
    for (size_t i = 0; i < r->n_running_jobs; i++) {
        uint64_t id = r->running_jobs[i];
        struct coord_job *j = coord_jobs_find(&c->jobs, id);
        if (!claimable(j, wi)) {
            LOG_INFO("coordinator", "worker %s runs job %llu, which %s: cancelled there",
                     r->worker_name, (unsigned long long)id,
                     !j ? "is unknown"
                        : j->state == COORD_JOB_FINISHED ? "has ended"
                                                         : "has moved to another worker");
            coord_cancel_on_worker(c, wi, id);
            continue;
        }
        claim(c, wi, j, "");
    }
    /* Jobs it ended, whose end may not have been read (the coordinator restarted): its
     * tokens and JobFinished come again after the ack. One moved or ended meanwhile is left
     * as it is (nothing runs there to cancel). */
    for (size_t i = 0; i < r->n_finished_jobs; i++) {
        struct coord_job *j = coord_jobs_find(&c->jobs, r->finished_jobs[i]);
        if (claimable(j, wi)) claim(c, wi, j, ", which ended there: its end comes again");
    }
}

static void on_register(struct coord *c, const struct nosa_msg_peer *peer,
                        const Nosa__Serve__Register *r)
{
    int wi = coord_workers_slot(&c->workers, r->worker_name);
    if (wi < 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "Register from %s refused: %d workers already registered",
                 r->worker_name, COORD_MAX_WORKERS);
        coord_send_worker_error(c, peer, CODE(REFUSED), msg);
        return;
    }
    struct coord_worker *w = &c->workers.w[wi];
    if (coord_worker_fence_done(c, wi, coord_now_ms())) { /* it sends Register again */
        char msg[160];
        snprintf(msg, sizeof msg, "Register from %s refused for now: its previous process is "
                 "being fenced (killed; its jobs move once it has exited)", r->worker_name);
        coord_send_worker_error(c, peer, CODE(REFUSED), msg);
        return;
    }
    char why[256];
    int pidfd;
    if (coord_fence_open(c->host_id, r->host_id, r->pid, &pidfd, why, sizeof why))
        LOG_WARN("coordinator", "worker %s (pid %d) cannot be fenced: %s", r->worker_name,
                 (int)r->pid, why);
    if (w->pidfd >= 0) close(w->pidfd);
    w->pidfd = pidfd;
    int same_peer = w->peer.len == peer->len && !memcmp(w->peer.id, peer->id, peer->len);
    int same_conn = w->alive && w->registrations > 0 && same_peer;
    if (w->alive && !same_peer)
        LOG_WARN("coordinator", "worker %s registered again from a new connection (pid %d): "
                 "it replaces the old one", r->worker_name, r->pid);
    w->peer = *peer;
    snprintf(w->backend, sizeof w->backend, "%s", r->backend ? r->backend : "");
    snprintf(w->mode, sizeof w->mode, "%s", r->mode ? r->mode : "");
    snprintf(w->model, sizeof w->model, "%s", r->model ? r->model : "");
    w->max_seqs = r->max_seqs;
    w->max_context = r->max_context;
    w->block_size = r->block_size;
    w->gpu = r->gpu;
    w->pid = r->pid;
    w->numa_node = r->numa_node;
    w->kvhost = COORD_KVHOST_UNKNOWN;
    if (r->kvhost_endpoint && r->kvhost_endpoint[0]) {
        char err[512];
        int k = coord_kvhosts_get(&c->kvhosts, r->kvhost_endpoint, err, sizeof err);
        if (k >= 0) w->kvhost = k;
        else LOG_WARN("coordinator", "worker %s: %s; its jobs are placed by slots only", w->name,
                      err);
    }
    c->check_fit = 1; /* a queued job too large for every worker so far may fit this one */
    w->last_seen_ms = coord_now_ms();
    w->full_until_ms = 0;
    w->alive = 1;
    Nosa__Serve__RegisterAck ack = NOSA__SERVE__REGISTER_ACK__INIT;
    ack.worker_name = w->name;
    int heartbeat_ms = c->opt.heartbeat_timeout_ms / 4; /* three may be lost before the timeout */
    ack.heartbeat_ms = (uint32_t)(heartbeat_ms > 10 ? heartbeat_ms : 10);
    Nosa__Serve__CoordMsg m = NOSA__SERVE__COORD_MSG__INIT;
    m.body_case = NOSA__SERVE__COORD_MSG__BODY_REGISTER_ACK;
    m.register_ack = &ack;
    coord_send_worker(c, wi, &m);
    w->registrations++;
    reconcile(c, wi, r, same_conn); /* after the ack: the worker takes its CancelJobs registered */
    LOG_INFO("coordinator", "worker %s registered: backend=%s mode=%s slots=%u max_context=%u "
             "block_size=%u running=%zu kvhost=%s", w->name, w->backend, w->mode, w->max_seqs,
             w->max_context, w->block_size, r->n_running_jobs,
             w->kvhost >= 0 ? c->kvhosts.h[w->kvhost].endpoint : "(none)");
}

static void on_heartbeat(struct coord_worker *w, const Nosa__Serve__Heartbeat *h)
{
    /* h->running and h->free_slots are not kept: the coordinator's own count of what it
     * assigned is never older than a heartbeat (docs/COORDINATOR.md). */
    if (h->stats) {
        w->stats_ms = coord_now_ms();
        /* Its scalar fields; the unknown fields belong to the message h, freed after this. */
        w->stats = *h->stats;
        w->stats.base.n_unknown_fields = 0;
        w->stats.base.unknown_fields = NULL;
    }
}

/* The job if worker wi owns it: it runs there, or (wi declared dead) it was taken from wi and
 * has not been placed anywhere since, so what wi says of it is still the job's truth. Tokens
 * or an end for any other job (moved away, cancelled, finished) are dropped. */
static struct coord_job *job_on(struct coord *c, int wi, uint64_t id, const char *what)
{
    struct coord_job *j = coord_jobs_find(&c->jobs, id);
    if (j && j->state == COORD_JOB_RUNNING && j->worker == wi) return j;
    if (j && !c->workers.w[wi].alive && j->state == COORD_JOB_QUEUED && j->prev_worker == wi)
        return j;
    LOG_INFO("coordinator", "%s for job %llu from %s ignored: the job %s", what,
             (unsigned long long)id, c->workers.w[wi].name,
             !j ? "is unknown"
                : j->state == COORD_JOB_FINISHED ? "has ended"
                                                 : "does not run there (it moved)");
    return NULL;
}

static void on_tokens(struct coord *c, int wi, const Nosa__Serve__TokensBatch *b)
{
    for (size_t k = 0; k < b->n_jobs; k++) {
        const Nosa__Serve__JobTokens *jt = b->jobs[k];
        struct coord_job *j = job_on(c, wi, jt->job_id, "tokens");
        if (!j) continue;
        if (jt->prompt_done > j->prompt_tokens)
            LOG_WARN("coordinator", "from %s: job %llu prefilled %u of a %u-token prompt: "
                     "ignored", c->workers.w[wi].name, (unsigned long long)j->id,
                     jt->prompt_done, j->prompt_tokens);
        else if (jt->prompt_done > j->prompt_done && j->tok.n == 0) {
            j->prompt_done = jt->prompt_done;
            coord_journal_place(c, j);
        }
        uint32_t before = j->tok.n;
        for (size_t i = 0; i < jt->n_tokens; i++) {
            const Nosa__Serve__Token *t = jt->tokens[i];
            char why[256];
            if (coord_job_add_token(j, t->index, t->id, t->text.data, t->text.len, why,
                                    sizeof why) < 0) {
                LOG_WARN("coordinator", "from %s: %s", c->workers.w[wi].name, why);
                break;
            }
        }
        if (j->tok.n > before) {
            coord_journal_tokens(c, j, before);
            coord_stream_tokens(c, j, before);
        }
    }
}

static void on_finished(struct coord *c, int wi, const Nosa__Serve__JobFinished *f)
{
    struct coord_job *j = job_on(c, wi, f->job_id, "JobFinished");
    if (!j) {
        const struct coord_job *k = coord_jobs_find(&c->jobs, f->job_id);
        if (!k || k->state == COORD_JOB_FINISHED) /* in the sender's kv-host */
            coord_free_sequence(c, c->workers.w[wi].kvhost, f->job_id);
        return;
    }
    int completed = f->reason == NOSA__SERVE__FINISH_REASON__FINISH_LENGTH ||
                    f->reason == NOSA__SERVE__FINISH_REASON__FINISH_EOS;
    if (completed && f->generated_tokens > j->tok.n) {
        /* Tokens it sent are missing: they died with a coordinator that restarted (this end
         * waited in the worker's outbox). Its worker registers again and sends every token
         * from index 0 and this end once more, so the job ends with all of them. */
        LOG_INFO("coordinator", "job %llu ended on %s with %u tokens, %u here: its end waits "
                 "for the rest", (unsigned long long)j->id, c->workers.w[wi].name,
                 f->generated_tokens, j->tok.n);
        return;
    }
    int code = f->error ? (int)f->error->code : 0;
    const char *msg = f->error && f->error->message ? f->error->message : "";
    if (f->reason == NOSA__SERVE__FINISH_REASON__FINISH_ERROR && code == CODE(NO_SPACE)) {
        if (j->state != COORD_JOB_RUNNING) return; /* already back in the queue */
        LOG_INFO("coordinator", "worker %s has no room for job %llu (%s): placed again",
                 c->workers.w[wi].name, (unsigned long long)j->id, msg);
        c->workers.w[wi].full_until_ms = coord_now_ms() + FULL_BACKOFF_MS;
        if (c->workers.w[wi].assigned) c->workers.w[wi].assigned--;
        coord_requeue_job(c, j);
        return;
    }
    int was_running = j->state == COORD_JOB_RUNNING; /* else coord_finish_job frees it */
    if (f->reason == NOSA__SERVE__FINISH_REASON__FINISH_UNSPECIFIED) {
        coord_finish_job(c, j, NOSA__SERVE__FINISH_REASON__FINISH_ERROR, CODE(INTERNAL),
                         "the worker ended the job without a reason", f->recomputed_tokens);
    } else {
        char what[320];
        if (code) snprintf(what, sizeof what, "worker %s: %s", c->workers.w[wi].name, msg);
        coord_finish_job(c, j, f->reason, code, code ? what : NULL, f->recomputed_tokens);
    }
    if (was_running) coord_free_job_sequence(c, j);
}

static const char *body_name(Nosa__Serve__WorkerMsg__BodyCase b)
{
    switch (b) {
    case NOSA__SERVE__WORKER_MSG__BODY_HEARTBEAT: return "Heartbeat";
    case NOSA__SERVE__WORKER_MSG__BODY_TOKENS: return "TokensBatch";
    case NOSA__SERVE__WORKER_MSG__BODY_FINISHED: return "JobFinished";
    default: return "message";
    }
}

void coord_on_worker_frame(struct coord *c, const struct nosa_msg_peer *peer,
                           const uint8_t *data, size_t len)
{
    char why[512];
    Nosa__Serve__WorkerMsg *m = (Nosa__Serve__WorkerMsg *)nosa_msg_unpack(
        &nosa__serve__worker_msg__descriptor, data, len, why, sizeof why);
    if (!m) {
        coord_send_worker_error(c, peer, CODE(BAD_MESSAGE), why);
        return;
    }
    int code = coord_worker_msg_validate(&m->base, why, sizeof why);
    int wi = coord_workers_by_peer(&c->workers, peer);
    if (m->body_case == NOSA__SERVE__WORKER_MSG__BODY_ERROR) { /* never answered */
        LOG_WARN("coordinator", "worker %s reports an error: code %d: %s",
                 wi >= 0 ? c->workers.w[wi].name : "(unregistered)",
                 m->error ? (int)m->error->code : 0,
                 m->error && m->error->message ? m->error->message : "");
    } else if (code) {
        coord_send_worker_error(c, peer, code, why);
    } else if (m->body_case == NOSA__SERVE__WORKER_MSG__BODY_REGISTER) {
        on_register(c, peer, m->register_);
    } else if (wi < 0) {
        snprintf(why, sizeof why, "%s from a peer that is not a registered worker: send "
                 "Register first", body_name(m->body_case));
        coord_send_worker_error(c, peer, CODE(UNAUTHORIZED), why);
    } else {
        struct coord_worker *w = &c->workers.w[wi];
        if (!w->alive) { /* declared dead (slow, not gone): it registers again on this */
            snprintf(why, sizeof why, "%s from worker %s, which was declared dead: send "
                     "Register first", body_name(m->body_case), w->name);
            coord_send_worker_error(c, peer, CODE(UNAUTHORIZED), why);
        } else {
            w->last_seen_ms = coord_now_ms();
        }
        if (m->body_case == NOSA__SERVE__WORKER_MSG__BODY_HEARTBEAT) {
            if (w->alive && m->heartbeat->leaving) coord_worker_left(c, wi);
            else if (w->alive) on_heartbeat(w, m->heartbeat);
        } else if (m->body_case == NOSA__SERVE__WORKER_MSG__BODY_TOKENS) {
            on_tokens(c, wi, m->tokens);
        } else {
            on_finished(c, wi, m->finished);
        }
    }
    protobuf_c_message_free_unpacked(&m->base, NULL);
}
