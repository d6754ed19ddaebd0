/* bad_input.c: see bad_input.h. The frames are those the idle-process tests send
 * (tests/coordinator/test_coord_process.c, tests/kvhost/test_kvh_bad_input.c), here to a node
 * whose jobs are decoding: the harness then checks that every job still completes exactly. */
#include "bad_input.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "coord_harness.h"
#include "kvh_client.h"
#include "kvh_raw.h"
#include "kvh_server.h"

#define CODE(x) NOSA__ERROR_CODE__ERROR_##x
#define REPLY_MS 5000
/* No job or sequence has this id: the harness's jobs are numbered from 1. */
#define UNKNOWN_ID ((UINT64_C(1) << 40) + 7)

struct tally {
    int failed, checked;
};

/* One expected Error: code and a message naming needle (msg NULL: no reply came). */
static void verdict(struct tally *t, const char *link, const char *what, int code, const char *msg,
                    int want_code, const char *needle)
{
    t->checked++;
    if (msg && code == want_code && strstr(msg, needle)) return;
    t->failed++;
    fprintf(stderr, "bad-input: %s: %s: %s%d (%s), want code %d naming '%s'\n", link, what,
            msg ? "code " : "no reply; ", code, msg ? msg : "-", want_code, needle);
}

/* ---------------------------------------------------------------- the client link */
static void client_expect(struct tally *t, Nosa__Serve__ClientReply *r, int code,
                          const char *needle, const char *what)
{
    const Nosa__Error *e = r ? r->error : NULL;
    verdict(t, "client link", what, e ? (int)e->code : -1, e ? e->message : NULL, code, needle);
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);
}

static Nosa__Serve__ClientReply *client_call(void *cl, Nosa__Serve__ClientMsg *m,
                                             int keep_version)
{
    m->request_id = 99;
    return cl_send(cl, m, keep_version) ? NULL : cl_recv(cl, REPLY_MS);
}

static Nosa__Serve__ClientReply *client_raw(void *cl, const void *data, size_t len)
{
    return zmq_send(cl, data, len, 0) == (int)len ? cl_recv(cl, REPLY_MS) : NULL;
}

/* A job id in Cancel, Status or Attach. */
static Nosa__Serve__ClientReply *client_by_id(void *cl, Nosa__Serve__ClientMsg__BodyCase body,
                                              uint64_t id)
{
    Nosa__Serve__CancelRequest cq = NOSA__SERVE__CANCEL_REQUEST__INIT;
    Nosa__Serve__StatusRequest sq = NOSA__SERVE__STATUS_REQUEST__INIT;
    Nosa__Serve__AttachRequest aq = NOSA__SERVE__ATTACH_REQUEST__INIT;
    Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
    m.body_case = body;
    cq.job_id = sq.job_id = aq.job_id = id;
    if (body == NOSA__SERVE__CLIENT_MSG__BODY_CANCEL) m.cancel = &cq;
    else if (body == NOSA__SERVE__CLIENT_MSG__BODY_STATUS) m.status = &sq;
    else m.attach = &aq;
    return client_call(cl, &m, 0);
}

