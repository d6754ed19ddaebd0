/* coord_client.c: the client link (the `nosa` CLI): submit, status, cancel, drain and attach
 * (serve.proto, docs/COORDINATOR.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_internal.h"
#include "fault.h"
#include "log.h"
#include "validate.h"

#define CODE(x) NOSA__ERROR_CODE__ERROR_##x

static void reply(struct coord *c, const struct nosa_msg_peer *peer, uint64_t request_id,
                  Nosa__Serve__ClientReply *r)
{
    r->request_id = request_id;
    coord_send_client(c, peer, r);
}

static uint32_t queue_position(const struct coord *c, const struct coord_job *j)
{
    if (j->state != COORD_JOB_QUEUED) return 0;
    uint32_t n = 0;
    for (size_t i = 0; i < c->jobs.n; i++) {
        const struct coord_job *o = c->jobs.jobs[i];
        n += o->state == COORD_JOB_QUEUED && o->queue_seq < j->queue_seq;
    }
    return n;
}

static void send_submitted(struct coord *c, const struct nosa_msg_peer *peer,
                           uint64_t request_id, const struct coord_job *j)
{
    Nosa__Serve__SubmitReply sr = NOSA__SERVE__SUBMIT_REPLY__INIT;
    sr.job_id = j->id;
    sr.queue_position = queue_position(c, j);
    Nosa__Serve__ClientReply r = NOSA__SERVE__CLIENT_REPLY__INIT;
    r.body_case = NOSA__SERVE__CLIENT_REPLY__BODY_SUBMITTED;
    r.submitted = &sr;
    reply(c, peer, request_id, &r);
}

/* Makes peer the job's client: SubmitReply, its tokens from index from, and its end if it
 * has ended (the client may have missed it). */
static void attach_client(struct coord *c, const struct nosa_msg_peer *peer,
                          uint64_t request_id, struct coord_job *j, uint32_t from)
{
    j->has_client = 1;
    j->client = *peer;
    j->client_request_id = request_id;
    send_submitted(c, peer, request_id, j);
    coord_stream_tokens(c, j, from);
    if (j->state == COORD_JOB_FINISHED) {
        Nosa__Serve__JobFinished f;
        Nosa__Error e;
        coord_finished_msg(j, &f, &e);
        Nosa__Serve__ClientReply r = NOSA__SERVE__CLIENT_REPLY__INIT;
        r.body_case = NOSA__SERVE__CLIENT_REPLY__BODY_FINISHED;
        r.finished = &f;
        reply(c, peer, request_id, &r);
    }
}

static struct coord_job *job_by_client_key(const struct coord *c, uint64_t key)
{
    for (size_t i = 0; key && i < c->jobs.n; i++)
        if (c->jobs.jobs[i]->client_key == key) return c->jobs.jobs[i];
    return NULL;
}

