/* test_e2e.c: the whole system as real processes: nosa-kvhost, two CPU nosa-workers and
 * nosa-coordinator in a private run directory; 20 jobs of mixed prompt and output lengths
 * (greedy and seeded top-p) submitted at once through `nosa --json submit`; every job's tokens
 * must equal nosa-generate's (the single-process reference) for the same prompt and seed.
 * The coordinator's /metrics: both workers' token totals add up to the jobs' tokens, and
 * while two long jobs run, each worker moves KV blocks per step and hits its cache.
 * Then every process is stopped with SIGTERM (each must exit 0) and nothing may leak.
 *
 *   test_e2e BIN_DIR        (ctest passes the build's bin directory) */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>

#include "node_harness.h"
#include "test_http.h"
#include "test_util.h"

#define N_JOBS 20

struct e2e_job {
    char prompt[512];
    int max_tokens;
    double temperature, top_p;
    uint64_t seed;
    int proc;
};

/* Prompt lengths around block boundaries of the tiny model (block 8) and well past them. */
static const int g_prompt_len[N_JOBS] = {1,  3,  7,  8,  9,  15, 16,  17,  40,  63,
                                         64, 65, 100, 130, 200, 257, 5, 33, 90, 150};
static const int g_max_tokens[N_JOBS] = {1,  2,  5,  8,  9,  16, 17, 24, 31, 40,
                                         48, 64, 7,  12, 20, 33, 60, 3,  25, 50};

static void make_prompt(char *out, int len, int salt)
{
    static const char *const words[] = {"the ", "cache ", "lives ", "in ", "host ", "memory ",
                                        "and ", "blocks ", "move ", "when ", "selected. "};
    int n = 0;
    for (int w = salt; n < len; w++) {
        const char *word = words[w % 11];
        for (const char *c = word; *c && n < len; c++) out[n++] = *c;
    }
    out[n] = '\0';
}