static void bad_client(struct tally *t, void *cl)
{
    client_expect(t, client_raw(cl, "\xff\xff\xff\x01", 4), CODE(BAD_MESSAGE), "undecodable",
                  "garbage bytes");
    size_t big_len = NOSA_MSG_MAX_BYTES + 1;
    char *big = calloc(1, big_len);
    if (big) client_expect(t, client_raw(cl, big, big_len), CODE(TOO_LARGE), "exceeds",
                           "a frame over the message limit");
    free(big);

    Nosa__Serve__StatusRequest sq = NOSA__SERVE__STATUS_REQUEST__INIT;
    Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
    m.body_case = NOSA__SERVE__CLIENT_MSG__BODY_STATUS;
    m.status = &sq;
    m.version = 99;
    client_expect(t, client_call(cl, &m, 1), CODE(BAD_VERSION), "version 99", "wrong version");
    Nosa__Serve__ClientMsg empty = NOSA__SERVE__CLIENT_MSG__INIT;
    client_expect(t, client_call(cl, &empty, 0), CODE(BAD_MESSAGE), "without a body", "no body");

    client_expect(t, cl_submit_wait(cl, "hi", 0, 1, REPLY_MS), CODE(BAD_MESSAGE), "max_tokens",
                  "max_tokens 0");
    int32_t ids[3] = {65, -3, 66};
    Nosa__Serve__TokenList tl = NOSA__SERVE__TOKEN_LIST__INIT;
    tl.ids = ids;
    tl.n_ids = 3;
    Nosa__Serve__SamplingParams sp = NOSA__SERVE__SAMPLING_PARAMS__INIT;
    sp.max_tokens = 4;
    sp.top_p = 1.0f;
    Nosa__Serve__JobSpec js = NOSA__SERVE__JOB_SPEC__INIT;
    js.prompt_case = NOSA__SERVE__JOB_SPEC__PROMPT_TOKENS;
    js.tokens = &tl;
    js.sampling = &sp;
    Nosa__Serve__SubmitRequest sr = NOSA__SERVE__SUBMIT_REQUEST__INIT;
    sr.job = &js;
    Nosa__Serve__ClientMsg sm = NOSA__SERVE__CLIENT_MSG__INIT;
    sm.body_case = NOSA__SERVE__CLIENT_MSG__BODY_SUBMIT;
    sm.submit = &sr;
    client_expect(t, client_call(cl, &sm, 0), CODE(BAD_MESSAGE), "negative (-3)",
                  "a negative prompt token");
    /* Longer than any worker's context (the models' max_position is at most 4096 here),
     * shorter than the prompt-text limit: refused by admission, not by the decoder. */
    enum { LONG_PROMPT = 65536 };
    char *longp = malloc(LONG_PROMPT + 1);
    if (longp) {
        memset(longp, 'x', LONG_PROMPT);
        longp[LONG_PROMPT] = '\0';
        client_expect(t, cl_submit_wait(cl, longp, 4, 0, REPLY_MS), CODE(REFUSED),
                      "max_context (", "a prompt longer than the context");
    }
    free(longp);

    char unknown[32];
    snprintf(unknown, sizeof unknown, "%" PRIu64, UNKNOWN_ID);
    client_expect(t, client_by_id(cl, NOSA__SERVE__CLIENT_MSG__BODY_CANCEL, UNKNOWN_ID),
                  CODE(UNKNOWN_ID), unknown, "cancel of an unknown job");
    client_expect(t, client_by_id(cl, NOSA__SERVE__CLIENT_MSG__BODY_STATUS, UNKNOWN_ID),
                  CODE(UNKNOWN_ID), unknown, "status of an unknown job");
    client_expect(t, client_by_id(cl, NOSA__SERVE__CLIENT_MSG__BODY_ATTACH, UNKNOWN_ID),
                  CODE(UNKNOWN_ID), unknown, "attach to an unknown job");
    client_expect(t, client_by_id(cl, NOSA__SERVE__CLIENT_MSG__BODY_CANCEL, 0), CODE(UNKNOWN_ID),
                  "job id 0", "cancel of job 0");
}

/* ---------------------------------------------------------------- the worker link */
/* The next Error the coordinator sends the stranger. */
static void worker_expect(struct tally *t, struct fake_worker *w, int code, const char *needle,
                          const char *what)
{
    int before = w->errors;
    uint64_t end = ch_now_ms() + REPLY_MS;
    while (w->errors == before && ch_now_ms() < end) {
        fw_pump(w);
        ch_sleep_ms(5);
    }
    int got = w->errors > before;
    verdict(t, "worker link", what, got ? w->last_error_code : -1, got ? w->last_error : NULL,
            code, needle);
}

/* A peer that never registered (silent: an UNAUTHORIZED does not make it register) claims
 * the running jobs: its tokens and ends must be refused and reach no client. */
