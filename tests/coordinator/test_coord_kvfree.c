/* test_coord_kvfree.c: a nosa-coordinator with a kv-host link (--kvhost, real nosa-kvhost)
 * frees a job's kv-host sequence after the job's JobFinished, so a worker that dies between
 * sending JobFinished and freeing leaks no arena groups. The worker is a fake one (coord_harness)
 * that, like nosa-worker, allocates the job's sequence (the test does it for it) but never
 * frees it. A sequence the kv-host does not know (already freed) is not an error. A free that
 * waits for a kv-host that does not answer (stopped) is journaled: a coordinator killed and
 * restarted meanwhile sends it once the kv-host answers again. A job's place is journaled with
 * its kv-host's endpoint: a job mid-prefill whose worker is lost with the coordinator moves,
 * after the restart, to a worker of the same kv-host with its prefill progress. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include "coord_harness.h"
#include "kvh_client.h"
#include "node_harness.h"
#include "test_util.h"

/* 1 when the kv-host holds a table for seq, 0 when it does not know it, -1 on an error. */
static int has_table(struct kvh_client *kc, uint64_t seq)
{
    uint32_t groups[16], n = 0;
    char err[256];
    int rc = kvh_client_table(kc, seq, groups, 16, &n, err, sizeof err);
    if (rc == -ENOENT) return 0;
    return rc == 0 ? 1 : -1;
}

/* Pumps w (heartbeats every 50 ms) until it has job id or timeout_ms passes. */
static int wait_assigned(struct fake_worker *w, uint64_t id, unsigned timeout_ms)
{
    uint64_t end = ch_now_ms() + timeout_ms, next_hb = 0;
    while (!fw_job(w, id) && ch_now_ms() < end) {
        fw_pump(w);
        if (ch_now_ms() >= next_hb) {
            fw_heartbeat(w);
            next_hb = ch_now_ms() + 50;
        }
        ch_sleep_ms(5);
    }
    return fw_job(w, id) != NULL;
}

/* Starts a job on the fake worker w, which allocates `groups` groups for it (0: none). */
static uint64_t start_job(struct fake_worker *w, void *cl, struct kvh_client *kc,
                          uint32_t groups, const char *what)
{
    Nosa__Serve__ClientReply *r = cl_submit(cl, what, 5, 0);
    REQUIRE(r && r->submitted, "%s: submit", what);
    uint64_t id = r->submitted->job_id;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    REQUIRE(wait_assigned(w, id, 3000), "%s: job %llu not assigned", what,
            (unsigned long long)id);
    char err[256];
    if (groups) {
        struct kvh_seq_alloc a = {.seq_id = id, .n_groups = groups};
        uint32_t first = 0, got[8];
        REQUIRE(kvh_client_alloc(kc, &a, 1, &first, got, err, sizeof err) == 0,
                "%s: alloc: %s", what, err);
        CHECK(has_table(kc, id) == 1, "%s: the allocated sequence has no table", what);
    }
    return id;
}

/* Waits (timeout_ms, pumping w unless NULL) until the kv-host no longer holds job id's
 * sequence. */
static void wait_freed(struct fake_worker *w, struct kvh_client *kc, uint64_t id,
                       unsigned timeout_ms, const char *what)
{
    uint64_t end = ch_now_ms() + timeout_ms;
    while (has_table(kc, id) != 0 && ch_now_ms() < end) {
        if (w) fw_pump(w);
        ch_sleep_ms(5);
    }
    CHECK(has_table(kc, id) == 0, "%s: job %llu's sequence still in the kv-host after its end",
          what, (unsigned long long)id);
}

