/* coord.c: see coord.h. The loop, the journal (replay, records, compaction), scheduling,
 * heartbeats, kv-host stats and metrics; the link handlers are coord_client.c and
 * coord_worker.c. */
#include "coord_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "fault.h"
#include "fence.h"
#include "log.h"
#include "validate.h"

#define CODE(x) NOSA__ERROR_CODE__ERROR_##x
#define POLL_MS 50
#define METRICS_EVERY_MS 250
/* A SIGKILLed worker is gone in milliseconds; one stuck in the kernel (a GPU driver call)
 * may take longer, and its jobs wait for it this long at most. */
#define COORD_FENCE_WAIT_MS 5000
/* Frames handled per socket per loop turn, so neither link starves the other. */
#define BURST 256

uint64_t coord_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---------------------------------------------------------------- sending */
void coord_send_worker(struct coord *c, int worker, Nosa__Serve__CoordMsg *msg)
{
    char err[256];
    msg->version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    if (nosa_msg_send(c->workers_sock, &c->workers.w[worker].peer, &msg->base, err, sizeof err))
        LOG_WARN("coordinator", "send to worker %s: %s", c->workers.w[worker].name, err);
}

void coord_send_client(struct coord *c, const struct nosa_msg_peer *peer,
                       Nosa__Serve__ClientReply *reply)
{
    char err[256];
    reply->version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    if (nosa_msg_send(c->clients_sock, peer, &reply->base, err, sizeof err))
        LOG_WARN("coordinator", "send to a client: %s", err);
}

void coord_send_client_error(struct coord *c, const struct nosa_msg_peer *peer,
                             uint64_t request_id, int code, const char *message)
{
    Nosa__Error e = NOSA__ERROR__INIT;
    e.code = (Nosa__ErrorCode)code;
    e.message = (char *)message;
    Nosa__Serve__ClientReply r = NOSA__SERVE__CLIENT_REPLY__INIT;
    r.request_id = request_id;
    r.error = &e;
    LOG_INFO("coordinator", "client request %llu refused: %s", (unsigned long long)request_id,
             message);
    coord_send_client(c, peer, &r);
}

void coord_send_worker_error(struct coord *c, const struct nosa_msg_peer *peer, int code,
                             const char *message)
{
    char err[256];
    Nosa__Error e = NOSA__ERROR__INIT;
    e.code = (Nosa__ErrorCode)code;
    e.message = (char *)message;
    Nosa__Serve__CoordMsg m = NOSA__SERVE__COORD_MSG__INIT;
    m.version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    m.body_case = NOSA__SERVE__COORD_MSG__BODY_ERROR;
    m.error = &e;
    LOG_WARN("coordinator", "worker link: %s", message);
    if (nosa_msg_send(c->workers_sock, peer, &m.base, err, sizeof err))
        LOG_WARN("coordinator", "send an Error on the worker link: %s", err);
}

/* ---------------------------------------------------------------- tokens */
int coord_tokens_msg_init(struct coord_tokens_msg *m, const struct coord_job *j, uint32_t from,
                          uint32_t to)
{
    nosa__serve__job_tokens__init(&m->msg);
    m->msg.job_id = j->id;
    size_t n = to > from ? to - from : 0;
    m->tokens = calloc(n ? n : 1, sizeof *m->tokens);
    m->ptrs = calloc(n ? n : 1, sizeof *m->ptrs);
    if (!m->tokens || !m->ptrs) {
        coord_tokens_msg_free(m);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        Nosa__Serve__Token *t = &m->tokens[i];
        nosa__serve__token__init(t);
        t->index = from + (uint32_t)i;
        t->id = j->tok.ids[from + i];
        size_t len;
        const uint8_t *text = token_store_text(&j->tok, from + (uint32_t)i, &len);
        t->text.data = (uint8_t *)text;
        t->text.len = len;
        m->ptrs[i] = t;
    }
    m->msg.tokens = m->ptrs;
    m->msg.n_tokens = n;
    return 0;
}

void coord_tokens_msg_free(struct coord_tokens_msg *m)
{
    free(m->tokens);
    free(m->ptrs);
    m->tokens = NULL;
    m->ptrs = NULL;
}

void coord_stream_tokens(struct coord *c, const struct coord_job *j, uint32_t from)
{
    if (!j->has_client || from >= j->tok.n) return;
    struct coord_tokens_msg tm;
    if (coord_tokens_msg_init(&tm, j, from, j->tok.n) != 0) {
        LOG_ERROR("coordinator", "out of memory streaming job %llu", (unsigned long long)j->id);
        return;
    }
    Nosa__Serve__ClientReply r = NOSA__SERVE__CLIENT_REPLY__INIT;
    r.request_id = j->client_request_id;
    r.body_case = NOSA__SERVE__CLIENT_REPLY__BODY_TOKENS;
    r.tokens = &tm.msg;
    coord_send_client(c, &j->client, &r);
    coord_tokens_msg_free(&tm);
}

/* Packs msg into a malloc'd buffer (*out); -1 when out of memory. */
static int pack(const ProtobufCMessage *msg, uint8_t **out, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    *out = malloc(*len ? *len : 1);
    if (!*out) return -1;
    protobuf_c_message_pack(msg, *out);
    return 0;
}

static int journal_message(struct coord_journal *jr, enum coord_journal_type type, uint64_t id,
                           const ProtobufCMessage *msg, int sync, char *err, size_t errlen)
{
    uint8_t *buf;
    size_t len;
    if (pack(msg, &buf, &len) != 0) {
        nosa_set_error(err, errlen, "out of memory packing a journal record");
        return -1;
    }
    int rc = coord_journal_append(jr, type, id, buf, len, sync, err, errlen);
    free(buf);
    return rc;
}