static void bad_worker(struct tally *t, struct ch_env *e, const uint64_t *live, int n)
{
    struct fake_worker rogue;
    if (fw_open(e, &rogue, "bad-input-stranger", 1, 64) != 0) {
        verdict(t, "worker link", "a socket for the stranger", -1, NULL, 0, "");
        return;
    }
    rogue.silent = 1;
    Nosa__Serve__Heartbeat h = NOSA__SERVE__HEARTBEAT__INIT;
    Nosa__Serve__WorkerMsg m = NOSA__SERVE__WORKER_MSG__INIT;
    m.body_case = NOSA__SERVE__WORKER_MSG__BODY_HEARTBEAT;
    m.heartbeat = &h;
    fw_send(&rogue, &m, 0);
    worker_expect(t, &rogue, CODE(UNAUTHORIZED), "not a registered worker",
                  "a heartbeat from an unknown peer");
    for (int i = 0; i < n && i < FW_MAX_JOBS; i++)
        rogue.jobs[rogue.n_jobs++] = (struct fw_job){.id = live[i], .max_tokens = 1u << 20};
    rogue.silent = 0; /* fw_emit sends nothing for a silent worker */
    fw_emit(&rogue, 2); /* one TokensBatch: 2 tokens of every running job */
    rogue.silent = 1;
    worker_expect(t, &rogue, CODE(UNAUTHORIZED), "not a registered worker",
                  "tokens of running jobs from an unknown peer");
    if (n > 0) {
        fw_send_finished(&rogue, live[0], NOSA__SERVE__FINISH_REASON__FINISH_LENGTH, 2);
        worker_expect(t, &rogue, CODE(UNAUTHORIZED), "not a registered worker",
                      "the end of a running job from an unknown peer");
    }
    fw_send_finished(&rogue, 0, NOSA__SERVE__FINISH_REASON__FINISH_LENGTH, 2);
    worker_expect(t, &rogue, CODE(BAD_MESSAGE), "job id 0", "JobFinished of job 0");

    fw_send_raw(&rogue, "\x0a\xff\xff", 3);
    worker_expect(t, &rogue, CODE(BAD_MESSAGE), "undecodable", "garbage bytes");
    size_t big_len = NOSA_MSG_MAX_BYTES + 1;
    char *big = calloc(1, big_len);
    if (big && fw_send_raw(&rogue, big, big_len) == 0)
        worker_expect(t, &rogue, CODE(TOO_LARGE), "exceeds", "a frame over the message limit");
    free(big);
    m.version = 5;
    fw_send(&rogue, &m, 1);
    worker_expect(t, &rogue, CODE(BAD_VERSION), "version 5", "wrong version");
    Nosa__Serve__Register reg = NOSA__SERVE__REGISTER__INIT;
    reg.worker_name = rogue.name;
    reg.block_size = 16;
    reg.max_context = 64; /* max_seqs 0 */
    Nosa__Serve__WorkerMsg rm = NOSA__SERVE__WORKER_MSG__INIT;
    rm.body_case = NOSA__SERVE__WORKER_MSG__BODY_REGISTER;
    rm.register_ = &reg;
    fw_send(&rogue, &rm, 0);
    worker_expect(t, &rogue, CODE(BAD_MESSAGE), "max_seqs (0)", "a Register with 0 slots");
    if (rogue.assigns || rogue.acks)
        verdict(t, "worker link", "the stranger was acked or given a job", -1, NULL, 0, "");
    fw_close(&rogue);
}

/* ---------------------------------------------------------------- the kv-host */
static void kvh_expect(struct tally *t, Nosa__Kvh__KvhReply *rep, Nosa__ErrorCode code,
                       const char *needle, const char *what)
{
    char why[512] = "";
    t->checked++;
    if (kvh_raw_error_is(rep, code, needle, why, sizeof why) == 0) return;
    t->failed++;
    fprintf(stderr, "bad-input: kv-host: %s: %s\n", what, why);
}

static void bad_kvhost_frames(struct tally *t, void *ctx, const char *endpoint)
{
    char err[256];
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    if (!sock || nosa_msg_socket_defaults(sock, REPLY_MS, err, sizeof err) != 0 ||
        zmq_connect(sock, endpoint) != 0) {
        verdict(t, "kv-host", "a raw socket", -1, NULL, 0, "");
        if (sock) zmq_close(sock);
        return;
    }
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34, 0x00};
    kvh_expect(t, kvh_raw_call(sock, garbage, sizeof garbage), CODE(BAD_MESSAGE), "undecodable",
               "garbage bytes");
    Nosa__Kvh__KvhRequest req = NOSA__KVH__KVH_REQUEST__INIT;
    Nosa__Kvh__StatsRequest stats = NOSA__KVH__STATS_REQUEST__INIT;
    req.version = 7;
    req.body_case = NOSA__KVH__KVH_REQUEST__BODY_STATS;
    req.stats = &stats;
    kvh_expect(t, kvh_raw_msg_call(sock, &req), CODE(BAD_VERSION), "version 7", "wrong version");
    req.version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    req.body_case = NOSA__KVH__KVH_REQUEST__BODY__NOT_SET;
    kvh_expect(t, kvh_raw_msg_call(sock, &req), CODE(BAD_MESSAGE), "no body", "no body");
    uint8_t *huge = calloc(1, KVH_MAX_REQUEST_BYTES + 1);
    if (huge)
        kvh_expect(t, kvh_raw_call(sock, huge, KVH_MAX_REQUEST_BYTES + 1), CODE(TOO_LARGE),
                   "exceeds the limit", "a frame over the request limit");
    free(huge);
    zmq_close(sock);
}

