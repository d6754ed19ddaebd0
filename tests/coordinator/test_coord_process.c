/* test_coord_process.c: a real nosa-coordinator with fake workers (coord_harness.h):
 * placement and streaming; a worker that stops heartbeating has its job moved to the other
 * with `generated` = the tokens already streamed, and the client sees every token once;
 * bad input on both links gets the right Error and harms no job; cancel; metrics over HTTP
 * (on 0.0.0.0 only with --insecure), and a tcp link off loopback without CURVE keys likewise;
 * kill -9 of the coordinator and restart on its journal (a worker claims its job back, an
 * unclaimed job moves after the timeout); a torn journal tail; journal writes that fail. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "coord_harness.h"
#include "test_http.h"
#include "test_util.h"

#define HB_TIMEOUT_MS 400
#define CODE(x) NOSA__ERROR_CODE__ERROR_##x

static struct ch_env g_e;

/* What a streaming client has seen of one job. */
struct stream {
    int32_t ids[512];
    int seen[512];
    int dups, out_of_range;
    int finished, reason;
    uint32_t generated;
};

static void collect(void *cl, struct stream *s, int wait_ms)
{
    Nosa__Serve__ClientReply *r;
    while ((r = cl_recv(cl, wait_ms)) != NULL) {
        if (r->body_case == NOSA__SERVE__CLIENT_REPLY__BODY_TOKENS) {
            for (size_t i = 0; i < r->tokens->n_tokens; i++) {
                uint32_t idx = r->tokens->tokens[i]->index;
                if (idx >= 512) {
                    s->out_of_range++;
                    continue;
                }
                s->dups += s->seen[idx];
                s->seen[idx] = 1;
                s->ids[idx] = r->tokens->tokens[i]->id;
            }
        } else if (r->body_case == NOSA__SERVE__CLIENT_REPLY__BODY_FINISHED) {
            s->finished++;
            s->reason = r->finished->reason;
            s->generated = r->finished->generated_tokens;
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        wait_ms = 0;
    }
}

/* Tokens 0..n-1 seen exactly once each, and nothing beyond. */
static int stream_exact(const struct stream *s, uint32_t n)
{
    if (s->dups || s->out_of_range) return 0;
    for (uint32_t i = 0; i < 512; i++) {
        if (s->seen[i] != (i < n)) return 0;
        if (i < n && s->ids[i] != 'a' + (int32_t)(i % 26)) return 0;
    }
    return 1;
}

/* Pumps workers (heartbeats every 50 ms) for ms milliseconds, or until done(arg) holds. */
static int pump(struct fake_worker **ws, int n, unsigned ms, int (*done)(void *), void *arg)
{
    uint64_t end = ch_now_ms() + ms, next_hb = 0;
    while (ch_now_ms() < end) {
        uint64_t now = ch_now_ms();
        for (int i = 0; i < n; i++) {
            fw_pump(ws[i]);
            if (now >= next_hb) fw_heartbeat(ws[i]);
        }
        if (now >= next_hb) next_hb = now + 50;
        if (done && done(arg)) return 1;
        ch_idle();
        ch_sleep_ms(2);
    }
    return 0;
}

struct has_job_arg {
    struct fake_worker *w;
    uint64_t id;
};
static int has_job(void *arg)
{
    struct has_job_arg *a = arg;
    return fw_job(a->w, a->id) != NULL;
}

/* Keeps a worker heartbeating while the test waits on something else. */
static void keep_alive(void *arg)
{
    static uint64_t next;
    struct fake_worker *w = arg;
    fw_pump(w);
    if (ch_now_ms() >= next) {
        fw_heartbeat(w);
        next = ch_now_ms() + 50;
    }
}

static Nosa__Serve__ClientReply *client_request(void *cl, Nosa__Serve__ClientMsg *m)
{
    m->request_id = 99;
    if (cl_send(cl, m, 0)) return NULL;
    return cl_recv(cl, 3000);
}

static Nosa__Serve__ClientReply *job_status(void *cl, uint64_t id)
{
    Nosa__Serve__StatusRequest sq = NOSA__SERVE__STATUS_REQUEST__INIT;
    sq.job_id = id;
    Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
    m.body_case = NOSA__SERVE__CLIENT_MSG__BODY_STATUS;
    m.status = &sq;
    return client_request(cl, &m);
}

/* Checks a reply is an Error with this code whose message contains want. */
static void expect_error(Nosa__Serve__ClientReply *r, int code, const char *want, const char *what)
{
    CHECK(r && r->error, "%s: no Error reply", what);
    if (r && r->error) {
        CHECK((int)r->error->code == code, "%s: code %d, want %d (%s)", what, r->error->code,
              code, r->error->message);
        CHECK(strstr(r->error->message, want) != NULL, "%s: message '%s' lacks '%s'", what,
              r->error->message, want);
    }
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* ---------------------------------------------------------------- a job moves */
/* Pumps both workers and collects cl's replies into s until its job finished (ms at most). */
static void pump_until_finished(struct fake_worker **ws, void *cl, struct stream *s, unsigned ms)
{
    uint64_t end = ch_now_ms() + ms;
    while (!s->finished && ch_now_ms() < end) {
        pump(ws, 2, 5, NULL, NULL);
        collect(cl, s, 5);
    }
}

/* Submits a streamed job of 10 tokens and waits until one of the two workers has it. */
static void submit_placed(void *cl, const char *prompt, struct fake_worker **ws, uint64_t *id)
{
    Nosa__Serve__ClientReply *r = cl_submit(cl, prompt, 10, 1);
    REQUIRE(r && r->submitted, "submit '%s'", prompt);
    *id = r->submitted->job_id;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    uint64_t end = ch_now_ms() + 2000;
    while (!fw_job(ws[0], *id) && !fw_job(ws[1], *id) && ch_now_ms() < end)
        pump(ws, 2, 5, NULL, NULL);
}

static void test_move(struct fake_worker *w0, struct fake_worker *w1, void *cl)
{
    struct fake_worker *ws[2] = {w0, w1};
    uint64_t id;
    submit_placed(cl, "hi", ws, &id);
    CHECK(id == 1, "first job id %llu", (unsigned long long)id);
    uint64_t end;
    struct fake_worker *a = fw_job(w0, id) ? w0 : w1, *b = a == w0 ? w1 : w0;
    REQUIRE(fw_job(a, id), "job %llu was never assigned", (unsigned long long)id);
    CHECK(fw_job(a, id)->assigned_generated == 0, "a new job came with generated tokens");
    fw_emit(a, 4);
    struct stream s;
    memset(&s, 0, sizeof s);
    end = ch_now_ms() + 2000;
    while (!s.seen[3] && ch_now_ms() < end) collect(cl, &s, 20);
    CHECK(s.seen[3], "the client did not get the first 4 tokens");
    a->silent = 1; /* a hangs: no heartbeats, no tokens */
    struct has_job_arg arg = {b, id};
    CHECK(pump(ws, 2, 3 * HB_TIMEOUT_MS + 1000, has_job, &arg), "job not moved to %s", b->name);
    struct fw_job *moved = fw_job(b, id);
    if (moved) {
        CHECK(moved->assigned_generated == 4, "moved with %u generated tokens, want 4",
              moved->assigned_generated);
        CHECK(moved->generated_ok, "Assign.generated differs from the streamed tokens");
    }
    pump(ws, 2, 30, NULL, NULL);
    CHECK(a->cancels == 1 && !fw_job(a, id), "the dead worker got %d CancelJob", a->cancels);
    CHECK(a->moved_cancels == 1, "the dead worker's CancelJob does not say moved (it would free "
          "the kv-host sequence its successor resumes from)");
    fw_emit(b, 3);
    fw_emit(b, 100);
    end = ch_now_ms() + 2000;
    while (!s.finished && ch_now_ms() < end) collect(cl, &s, 20);
    CHECK(s.finished == 1 && s.reason == NOSA__SERVE__FINISH_REASON__FINISH_LENGTH,
          "finished %d reason %d", s.finished, s.reason);
    CHECK(s.generated == 10, "generated_tokens %u", s.generated);
    CHECK(stream_exact(&s, 10), "the client saw duplicates (%d) or gaps", s.dups);
}

/* A job whose worker dies while it prefills (no token yet): the prefill progress it reported
 * goes with the job (Assign.prompt_done), so its new worker resumes from those blocks; a
 * progress beyond the prompt is ignored. The progress is journaled with the job's place: a
 * coordinator killed and restarted before the move still resumes it from there. */
static void test_move_mid_prefill(void)
{
    char journal[300];
    snprintf(journal, sizeof journal, "%s/mid-prefill.journal", g_e.run_dir);
    const char *flags[] = {"--journal", journal, NULL};
    REQUIRE(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, flags) == 0, "start (mid-prefill)");
    struct fake_worker f0, f1, *w0 = &f0, *w1 = &f1;
    REQUIRE(fw_open(&g_e, w0, "m0", 2, 64) == 0 && fw_open(&g_e, w1, "m1", 2, 64) == 0 &&
                fw_register(w0) == 0 && fw_register(w1) == 0,
            "m0 and m1 register");
    void *cl = cl_open(&g_e);
    REQUIRE(cl, "client socket");
    static char prompt[51];
    memset(prompt, 'p', 50); /* 51 prompt tokens with BOS; the fake workers take 64 */
    struct fake_worker *ws[2] = {w0, w1};
    uint64_t id, end;
    submit_placed(cl, prompt, ws, &id);
    Nosa__Serve__ClientReply *r;
    struct fake_worker *a = fw_job(w0, id) ? w0 : w1, *b = a == w0 ? w1 : w0;
    REQUIRE(fw_job(a, id), "job %llu was never assigned", (unsigned long long)id);
    fw_progress(a, id, 16);
    fw_progress(a, id, 32);
    fw_progress(a, id, 52); /* more than the prompt: ignored */
    pump(ws, 2, 50, NULL, NULL);
    a->silent = 1;
    struct has_job_arg arg = {b, id};
    CHECK(pump(ws, 2, 3 * HB_TIMEOUT_MS + 1000, has_job, &arg), "job not moved to %s", b->name);
    const struct fw_job *moved = fw_job(b, id);
    CHECK(moved && moved->assigned_generated == 0 && moved->assigned_prompt_done == 32,
          "moved mid-prefill with prompt_done %u (want 32) and %u tokens",
          moved ? moved->assigned_prompt_done : 0, moved ? moved->assigned_generated : 0);
    fw_emit(b, 100);
    struct stream s;
    memset(&s, 0, sizeof s);
    end = ch_now_ms() + 2000;
    while (!s.finished && ch_now_ms() < end) collect(cl, &s, 20);
    CHECK(s.finished == 1 && stream_exact(&s, 10), "the job moved mid-prefill did not end right");

    /* A submit sent again with its client key (its reply was lost) is the same job, also
     * after a kill -9 and restart on the journal; another key makes another job. */
    uint64_t ids[4] = {0};
    const uint64_t keys[4] = {0xfeed, 0xfeed, 0xfeed, 0xbeef};
    for (int k = 0; k < 4; k++) {
        if (k == 2) {
            ch_stop_coordinator(&g_e, SIGKILL); /* killed: no exit status to check */
            REQUIRE(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, flags) == 0, "restart");
        }
        r = cl_submit_keyed(cl, "again", 3, 0, keys[k], 5000);
        CHECK(r && r->submitted, "keyed submit %d: no SubmitReply", k);
        if (r && r->submitted) ids[k] = r->submitted->job_id;
        if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    CHECK(ids[0] && ids[1] == ids[0] && ids[2] == ids[0] && ids[3] && ids[3] != ids[0],
          "keyed submits got jobs %llu %llu %llu (same key, the last after a restart) and %llu "
          "(another key)", (unsigned long long)ids[0], (unsigned long long)ids[1],
          (unsigned long long)ids[2], (unsigned long long)ids[3]);

    /* Both workers back with free slots: the one the mid-prefill job left registers again,
     * and the keyed jobs end. */
    struct fake_worker *dead = w0->silent ? w0 : w1;
    dead->silent = 0;
    REQUIRE(fw_register(dead) == 0, "%s registers again", dead->name);
    fw_emit(w0, 100); /* the keyed jobs end: both workers have their slots free */
    fw_emit(w1, 100);
    pump(ws, 2, 100, NULL, NULL);

    /* A JobFinished that says more tokens than arrived (they died with a coordinator that
     * restarted) does not end the job short: it ends when its worker has sent them all. */
    uint64_t sid;
    submit_placed(cl, "short", ws, &sid);
    struct fake_worker *s_on = fw_job(w0, sid) ? w0 : w1;
    REQUIRE(fw_job(s_on, sid), "job %llu was never placed", (unsigned long long)sid);
    fw_emit(s_on, 3);
    fw_send_finished(s_on, sid, NOSA__SERVE__FINISH_REASON__FINISH_LENGTH, 10);
    struct stream ss;
    memset(&ss, 0, sizeof ss);
    pump(ws, 2, 100, NULL, NULL);
    collect(cl, &ss, 100);
    CHECK(!ss.finished, "a job ended with 3 of the 10 tokens its JobFinished claims");
    fw_emit(s_on, 100); /* the rest, then its JobFinished again */
    pump_until_finished(ws, cl, &ss, 2000);
    CHECK(ss.finished && stream_exact(&ss, 10), "the job whose end came early: finished %d, "
          "dups %d", ss.finished, ss.dups);

    /* Mid-prefill across a coordinator restart: the job's worker dies with the coordinator,
     * the restarted coordinator reads the progress back and the move resumes from it. */
    uint64_t rid;
    submit_placed(cl, prompt, ws, &rid);
    struct fake_worker *ra = fw_job(w0, rid) ? w0 : w1, *rb = ra == w0 ? w1 : w0;
    REQUIRE(fw_job(ra, rid), "job %llu was never placed", (unsigned long long)rid);
    fw_progress(ra, rid, 48);
    pump(ws, 2, 50, NULL, NULL);
    ch_stop_coordinator(&g_e, SIGKILL);
    ra->silent = 1;
    REQUIRE(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, flags) == 0, "restart mid-prefill");
    struct has_job_arg rarg = {rb, rid};
    /* rb registers again on its first UNAUTHORIZED; the job waits a heartbeat timeout for
     * its worker to claim it, then moves. */
    CHECK(pump(ws, 2, 4 * HB_TIMEOUT_MS + 1000, has_job, &rarg),
          "job %llu not moved to %s after the restart", (unsigned long long)rid, rb->name);
    const struct fw_job *rm = fw_job(rb, rid);
    CHECK(rm && rm->assigned_generated == 0 && rm->assigned_prompt_done == 48,
          "moved mid-prefill after a restart with prompt_done %u (want 48) and %u tokens",
          rm ? rm->assigned_prompt_done : 0, rm ? rm->assigned_generated : 0);
    /* The client attaches again (as nosa submit does after a restart), then the job ends. */
    Nosa__Serve__AttachRequest aq = NOSA__SERVE__ATTACH_REQUEST__INIT;
    aq.job_id = rid;
    Nosa__Serve__ClientMsg am = NOSA__SERVE__CLIENT_MSG__INIT;
    am.body_case = NOSA__SERVE__CLIENT_MSG__BODY_ATTACH;
    am.attach = &aq;
    am.request_id = 98;
    CHECK(cl_send(cl, &am, 0) == 0, "attach after the restart");
    pump(ws, 2, 50, NULL, NULL);
    fw_emit(rb, 100);
    memset(&ss, 0, sizeof ss);
    pump_until_finished(ws, cl, &ss, 2000);
    CHECK(ss.finished && stream_exact(&ss, 10), "the job moved after the restart did not end "
          "right: finished %d, dups %d", ss.finished, ss.dups);
    ra->silent = 0;
    REQUIRE(fw_register(ra) == 0, "%s registers again", ra->name);

    /* A worker that says it stops (Heartbeat.leaving) has its job moved at once, long before
     * the heartbeat timeout, and gets no CancelJob (it runs nothing any more). */
    uint64_t lid;
    submit_placed(cl, "leaving", ws, &lid);
    struct fake_worker *x = fw_job(w0, lid) ? w0 : w1, *y = x == w0 ? w1 : w0;
    int cancels = x->cancels;
    uint64_t t0 = ch_now_ms();
    fw_leave(x);
    struct has_job_arg left = {y, lid};
    CHECK(pump(ws, 2, HB_TIMEOUT_MS / 2, has_job, &left),
          "the job of a leaving worker did not move within half the heartbeat timeout");
    CHECK(ch_now_ms() - t0 < HB_TIMEOUT_MS && x->cancels == cancels,
          "leaving: moved after %llu ms, %d CancelJob to the leaver",
          (unsigned long long)(ch_now_ms() - t0), x->cancels - cancels);
    zmq_close(cl);
    fw_close(w0);
    fw_close(w1);
    CHECK(ch_stop_coordinator(&g_e, SIGTERM) == 0, "SIGTERM after the move mid-prefill");
}