static int journal_tokens_to(struct coord_journal *jr, const struct coord_job *j, uint32_t from,
                             char *err, size_t errlen)
{
    if (from >= j->tok.n) return 0;
    struct coord_tokens_msg tm;
    if (coord_tokens_msg_init(&tm, j, from, j->tok.n) != 0) {
        nosa_set_error(err, errlen, "out of memory journaling job %llu's tokens",
                       (unsigned long long)j->id);
        return -1;
    }
    int rc = journal_message(jr, COORD_JOURNAL_TOKENS, j->id, &tm.msg.base, 0, err, errlen);
    coord_tokens_msg_free(&tm);
    return rc;
}

void coord_journal_tokens(struct coord *c, const struct coord_job *j, uint32_t from)
{
    char err[512];
    if (!c->journal.failed && journal_tokens_to(&c->journal, j, from, err, sizeof err) != 0)
        LOG_WARN("coordinator", "job %llu's tokens not journaled: %s", (unsigned long long)j->id,
                 err);
}

void coord_finished_msg(const struct coord_job *j, Nosa__Serve__JobFinished *f, Nosa__Error *e)
{
    nosa__serve__job_finished__init(f);
    nosa__error__init(e);
    f->job_id = j->id;
    f->reason = (Nosa__Serve__FinishReason)j->reason;
    f->prompt_tokens = j->prompt_tokens;
    f->generated_tokens = j->tok.n;
    f->recomputed_tokens = j->recomputed_tokens;
    if (j->error_code || j->error[0]) {
        e->code = (Nosa__ErrorCode)j->error_code;
        e->message = (char *)j->error;
        f->error = e;
    }
}

void coord_finish_job(struct coord *c, struct coord_job *j, int reason, int error_code,
                      const char *error, uint32_t recomputed_tokens)
{
    if (j->state == COORD_JOB_FINISHED) return;
    int worker = j->state == COORD_JOB_RUNNING ? j->worker : -1;
    coord_job_finish(&c->jobs, j, reason, error_code, error, recomputed_tokens);
    if (worker >= 0 && c->workers.w[worker].assigned > 0) c->workers.w[worker].assigned--;
    if (worker < 0) coord_free_job_sequence(c, j); /* no worker to end it: its table is ours */
    Nosa__Serve__JobFinished f;
    Nosa__Error e;
    coord_finished_msg(j, &f, &e);
    char err[512];
    if (journal_message(&c->journal, COORD_JOURNAL_FINISH, j->id, &f.base, 1, err, sizeof err))
        LOG_WARN("coordinator", "job %llu's end not journaled: %s", (unsigned long long)j->id,
                 err);
    NOSA_FAULT_POINT("coordinator.finish.journaled");
    LOG_INFO("coordinator", "job %llu finished: reason=%d tokens=%u recomputed=%u%s%s",
             (unsigned long long)j->id, reason, j->tok.n, recomputed_tokens,
             j->error[0] ? " error=" : "", j->error);
    if (j->has_client) {
        Nosa__Serve__ClientReply r = NOSA__SERVE__CLIENT_REPLY__INIT;
        r.request_id = j->client_request_id;
        r.body_case = NOSA__SERVE__CLIENT_REPLY__BODY_FINISHED;
        r.finished = &f;
        coord_send_client(c, &j->client, &r);
    }
}

void coord_requeue_job(struct coord *c, struct coord_job *j)
{
    j->prev_worker = j->state == COORD_JOB_RUNNING ? j->worker : -1;
    if (j->tok.n >= j->max_tokens) { /* all generated; only the JobFinished was lost */
        int ran = j->state == COORD_JOB_RUNNING;
        coord_finish_job(c, j, NOSA__SERVE__FINISH_REASON__FINISH_LENGTH, 0, NULL, 0);
        if (ran) coord_free_job_sequence(c, j); /* its worker is gone before freeing it */
        return;
    }
    coord_job_enqueue(&c->jobs, j);
}

static void move_jobs_of(struct coord *c, int worker)
{
    for (size_t i = 0; i < c->jobs.n; i++) {
        struct coord_job *j = c->jobs.jobs[i];
        if (j->state == COORD_JOB_RUNNING && j->worker == worker) coord_requeue_job(c, j);
    }
}

void coord_worker_dead(struct coord *c, int worker, const char *why)
{
    struct coord_worker *w = &c->workers.w[worker];
    if (!w->alive) return;
    w->alive = 0;
    w->assigned = 0;
    LOG_WARN("coordinator", "worker %s declared dead: %s; its jobs move to live workers",
             w->name, why);
    if (w->pidfd >= 0) {
        int rc = coord_fence_kill(w->pidfd);
        if (rc == 0) {
            LOG_WARN("coordinator", "worker %s (pid %d) killed: its jobs move once it has "
                     "exited, so its step in flight writes into no block they use (fencing)",
                     w->name, (int)w->pid);
            w->fence_until_ms = coord_now_ms() + COORD_FENCE_WAIT_MS;
            return;
        }
        if (rc != -ESRCH)
            LOG_ERROR("coordinator", "fencing worker %s (pid %d): %s; its jobs move anyway",
                      w->name, (int)w->pid, strerror(-rc));
        close(w->pidfd);
        w->pidfd = -1;
    }
    move_jobs_of(c, worker);
}