/* The value of family{worker="<name>-<tag>",backend="cpu"} in a /metrics answer, or NAN. */
static double worker_metric(const struct nh_node *node, const char *text, const char *family,
                            const char *worker)
{
    char key[256];
    snprintf(key, sizeof key, "\n%s{worker=\"%s-%s\",backend=\"cpu\"} ", family, worker,
             node->tag);
    const char *p = text ? strstr(text, key) : NULL;
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

static const char *const g_workers[2] = {"cpu0", "cpu1"};

/* Both workers served jobs: once their heartbeats carry the totals, the coordinator's
 * nosa_worker_tokens_total of each is > 0 and the two add up to every token the jobs got. */
static void check_worker_totals(struct nh_node *node, long generated)
{
    double tokens[2] = {0, 0};
    char *text = NULL;
    for (uint64_t end = nh_now_ms() + 10000; nh_now_ms() < end; nh_sleep_ms(50)) {
        free(text);
        text = test_http_get(node->metrics_port, "/metrics");
        for (int w = 0; w < 2; w++)
            tokens[w] = worker_metric(node, text, "nosa_worker_tokens_total", g_workers[w]);
        if (tokens[0] + tokens[1] == (double)generated) break;
    }
    CHECK(tokens[0] > 0 && tokens[1] > 0 && tokens[0] + tokens[1] == (double)generated,
          "nosa_worker_tokens_total: %g and %g, want both > 0 adding up to the %ld tokens "
          "generated:\n%s", tokens[0], tokens[1], generated, text ? text : "(no answer)");
    free(text);
}

/* The per-step gauges of the offload: each worker in nosa mode, decoding a job whose context
 * (past 100 tokens) selects and evicts, moves KV blocks into its pool (blocks and bytes per
 * step > 0) and finds some of the selected ones there (hit rate in (0, 1]). The gauges are
 * of the steps since a worker's last heartbeat (0 once idle), so they are read while two long
 * jobs run, one on each worker (the coordinator places a job on the worker with the most free
 * slots), which are then cancelled. */
static void check_offload_metrics(struct nh_node *node)
{
    char prompt[512];
    make_prompt(prompt, 200, 3);
    char ids[2][32];
    for (int i = 0; i < 2; i++) {
        const char *argv[] = {"nosa", "--coordinator", node->clients_ep, "--run-dir",
                              node->run_dir, "--json", "submit", "--prompt", prompt,
                              "--max-tokens", "3800", "--ignore-eos", "--no-stream", NULL};
        char *out = NULL;
        int rc = nh_run(node, argv, 5000, &out);
        cJSON *o = rc == 0 && out ? cJSON_Parse(out) : NULL;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "job_id");
        REQUIRE(cJSON_IsNumber(id), "long job %d: nosa submit exit %d: %s", i, rc,
                out ? out : "");
        snprintf(ids[i], sizeof ids[i], "%.0f", id->valuedouble);
        cJSON_Delete(o);
        free(out);
    }
    int seen_blocks[2] = {0, 0}, seen_bytes[2] = {0, 0}, seen_hit[2] = {0, 0};
    char *text = NULL;
    for (uint64_t end = nh_now_ms() + 30000; nh_now_ms() < end; nh_sleep_ms(50)) {
        free(text);
        text = test_http_get(node->metrics_port, "/metrics");
        int all = 1;
        for (int w = 0; w < 2; w++) {
            double hit = worker_metric(node, text, "nosa_worker_cache_hit_rate", g_workers[w]);
            seen_blocks[w] |=
                worker_metric(node, text, "nosa_worker_blocks_moved_per_step", g_workers[w]) > 0;
            seen_bytes[w] |=
                worker_metric(node, text, "nosa_worker_bytes_moved_per_step", g_workers[w]) > 0;
            seen_hit[w] |= hit > 0 && hit <= 1;
            all &= seen_blocks[w] && seen_bytes[w] && seen_hit[w];
        }
        if (all) break;
    }
    for (int w = 0; w < 2; w++)
        CHECK(seen_blocks[w] && seen_bytes[w] && seen_hit[w],
              "%s while decoding a long job: blocks moved per step > 0 %s, bytes > 0 %s, hit "
              "rate in (0,1] %s; last /metrics:\n%s",
              g_workers[w], seen_blocks[w] ? "seen" : "never", seen_bytes[w] ? "seen" : "never",
              seen_hit[w] ? "seen" : "never", text ? text : "(no answer)");
    free(text);
    for (int i = 0; i < 2; i++) {
        const char *argv[] = {"nosa", "--coordinator", node->clients_ep, "--run-dir",
                              node->run_dir, "cancel", ids[i], NULL};
        char *out = NULL;
        int rc = nh_run(node, argv, 5000, &out);
        CHECK(rc == 0, "nosa cancel %s (a long job still running): exit %d: %s", ids[i], rc,
              out ? out : "");
        free(out);
    }
}

static void check_status(struct nh_node *node)
{
    const char *argv[] = {"nosa", "--coordinator", node->clients_ep, "--run-dir", node->run_dir,
                          "--json", "status", NULL};
    char *out = NULL;
    int rc = nh_run(node, argv, 5000, &out);
    CHECK(rc == 0, "nosa --json status exit %d: %s", rc, out ? out : "");
    cJSON *root = out ? cJSON_Parse(out) : NULL;
    const cJSON *done = cJSON_GetObjectItemCaseSensitive(root, "completed");
    CHECK(cJSON_IsNumber(done) && done->valuedouble == N_JOBS,
          "status says completed %g, want %d: %s", cJSON_IsNumber(done) ? done->valuedouble : -1.0,
          N_JOBS, out ? out : "");
    cJSON_Delete(root);
    free(out);
}