/* ---------------------------------------------------------------- bad input */
static void test_bad_client_input(void *cl)
{
    CHECK(zmq_send(cl, "\xff\xff\xff\x01", 4, 0) == 4, "send garbage");
    expect_error(cl_recv(cl, 3000), CODE(BAD_MESSAGE), "undecodable", "garbage");

    size_t big_len = NOSA_MSG_MAX_BYTES + 1;
    char *big = calloc(1, big_len);
    REQUIRE(big, "oversize buffer");
    CHECK(zmq_send(cl, big, big_len, 0) == (int)big_len, "send an oversize frame");
    free(big);
    expect_error(cl_recv(cl, 3000), CODE(TOO_LARGE), "exceeds", "oversize frame");
    /* Past 4 x NOSA_MSG_MAX_BYTES the coordinator's socket drops the frame (and the
     * connection) unread: no reply, and the next request on the same socket is served. */
    big_len = 4 * (size_t)NOSA_MSG_MAX_BYTES + 1;
    big = calloc(1, big_len);
    REQUIRE(big, "huge buffer");
    CHECK(zmq_send(cl, big, big_len, 0) == (int)big_len, "send a huge frame");
    free(big);
    Nosa__Serve__ClientReply *none = cl_recv(cl, 1000);
    CHECK(!none, "a frame past the socket's limit was answered");
    if (none) nosa__serve__client_reply__free_unpacked(none, NULL);
    CHECK(zmq_send(cl, "\x08\x01", 2, ZMQ_SNDMORE) == 2 && zmq_send(cl, "\x08\x01", 2, 0) == 2,
          "send two frames");
    expect_error(cl_recv(cl, 3000), CODE(BAD_MESSAGE), "more than one", "two frames");

    Nosa__Serve__StatusRequest sq = NOSA__SERVE__STATUS_REQUEST__INIT;
    Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
    m.body_case = NOSA__SERVE__CLIENT_MSG__BODY_STATUS;
    m.status = &sq;
    m.version = 99;
    cl_send(cl, &m, 1);
    expect_error(cl_recv(cl, 3000), CODE(BAD_VERSION), "version 99", "wrong version");

    Nosa__Serve__ClientMsg empty = NOSA__SERVE__CLIENT_MSG__INIT;
    expect_error(client_request(cl, &empty), CODE(BAD_MESSAGE), "without a body", "no body");

    expect_error(cl_submit(cl, "hi", 0, 1), CODE(BAD_MESSAGE), "max_tokens", "max_tokens 0");
    char longp[101];
    memset(longp, 'x', 100);
    longp[100] = 0;
    expect_error(cl_submit(cl, longp, 10, 1), CODE(REFUSED), "max_context (64)", "too long");

    Nosa__Serve__CancelRequest cq = NOSA__SERVE__CANCEL_REQUEST__INIT;
    cq.job_id = 12345;
    Nosa__Serve__ClientMsg cm = NOSA__SERVE__CLIENT_MSG__INIT;
    cm.body_case = NOSA__SERVE__CLIENT_MSG__BODY_CANCEL;
    cm.cancel = &cq;
    expect_error(client_request(cl, &cm), CODE(UNKNOWN_ID), "12345", "cancel unknown");
    expect_error(job_status(cl, 12345), CODE(UNKNOWN_ID), "12345", "status unknown");
    Nosa__Serve__AttachRequest aq = NOSA__SERVE__ATTACH_REQUEST__INIT;
    aq.job_id = 777;
    Nosa__Serve__ClientMsg am = NOSA__SERVE__CLIENT_MSG__INIT;
    am.body_case = NOSA__SERVE__CLIENT_MSG__BODY_ATTACH;
    am.attach = &aq;
    expect_error(client_request(cl, &am), CODE(UNKNOWN_ID), "777", "attach unknown");
}