static void on_submit(struct coord *c, const struct nosa_msg_peer *peer, uint64_t request_id,
                      Nosa__Serve__SubmitRequest *s)
{
    char why[768];
    struct coord_job *again = job_by_client_key(c, s->job->client_key);
    if (again) { /* its reply was lost: the same job, not a second one */
        LOG_INFO("coordinator", "job %llu submitted again (client key %016llx): the same job",
                 (unsigned long long)again->id, (unsigned long long)again->client_key);
        if (s->stream) attach_client(c, peer, request_id, again, 0);
        else send_submitted(c, peer, request_id, again);
        return;
    }
    if (c->draining) {
        coord_send_client_error(c, peer, request_id, CODE(REFUSED),
                                "the coordinator is draining (nosa drain): it accepts no new jobs");
        return;
    }
    if (c->journal.failed) {
        snprintf(why, sizeof why, "%s: new jobs are refused (running jobs go on); fix the "
                 "journal and restart the coordinator", c->journal.error);
        coord_send_client_error(c, peer, request_id, CODE(INTERNAL), why);
        return;
    }
    Nosa__Serve__JobSpec *spec = s->job;
    uint32_t prompt = coord_prompt_tokens(&spec->base);
    if (coord_never_fits(c, prompt, spec->sampling->max_tokens, why, sizeof why)) {
        coord_send_client_error(c, peer, request_id, CODE(REFUSED), why);
        return;
    }
    uint64_t id = c->jobs.next_id;
    spec->job_id = id;
    size_t len = protobuf_c_message_get_packed_size(&spec->base);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        coord_send_client_error(c, peer, request_id, CODE(INTERNAL), "out of memory");
        return;
    }
    protobuf_c_message_pack(&spec->base, buf);
    if (coord_journal_append(&c->journal, COORD_JOURNAL_ACCEPT, id, buf, len, 1, why,
                             sizeof why) != 0) {
        free(buf);
        size_t used = strlen(why);
        snprintf(why + used, sizeof why - used, ": job refused (running jobs go on)");
        coord_send_client_error(c, peer, request_id, CODE(INTERNAL), why);
        return;
    }
    struct coord_job *j = coord_jobs_add(&c->jobs, id, buf, len, prompt,
                                         spec->sampling->max_tokens, why, sizeof why);
    free(buf);
    if (!j) {
        coord_send_client_error(c, peer, request_id, CODE(INTERNAL), why);
        return;
    }
    j->client_key = spec->client_key;
    coord_job_enqueue(&c->jobs, j);
    if (s->stream) {
        j->has_client = 1;
        j->client = *peer;
        j->client_request_id = request_id;
    }
    LOG_INFO("coordinator", "job %llu accepted: %u prompt tokens, max_tokens %u",
             (unsigned long long)id, prompt, j->max_tokens);
    send_submitted(c, peer, request_id, j);
    NOSA_FAULT_POINT("coordinator.accept.replied");
}

static void job_status(const struct coord *c, const struct coord_job *j,
                       Nosa__Serve__JobStatus *js, Nosa__Error *e)
{
    nosa__serve__job_status__init(js);
    nosa__error__init(e);
    js->job_id = j->id;
    js->state = (char *)coord_job_state_name(j->state);
    js->worker = j->state == COORD_JOB_RUNNING ? (char *)c->workers.w[j->worker].name : "";
    js->tokens = j->tok.ids;
    js->n_tokens = j->tok.n;
    js->text.data = j->tok.text;
    js->text.len = j->tok.text_len;
    js->prompt_tokens = j->prompt_tokens;
    js->max_tokens = j->max_tokens;
    if (j->state == COORD_JOB_FINISHED) {
        js->reason = (Nosa__Serve__FinishReason)j->reason;
        js->recomputed_tokens = j->recomputed_tokens;
        if (j->error_code || j->error[0]) {
            e->code = (Nosa__ErrorCode)j->error_code;
            e->message = (char *)j->error;
            js->error = e;
        }
    }
}