void coord_worker_left(struct coord *c, int worker)
{
    struct coord_worker *w = &c->workers.w[worker];
    w->alive = 0;
    w->assigned = 0;
    LOG_INFO("coordinator", "worker %s stops: its jobs move to live workers", w->name);
    if (w->pidfd >= 0) close(w->pidfd);
    w->pidfd = -1;
    move_jobs_of(c, worker);
    for (size_t i = 0; i < c->jobs.n; i++) /* it runs nothing: no CancelJob when they move */
        if (c->jobs.jobs[i]->prev_worker == worker) c->jobs.jobs[i]->prev_worker = -1;
}

int coord_worker_fence_done(struct coord *c, int worker, uint64_t now)
{
    struct coord_worker *w = &c->workers.w[worker];
    if (!w->fence_until_ms) return 0;
    int exited = coord_fence_exited(w->pidfd);
    if (!exited && now < w->fence_until_ms) return 1;
    if (exited) LOG_INFO("coordinator", "worker %s (pid %d) has exited: its jobs move",
                         w->name, (int)w->pid);
    else LOG_ERROR("coordinator", "worker %s (pid %d) has not exited %d ms after SIGKILL; its "
                   "jobs move anyway", w->name, (int)w->pid, COORD_FENCE_WAIT_MS);
    close(w->pidfd);
    w->pidfd = -1;
    w->fence_until_ms = 0;
    move_jobs_of(c, worker);
    return 0;
}

void coord_cancel_on_worker(struct coord *c, int worker, uint64_t job_id)
{
    LOG_WARN("coordinator", "job %llu cancelled on worker %s: it runs elsewhere now",
             (unsigned long long)job_id, c->workers.w[worker].name);
    Nosa__Serve__CancelJob cj = NOSA__SERVE__CANCEL_JOB__INIT;
    cj.job_id = job_id;
    cj.moved = 1; /* its kv-host sequence is no longer this worker's to free */
    Nosa__Serve__CoordMsg m = NOSA__SERVE__COORD_MSG__INIT;
    m.body_case = NOSA__SERVE__COORD_MSG__BODY_CANCEL;
    m.cancel = &cj;
    coord_send_worker(c, worker, &m);
}

/* coord_free_sequence in every kv-host it names but `except` (a kv-host index, or
 * COORD_KVHOST_NONE for none). */
static void free_sequence_except(struct coord *c, int kvhost, int except, uint64_t job_id)
{
    uint64_t now = coord_now_ms();
    for (int k = 0; k < c->kvhosts.arenas.n; k++)
        if (k != except && (k == kvhost || kvhost == COORD_KVHOST_UNKNOWN))
            coord_kvhosts_free(&c->kvhosts, k, job_id, now);
}

void coord_free_sequence(struct coord *c, int kvhost, uint64_t job_id)
{
    free_sequence_except(c, kvhost, COORD_KVHOST_NONE, job_id);
}

void coord_free_job_sequence(struct coord *c, struct coord_job *j)
{
    coord_free_sequence(c, j->kvhost, j->id);
    j->kvhost = COORD_KVHOST_NONE;
}

/* ---------------------------------------------------------------- journal replay */
/* A KVFREE record: a queued free for a kv-host that did not answer, or its leaving the queue.
 * One that cannot be applied is logged and skipped: it costs a leaked sequence, not the
 * journal. */
static void replay_kvfree(struct coord *c, uint64_t seq, const uint8_t *payload, size_t len)
{
    char endpoint[COORD_ENDPOINT_MAX], why[256];
    if (len < 2 || payload[0] > 1 || len - 1 >= sizeof endpoint ||
        memchr(payload + 1, 0, len - 1)) {
        LOG_WARN("coordinator", "journal: a queued free of sequence %llu is unreadable (%zu "
                 "bytes); skipped", (unsigned long long)seq, len);
        return;
    }
    memcpy(endpoint, payload + 1, len - 1);
    endpoint[len - 1] = '\0';
    if (coord_kvhosts_replay_queue(&c->kvhosts, endpoint, seq, payload[0], why, sizeof why))
        LOG_WARN("coordinator", "journal: the queued free of sequence %llu: %s; skipped",
                 (unsigned long long)seq, why);
}

static int append_kvfree(struct coord_journal *jr, const char *endpoint, uint64_t seq,
                         int queued, char *err, size_t errlen)
{
    uint8_t payload[1 + COORD_ENDPOINT_MAX];
    size_t n = strnlen(endpoint, COORD_ENDPOINT_MAX - 1);
    payload[0] = (uint8_t)(queued != 0);
    memcpy(payload + 1, endpoint, n);
    return coord_journal_append(jr, COORD_JOURNAL_KVFREE, seq, payload, 1 + n, 0, err, errlen);
}

enum { PLACE_NONE = 0, PLACE_UNKNOWN = 1, PLACE_AT = 2, PLACE_HEADER = 12 };

static int append_place(struct coord_journal *jr, const struct coord_kvhosts *t,
                        const struct coord_job *j, char *err, size_t errlen)
{
    uint8_t p[PLACE_HEADER + COORD_ENDPOINT_MAX] = {0};
    size_t n = 0;
    p[0] = j->kvhost >= 0 ? PLACE_AT : j->kvhost == COORD_KVHOST_NONE ? PLACE_NONE
                                                                       : PLACE_UNKNOWN;
    memcpy(p + 4, &j->fresh_from, sizeof j->fresh_from);
    memcpy(p + 8, &j->prompt_done, sizeof j->prompt_done);
    if (j->kvhost >= 0) {
        n = strnlen(t->h[j->kvhost].endpoint, COORD_ENDPOINT_MAX - 1);
        memcpy(p + PLACE_HEADER, t->h[j->kvhost].endpoint, n);
    }
    return coord_journal_append(jr, COORD_JOURNAL_PLACE, j->id, p, PLACE_HEADER + n, 0, err,
                                errlen);
}

