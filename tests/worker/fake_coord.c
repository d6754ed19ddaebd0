/* fake_coord.c: see fake_coord.h. */
#include "fake_coord.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int fc_open(struct fake_coord *fc, const char *endpoint)
{
    memset(fc, 0, sizeof(*fc));
    snprintf(fc->endpoint, sizeof(fc->endpoint), "%s", endpoint);
    fc->heartbeat_ms = 100;
    fc->ack_register = 1;
    char err[256];
    fc->ctx = zmq_ctx_new();
    fc->sock = fc->ctx ? zmq_socket(fc->ctx, ZMQ_ROUTER) : NULL;
    if (!fc->sock || nosa_msg_socket_defaults(fc->sock, -1, err, sizeof(err)) ||
        nosa_msg_bind(fc->sock, endpoint, err, sizeof(err))) {
        fprintf(stderr, "fake_coord: bind %s: %s\n", endpoint, fc->sock ? err : "no socket");
        fc_close(fc);
        return -1;
    }
    return 0;
}

void fc_close(struct fake_coord *fc)
{
    if (fc->sock) zmq_close(fc->sock);
    if (fc->ctx) zmq_ctx_term(fc->ctx);
    fc->sock = fc->ctx = NULL;
}

struct fc_job *fc_job(struct fake_coord *fc, uint64_t job_id)
{
    for (int i = 0; i < fc->n_jobs; i++)
        if (fc->jobs[i].job_id == job_id) return &fc->jobs[i];
    if (fc->n_jobs == FC_MAX_JOBS) return NULL;
    struct fc_job *j = &fc->jobs[fc->n_jobs++];
    memset(j, 0, sizeof(*j));
    j->job_id = job_id;
    return j;
}

int fc_send(struct fake_coord *fc, Nosa__Serve__CoordMsg *msg)
{
    char err[256];
    msg->version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    if (!fc->have_peer || nosa_msg_send(fc->sock, &fc->peer, &msg->base, err, sizeof(err))) {
        fprintf(stderr, "fake_coord: send: %s\n", fc->have_peer ? err : "no worker yet");
        return -1;
    }
    return 0;
}

int fc_send_raw(struct fake_coord *fc, const void *data, size_t len, int frames)
{
    if (!fc->have_peer || zmq_send(fc->sock, fc->peer.id, fc->peer.len, ZMQ_SNDMORE) < 0)
        goto fail;
    for (int i = 0; i < frames; i++)
        if (zmq_send(fc->sock, data, len, i + 1 < frames ? ZMQ_SNDMORE : 0) < 0) goto fail;
    return 0;
fail:
    fprintf(stderr, "fake_coord: raw send failed\n");
    return -1;
}

static void on_register(struct fake_coord *fc, const Nosa__Serve__Register *r)
{
    fc->registers++;
    snprintf(fc->worker_name, sizeof(fc->worker_name), "%s", r->worker_name ? r->worker_name : "");
    snprintf(fc->backend, sizeof(fc->backend), "%s", r->backend ? r->backend : "");
    fc->block_size = r->block_size;
    fc->max_seqs = r->max_seqs;
    fc->last_running_jobs = r->n_running_jobs;
    fc->last_finished_jobs = r->n_finished_jobs;
    if (!fc->ack_register) return;
    Nosa__Serve__CoordMsg msg = NOSA__SERVE__COORD_MSG__INIT;
    Nosa__Serve__RegisterAck ack = NOSA__SERVE__REGISTER_ACK__INIT;
    ack.worker_name = r->worker_name;
    ack.heartbeat_ms = fc->heartbeat_ms;
    msg.body_case = NOSA__SERVE__COORD_MSG__BODY_REGISTER_ACK;
    msg.register_ack = &ack;
    fc_send(fc, &msg);
}