/* One job whose sequence must be gone from the kv-host after its JobFinished. */
static void run_job(struct fake_worker *w, void *cl, struct kvh_client *kc,
                    uint32_t groups, const char *what)
{
    uint64_t id = start_job(w, cl, kc, groups, what);
    fw_emit(w, 100); /* every token and JobFinished; the fake worker frees nothing */
    wait_freed(w, kc, id, 3000, what);
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2, "usage: test_coord_kvfree BIN_DIR");
    static struct nh_node node; /* static: the atexit cleanup runs after main returns */
    static const char *const needed[] = {"nosa-kvhost", "nosa-coordinator", NULL};
    int rc = nh_node_init_needing(&node, "coord_kvfree", argv[1], "tiny", 60, needed);
    if (rc == 77) return TEST_SKIP_EXIT;
    REQUIRE(rc == 0, "harness setup failed");
    REQUIRE(nh_start_kvhost(&node, 0, NULL) >= 0, "kv-host start");
    REQUIRE(nh_start_coordinator(&node, NULL, 0) >= 0, "coordinator start (with --kvhost)");

    struct ch_env e;
    REQUIRE(ch_env_attach(&e, node.workers_ep, node.clients_ep) == 0, "coordinator links");
    struct fake_worker w;
    REQUIRE(fw_open(&e, &w, "kvfree", 2, 64) == 0 && fw_register(&w) == 0, "worker registers");
    void *cl = cl_open(&e);
    REQUIRE(cl, "client socket");
    struct kvh_client *kc = NULL;
    char err[256];
    REQUIRE(kvh_client_connect(node.kvhost_ep, NULL, &kc, err, sizeof err) == 0, "%s", err);

    run_job(&w, cl, kc, 2, "a job with 2 groups");
    run_job(&w, cl, kc, 0, "a job without a sequence"); /* UNKNOWN_ID: fine */

    const char *what = "a job ended while the kv-host is stopped";
    uint64_t id = start_job(&w, cl, kc, 2, what);
    /* The job ends once the coordinator knows the kv-host down: it queues the free without
     * asking (a request sent to the stopped kv-host would still be served when it goes on). */
    REQUIRE(nh_signal(&node, "kvh", SIGSTOP) == 0, "stop the kv-host");
    CHECK(nh_log_wait(&node, "coordinator", "its frees wait", 5000) == 0,
          "the coordinator does not see the kv-host down");
    fw_emit(&w, 100);
    char line[128];
    snprintf(line, sizeof line, "job %llu: its sequence's free waits for kv-host",
             (unsigned long long)id);
    CHECK(nh_log_wait(&node, "coordinator", line, 5000) == 0, "%s: no free queued", what);
    REQUIRE(nh_signal(&node, "coordinator", SIGKILL) == 0 &&
                nh_wait_exit(&node, "coordinator", 5000) == 1,
            "kill the coordinator");
    REQUIRE(nh_start_coordinator(&node, NULL, 0) >= 0, "coordinator restart");
    CHECK(nh_log_wait(&node, "coordinator", "1 frees queued for kv-host", 5000) == 0,
          "%s: the restarted coordinator did not read the queued free back", what);
    REQUIRE(nh_signal(&node, "kvh", SIGCONT) == 0, "continue the kv-host");
    /* The worker stays silent: one that registered again would send the job's end again,
     * and that end would free the sequence without the journal. */
    wait_freed(NULL, kc, id, 8000, what); /* the coordinator asks again within 2 s */
    struct kvh_stats st;
    CHECK(kvh_client_stats(kc, &st, err, sizeof err) == 0 && st.free_groups == st.n_groups,
          "arena not empty after the jobs: %llu of %llu groups free",
          (unsigned long long)st.free_groups, (unsigned long long)st.n_groups);

    /* Mid-prefill on p1 (this kv-host), the coordinator killed, p1 lost: after the restart
     * the job moves to p2 (the same kv-host, as its journaled place says) with its progress;
     * a place not known would have made it start over. */
    struct fake_worker p1, p2;
    REQUIRE(fw_open(&e, &p1, "p1", 1, 64) == 0, "p1 socket");
    p1.kvhost = node.kvhost_ep;
    REQUIRE(fw_register(&p1) == 0, "p1 registers");
    uint64_t pid = start_job(&p1, cl, kc, 0, "a prompt of more than one block");
    fw_progress(&p1, pid, 16);
    ch_sleep_ms(100);
    REQUIRE(nh_signal(&node, "coordinator", SIGKILL) == 0 &&
                nh_wait_exit(&node, "coordinator", 5000) == 1,
            "kill the coordinator (mid-prefill)");
    REQUIRE(nh_start_coordinator(&node, NULL, 0) >= 0, "coordinator restart (mid-prefill)");
    REQUIRE(fw_open(&e, &p2, "p2", 1, 64) == 0, "p2 socket");
    p2.kvhost = node.kvhost_ep;
    REQUIRE(fw_register(&p2) == 0, "p2 registers");
    CHECK(wait_assigned(&p2, pid, 3 * 3000 + 2000), "job %llu not moved to p2 after the restart",
          (unsigned long long)pid);
    const struct fw_job *pj = fw_job(&p2, pid);
    CHECK(pj && pj->assigned_generated == 0 && pj->assigned_prompt_done == 16,
          "moved mid-prefill after the restart with prompt_done %u (want 16)",
          pj ? pj->assigned_prompt_done : 0);
    fw_emit(&p2, 100);
    wait_freed(&p2, kc, pid, 3000, "the job moved mid-prefill");
    fw_close(&p1);
    fw_close(&p2);

    kvh_client_close(kc);
    zmq_close(cl);
    fw_close(&w);
    zmq_ctx_term(e.ctx);
    CHECK(nh_stop_all(&node, 3000) == 0, "a process needed SIGKILL");
    CHECK(nh_leaks(&node) == 0, "leaks");
    nh_node_free(&node);
    return test_report("coord_kvfree");
}