static void test_bad_worker_input(void)
{
    struct fake_worker rogue;
    REQUIRE(fw_open(&g_e, &rogue, "rogue", 1, 64) == 0, "rogue socket");
    rogue.silent = 0;
    struct fake_worker *ws[1] = {&rogue};
    fw_heartbeat(&rogue); /* never registered */
    rogue.silent = 1;     /* so that pump does not register it */
    pump(ws, 1, 300, NULL, NULL);
    CHECK(rogue.last_error_code == CODE(UNAUTHORIZED), "heartbeat from a stranger: code %d",
          rogue.last_error_code);
    fw_send_raw(&rogue, "\x0a\xff\xff", 3);
    rogue.last_error_code = 0;
    pump(ws, 1, 300, NULL, NULL);
    CHECK(rogue.last_error_code == CODE(BAD_MESSAGE), "garbage on the worker link: code %d",
          rogue.last_error_code);
    Nosa__Serve__Heartbeat h = NOSA__SERVE__HEARTBEAT__INIT;
    Nosa__Serve__WorkerMsg m = NOSA__SERVE__WORKER_MSG__INIT;
    m.body_case = NOSA__SERVE__WORKER_MSG__BODY_HEARTBEAT;
    m.heartbeat = &h;
    m.version = 5;
    fw_send(&rogue, &m, 1);
    rogue.last_error_code = 0;
    pump(ws, 1, 300, NULL, NULL);
    CHECK(rogue.last_error_code == CODE(BAD_VERSION), "wrong version: code %d",
          rogue.last_error_code);
    Nosa__Serve__Register reg = NOSA__SERVE__REGISTER__INIT;
    reg.worker_name = "rogue";
    reg.max_seqs = 0;
    reg.block_size = 16;
    reg.max_context = 64;
    Nosa__Serve__WorkerMsg rm = NOSA__SERVE__WORKER_MSG__INIT;
    rm.body_case = NOSA__SERVE__WORKER_MSG__BODY_REGISTER;
    rm.register_ = &reg;
    fw_send(&rogue, &rm, 0);
    rogue.last_error_code = 0;
    pump(ws, 1, 300, NULL, NULL);
    CHECK(rogue.last_error_code == CODE(BAD_MESSAGE), "Register with 0 slots: code %d",
          rogue.last_error_code);
    CHECK(rogue.assigns == 0 && rogue.acks == 0, "the rogue was acked or assigned");
    fw_close(&rogue);
}