static void on_tokens(struct fake_coord *fc, const Nosa__Serve__TokensBatch *b)
{
    for (size_t i = 0; i < b->n_jobs; i++) {
        struct fc_job *j = fc_job(fc, b->jobs[i]->job_id);
        if (!j) continue;
        j->token_msgs++;
        if (b->jobs[i]->prompt_done > j->prompt_done) j->prompt_done = b->jobs[i]->prompt_done;
        for (size_t k = 0; k < b->jobs[i]->n_tokens; k++) {
            const Nosa__Serve__Token *t = b->jobs[i]->tokens[k];
            if (t->index >= FC_MAX_TOKENS) continue;
            if (t->index != j->n_tokens) j->out_of_order++;
            j->tokens[t->index] = t->id;
            if (t->index + 1 > j->n_tokens) j->n_tokens = t->index + 1;
        }
    }
}

static void on_finished(struct fake_coord *fc, const Nosa__Serve__JobFinished *f)
{
    struct fc_job *j = fc_job(fc, f->job_id);
    if (!j) return;
    j->finished++;
    j->reason = f->reason;
    j->prompt_tokens = f->prompt_tokens;
    j->generated_tokens = f->generated_tokens;
    j->recomputed_tokens = f->recomputed_tokens;
    if (f->error) {
        j->error_code = f->error->code;
        snprintf(j->error, sizeof(j->error), "%s", f->error->message ? f->error->message : "");
    }
}

int fc_pump(struct fake_coord *fc, int timeout_ms)
{
    zmq_pollitem_t item = {.socket = fc->sock, .events = ZMQ_POLLIN};
    int n = zmq_poll(&item, 1, timeout_ms);
    if (n <= 0) return n < 0 ? -1 : 0;
    struct nosa_msg_peer peer;
    struct nosa_msg_frame frame;
    char err[256];
    enum nosa_msg_recv_status st =
        nosa_msg_recv(fc->sock, &peer, &frame, NOSA_MSG_MAX_BYTES, ZMQ_DONTWAIT, err, sizeof(err));
    if (st == NOSA_MSG_AGAIN) return 0;
    if (st != NOSA_MSG_OK) {
        fprintf(stderr, "fake_coord: receive: %s\n", err);
        return st == NOSA_MSG_FAILED ? -1 : 1;
    }
    fc->peer = peer;
    fc->have_peer = 1;
    Nosa__Serve__WorkerMsg *m = (Nosa__Serve__WorkerMsg *)nosa_msg_unpack(
        &nosa__serve__worker_msg__descriptor, frame.data, frame.len, err, sizeof(err));
    nosa_msg_frame_free(&frame);
    if (!m) {
        fprintf(stderr, "fake_coord: undecodable WorkerMsg: %s\n", err);
        return 1;
    }
    switch (m->body_case) {
    case NOSA__SERVE__WORKER_MSG__BODY_REGISTER: on_register(fc, m->register_); break;
    case NOSA__SERVE__WORKER_MSG__BODY_HEARTBEAT:
        fc->heartbeats++;
        fc->leaving += m->heartbeat->leaving;
        uint64_t now = (uint64_t)now_ms();
        if (fc->last_heartbeat_ms && now - fc->last_heartbeat_ms > fc->max_heartbeat_gap_ms)
            fc->max_heartbeat_gap_ms = now - fc->last_heartbeat_ms;
        fc->last_heartbeat_ms = now;
        fc->last_running = m->heartbeat->running;
        fc->last_free_slots = m->heartbeat->free_slots;
        if (m->heartbeat->stats) {
            fc->last_steps = m->heartbeat->stats->steps;
            fc->last_tokens_total = m->heartbeat->stats->tokens;
            fc->last_prefill_total = m->heartbeat->stats->prefill_tokens;
            fc->taken_not_after += m->heartbeat->stats->taken_s <= fc->last_taken_s;
            fc->last_taken_s = m->heartbeat->stats->taken_s;
            fc->last_step_seconds_total = m->heartbeat->stats->step_seconds_total;
            fc->last_selected_total = m->heartbeat->stats->blocks_selected_total;
            fc->last_moved_total = m->heartbeat->stats->blocks_moved_total;
            fc->last_hits_total = m->heartbeat->stats->block_hits_total;
        }
        break;
    case NOSA__SERVE__WORKER_MSG__BODY_TOKENS: on_tokens(fc, m->tokens); break;
    case NOSA__SERVE__WORKER_MSG__BODY_FINISHED: on_finished(fc, m->finished); break;
    case NOSA__SERVE__WORKER_MSG__BODY_ERROR:
        fc->errors++;
        fc->last_error_code = m->error->code;
        snprintf(fc->last_error, sizeof(fc->last_error), "%s",
                 m->error->message ? m->error->message : "");
        break;
    default: fprintf(stderr, "fake_coord: WorkerMsg without a body\n"); break;
    }
    nosa__serve__worker_msg__free_unpacked(m, NULL);
    return 1;
}

