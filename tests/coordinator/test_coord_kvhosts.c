/* test_coord_kvhosts.c: a nosa-coordinator following two real nosa-kvhost processes, A and B
 * (as on a machine with two NUMA nodes: --kvhost twice), with fake workers (coord_harness)
 * registered on each (Register.kvhost_endpoint). A fake worker allocates nothing: the test
 * allocates in the worker's kv-host what nosa-worker would have, and reads the tables there.
 *
 * - A job no registered worker can ever take (its groups exceed both arenas) waits while no
 *   worker is registered, ends with an error saying the sizes when one registers, and is
 *   refused at submit from then on.
 * - Each worker is admitted against its own kv-host's arena: with A nearly full, a job goes
 *   to B's worker though A's has more free slots; with A empty again, to A's.
 * - A finished job's sequence is freed in the kv-host that holds it, also when that kv-host
 *   did not answer at the job's end (stopped: the free waits for its next answer).
 * - A job whose worker dies moves to a live worker of the same kv-host (the table stays for
 *   the resume), even when another kv-host's worker has more free slots; when only B's
 *   worker is alive, it moves there as a fresh start (Assign.generated = every token so far)
 *   and its sequence in A is freed.
 * - Status lists both arenas and each worker's kv-host; a kv-host only a worker names
 *   (no --kvhost) is followed too; a prompt longer than every registered worker's context is
 *   refused while none is alive. Both arenas are empty at the end. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "coord_harness.h"
#include "kvh_client.h"
#include "node_harness.h"
#include "test_util.h"

#define HB_TIMEOUT_MS 400
#define FILLER_SEQ 1000000u
#define MAX_GROUPS 65536

static struct ch_env g_e;
static struct fake_worker *g_ws[4];
static int g_nws;

/* Pumps every worker, heartbeating the ones not silent. */
static void pump_all(void)
{
    for (int i = 0; i < g_nws; i++) {
        fw_pump(g_ws[i]);
        fw_heartbeat(g_ws[i]);
    }
}

static void pump_for(unsigned ms)
{
    uint64_t end = ch_now_ms() + ms;
    while (ch_now_ms() < end) {
        pump_all();
        ch_sleep_ms(20);
    }
}

/* The length of seq's table in the kv-host (an alloc of 0 groups reports it: 0 when the
 * kv-host does not know seq), or -1 on an error. */
static long table_len(struct kvh_client *kc, uint64_t seq)
{
    struct kvh_seq_alloc probe = {.seq_id = seq, .n_groups = 0};
    uint32_t len = 0, none;
    char err[256];
    if (kvh_client_alloc(kc, &probe, 1, &len, &none, err, sizeof err) != 0) {
        fprintf(stderr, "table of %llu: %s\n", (unsigned long long)seq, err);
        return -1;
    }
    return len;
}

/* Allocates n groups for seq, as the worker running it would. */
static void alloc_for(struct kvh_client *kc, uint64_t seq, uint32_t n)
{
    static uint32_t groups[MAX_GROUPS];
    struct kvh_seq_alloc a = {.seq_id = seq, .n_groups = n};
    uint32_t first;
    char err[256];
    REQUIRE(n <= MAX_GROUPS && kvh_client_alloc(kc, &a, 1, &first, groups, err, sizeof err) == 0,
            "alloc %u groups for %llu: %s", n, (unsigned long long)seq, err);
}

static uint64_t free_groups(struct kvh_client *kc, uint64_t *n_groups)
{
    struct kvh_stats st;
    char err[256];
    REQUIRE(kvh_client_stats(kc, &st, err, sizeof err) == 0, "stats: %s", err);
    if (n_groups) *n_groups = st.n_groups;
    return st.free_groups;
}

static Nosa__Serve__ClientReply *status(void *cl)
{
    Nosa__Serve__StatusRequest sq = NOSA__SERVE__STATUS_REQUEST__INIT;
    Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
    m.request_id = 5;
    m.body_case = NOSA__SERVE__CLIENT_MSG__BODY_STATUS;
    m.status = &sq;
    Nosa__Serve__ClientReply *r = cl_send(cl, &m, 0) ? NULL : cl_recv(cl, 3000);
    REQUIRE(r && r->status, "no StatusReply");
    return r;
}