void coord_journal_place(struct coord *c, const struct coord_job *j)
{
    char err[512];
    if (append_place(&c->journal, &c->kvhosts, j, err, sizeof err))
        LOG_WARN("coordinator", "job %llu's place not journaled: %s", (unsigned long long)j->id,
                 err);
}

/* A PLACE record. One that cannot be applied leaves the job's place unknown (logged): it
 * may then start afresh, which costs time, not tokens. */
static void replay_place(struct coord *c, struct coord_job *j, const uint8_t *p, size_t len)
{
    char endpoint[COORD_ENDPOINT_MAX], why[256];
    j->kvhost = COORD_KVHOST_UNKNOWN;
    if (len < PLACE_HEADER || p[0] > PLACE_AT || (p[0] == PLACE_AT) != (len > PLACE_HEADER) ||
        len - PLACE_HEADER >= sizeof endpoint || memchr(p + PLACE_HEADER, 0, len - PLACE_HEADER)) {
        LOG_WARN("coordinator", "journal: job %llu's place is unreadable (%zu bytes); not known",
                 (unsigned long long)j->id, len);
        return;
    }
    memcpy(&j->fresh_from, p + 4, sizeof j->fresh_from);
    memcpy(&j->prompt_done, p + 8, sizeof j->prompt_done);
    if (p[0] == PLACE_NONE) j->kvhost = COORD_KVHOST_NONE;
    if (p[0] != PLACE_AT) return;
    memcpy(endpoint, p + PLACE_HEADER, len - PLACE_HEADER);
    endpoint[len - PLACE_HEADER] = '\0';
    int k = coord_kvhosts_get(&c->kvhosts, endpoint, why, sizeof why);
    if (k < 0)
        LOG_WARN("coordinator", "journal: job %llu's kv-host: %s; its place is not known",
                 (unsigned long long)j->id, why);
    else
        j->kvhost = k;
}

/* Journals a change of a kv-host's queue of frees (coord_kvhosts_queue_fn). */
static void journal_kvfree(void *arg, const char *endpoint, uint64_t seq, int queued)
{
    struct coord *c = arg;
    char err[512];
    if (append_kvfree(&c->journal, endpoint, seq, queued, err, sizeof err))
        LOG_WARN("coordinator", "job %llu: the %s of its free in kv-host %s not journaled: %s",
                 (unsigned long long)seq, queued ? "queueing" : "end", endpoint, err);
}

static int replay_record(enum coord_journal_type type, uint64_t job_id, const uint8_t *payload,
                         size_t len, void *arg, char *err, size_t errlen)
{
    struct coord *c = arg;
    char why[256];
    if (type == COORD_JOURNAL_KVFREE) {
        replay_kvfree(c, job_id, payload, len);
        return 0;
    }
    if (type == COORD_JOURNAL_META) {
        uint64_t next = 0;
        if (len == sizeof next) memcpy(&next, payload, sizeof next);
        if (next > c->jobs.next_id) c->jobs.next_id = next;
        return 0;
    }
    if (type == COORD_JOURNAL_ACCEPT) {
        Nosa__Serve__JobSpec *spec = (Nosa__Serve__JobSpec *)nosa_msg_unpack(
            &nosa__serve__job_spec__descriptor, payload, len, why, sizeof why);
        if (!spec || !spec->sampling) {
            LOG_WARN("coordinator", "journal: job %llu's spec unreadable (%s); skipped",
                     (unsigned long long)job_id, spec ? "no sampling" : why);
            if (spec) protobuf_c_message_free_unpacked(&spec->base, NULL);
            return 0;
        }
        struct coord_job *j = coord_jobs_add(&c->jobs, job_id, payload, len,
                                             coord_prompt_tokens(&spec->base),
                                             spec->sampling->max_tokens, err, errlen);
        if (j) {
            j->client_key = spec->client_key;
            j->kvhost = COORD_KVHOST_UNKNOWN; /* until a PLACE record says */
        }
        protobuf_c_message_free_unpacked(&spec->base, NULL);
        return j ? 0 : -1;
    }
    struct coord_job *j = coord_jobs_find(&c->jobs, job_id);
    if (!j) return 0; /* its ACCEPT was compacted away or unreadable */
    if (type == COORD_JOURNAL_PLACE) {
        replay_place(c, j, payload, len);
        return 0;
    }
    if (type == COORD_JOURNAL_TOKENS) {
        Nosa__Serve__JobTokens *t = (Nosa__Serve__JobTokens *)nosa_msg_unpack(
            &nosa__serve__job_tokens__descriptor, payload, len, why, sizeof why);
        if (!t) {
            LOG_WARN("coordinator", "journal: job %llu's tokens unreadable: %s",
                     (unsigned long long)job_id, why);
            return 0;
        }
        for (size_t i = 0; i < t->n_tokens; i++) {
            const Nosa__Serve__Token *k = t->tokens[i];
            if (coord_job_add_token(j, k->index, k->id, k->text.data, k->text.len, why,
                                    sizeof why) < 0) {
                LOG_WARN("coordinator", "journal: %s", why);
                break;
            }
        }
        protobuf_c_message_free_unpacked(&t->base, NULL);
        return 0;
    }
    Nosa__Serve__JobFinished *f = (Nosa__Serve__JobFinished *)nosa_msg_unpack(
        &nosa__serve__job_finished__descriptor, payload, len, why, sizeof why);
    if (!f) {
        LOG_WARN("coordinator", "journal: job %llu's end unreadable: %s",
                 (unsigned long long)job_id, why);
        return 0;
    }
    coord_job_finish(&c->jobs, j, f->reason, f->error ? (int)f->error->code : 0,
                     f->error ? f->error->message : NULL, f->recomputed_tokens);
    j->kvhost = COORD_KVHOST_NONE; /* its sequence was freed at its end */
    protobuf_c_message_free_unpacked(&f->base, NULL);
    return 0;
}