int fc_wait_int(struct fake_coord *fc, const int *flag, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    while (!*flag && now_ms() < end)
        if (fc_pump(fc, 20) < 0) break;
    return *flag;
}

struct fc_job *fc_wait_finished(struct fake_coord *fc, uint64_t job_id, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    for (;;) {
        struct fc_job *j = fc_job(fc, job_id);
        if (j && j->finished) return j;
        if (now_ms() >= end || fc_pump(fc, 20) < 0) return NULL;
    }
}

struct fc_job *fc_wait_tokens(struct fake_coord *fc, uint64_t job_id, uint32_t n,
                              int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    for (;;) {
        struct fc_job *j = fc_job(fc, job_id);
        if (j && j->n_tokens >= n) return j;
        if (now_ms() >= end || fc_pump(fc, 20) < 0) return NULL;
    }
}

int fc_wait_error(struct fake_coord *fc, int before, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    while (fc->errors <= before && now_ms() < end)
        if (fc_pump(fc, 20) < 0) break;
    return fc->errors;
}

int fc_assign_text(struct fake_coord *fc, uint64_t job_id, const char *prompt,
                   uint32_t max_tokens, float temperature, float top_p, uint64_t seed,
                   const struct fc_resume *resume)
{
    Nosa__Serve__CoordMsg msg = NOSA__SERVE__COORD_MSG__INIT;
    Nosa__Serve__Assign a = NOSA__SERVE__ASSIGN__INIT;
    Nosa__Serve__JobSpec job = NOSA__SERVE__JOB_SPEC__INIT;
    Nosa__Serve__SamplingParams s = NOSA__SERVE__SAMPLING_PARAMS__INIT;
    s.max_tokens = max_tokens;
    s.temperature = temperature;
    s.top_p = top_p;
    s.seed = seed;
    s.stop_at_eos = 1;
    job.job_id = job_id;
    job.prompt_case = NOSA__SERVE__JOB_SPEC__PROMPT_TEXT;
    job.text = (char *)prompt;
    job.sampling = &s;
    a.job = &job;
    a.seq_id = job_id;
    if (resume) {
        a.generated = (int32_t *)resume->generated;
        a.n_generated = resume->n_generated;
        a.prompt_done = resume->prompt_done;
    }
    msg.body_case = NOSA__SERVE__COORD_MSG__BODY_ASSIGN;
    msg.assign = &a;
    return fc_send(fc, &msg);
}

int fc_cancel(struct fake_coord *fc, uint64_t job_id, int moved)
{
    Nosa__Serve__CoordMsg msg = NOSA__SERVE__COORD_MSG__INIT;
    Nosa__Serve__CancelJob c = NOSA__SERVE__CANCEL_JOB__INIT;
    c.job_id = job_id;
    c.moved = moved;
    msg.body_case = NOSA__SERVE__COORD_MSG__BODY_CANCEL;
    msg.cancel = &c;
    return fc_send(fc, &msg);
}