/* ---------------------------------------------------------------- cancel, metrics */
static void test_cancel(struct fake_worker *b, void *cl, void *cl2)
{
    Nosa__Serve__ClientReply *r = cl_submit(cl, "cancel me", 50, 1);
    REQUIRE(r && r->submitted, "submit for cancel");
    uint64_t id = r->submitted->job_id;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    struct fake_worker *ws[1] = {b};
    struct has_job_arg arg = {b, id};
    CHECK(pump(ws, 1, 2000, has_job, &arg), "job %llu not assigned", (unsigned long long)id);
    fw_emit(b, 2);
    Nosa__Serve__CancelRequest cq = NOSA__SERVE__CANCEL_REQUEST__INIT;
    cq.job_id = id;
    Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
    m.body_case = NOSA__SERVE__CLIENT_MSG__BODY_CANCEL;
    m.cancel = &cq;
    r = client_request(cl2, &m);
    CHECK(r && r->body_case == NOSA__SERVE__CLIENT_REPLY__BODY_CANCELLED, "no CancelReply");
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
    pump(ws, 1, 100, NULL, NULL);
    CHECK(b->cancels == 1 && !fw_job(b, id), "the worker got %d CancelJob", b->cancels);
    CHECK(b->moved_cancels == 0, "a client's cancel said moved: the sequence would leak");
    struct stream s;
    memset(&s, 0, sizeof s);
    collect(cl, &s, 1000);
    CHECK(s.finished == 1 && s.reason == NOSA__SERVE__FINISH_REASON__FINISH_CANCELLED,
          "the submitter saw finished %d reason %d", s.finished, s.reason);
}