static int write_meta(struct coord_journal *jr, uint64_t next_id, int sync, char *err,
                      size_t errlen)
{
    return coord_journal_append(jr, COORD_JOURNAL_META, 0, (const uint8_t *)&next_id,
                                sizeof next_id, sync, err, errlen);
}

static int write_live(struct coord_journal *out, void *arg, char *err, size_t errlen)
{
    struct coord *c = arg;
    if (write_meta(out, c->jobs.next_id, 0, err, errlen)) return -1;
    for (size_t i = 0; i < c->jobs.n; i++) {
        const struct coord_job *j = c->jobs.jobs[i];
        if (coord_journal_append(out, COORD_JOURNAL_ACCEPT, j->id, j->spec, j->spec_len, 0, err,
                                 errlen) ||
            journal_tokens_to(out, j, 0, err, errlen))
            return -1;
        if (j->state == COORD_JOB_FINISHED) {
            Nosa__Serve__JobFinished f;
            Nosa__Error e;
            coord_finished_msg(j, &f, &e);
            if (journal_message(out, COORD_JOURNAL_FINISH, j->id, &f.base, 0, err, errlen))
                return -1;
        } else if (append_place(out, &c->kvhosts, j, err, errlen)) {
            return -1;
        }
    }
    for (int k = 0; k < c->kvhosts.arenas.n; k++) {
        const struct coord_kvhost *h = &c->kvhosts.h[k];
        for (size_t i = 0; i < h->n_pending; i++)
            if (append_kvfree(out, h->endpoint, h->pending[i], 1, err, errlen)) return -1;
    }
    return 0;
}

/* Jobs read back unfinished wait for their workers to re-register and claim them. */
static void recover_jobs(struct coord *c)
{
    uint64_t deadline = coord_now_ms() + (uint64_t)c->opt.heartbeat_timeout_ms;
    size_t n = 0;
    for (size_t i = 0; i < c->jobs.n; i++) {
        struct coord_job *j = c->jobs.jobs[i];
        if (j->state == COORD_JOB_FINISHED) continue;
        coord_job_enqueue(&c->jobs, j);
        j->state = COORD_JOB_RECOVERING;
        j->recover_deadline_ms = deadline; /* j->kvhost: as its last PLACE record says */
        n++;
    }
    if (c->jobs.n)
        LOG_INFO("coordinator", "journal %s: %zu jobs read back, %zu unfinished (waiting %d ms "
                 "for their workers to claim them, then queued)", c->opt.journal, c->jobs.n, n,
                 c->opt.heartbeat_timeout_ms);
    for (int k = 0; k < c->kvhosts.arenas.n; k++)
        if (c->kvhosts.h[k].n_pending)
            LOG_INFO("coordinator", "journal %s: %zu frees queued for kv-host %s, sent once it "
                     "answers", c->opt.journal, c->kvhosts.h[k].n_pending,
                     c->kvhosts.h[k].endpoint);
}

/* ---------------------------------------------------------------- scheduling */
struct fit_arg {
    struct coord *c;
    uint64_t now;
    int worker;
};

static int job_fits(const struct coord_job *j, void *arg)
{
    struct fit_arg *a = arg;
    a->worker = coord_workers_pick(&a->c->workers, (uint64_t)j->prompt_tokens + j->max_tokens,
                                   j->kvhost, &a->c->kvhosts.arenas, a->now);
    return a->worker >= 0;
}

int coord_never_fits(struct coord *c, uint32_t prompt, uint32_t max_tokens, char *why,
                     size_t whylen)
{
    char what[256];
    uint64_t tokens = (uint64_t)prompt + max_tokens;
    if (!coord_workers_never_fit(&c->workers, &c->kvhosts.arenas, tokens, what, sizeof what))
        return 0;
    snprintf(why, whylen, "prompt (%u tokens) + max_tokens (%u) = %llu tokens: %s", prompt,
             max_tokens, (unsigned long long)tokens, what);
    return 1;
}

/* Ends each queued job that no registered worker can ever take (checked when a worker
 * registered or an arena's size became known): it would wait in the queue forever. */
static void finish_never_fitting(struct coord *c)
{
    c->check_fit = 0;
    for (size_t i = 0; i < c->jobs.n; i++) {
        struct coord_job *j = c->jobs.jobs[i];
        char why[512];
        if (j->state != COORD_JOB_QUEUED ||
            !coord_never_fits(c, j->prompt_tokens, j->max_tokens, why, sizeof why))
            continue;
        size_t used = strlen(why);
        snprintf(why + used, sizeof why - used, ": no registered worker can ever take it");
        coord_finish_job(c, j, NOSA__SERVE__FINISH_REASON__FINISH_ERROR, CODE(REFUSED), why, 0);
    }
}