static const Nosa__Serve__ArenaStatus *arena_of(const Nosa__Serve__StatusReply *s,
                                                const char *kvhost)
{
    for (size_t i = 0; i < s->n_arenas; i++)
        if (strcmp(s->arenas[i]->kvhost, kvhost) == 0) return s->arenas[i];
    return NULL;
}

/* Waits (pumping the workers) until the coordinator says kvhost answers (up) with `free`
 * groups free, or (up 0) that it does not answer; 1 then, 0 after 5 s (a kv-host slow to
 * answer is asked again after 2 s). */
static int wait_arena(void *cl, const char *kvhost, int up, uint64_t free)
{
    uint64_t end = ch_now_ms() + 5000;
    for (;;) {
        Nosa__Serve__ClientReply *r = status(cl);
        const Nosa__Serve__ArenaStatus *a = arena_of(r->status, kvhost);
        int ok = a && (int)a->up == up && (!up || a->free_groups == free);
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (ok) return 1;
        if (ch_now_ms() >= end) return 0;
        pump_for(50);
    }
}

static uint64_t submit(void *cl, const char *prompt, uint32_t max_tokens, const char *what)
{
    Nosa__Serve__ClientReply *r = cl_submit(cl, prompt, max_tokens, 0);
    REQUIRE(r && r->submitted, "%s: submit refused: %s", what,
            r && r->error ? r->error->message : "no reply");
    uint64_t id = r->submitted->job_id;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return id;
}

/* The fake worker that got job id within 3 s, or NULL. */
static struct fake_worker *placed(uint64_t id)
{
    uint64_t end = ch_now_ms() + 3000;
    while (ch_now_ms() < end) {
        pump_all();
        for (int i = 0; i < g_nws; i++)
            if (fw_job(g_ws[i], id)) return g_ws[i];
        ch_sleep_ms(5);
    }
    return NULL;
}