static void test_metrics(const char *alive, const char *dead)
{
    char up[128], down[128], tps[128], hit[128], bytes[128];
    snprintf(up, sizeof up, "nosa_worker_up{worker=\"%s\",backend=\"fake\"} 1", alive);
    snprintf(down, sizeof down, "nosa_worker_up{worker=\"%s\",backend=\"fake\"} 0", dead);
    snprintf(tps, sizeof tps, "nosa_worker_tokens_per_second{worker=\"%s\",backend=\"fake\"} 100",
             alive);
    snprintf(hit, sizeof hit, "nosa_worker_cache_hit_rate{worker=\"%s\",backend=\"fake\"} 0.5",
             alive);
    snprintf(bytes, sizeof bytes,
             "nosa_worker_bytes_moved_per_step{worker=\"%s\",backend=\"fake\"} 4096", alive);
    ch_sleep_ms(300); /* published every 250 ms */
    char *text = test_http_get(g_e.metrics_port, "/metrics");
    CHECK(text != NULL, "GET /metrics on port %d failed", g_e.metrics_port);
    if (!text) return;
    CHECK(strstr(text, "200 OK") != NULL, "status line: %.40s", text);
    const char *want[] = {"# TYPE nosa_queue_depth gauge", up, down, tps, hit, bytes,
                          "nosa_jobs_completed_total 1", "nosa_jobs_failed_total 1",
                          "nosa_journal_ok 1"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(strstr(text, want[i]) != NULL, "metrics lack '%s'", want[i]);
    free(text);
    text = test_http_get(g_e.metrics_port, "/other");
    CHECK(text && strstr(text, "404"), "GET /other is not 404");
    free(text);
}

/* HTTP has no CURVE: metrics on a non-loopback address need --insecure, as plain tcp does. */
static void test_metrics_address(void)
{
    const char *any[] = {"--metrics-address", "0.0.0.0", NULL};
    CHECK(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, any) == -1,
          "--metrics-address 0.0.0.0 without --insecure: the coordinator started");
    char *log = test_read_file(g_e.log);
    CHECK(log && strstr(log, "nosa-coordinator: refusing to serve metrics on 0.0.0.0: not a "
                             "loopback address, and HTTP has no CURVE (pass --insecure"),
          "no clear error in %s", g_e.log);
    free(log);
    const char *insecure[] = {"--metrics-address", "0.0.0.0", "--insecure", NULL};
    REQUIRE(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, insecure) == 0,
            "--metrics-address 0.0.0.0 --insecure");
    ch_sleep_ms(300); /* published every 250 ms */
    char *text = test_http_get(g_e.metrics_port, "/metrics"); /* 0.0.0.0 takes loopback too */
    CHECK(text && strstr(text, "200 OK") && strstr(text, "nosa_queue_depth 0"),
          "metrics on 0.0.0.0 with --insecure: %.60s", text ? text : "(no answer)");
    free(text);
    CHECK(ch_stop_coordinator(&g_e, SIGTERM) == 0, "SIGTERM: exit status not 0");
}

/* A tcp link off loopback without CURVE keys: refused at start, naming --insecure; served
 * with --insecure (docs/SECURITY.md). */
static void test_tcp_insecure(void)
{
    char ep[64], want[160];
    snprintf(ep, sizeof ep, "tcp://0.0.0.0:%d", 40000 + (int)(getpid() % 20000));
    const char *plain[] = {"--workers", ep, NULL};
    CHECK(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, plain) == -1,
          "--workers %s without keys or --insecure: the coordinator started", ep);
    snprintf(want, sizeof want, "refusing to bind %s without CURVE keys: not a loopback address",
             ep);
    char *log = test_read_file(g_e.log);
    CHECK(log && strstr(log, want) && strstr(log, "--insecure"), "no clear error (%s) in %s",
          want, g_e.log);
    free(log);
    const char *insecure[] = {"--workers", ep, "--insecure", NULL};
    REQUIRE(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, insecure) == 0,
            "--workers %s --insecure did not start", ep);
    CHECK(ch_stop_coordinator(&g_e, SIGTERM) == 0, "SIGTERM: exit status not 0");
}