static void on_status(struct coord *c, const struct nosa_msg_peer *peer, uint64_t request_id,
                      const Nosa__Serve__StatusRequest *s)
{
    Nosa__Serve__StatusReply st = NOSA__SERVE__STATUS_REPLY__INIT;
    Nosa__Serve__JobStatus js;
    Nosa__Error e;
    if (s->job_id) {
        const struct coord_job *j = coord_jobs_find(&c->jobs, s->job_id);
        if (!j) {
            char why[160];
            snprintf(why, sizeof why, "no job %llu (never submitted here, or finished long ago)",
                     (unsigned long long)s->job_id);
            coord_send_client_error(c, peer, request_id, CODE(UNKNOWN_ID), why);
            return;
        }
        job_status(c, j, &js, &e);
        st.job = &js;
    }
    Nosa__Serve__WorkerStatus ws[COORD_MAX_WORKERS], *wsp[COORD_MAX_WORKERS];
    Nosa__Serve__ArenaStatus as[COORD_MAX_KVHOSTS], *asp[COORD_MAX_KVHOSTS];
    const struct coord_kvhosts *kh = &c->kvhosts;
    Nosa__Serve__StepStats ss[COORD_MAX_WORKERS];
    uint64_t now = coord_now_ms();
    for (int i = 0; i < c->workers.n; i++) {
        const struct coord_worker *w = &c->workers.w[i];
        nosa__serve__worker_status__init(&ws[i]);
        ws[i].worker_name = (char *)w->name;
        ws[i].backend = (char *)w->backend;
        ws[i].mode = (char *)w->mode;
        ws[i].alive = w->alive;
        ws[i].running = w->assigned;
        ws[i].max_seqs = w->max_seqs;
        ws[i].last_heartbeat_age_s = (double)(now - w->last_seen_ms) / 1000.0;
        ws[i].stats_age_s = w->stats_ms ? (double)(now - w->stats_ms) / 1000.0 : -1.0;
        ws[i].gpu = w->gpu;
        ws[i].kvhost = w->kvhost >= 0 ? (char *)kh->h[w->kvhost].endpoint : "";
        ss[i] = w->stats;
        ws[i].stats = &ss[i];
        wsp[i] = &ws[i];
        if (w->alive) st.tokens_per_s += w->stats.tokens_per_s;
    }
    st.workers = wsp;
    st.n_workers = (size_t)c->workers.n;
    st.queued = (uint32_t)(coord_jobs_count(&c->jobs, COORD_JOB_QUEUED) +
                           coord_jobs_count(&c->jobs, COORD_JOB_RECOVERING));
    st.running = (uint32_t)coord_jobs_count(&c->jobs, COORD_JOB_RUNNING);
    st.completed = c->jobs.completed;
    st.failed = c->jobs.failed;
    st.draining = c->draining;
    for (int k = 0; k < kh->arenas.n; k++) {
        const struct coord_arena *a = &kh->arenas.a[k];
        nosa__serve__arena_status__init(&as[k]);
        as[k].kvhost = (char *)kh->h[k].endpoint;
        as[k].up = kh->h[k].up;
        if (a->known) {
            as[k].groups = a->n_groups;
            as[k].free_groups = a->free_groups;
            as[k].reserved_groups = a->reserved_groups;
            as[k].arena_bytes = kh->h[k].stats.arena_bytes;
            as[k].numa_node = kh->h[k].stats.numa_node;
            st.arena_groups += a->n_groups;
            st.arena_free_groups += a->free_groups;
        }
        asp[k] = &as[k];
    }
    st.arenas = asp;
    st.n_arenas = (size_t)kh->arenas.n;
    st.journal_error = c->journal.failed ? c->journal.error : "";
    Nosa__Serve__ClientReply r = NOSA__SERVE__CLIENT_REPLY__INIT;
    r.body_case = NOSA__SERVE__CLIENT_REPLY__BODY_STATUS;
    r.status = &st;
    reply(c, peer, request_id, &r);
}