/* The job's sequence goes where its new worker is. One held by another kv-host cannot be
 * resumed there: the worker starts it from its prompt and generated tokens, and the old
 * sequence is freed (it would leak). With a worker whose kv-host is not known it may end up
 * anywhere: nothing is freed now, every kv-host frees it at its end. */
static void move_sequence(struct coord *c, struct coord_job *j, const struct coord_worker *w)
{
    j->held_at_stats = 0; /* nothing vouched for in the stats before this assignment */
    if (w->kvhost >= 0) coord_kvhosts_keep(&c->kvhosts, w->kvhost, j->id);
    if (j->kvhost == w->kvhost) return;
    if (w->kvhost >= 0 && j->kvhost != COORD_KVHOST_NONE) {
        if (j->kvhost >= 0)
            LOG_INFO("coordinator", "job %llu moves to kv-host %s: a fresh start from its prompt "
                     "and %u tokens; its sequence in %s is freed", (unsigned long long)j->id,
                     c->kvhosts.h[w->kvhost].endpoint, j->tok.n,
                     c->kvhosts.h[j->kvhost].endpoint);
        free_sequence_except(c, j->kvhost, w->kvhost, j->id); /* not where it goes now */
    }
    j->kvhost = w->kvhost;
    j->fresh_from = j->tok.n;
    j->prompt_done = 0; /* the blocks it vouched for are in the old kv-host */
}

static void assign(struct coord *c, struct coord_job *j, int worker)
{
    char why[256];
    Nosa__Serve__JobSpec *spec = (Nosa__Serve__JobSpec *)nosa_msg_unpack(
        &nosa__serve__job_spec__descriptor, j->spec, j->spec_len, why, sizeof why);
    if (!spec) { /* cannot happen: we packed it */
        coord_finish_job(c, j, NOSA__SERVE__FINISH_REASON__FINISH_ERROR, CODE(INTERNAL), why, 0);
        return;
    }
    Nosa__Serve__Assign a = NOSA__SERVE__ASSIGN__INIT;
    a.job = spec;
    a.seq_id = j->id;
    a.generated = j->tok.ids;
    a.n_generated = j->tok.n;
    Nosa__Serve__CoordMsg m = NOSA__SERVE__COORD_MSG__INIT;
    m.body_case = NOSA__SERVE__COORD_MSG__BODY_ASSIGN;
    m.assign = &a;
    struct coord_worker *w = &c->workers.w[worker];
    /* A job taken from a worker that is still silent: that worker must not go on with it. */
    if (j->prev_worker >= 0 && j->prev_worker != worker && !c->workers.w[j->prev_worker].alive)
        coord_cancel_on_worker(c, j->prev_worker, j->id);
    j->prev_worker = -1;
    move_sequence(c, j, w);
    coord_journal_place(c, j);
    a.prompt_done = j->tok.n ? 0 : j->prompt_done;
    coord_send_worker(c, worker, &m);
    protobuf_c_message_free_unpacked(&spec->base, NULL);
    j->state = COORD_JOB_RUNNING;
    j->worker = worker;
    j->assigned_at = w->registrations;
    w->assigned++;
    /* Its whole need until the next reservation pass (held 0: nothing of it was read yet). */
    coord_arena_reserve_job(&c->kvhosts.arenas, w->kvhost, j, w->block_size, 0);
    LOG_INFO("coordinator", "job %llu assigned to %s (generated %u)", (unsigned long long)j->id,
             w->name, j->tok.n);
    NOSA_FAULT_POINT("coordinator.assign.sent");
}

static void recount_assigned(struct coord *c)
{
    for (int i = 0; i < c->workers.n; i++) c->workers.w[i].assigned = 0;
    for (size_t i = 0; i < c->jobs.n; i++) {
        const struct coord_job *j = c->jobs.jobs[i];
        if (j->state == COORD_JOB_RUNNING && j->worker >= 0) c->workers.w[j->worker].assigned++;
    }
}

static void schedule(struct coord *c, uint64_t now)
{
    recount_assigned(c);
    if (c->check_fit) finish_never_fitting(c);
    coord_arenas_reserve(&c->jobs, &c->workers, &c->kvhosts.arenas);
    struct fit_arg a = {.c = c, .now = now, .worker = -1};
    struct coord_job *j;
    while ((j = coord_jobs_next_queued(&c->jobs, job_fits, &a)) != NULL) assign(c, j, a.worker);
}

/* ---------------------------------------------------------------- periodic work */
static void check_heartbeats(struct coord *c, uint64_t now)
{
    for (int i = 0; i < c->workers.n; i++) {
        struct coord_worker *w = &c->workers.w[i];
        coord_worker_fence_done(c, i, now);
        if (w->alive && now - w->last_seen_ms > (uint64_t)c->opt.heartbeat_timeout_ms) {
            char why[128];
            snprintf(why, sizeof why, "no message for %llu ms (--heartbeat-timeout-ms %d)",
                     (unsigned long long)(now - w->last_seen_ms), c->opt.heartbeat_timeout_ms);
            coord_worker_dead(c, i, why);
        }
    }
    for (size_t i = 0; i < c->jobs.n; i++) {
        struct coord_job *j = c->jobs.jobs[i];
        if (j->state == COORD_JOB_RECOVERING && now >= j->recover_deadline_ms) {
            LOG_INFO("coordinator", "job %llu: no worker claimed it after the restart; queued "
                     "with its %u tokens", (unsigned long long)j->id, j->tok.n);
            coord_requeue_job(c, j);
            c->check_fit = 1;
        }
    }
}