/* ---------------------------------------------------------------- restart */
static void expect_finished_text(void *cl, uint64_t id, uint32_t n, const char *what)
{
    Nosa__Serve__ClientReply *r = job_status(cl, id);
    CHECK(r && r->status && r->status->job, "%s: no job status", what);
    if (r && r->status && r->status->job) {
        const Nosa__Serve__JobStatus *j = r->status->job;
        char want[128];
        ch_expected_text(n, want, sizeof want);
        CHECK(strcmp(j->state, "finished") == 0 &&
                  j->reason == NOSA__SERVE__FINISH_REASON__FINISH_LENGTH,
              "%s: state %s reason %d", what, j->state, j->reason);
        CHECK(j->n_tokens == n && j->text.len == n && memcmp(j->text.data, want, n) == 0,
              "%s: %zu tokens, text '%.*s'", what, j->n_tokens, (int)j->text.len,
              (const char *)j->text.data);
    }
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void test_restart(struct fake_worker *b, void **cl)
{
    struct fake_worker c;
    REQUIRE(fw_open(&g_e, &c, "w2", 2, 64) == 0 && fw_register(&c) == 0, "w2 registers");
    struct fake_worker *ws[2] = {b, &c};
    Nosa__Serve__ClientReply *r3 = cl_submit(*cl, "three", 12, 0);
    Nosa__Serve__ClientReply *r4 = cl_submit(*cl, "four", 9, 0);
    REQUIRE(r3 && r3->submitted && r4 && r4->submitted, "submits before the restart");
    uint64_t id3 = r3->submitted->job_id, id4 = r4->submitted->job_id;
    protobuf_c_message_free_unpacked(&r3->base, NULL);
    protobuf_c_message_free_unpacked(&r4->base, NULL);
    struct has_job_arg a3 = {b, id3}, a4 = {&c, id4};
    CHECK(pump(ws, 2, 2000, has_job, &a3) && pump(ws, 2, 2000, has_job, &a4),
          "jobs %llu (w1) and %llu (w2) not placed as expected", (unsigned long long)id3,
          (unsigned long long)id4);
    fw_emit(b, 5);
    fw_emit(&c, 3);
    pump(ws, 2, 150, NULL, NULL); /* journaled */
    ch_stop_coordinator(&g_e, SIGKILL);
    fw_close(&c); /* w2 never comes back: its job moves after the timeout */
    zmq_close(*cl);
    REQUIRE(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, NULL) == 0, "restart on the journal");
    *cl = cl_open(&g_e);
    struct fake_worker *wb[1] = {b};
    struct has_job_arg moved = {b, id4};
    CHECK(pump(wb, 1, 3000 + 2 * HB_TIMEOUT_MS, has_job, &moved),
          "job %llu (of the lost w2) not moved to w1 after the restart", (unsigned long long)id4);
    CHECK(b->acks >= 2, "w1 did not register again (%d acks)", b->acks);
    struct fw_job *j4 = fw_job(b, id4);
    if (j4)
        CHECK(j4->assigned_generated == 3 && j4->generated_ok,
              "moved with %u generated (want the 3 journaled)", j4->assigned_generated);
    fw_emit(b, 100);
    pump(wb, 1, 200, NULL, NULL);
    expect_finished_text(*cl, id3, 12, "job claimed back by w1");
    expect_finished_text(*cl, id4, 9, "job moved after the restart");
}

/* 1 when the coordinator's log holds text. */
static int coord_log_has(const char *text)
{
    char *log = test_read_file(g_e.log);
    int found = log && strstr(log, text);
    free(log);
    return found;
}

/* Submits prompt and waits until worker w (one of the n in ws) has it. */
static uint64_t submit_on(void *cl, const char *prompt, struct fake_worker **ws, int n,
                          struct fake_worker *w)
{
    Nosa__Serve__ClientReply *r = cl_submit(cl, prompt, 10, 0);
    REQUIRE(r && r->submitted, "submit '%s'", prompt);
    uint64_t id = r->submitted->job_id;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    struct has_job_arg a = {w, id};
    REQUIRE(pump(ws, n, 2000, has_job, &a), "job '%s' not placed on %s", prompt, w->name);
    return id;
}

/* What compaction writes is enough for a restart: a job with 3 tokens (k0), a job 32 prompt
 * tokens into its prefill (k1) and finished short jobs (k2) until the journal is compacted
 * (a 4 KiB threshold); then the coordinator killed and k0 and k1 lost: the restarted
 * coordinator still reports the first short job finished, and moves the other two with their
 * tokens and progress. Each worker has one slot, so where each job goes is known. */
static void test_compaction(void)
{
    char journal[300];
    snprintf(journal, sizeof journal, "%s/compact.journal", g_e.run_dir);
    const char *flags[] = {"--journal", journal, "--journal-compact-bytes", "4096", NULL};
    REQUIRE(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, flags) == 0, "start (compaction)");
    struct fake_worker f0, f1, f2, f3;
    struct fake_worker *ws[3] = {&f0, &f1, &f2};
    void *cl = cl_open(&g_e);
    REQUIRE(cl, "client socket");
    static char prompt[51];
    memset(prompt, 'q', 50);
    REQUIRE(fw_open(&g_e, &f0, "k0", 1, 64) == 0 && fw_register(&f0) == 0, "k0 registers");
    uint64_t tok3 = submit_on(cl, "three", ws, 1, &f0);
    fw_emit(&f0, 3);
    REQUIRE(fw_open(&g_e, &f1, "k1", 1, 64) == 0 && fw_register(&f1) == 0, "k1 registers");
    uint64_t pre = submit_on(cl, prompt, ws, 2, &f1);
    fw_progress(&f1, pre, 32);
    REQUIRE(fw_open(&g_e, &f2, "k2", 1, 64) == 0 && fw_register(&f2) == 0, "k2 registers");
    uint64_t first = 0;
    int n = 0;
    while (!coord_log_has("compact.journal compacted") && n < 200) {
        uint64_t id = submit_on(cl, "short", ws, 3, &f2);
        if (!first) first = id;
        fw_emit(&f2, 100);
        pump(ws, 3, 20, NULL, NULL);
        n++;
    }
    CHECK(coord_log_has("compact.journal compacted"), "no compaction after %d short jobs", n);
    ch_stop_coordinator(&g_e, SIGKILL);
    f0.silent = f1.silent = f2.silent = 1;
    zmq_close(cl);
    REQUIRE(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, flags) == 0, "restart (compaction)");
    cl = cl_open(&g_e);
    REQUIRE(fw_open(&g_e, &f3, "k3", 2, 64) == 0 && fw_register(&f3) == 0, "k3 registers");
    struct fake_worker *w3[1] = {&f3};
    struct has_job_arg a3 = {&f3, tok3}, ap = {&f3, pre};
    CHECK(pump(w3, 1, 3000 + 2 * HB_TIMEOUT_MS, has_job, &a3) &&
              pump(w3, 1, 1000, has_job, &ap),
          "jobs %llu and %llu not moved to k3 after the restart", (unsigned long long)tok3,
          (unsigned long long)pre);
    const struct fw_job *m3 = fw_job(&f3, tok3), *mp = fw_job(&f3, pre);
    CHECK(m3 && m3->assigned_generated == 3 && m3->generated_ok,
          "the 3-token job moved with %u tokens", m3 ? m3->assigned_generated : 0);
    CHECK(mp && mp->assigned_generated == 0 && mp->assigned_prompt_done == 32,
          "the job mid-prefill moved with prompt_done %u (want 32)",
          mp ? mp->assigned_prompt_done : 0);
    expect_finished_text(cl, first, 10, "the first short job, finished before the compaction");
    zmq_close(cl);
    fw_close(&f0);
    fw_close(&f1);
    fw_close(&f2);
    fw_close(&f3);
    CHECK(ch_stop_coordinator(&g_e, SIGTERM) == 0, "SIGTERM after the compaction test");
}