/* The job's state, error and token count in the coordinator. */
static void job_state(void *cl, uint64_t id, char *state, size_t cap, char *error,
                      size_t errcap, size_t *n_tokens)
{
    Nosa__Serve__StatusRequest sq = NOSA__SERVE__STATUS_REQUEST__INIT;
    sq.job_id = id;
    Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
    m.request_id = 6;
    m.body_case = NOSA__SERVE__CLIENT_MSG__BODY_STATUS;
    m.status = &sq;
    Nosa__Serve__ClientReply *r = cl_send(cl, &m, 0) ? NULL : cl_recv(cl, 3000);
    REQUIRE(r && r->status && r->status->job, "no status of job %llu", (unsigned long long)id);
    const Nosa__Serve__JobStatus *j = r->status->job;
    snprintf(state, cap, "%s", j->state);
    snprintf(error, errcap, "%s", j->error && j->error->message ? j->error->message : "");
    *n_tokens = j->n_tokens;
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* Waits until the coordinator has n tokens of job id. */
static int wait_tokens(void *cl, uint64_t id, size_t n)
{
    char state[32], error[512];
    size_t have = 0;
    uint64_t end = ch_now_ms() + 3000;
    while (ch_now_ms() < end) {
        job_state(cl, id, state, sizeof state, error, sizeof error, &have);
        if (have == n) return 1;
        pump_for(10);
    }
    return 0;
}

/* Waits until worker w has job id, pumping the others. */
static int wait_moved(struct fake_worker *w, uint64_t id)
{
    uint64_t end = ch_now_ms() + 3 * HB_TIMEOUT_MS + 2000;
    while (ch_now_ms() < end && !fw_job(w, id)) pump_for(10);
    return fw_job(w, id) != NULL;
}

/* Waits until kv-host kc has no table for seq (5 s: the free may wait for the kv-host's next
 * answer to the coordinator). */
static int wait_freed(struct kvh_client *kc, uint64_t seq)
{
    uint64_t end = ch_now_ms() + 5000;
    while (table_len(kc, seq) != 0 && ch_now_ms() < end) pump_for(10);
    return table_len(kc, seq) == 0;
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2, "usage: test_coord_kvhosts BIN_DIR");
    static struct nh_node node; /* static: the atexit cleanup runs after main returns */
    static const char *const needed[] = {"nosa-kvhost", "nosa-coordinator", NULL};
    int rc = nh_node_init_needing(&node, "coord_kvhosts", argv[1], "tiny", 90, needed);
    if (rc == 77) return TEST_SKIP_EXIT;
    REQUIRE(rc == 0, "harness setup failed");
    char ep_a[NH_PATH], ep_b[NH_PATH], ep_c[NH_PATH], hb[16];
    REQUIRE(nh_start_kvhost_extra(&node, "a", "2M", ep_a, sizeof ep_a) >= 0 &&
                nh_start_kvhost_extra(&node, "b", "2M", ep_b, sizeof ep_b) >= 0 &&
                nh_start_kvhost_extra(&node, "c", "2M", ep_c, sizeof ep_c) >= 0,
            "kv-hosts start");
    snprintf(hb, sizeof hb, "%d", HB_TIMEOUT_MS);
    const char *cargv[] = {"nosa-coordinator", "--run-dir", node.run_dir, "--workers",
                           node.workers_ep, "--clients", node.clients_ep, "--kvhost", ep_a,
                           "--kvhost", ep_b, "--journal", node.journal, "--metrics-port", "0",
                           "--heartbeat-timeout-ms", hb, NULL};
    int ci = nh_spawn(&node, "coordinator", NULL, 0, cargv);
    REQUIRE(ci >= 0 && nh_wait_socket(&node, ci, node.clients_ep, 20000) == 0,
            "coordinator start");

    REQUIRE(ch_env_attach(&g_e, node.workers_ep, node.clients_ep) == 0, "coordinator links");
    void *cl = cl_open(&g_e);
    REQUIRE(cl, "client socket");
    struct kvh_client *ka = NULL, *kb = NULL, *kc = NULL;
    char err[256];
    REQUIRE(kvh_client_connect(ep_a, NULL, &ka, err, sizeof err) == 0 &&
                kvh_client_connect(ep_b, NULL, &kb, err, sizeof err) == 0 &&
                kvh_client_connect(ep_c, NULL, &kc, err, sizeof err) == 0,
            "%s", err);
    uint64_t n_a, n_b;
    REQUIRE(free_groups(ka, &n_a) == n_a && free_groups(kb, &n_b) == n_b && n_a == n_b &&
                n_a > 8,
            "two empty arenas of the same size: %llu and %llu groups", (unsigned long long)n_a,
            (unsigned long long)n_b);
    CHECK(wait_arena(cl, ep_a, 1, n_a) && wait_arena(cl, ep_b, 1, n_b),
          "the coordinator does not show both arenas empty");

    /* A job of more groups (16 tokens each) than either arena has: queued while no worker is
     * registered, ended once one is. */
    uint32_t huge = (uint32_t)(n_a + 1) * 16; /* + the prompt's 2 tokens: n_a + 2 groups */
    uint64_t never = submit(cl, "n", huge, "a job larger than the arenas, no worker yet");

    struct fake_worker a1, a2, b1, c1;
    REQUIRE(fw_open(&g_e, &a1, "a1", 4, 100000) == 0 && fw_open(&g_e, &a2, "a2", 2, 4096) == 0 &&
                fw_open(&g_e, &b1, "b1", 3, 4096) == 0 && fw_open(&g_e, &c1, "c1", 1, 4096) == 0,
            "worker sockets");
    a1.kvhost = a2.kvhost = ep_a;
    b1.kvhost = ep_b;
    c1.kvhost = ep_c;
    REQUIRE(fw_register(&a1) == 0 && fw_register(&a2) == 0 && fw_register(&b1) == 0,
            "workers register");
    g_ws[0] = &a1;
    g_ws[1] = &a2;
    g_ws[2] = &b1;
    g_nws = 3;
    char state[32], error[512], refused[512], want[600];
    size_t n_tok = 0;
    uint64_t end = ch_now_ms() + 3000;
    do {
        pump_for(20);
        job_state(cl, never, state, sizeof state, error, sizeof error, &n_tok);
    } while (strcmp(state, "finished") != 0 && ch_now_ms() < end);
    snprintf(refused, sizeof refused, "prompt (2 tokens) + max_tokens (%u) = %u tokens: it "
             "needs %llu groups of 16 tokens, more than the largest arena a worker with that "
             "context uses (%llu groups)", huge, huge + 2, (unsigned long long)n_a + 2,
             (unsigned long long)n_a);
    snprintf(want, sizeof want, "%s: no registered worker can ever take it", refused);
    CHECK(strcmp(state, "finished") == 0 && strcmp(error, want) == 0,
          "the job no worker can take: %s, '%s'\n  want '%s'", state, error, want);
    Nosa__Serve__ClientReply *r = cl_submit(cl, "n", huge, 0);
    CHECK(r && r->error && r->error->code == NOSA__ERROR_CODE__ERROR_REFUSED &&
              strcmp(r->error->message, refused) == 0,
          "the same job at submit: %s", r && r->error ? r->error->message : "not refused");
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);

    /* Status: both arenas, each worker's kv-host. */
    r = status(cl);
    const Nosa__Serve__StatusReply *st = r->status;
    CHECK(st->n_arenas == 2 && arena_of(st, ep_a) && arena_of(st, ep_b) &&
              arena_of(st, ep_a)->groups == n_a && arena_of(st, ep_b)->groups == n_b &&
              st->arena_groups == n_a + n_b,
          "status: %zu arenas, %llu groups in all", st->n_arenas,
          (unsigned long long)st->arena_groups);
    for (size_t i = 0; i < st->n_workers; i++) {
        const Nosa__Serve__WorkerStatus *w = st->workers[i];
        CHECK(strcmp(w->kvhost, w->worker_name[0] == 'a' ? ep_a : ep_b) == 0,
              "worker %s on kv-host '%s'", w->worker_name, w->kvhost);
    }
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* A nearly full: 2 groups left. A job of 3 groups (2 + 40 tokens) goes to B's worker
     * (3 free slots), not to a1 (4). */
    alloc_for(ka, FILLER_SEQ, (uint32_t)n_a - 2);
    CHECK(wait_arena(cl, ep_a, 1, 2), "the coordinator does not see A with 2 groups free");
    uint64_t j1 = submit(cl, "p", 40, "job 1");
    struct fake_worker *w1 = placed(j1);
    CHECK(w1 == &b1, "job 1 (3 groups, A has 2 free) placed on %s, want b1",
          w1 ? w1->name : "nobody");
    alloc_for(kb, j1, 2);
    uint64_t filler = FILLER_SEQ;
    REQUIRE(kvh_client_free(ka, &filler, 1, NULL, err, sizeof err) == 0, "free: %s", err);
    CHECK(wait_arena(cl, ep_a, 1, n_a), "the coordinator does not see A empty again");
    uint64_t j2 = submit(cl, "q", 40, "job 2");
    struct fake_worker *w2 = placed(j2);
    CHECK(w2 == &a1, "job 2 (A empty) placed on %s, want a1 (most free slots)",
          w2 ? w2->name : "nobody");
    alloc_for(ka, j2, 2);

    /* Job 1 ends on b1 while B does not answer (stopped): the free waits for B, which frees
     * it once it answers again. */
    REQUIRE(nh_signal(&node, "kvh-b", SIGSTOP) == 0, "stop kv-host B");
    CHECK(wait_arena(cl, ep_b, 0, 0), "the coordinator does not see B down");
    if (w1) fw_emit(w1, 100);
    pump_for(200);
    REQUIRE(nh_signal(&node, "kvh-b", SIGCONT) == 0, "continue kv-host B");
    CHECK(wait_freed(kb, j1), "job 1's sequence still in B after its end: %ld groups",
          table_len(kb, j1));

    /* a1 dies with 4 tokens of job 2: the job resumes on a2 (A, 2 free slots), not on b1 (3),
     * and keeps its table in A. */
    if (w2 == &a1) {
        fw_emit(&a1, 4);
        CHECK(wait_tokens(cl, j2, 4), "the coordinator does not have job 2's 4 tokens");
        a1.silent = 1;
        CHECK(wait_moved(&a2, j2), "job 2 not moved to a2 (same kv-host)");
        struct fw_job *m = fw_job(&a2, j2);
        CHECK(!fw_job(&b1, j2) && m && m->assigned_generated == 4 && m->generated_ok,
              "job 2 on a2 with %u generated tokens, want 4", m ? m->assigned_generated : 0);
        CHECK(table_len(ka, j2) == 2, "job 2's table in A: %ld groups, want 2 (kept)",
              table_len(ka, j2));

        /* a2 dies too, with 6 tokens in: only b1 (B) is alive: a fresh start there, from the
         * prompt and the 6 tokens; A's sequence is freed. */
        fw_emit(&a2, 2);
        CHECK(wait_tokens(cl, j2, 6), "the coordinator does not have job 2's 6 tokens");
        a2.silent = 1;
        CHECK(wait_moved(&b1, j2), "job 2 not moved to b1 (the other kv-host)");
        m = fw_job(&b1, j2);
        CHECK(m && m->assigned_generated == 6 && m->generated_ok,
              "job 2 on b1 with %u generated tokens, want 6", m ? m->assigned_generated : 0);
        CHECK(wait_freed(ka, j2), "job 2's old sequence in A: %ld groups, want freed",
              table_len(ka, j2));
        alloc_for(kb, j2, 1); /* b1's prefill of 2 + 6 tokens... as the worker would */
        fw_emit(&b1, 100);
        CHECK(wait_freed(kb, j2), "job 2's sequence still in B after its end");
        CHECK(wait_tokens(cl, j2, 40), "job 2 did not end with its 40 tokens");
    }

    /* A kv-host only a worker names is followed too. */
    REQUIRE(fw_register(&c1) == 0, "c1 registers");
    g_ws[g_nws++] = &c1;
    uint64_t n_c;
    CHECK(wait_arena(cl, ep_c, 1, free_groups(kc, &n_c)) && n_c > 0,
          "the coordinator does not follow c1's kv-host");

    /* Nobody alive: a prompt longer than every registered worker's context is refused. */
    b1.silent = c1.silent = 1;
    pump_for(3 * HB_TIMEOUT_MS);
    r = status(cl);
    int alive = 0;
    for (size_t i = 0; i < r->status->n_workers; i++) alive += r->status->workers[i]->alive;
    CHECK(alive == 0 && r->status->n_arenas == 3, "%d workers alive, %zu arenas", alive,
          r->status->n_arenas);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    r = cl_submit(cl, "long", 100000, 0);
    CHECK(r && r->error && strstr(r->error->message, "= 100005 tokens: longer than every "
                                                     "registered worker's max_context (100000)"),
          "a job too long for every worker, none alive: %s",
          r && r->error ? r->error->message : "accepted");
    if (r) protobuf_c_message_free_unpacked(&r->base, NULL);

    CHECK(free_groups(ka, NULL) == n_a && free_groups(kb, NULL) == n_b,
          "arenas not empty at the end: A %llu of %llu free, B %llu of %llu",
          (unsigned long long)free_groups(ka, NULL), (unsigned long long)n_a,
          (unsigned long long)free_groups(kb, NULL), (unsigned long long)n_b);

    kvh_client_close(ka);
    kvh_client_close(kb);
    kvh_client_close(kc);
    zmq_close(cl);
    fw_close(&a1);
    fw_close(&a2);
    fw_close(&b1);
    fw_close(&c1);
    zmq_ctx_term(g_e.ctx);
    /* 10 s: three kv-hosts exit at once, and a sanitizer build on a loaded machine was seen
     * taking over 3 s to exit after its "stopping" line. */
    CHECK(nh_stop_all(&node, 10000) == 0, "a process needed SIGKILL");
    CHECK(nh_leaks(&node) == 0, "leaks");
    nh_node_free(&node);
    return test_report("coord_kvhosts");
}
