/* test_coord_kvfree.c: a nosa-coordinator with a kv-host link (--kvhost, real nosa-kvhost)
 * frees a job's kv-host sequence after the job's JobFinished, so a worker that dies between
 * sending JobFinished and freeing leaks no arena groups. The worker is a fake one (coord_harness)
 * that, like nosa-worker, allocates the job's sequence (the test does it for it) but never
 * frees it. A sequence the kv-host does not know (already freed) is not an error. */
#include <errno.h>
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

/* Runs one job on the fake worker w, which allocates `groups` groups for it first (0: none);
 * the job's sequence must be gone from the kv-host after its JobFinished. */
static void run_job(struct fake_worker *w, void *cl, struct kvh_client *kc,
                    uint32_t groups, const char *what)
{
    Nosa__Serve__ClientReply *r = cl_submit(cl, what, 5, 0);
    REQUIRE(r && r->submitted, "%s: submit", what);
    uint64_t id = r->submitted->job_id;
    protobuf_c_message_free_unpacked(&r->base, NULL);
    uint64_t end = ch_now_ms() + 3000;
    while (!fw_job(w, id) && ch_now_ms() < end) {
        fw_pump(w);
        fw_heartbeat(w);
        ch_sleep_ms(5);
    }
    REQUIRE(fw_job(w, id), "%s: job %llu not assigned", what, (unsigned long long)id);
    char err[256];
    if (groups) {
        struct kvh_seq_alloc a = {.seq_id = id, .n_groups = groups};
        uint32_t first = 0, got[8];
        REQUIRE(kvh_client_alloc(kc, &a, 1, &first, got, err, sizeof err) == 0,
                "%s: alloc: %s", what, err);
        CHECK(has_table(kc, id) == 1, "%s: the allocated sequence has no table", what);
    }
    fw_emit(w, 100); /* every token and JobFinished; the fake worker frees nothing */
    end = ch_now_ms() + 3000;
    while (has_table(kc, id) != 0 && ch_now_ms() < end) {
        fw_pump(w);
        ch_sleep_ms(5);
    }
    CHECK(has_table(kc, id) == 0, "%s: job %llu's sequence still in the kv-host after its end",
          what, (unsigned long long)id);
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
    struct kvh_stats st;
    CHECK(kvh_client_stats(kc, &st, err, sizeof err) == 0 && st.free_groups == st.n_groups,
          "arena not empty after both jobs: %llu of %llu groups free",
          (unsigned long long)st.free_groups, (unsigned long long)st.n_groups);

    kvh_client_close(kc);
    zmq_close(cl);
    fw_close(&w);
    zmq_ctx_term(e.ctx);
    CHECK(nh_stop_all(&node, 3000) == 0, "a process needed SIGKILL");
    CHECK(nh_leaks(&node) == 0, "leaks");
    nh_node_free(&node);
    return test_report("coord_kvfree");
}