static void test_torn_and_full(void **cl)
{
    CHECK(ch_stop_coordinator(&g_e, SIGTERM) == 0, "SIGTERM: exit status not 0");
    CHECK(access(g_e.clients_ep + 6, F_OK) != 0, "the client socket file was left behind");
    FILE *f = fopen(g_e.journal, "ab");
    REQUIRE(f, "open the journal");
    fwrite("\x40\x00\x00\x00\x11\x22\x33\x44\x03torn", 1, 13, f); /* half a record */
    fclose(f);
    zmq_close(*cl);
    REQUIRE(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, NULL) == 0, "restart after a torn write");
    *cl = cl_open(&g_e);
    expect_finished_text(*cl, 1, 10, "job 1 after a torn tail");
    Nosa__Serve__ClientReply *r = cl_submit(*cl, "after torn", 3, 0);
    CHECK(r && r->submitted && r->submitted->job_id == 5, "a job after the torn tail: id %llu",
          r && r->submitted ? (unsigned long long)r->submitted->job_id : 0ULL);
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
    ch_stop_coordinator(&g_e, SIGTERM);
    zmq_close(*cl);

    /* A crash in the middle of writing an accept (the fault point between a record's header
     * and its payload; the start's META record passes it once): the job was never
     * acknowledged, and the restarted coordinator cuts the torn record off. */
    g_e.fault = "coordinator.journal.torn";
    g_e.fault_skip = "1";
    REQUIRE(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, NULL) == 0, "start with the fault armed");
    g_e.fault = g_e.fault_skip = NULL;
    *cl = cl_open(&g_e);
    r = cl_submit_wait(*cl, "torn accept", 3, 0, 500);
    CHECK(r == NULL, "a SubmitReply came from a coordinator killed while journaling it");
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
    CHECK(ch_stop_coordinator(&g_e, SIGKILL) == -1, "the coordinator did not die at the point");
    zmq_close(*cl);
    REQUIRE(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, NULL) == 0, "restart after a torn accept");
    *cl = cl_open(&g_e);
    expect_finished_text(*cl, 1, 10, "job 1 after a torn accept");
    r = cl_submit(*cl, "after the crash", 3, 0);
    CHECK(r && r->submitted && r->submitted->job_id == 6, "the next job id %llu, want 6",
          r && r->submitted ? (unsigned long long)r->submitted->job_id : 0ULL);
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
    ch_stop_coordinator(&g_e, SIGTERM);
    zmq_close(*cl);

    /* The journal's writes fail (EFBIG past RLIMIT_FSIZE, as on a full disk): new jobs are
     * refused naming the journal and why; the coordinator keeps serving. */
    char small[300];
    snprintf(small, sizeof small, "%s/small.journal", g_e.run_dir);
    const char *full[] = {"--journal", small, NULL};
    g_e.fsize_limit = 64;
    REQUIRE(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, full) == 0, "start with RLIMIT_FSIZE 64");
    g_e.fsize_limit = 0;
    *cl = cl_open(&g_e);
    expect_error(cl_submit(*cl, "no room here", 3, 0), CODE(INTERNAL), "small.journal",
                 "journal write fails");
    Nosa__Serve__StatusRequest sq = NOSA__SERVE__STATUS_REQUEST__INIT;
    Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
    m.body_case = NOSA__SERVE__CLIENT_MSG__BODY_STATUS;
    m.status = &sq;
    r = client_request(*cl, &m);
    CHECK(r && r->status && strstr(r->status->journal_error, "File too large"),
          "status does not say why jobs are refused: %s",
          r && r->status ? r->status->journal_error : "(no reply)");
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
    expect_error(cl_submit(*cl, "again", 3, 0), CODE(INTERNAL), "refused", "still refused");
    CHECK(ch_stop_coordinator(&g_e, SIGTERM) == 0,
          "coordinator with a failed journal did not exit 0");
}

/* ---------------------------------------------------------------- a false death */

/* Both workers stop answering during a long step and are declared dead; then they speak
 * again. Each is told to register again (UNAUTHORIZED); q, back first, claims its own job
 * (not moved) and takes p's job with its 3 tokens; p's late tokens, a JobFinished{error} and
 * its cancellation of that job are ignored (the client sees neither), and p, registering with
 * the job it lost, has it cancelled there. Both jobs end with exact text. */