static void poll_kvhosts(struct coord *c, uint64_t now)
{
    for (int k = 0; k < c->kvhosts.arenas.n; k++) {
        int was_known = c->kvhosts.arenas.a[k].known;
        if (coord_kvhosts_poll(&c->kvhosts, k, now) != 1) continue;
        coord_arena_snapshot(&c->jobs, &c->workers, k);
        if (!was_known) c->check_fit = 1; /* its size now bounds what its workers can take */
    }
}

static void publish_metrics(struct coord *c, uint64_t now)
{
    if (!c->metrics || now < c->next_metrics_ms) return;
    c->next_metrics_ms = now + METRICS_EVERY_MS;
    struct coord_metrics_node node = {
        .queued = coord_jobs_count(&c->jobs, COORD_JOB_QUEUED) +
                  coord_jobs_count(&c->jobs, COORD_JOB_RECOVERING),
        .running = coord_jobs_count(&c->jobs, COORD_JOB_RUNNING),
        .completed = c->jobs.completed,
        .failed = c->jobs.failed,
        .draining = c->draining,
        .journal_ok = !c->journal.failed,
    };
    struct coord_metrics_arena arenas[COORD_MAX_KVHOSTS];
    node.arenas = arenas;
    for (int k = 0; k < c->kvhosts.arenas.n; k++) {
        const struct coord_arena *a = &c->kvhosts.arenas.a[k];
        if (!a->known) continue;
        arenas[node.n_arenas++] = (struct coord_metrics_arena){
            .kvhost = c->kvhosts.h[k].endpoint,
            .up = c->kvhosts.h[k].up,
            .groups = a->n_groups,
            .free_groups = a->free_groups,
            .reserved_groups = a->reserved_groups,
            .bytes = c->kvhosts.h[k].stats.arena_bytes,
        };
    }
    char *text;
    if (coord_metrics_render(&c->workers, &node, &text) == 0)
        coord_metrics_publish(c->metrics, text);
    else
        LOG_WARN("coordinator", "out of memory rendering the metrics");
}

static void compact_journal(struct coord *c)
{
    if (!coord_journal_wants_compaction(&c->journal)) return;
    char err[512];
    if (coord_journal_compact(&c->journal, write_live, c, err, sizeof err) != 0)
        LOG_WARN("coordinator", "journal compaction failed (the journal goes on): %s", err);
}

/* A coordinator that did not run for a while (stopped, starved) has not read its workers:
 * their silence is its own, and declaring them dead would kill (fence) healthy workers.
 * Their heartbeat deadlines start again from now. */
static void forgive_own_stall(struct coord *c, uint64_t now)
{
    uint64_t gap = c->last_tick_ms ? now - c->last_tick_ms : 0;
    c->last_tick_ms = now;
    if (gap <= (uint64_t)c->opt.heartbeat_timeout_ms / 2) return;
    LOG_WARN("coordinator", "the coordinator did not run for %llu ms: heartbeat deadlines "
             "start again", (unsigned long long)gap);
    for (int i = 0; i < c->workers.n; i++)
        if (c->workers.w[i].alive) c->workers.w[i].last_seen_ms = now;
}

static void tick(struct coord *c)
{
    uint64_t now = coord_now_ms();
    coord_jobs_drop_old_finished(&c->jobs);
    forgive_own_stall(c, now);
    check_heartbeats(c, now);
    poll_kvhosts(c, now);
    schedule(c, now);
    publish_metrics(c, now);
    compact_journal(c);
}

/* ---------------------------------------------------------------- open, run, close */
/* Frames up to NOSA_MSG_MAX_BYTES are read; past it, up to this, they get ERROR_TOO_LARGE;
 * past this ZeroMQ drops the peer's connection without buffering the frame (so a huge frame
 * costs no memory; the peer's socket reconnects). */
#define COORD_MAX_FRAME_BYTES (4 * (int64_t)NOSA_MSG_MAX_BYTES)

static int bind_link(struct coord *c, int type, const char *endpoint, void **out, char *err,
                     size_t errlen)
{
    char why[512];
    void *s = zmq_socket(c->ctx, type);
    if (!s) {
        nosa_set_error(err, errlen, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    int64_t max_frame = COORD_MAX_FRAME_BYTES;
    if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame)) {
        nosa_set_error(err, errlen, "zmq_setsockopt(ZMQ_MAXMSGSIZE): %s",
                       zmq_strerror(zmq_errno()));
        zmq_close(s);
        return -1;
    }
    if (nosa_msg_socket_defaults(s, -1, why, sizeof why) ||
        nosa_msg_bind_secure(c->sec, s, endpoint, why, sizeof why)) {
        nosa_set_error(err, errlen, "%s", why);
        zmq_close(s); /* not bound: its endpoint is not ours to remove at close */
        return -1;
    }
    *out = s;
    return 0;
}