int main(int argc, char **argv)
{
    static struct nh_node node; /* static: the atexit cleanup runs after main returns */
    int rc = nh_node_init(&node, "e2e", argc > 1 ? argv[1] : NULL, "tiny", 170);
    if (rc == 77) return TEST_SKIP_EXIT;
    REQUIRE(rc == 0, "harness setup failed");

    node.metrics_port = test_free_port();
    REQUIRE(node.metrics_port > 0, "no free port for the coordinator's metrics");
    int ok = nh_start_kvhost(&node, 0, NULL) >= 0 && nh_start_coordinator(&node, NULL, 0) >= 0 &&
             nh_start_worker(&node, "cpu0", NULL) >= 0 &&
             nh_start_worker(&node, "cpu1", NULL) >= 0 && nh_wait_workers(&node, 2, 30000) == 0;
    CHECK(ok, "the node did not start");
    if (!ok) {
        nh_dump_logs(&node, 20);
        return test_report("e2e");
    }

    struct e2e_job jobs[N_JOBS];
    for (int i = 0; i < N_JOBS; i++) {
        struct e2e_job *j = &jobs[i];
        make_prompt(j->prompt, g_prompt_len[i], i);
        j->max_tokens = g_max_tokens[i];
        j->temperature = (i % 2) ? 0.8 : 0.0; /* odd jobs: seeded top-p sampling */
        j->top_p = (i % 2) ? 0.9 : 1.0;
        j->seed = 1000 + (uint64_t)i;
        char name[32];
        snprintf(name, sizeof name, "job%d", i);
        j->proc = nh_submit(&node, name, j->prompt, j->max_tokens, j->temperature, j->top_p,
                            j->seed);
        REQUIRE(j->proc >= 0, "cannot start nosa submit");
    }

    uint64_t ids[N_JOBS] = {0};
    long generated = 0;
    for (int i = 0; i < N_JOBS; i++) {
        struct e2e_job *j = &jobs[i];
        static struct nh_job got, want;
        int wrc = nh_job_wait(&node, j->proc, 60000, &got);
        CHECK(wrc == 0 && got.exit_status == 0 && got.done,
              "job %d: nosa submit exit %d, done %d, error '%s'", i, got.exit_status, got.done,
              got.error);
        CHECK(strcmp(got.reason, "length") == 0 || strcmp(got.reason, "eos") == 0,
              "job %d: finish reason '%s' (error '%s')", i, got.reason, got.error);
        CHECK(strcmp(got.reason, "length") != 0 || got.n_tokens == j->max_tokens,
              "job %d: %d tokens, max_tokens %d", i, got.n_tokens, j->max_tokens);
        ids[i] = got.job_id;
        generated += got.n_tokens;
        for (int k = 0; k < i; k++)
            CHECK(ids[k] != ids[i] || ids[i] == 0, "jobs %d and %d share id %llu", k, i,
                  (unsigned long long)ids[i]);
        int grc = nh_generate(&node, j->prompt, j->max_tokens, j->temperature, j->top_p,
                              j->seed, &want);
        CHECK(grc == 0, "job %d: nosa-generate failed", i);
        int same = grc == 0 && got.n_tokens == want.n_tokens &&
                   memcmp(got.tokens, want.tokens, sizeof(int32_t) * (size_t)got.n_tokens) == 0;
        CHECK(same, "job %d (prompt %d bytes, %s): served %d tokens != reference %d tokens "
              "(first: %d vs %d)", i, g_prompt_len[i], j->temperature > 0 ? "top-p" : "greedy",
              got.n_tokens, want.n_tokens, got.n_tokens ? got.tokens[0] : -1,
              want.n_tokens ? want.tokens[0] : -1);
    }
    check_status(&node);
    check_worker_totals(&node, generated);
    check_offload_metrics(&node);

    /* Clean shutdown: every daemon exits 0 on SIGTERM, none needs SIGKILL. */
    int killed = nh_stop_all(&node, 10000);
    CHECK(killed == 0, "%d processes ignored SIGTERM", killed);
    for (int i = 0; i < node.n_procs; i++) {
        const struct nh_proc *p = &node.procs[i];
        if (strcmp(p->name, "run") == 0) continue;
        CHECK(WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0,
              "%s exited with status %d (signal %d) after SIGTERM; see %s", p->name,
              WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1,
              WIFSIGNALED(p->status) ? WTERMSIG(p->status) : 0, p->log);
    }
    CHECK(nh_leaks(&node) == 0, "leaked processes or /dev/shm objects");
    if (g_test_checks_failed) nh_dump_logs(&node, 15);
    return test_report("e2e");
}