static void test_false_death(void)
{
    char journal[300];
    snprintf(journal, sizeof journal, "%s/false-death.journal", g_e.run_dir);
    const char *flags[] = {"--journal", journal, NULL};
    REQUIRE(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, flags) == 0, "start (false death)");
    struct fake_worker w0, w1;
    REQUIRE(fw_open(&g_e, &w0, "p", 2, 64) == 0 && fw_open(&g_e, &w1, "q", 2, 64) == 0 &&
                fw_register(&w0) == 0 && fw_register(&w1) == 0,
            "p and q register");
    struct fake_worker *ws[2] = {&w0, &w1};
    void *cl_a = cl_open(&g_e), *cl_b = cl_open(&g_e);
    REQUIRE(cl_a && cl_b, "client sockets");
    uint64_t ida, idb;
    submit_placed(cl_a, "first", ws, &ida);
    submit_placed(cl_b, "second", ws, &idb);
    struct fake_worker *p = fw_job(&w0, ida) ? &w0 : &w1, *q = p == &w0 ? &w1 : &w0;
    REQUIRE(fw_job(p, ida) && fw_job(q, idb), "jobs %llu and %llu not on two workers",
            (unsigned long long)ida, (unsigned long long)idb);
    fw_emit(p, 3);
    fw_emit(q, 3);
    struct stream sa, sb;
    memset(&sa, 0, sizeof sa);
    memset(&sb, 0, sizeof sb);
    uint64_t end = ch_now_ms() + 2000;
    while ((!sa.seen[2] || !sb.seen[2]) && ch_now_ms() < end) {
        collect(cl_a, &sa, 10);
        collect(cl_b, &sb, 10);
    }
    CHECK(sa.seen[2] && sb.seen[2], "the first 3 tokens of each job did not arrive");
    ch_sleep_ms(3 * HB_TIMEOUT_MS); /* a long step on both: both declared dead */

    /* q speaks again: told to register, claims its job, takes p's. Two heartbeats get two
     * UNAUTHORIZED answers, so q registers twice; the second Register, written before the
     * Assign of p's job reached q, must not make that job count as lost there. */
    fw_heartbeat(q);
    fw_heartbeat(q);
    ch_sleep_ms(100); /* both answered */
    fw_pump_n(q, 1);  /* the first UNAUTHORIZED: Register */
    ch_sleep_ms(100); /* its ack, the claim and the Assign of p's job wait behind the second */
    struct fake_worker *wq[1] = {q};
    struct has_job_arg moved = {q, ida};
    CHECK(pump(wq, 1, 3000, has_job, &moved), "job %llu not moved to %s",
          (unsigned long long)ida, q->name);
    pump(wq, 1, 50, NULL, NULL);
    CHECK(q->acks >= 2 && q->last_error_code == CODE(UNAUTHORIZED),
          "q: %d acks, last error %d (want a re-registration after UNAUTHORIZED)", q->acks,
          q->last_error_code);
    CHECK(q->assigns == 2 && q->cancels == 0, "q: %d assigns, %d cancels (its own job must "
          "stay with it)", q->assigns, q->cancels);
    if (fw_job(q, ida))
        CHECK(fw_job(q, ida)->assigned_generated == 3 && fw_job(q, ida)->generated_ok,
              "moved with %u generated tokens, want 3", fw_job(q, ida)->assigned_generated);

    /* p wakes up: its step's tokens and a failure of the job it lost come late. */
    fw_emit(p, 2);
    Nosa__Error e = NOSA__ERROR__INIT;
    e.code = CODE(INTERNAL);
    e.message = "kv-host table of sequence changed under this worker";
    Nosa__Serve__JobFinished f = NOSA__SERVE__JOB_FINISHED__INIT;
    f.job_id = ida;
    f.reason = NOSA__SERVE__FINISH_REASON__FINISH_ERROR;
    f.error = &e;
    Nosa__Serve__WorkerMsg m = NOSA__SERVE__WORKER_MSG__INIT;
    m.body_case = NOSA__SERVE__WORKER_MSG__BODY_FINISHED;
    m.finished = &f;
    CHECK(fw_send(p, &m, 0) == 0, "send p's stale JobFinished");
    CHECK(fw_register(p) == 0, "p registers again"); /* listing the job it lost */
    pump(ws, 2, 200, NULL, NULL);
    CHECK(p->cancels == 2 && !fw_job(p, ida),
          "p: %d CancelJob for the job it lost (want one when it moved, one at Register)",
          p->cancels);
    collect(cl_a, &sa, 50);
    CHECK(sa.finished == 0, "a late end from the job's old worker reached the client");

    fw_emit(q, 100);
    end = ch_now_ms() + 2000;
    while ((!sa.finished || !sb.finished) && ch_now_ms() < end) {
        pump(ws, 2, 5, NULL, NULL);
        collect(cl_a, &sa, 5);
        collect(cl_b, &sb, 5);
    }
    CHECK(sa.finished == 1 && sa.reason == NOSA__SERVE__FINISH_REASON__FINISH_LENGTH &&
              stream_exact(&sa, 10),
          "moved job: finished %d reason %d, dups %d", sa.finished, sa.reason, sa.dups);
    CHECK(sb.finished == 1 && sb.reason == NOSA__SERVE__FINISH_REASON__FINISH_LENGTH &&
              stream_exact(&sb, 10),
          "claimed job: finished %d reason %d, dups %d", sb.finished, sb.reason, sb.dups);
    zmq_close(cl_a);
    zmq_close(cl_b);
    fw_close(&w0);
    fw_close(&w1);
    CHECK(ch_stop_coordinator(&g_e, SIGTERM) == 0, "SIGTERM after the false death");
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2, "usage: test_coord_process BIN_DIR");
    ch_init(&g_e, argv[1], "coord");
    test_metrics_address();
    test_tcp_insecure();
    REQUIRE(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, NULL) == 0, "coordinator start");
    struct fake_worker w0, w1;
    REQUIRE(fw_open(&g_e, &w0, "w0", 2, 64) == 0 && fw_open(&g_e, &w1, "w1", 2, 64) == 0,
            "worker sockets");
    REQUIRE(fw_register(&w0) == 0 && fw_register(&w1) == 0, "workers register");
    void *cl = cl_open(&g_e), *cl2 = cl_open(&g_e);
    REQUIRE(cl && cl2, "client sockets");
    test_move(&w0, &w1, cl);
    struct fake_worker *alive = w0.silent ? &w1 : &w0;
    ch_set_idle(keep_alive, alive);
    test_bad_client_input(cl2);
    test_bad_worker_input();
    test_cancel(alive, cl, cl2);
    test_metrics(alive->name, w0.silent ? w0.name : w1.name);
    zmq_close(cl2);
    test_restart(alive, &cl);
    test_torn_and_full(&cl);
    zmq_close(cl);
    fw_close(&w0);
    fw_close(&w1);
    ch_set_idle(NULL, NULL);
    test_false_death();
    test_move_mid_prefill();
    test_compaction();
    ch_cleanup();
    return test_report("coord_process");
}