int coord_open(const struct coord_options *opt, struct coord **out, char *err, size_t errlen)
{
    struct coord *c = calloc(1, sizeof *c);
    if (!c) {
        nosa_set_error(err, errlen, "out of memory");
        return -1;
    }
    c->opt = *opt;
    coord_jobs_init(&c->jobs);
    *out = c;
    if (nosa_host_id(c->host_id, sizeof c->host_id, err, errlen)) return -1;
    c->ctx = zmq_ctx_new();
    if (!c->ctx) {
        nosa_set_error(err, errlen, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    if (nosa_msg_security_init(c->ctx, opt->run_dir, opt->insecure, &c->sec, err, errlen))
        return -1;
    /* Before anything binds: a refused metrics address must stop the start before the
     * client socket appears (which is what clients and scripts take as "started"). */
    if (opt->metrics_port > 0 &&
        coord_metrics_start(opt->metrics_address, (uint16_t)opt->metrics_port, opt->insecure,
                            &c->metrics, err, errlen))
        return -1;
    /* The kv-hosts before the journal: its replay fills their queues of frees. */
    coord_kvhosts_init(&c->kvhosts, c->ctx, c->sec);
    for (int k = 0; k < opt->n_kvhosts; k++)
        if (coord_kvhosts_get(&c->kvhosts, opt->kvhost_eps[k], err, errlen) < 0) return -1;
    if (coord_journal_open(&c->journal, opt->journal, replay_record, c, err, errlen)) return -1;
    c->journal_open = 1;
    if (opt->journal_compact_bytes) c->journal.compact_min_bytes = opt->journal_compact_bytes;
    coord_kvhosts_watch_queues(&c->kvhosts, journal_kvfree, c);
    recover_jobs(c);
    char why[512];
    if (write_meta(&c->journal, c->jobs.next_id, 1, why, sizeof why))
        LOG_ERROR("coordinator", "%s: serving without a journal, new jobs are refused", why);
    if (bind_link(c, ZMQ_ROUTER, opt->workers_ep, &c->workers_sock, err, errlen) ||
        bind_link(c, ZMQ_ROUTER, opt->clients_ep, &c->clients_sock, err, errlen))
        return -1;
    return 0;
}

/* Handles up to BURST frames waiting on one link. -1 on a socket failure. */
static int drain_link(struct coord *c, void *sock, int workers, char *err, size_t errlen)
{
    for (int n = 0; n < BURST; n++) {
        struct nosa_msg_peer peer;
        struct nosa_msg_frame f;
        char why[256];
        memset(&peer, 0, sizeof peer);
        enum nosa_msg_recv_status st =
            nosa_msg_recv(sock, &peer, &f, NOSA_MSG_MAX_BYTES, ZMQ_DONTWAIT, why, sizeof why);
        if (st == NOSA_MSG_AGAIN) return 0;
        if (st == NOSA_MSG_FAILED) {
            nosa_set_error(err, errlen, "%s link: %s", workers ? "worker" : "client", why);
            return -1;
        }
        if (st == NOSA_MSG_MALFORMED) {
            if (peer.len == 0) continue;
            int code = strstr(why, "exceeds") ? CODE(TOO_LARGE) : CODE(BAD_MESSAGE);
            if (workers) coord_send_worker_error(c, &peer, code, why);
            else coord_send_client_error(c, &peer, 0, code, why);
            continue;
        }
        if (workers) coord_on_worker_frame(c, &peer, f.data, f.len);
        else coord_on_client_frame(c, &peer, f.data, f.len);
        nosa_msg_frame_free(&f);
    }
    return 0;
}

int coord_run(struct coord *c, volatile sig_atomic_t *stop, char *err, size_t errlen)
{
    LOG_INFO("coordinator", "serving workers on %s, clients on %s, journal %s, metrics %s:%d",
             c->opt.workers_ep, c->opt.clients_ep, c->opt.journal, c->opt.metrics_address,
             c->opt.metrics_port);
    while (!*stop) {
        zmq_pollitem_t items[2] = {{c->workers_sock, 0, ZMQ_POLLIN, 0},
                                   {c->clients_sock, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, POLL_MS) < 0) {
            if (zmq_errno() == EINTR) continue;
            nosa_set_error(err, errlen, "zmq_poll: %s", zmq_strerror(zmq_errno()));
            return -1;
        }
        if ((items[0].revents & ZMQ_POLLIN) && drain_link(c, c->workers_sock, 1, err, errlen))
            return -1;
        if ((items[1].revents & ZMQ_POLLIN) && drain_link(c, c->clients_sock, 0, err, errlen))
            return -1;
        tick(c);
    }
    LOG_INFO("coordinator", "stopping: %zu jobs unfinished stay in the journal",
             c->jobs.n - coord_jobs_count(&c->jobs, COORD_JOB_FINISHED));
    return 0;
}

/* Removes an ipc endpoint's socket file (ours: we bound it). */
static void remove_ipc(const char *endpoint)
{
    if (strncmp(endpoint, "ipc://", 6) == 0 && unlink(endpoint + 6) != 0 && errno != ENOENT)
        LOG_WARN("coordinator", "remove %s: %s", endpoint + 6, strerror(errno));
}

void coord_close(struct coord *c)
{
    if (!c) return;
    coord_metrics_stop(c->metrics);
    coord_kvhosts_close(&c->kvhosts);
    for (int i = 0; i < c->workers.n; i++)
        if (c->workers.w[i].pidfd >= 0) close(c->workers.w[i].pidfd);
    if (c->workers_sock) {
        zmq_close(c->workers_sock);
        remove_ipc(c->opt.workers_ep);
    }
    if (c->clients_sock) {
        zmq_close(c->clients_sock);
        remove_ipc(c->opt.clients_ep);
    }
    if (c->ctx) zmq_ctx_term(c->ctx);
    nosa_msg_security_free(c->sec);
    if (c->journal_open) coord_journal_close(&c->journal);
    coord_jobs_free(&c->jobs);
    free(c);
}