static void on_cancel(struct coord *c, const struct nosa_msg_peer *peer, uint64_t request_id,
                      uint64_t job_id)
{
    char why[160];
    struct coord_job *j = coord_jobs_find(&c->jobs, job_id);
    if (!j) {
        snprintf(why, sizeof why, "no job %llu to cancel (never submitted here, or finished long "
                 "ago)", (unsigned long long)job_id);
        coord_send_client_error(c, peer, request_id, CODE(UNKNOWN_ID), why);
        return;
    }
    if (j->state == COORD_JOB_FINISHED) {
        snprintf(why, sizeof why, "job %llu has already finished", (unsigned long long)job_id);
        coord_send_client_error(c, peer, request_id, CODE(REFUSED), why);
        return;
    }
    if (j->state == COORD_JOB_RUNNING) { /* the worker stops it and frees its sequence */
        Nosa__Serve__CancelJob cj = NOSA__SERVE__CANCEL_JOB__INIT;
        cj.job_id = job_id;
        Nosa__Serve__CoordMsg m = NOSA__SERVE__COORD_MSG__INIT;
        m.body_case = NOSA__SERVE__COORD_MSG__BODY_CANCEL;
        m.cancel = &cj;
        coord_send_worker(c, j->worker, &m);
    }
    /* Ended here at once: whatever the worker still sends for it is dropped. A recovering
     * job's worker, if it comes back, is told to cancel it when it lists it. */
    coord_finish_job(c, j, NOSA__SERVE__FINISH_REASON__FINISH_CANCELLED, 0, "cancelled", 0);
    Nosa__Serve__CancelReply cr = NOSA__SERVE__CANCEL_REPLY__INIT;
    cr.job_id = job_id;
    Nosa__Serve__ClientReply r = NOSA__SERVE__CLIENT_REPLY__INIT;
    r.body_case = NOSA__SERVE__CLIENT_REPLY__BODY_CANCELLED;
    r.cancelled = &cr;
    reply(c, peer, request_id, &r);
}

static void on_drain(struct coord *c, const struct nosa_msg_peer *peer, uint64_t request_id)
{
    if (!c->draining) LOG_INFO("coordinator", "draining: no new jobs from now on");
    c->draining = 1;
    Nosa__Serve__DrainReply dr = NOSA__SERVE__DRAIN_REPLY__INIT;
    dr.remaining = (uint32_t)(c->jobs.n - coord_jobs_count(&c->jobs, COORD_JOB_FINISHED));
    Nosa__Serve__ClientReply r = NOSA__SERVE__CLIENT_REPLY__INIT;
    r.body_case = NOSA__SERVE__CLIENT_REPLY__BODY_DRAIN;
    r.drain = &dr;
    reply(c, peer, request_id, &r);
}

static void on_attach(struct coord *c, const struct nosa_msg_peer *peer, uint64_t request_id,
                      const Nosa__Serve__AttachRequest *a)
{
    struct coord_job *j = coord_jobs_find(&c->jobs, a->job_id);
    if (!j) {
        char why[160];
        snprintf(why, sizeof why, "no job %llu to attach to (never submitted here, or finished "
                 "long ago)", (unsigned long long)a->job_id);
        coord_send_client_error(c, peer, request_id, CODE(UNKNOWN_ID), why);
        return;
    }
    attach_client(c, peer, request_id, j, a->from_index);
}

void coord_on_client_frame(struct coord *c, const struct nosa_msg_peer *peer,
                           const uint8_t *data, size_t len)
{
    char why[512];
    Nosa__Serve__ClientMsg *m = (Nosa__Serve__ClientMsg *)nosa_msg_unpack(
        &nosa__serve__client_msg__descriptor, data, len, why, sizeof why);
    if (!m) {
        coord_send_client_error(c, peer, 0, CODE(BAD_MESSAGE), why);
        return;
    }
    int code = coord_client_msg_validate(&m->base, why, sizeof why);
    if (code) {
        coord_send_client_error(c, peer, m->request_id, code, why);
    } else {
        uint64_t id = m->request_id;
        switch (m->body_case) {
        case NOSA__SERVE__CLIENT_MSG__BODY_SUBMIT: on_submit(c, peer, id, m->submit); break;
        case NOSA__SERVE__CLIENT_MSG__BODY_STATUS: on_status(c, peer, id, m->status); break;
        case NOSA__SERVE__CLIENT_MSG__BODY_CANCEL: on_cancel(c, peer, id, m->cancel->job_id); break;
        case NOSA__SERVE__CLIENT_MSG__BODY_DRAIN: on_drain(c, peer, id); break;
        case NOSA__SERVE__CLIENT_MSG__BODY_ATTACH: on_attach(c, peer, id, m->attach); break;
        default: break; /* validate refused it */
        }
    }
    protobuf_c_message_free_unpacked(&m->base, NULL);
}