/* Requests the client library sends as asked; the kv-host must refuse them whole. */
static void bad_kvhost_requests(struct tally *t, const char *endpoint, const uint64_t *live,
                                int n)
{
    char err[512] = "", unknown[32];
    snprintf(unknown, sizeof unknown, "%" PRIu64, UNKNOWN_ID);
    struct kvh_client_options opts = {.timeout_ms = REPLY_MS, .client_name = "bad-input"};
    struct kvh_client *c = NULL;
    if (kvh_client_connect(endpoint, &opts, &c, err, sizeof err) != 0) {
        verdict(t, "kv-host", "connect", -1, NULL, 0, err);
        return;
    }
    /* A running job's sequence with an unknown one: the free is refused, nothing freed. */
    uint64_t ids[2] = {n > 0 ? live[0] : UNKNOWN_ID + 1, UNKNOWN_ID};
    uint64_t freed = 0;
    int rc = kvh_client_free(c, ids, 2, &freed, err, sizeof err);
    verdict(t, "kv-host", "a free naming a running job and an unknown sequence", rc, err,
            -ENOENT, unknown);
    static uint32_t groups[KVH_MAX_SEQS_PER_REQUEST + 1], first[KVH_MAX_SEQS_PER_REQUEST + 1];
    uint32_t n_groups = 0;
    rc = kvh_client_table(c, UNKNOWN_ID, groups, 8, &n_groups, err, sizeof err);
    verdict(t, "kv-host", "the table of an unknown sequence", rc, err, -ENOENT, unknown);
    struct kvh_stats st;
    if (kvh_client_stats(c, &st, err, sizeof err) == 0) {
        struct kvh_seq_alloc too_big = {UNKNOWN_ID, (uint32_t)st.n_groups + 1};
        rc = kvh_client_alloc(c, &too_big, 1, first, groups, err, sizeof err);
        verdict(t, "kv-host", "an alloc larger than the arena", rc, err, -ENOSPC,
                "out of space");
    } else {
        verdict(t, "kv-host", "stats", -1, NULL, 0, err);
    }
    struct kvh_seq_alloc dup[2] = {{UNKNOWN_ID, 1}, {UNKNOWN_ID, 1}};
    rc = kvh_client_alloc(c, dup, 2, first, groups, err, sizeof err);
    verdict(t, "kv-host", "an alloc naming one sequence twice", rc, err, -EPROTO, unknown);
    static struct kvh_seq_alloc many[KVH_MAX_SEQS_PER_REQUEST + 1];
    for (uint32_t i = 0; i <= KVH_MAX_SEQS_PER_REQUEST; i++)
        many[i] = (struct kvh_seq_alloc){UNKNOWN_ID + i, 0};
    rc = kvh_client_alloc(c, many, KVH_MAX_SEQS_PER_REQUEST + 1, first, groups, err, sizeof err);
    verdict(t, "kv-host", "an alloc of too many sequences", rc, err, -E2BIG, "4096");
    kvh_client_close(c);
}

int bad_input_send(const struct nh_node *node, const uint64_t *live_jobs, int n, int *checked)
{
    struct tally t = {0};
    struct ch_env e;
    if (ch_env_attach(&e, node->workers_ep, node->clients_ep) != 0) return *checked = 0, 1;
    void *cl = cl_open(&e);
    if (cl) {
        bad_client(&t, cl);
        zmq_close(cl);
    } else {
        verdict(&t, "client link", "a client socket", -1, NULL, 0, "");
    }
    bad_worker(&t, &e, live_jobs, n);
    bad_kvhost_frames(&t, e.ctx, node->kvhost_ep);
    bad_kvhost_requests(&t, node->kvhost_ep, live_jobs, n);
    zmq_ctx_term(e.ctx);
    *checked = t.checked;
    return t.failed;
}
