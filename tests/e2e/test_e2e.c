/* test_e2e.c: the whole system as real processes: nosa-kvhost, two CPU nosa-workers and
 * nosa-coordinator in a private run directory; 20 jobs of mixed prompt and output lengths
 * (greedy and seeded top-p) submitted at once through `nosa --json submit`; every job's tokens
 * must equal nosa-generate's (the single-process reference) for the same prompt and seed.
 * The coordinator's /metrics: both workers' token totals add up to the jobs' tokens, and
 * while two long jobs run, each worker moves KV blocks per step, hits its cache and times its
 * steps, the arena's gauges agree with each other and the node's tokens/s is > 0; `nosa status`
 * (--json and text) shows the same then: each worker's batch, the arena in use, tokens/s.
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

/* The value of the first sample of family (labels or none) in a /metrics answer, or NAN. The
 * node has one kv-host, so an arena family has one sample. */
static double first_metric(const char *text, const char *family)
{
    size_t n = strlen(family);
    for (const char *p = text ? strstr(text, family) : NULL; p; p = strstr(p + n, family)) {
        if (p[-1] != '\n' || (p[n] != ' ' && p[n] != '{')) continue; /* a longer name */
        const char *v = p[n] == '{' ? strstr(p + n, "} ") : p + n;
        return v ? strtod(v + (p[n] == '{' ? 2 : 1), NULL) : NAN;
    }
    return NAN;
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

/* `nosa [--json] status`: its exit code and output (malloc'd) in *out. */
static int run_status(struct nh_node *node, int json, char **out)
{
    const char *argv[] = {"nosa", "--coordinator", node->clients_ep, "--run-dir", node->run_dir,
                          json ? "--json" : "status", json ? "status" : NULL, NULL};
    return nh_run(node, argv, 5000, out);
}

static double json_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* What `nosa --json status` must show while one long job runs on each worker: both alive
 * with a batch of 1 of their max_seqs (> 1), one arena of groups > 0 with some in use
 * (free < groups), every worker's and the node's tokens_per_s > 0. Returns 1 when it does,
 * else 0 with why in *why. max_seqs[] gets each worker's, groups the arena's. */
static int status_running_ok(const struct nh_node *node, const char *out, double max_seqs[2],
                             double *groups, char *why, size_t whylen)
{
    cJSON *root = out ? cJSON_Parse(out) : NULL;
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(root, "workers");
    const cJSON *as = cJSON_GetObjectItemCaseSensitive(root, "arenas");
    int ok = 0;
    if (cJSON_GetArraySize(ws) != 2 || cJSON_GetArraySize(as) != 1) {
        snprintf(why, whylen, "%d workers and %d arenas, want 2 and 1", cJSON_GetArraySize(ws),
                 cJSON_GetArraySize(as));
        goto done;
    }
    for (int w = 0; w < 2; w++) {
        const cJSON *x = NULL, *it;
        cJSON_ArrayForEach(it, ws) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
            char want[NH_NAME * 2];
            snprintf(want, sizeof want, "%s-%s", g_workers[w], node->tag);
            if (cJSON_IsString(name) && strcmp(name->valuestring, want) == 0) x = it;
        }
        double running = json_num(x, "running"), slots = json_num(x, "max_seqs");
        double tps = json_num(x, "tokens_per_s");
        const cJSON *alive = cJSON_GetObjectItemCaseSensitive(x, "alive");
        if (!x || !cJSON_IsTrue(alive) || running != 1 || !(slots > 1) || !(tps > 0)) {
            snprintf(why, whylen, "%s: listed %s, alive %s, running %g of max_seqs %g "
                     "(want 1 of > 1), tokens_per_s %g (want > 0)", g_workers[w],
                     x ? "yes" : "no", cJSON_IsTrue(alive) ? "yes" : "no", running, slots, tps);
            goto done;
        }
        max_seqs[w] = slots;
    }
    const cJSON *a = cJSON_GetArrayItem(as, 0);
    double g = json_num(a, "groups"), free_g = json_num(a, "free_groups");
    double node_tps = json_num(root, "tokens_per_s");
    if (!(g > 0) || !(free_g >= 0 && free_g < g) || json_num(root, "arena_groups") != g) {
        snprintf(why, whylen, "arena: groups %g, free %g, node arena_groups %g: want groups > 0, "
                 "0 <= free < groups (two jobs hold KV), the node's the same", g, free_g,
                 json_num(root, "arena_groups"));
        goto done;
    }
    if (!(node_tps > 0)) {
        snprintf(why, whylen, "node tokens_per_s %g, want > 0", node_tps);
        goto done;
    }
    *groups = g;
    ok = 1;
done:
    cJSON_Delete(root);
    return ok;
}

/* `nosa status` as text while the two long jobs run (cli_output.c): the worker count, each
 * worker's line with its batch "1/<max_seqs>", the arena line "U of G groups used" with the
 * groups of --json and 0 < U <= G, and the node's "tokens/s: T" with T > 0. */
static void check_status_text(struct nh_node *node, const double max_seqs[2], double groups)
{
    char *out = NULL;
    int rc = run_status(node, 0, &out);
    const char *text = out ? out : "";
    CHECK(rc == 0, "nosa status exit %d: %s", rc, text);
    CHECK(strstr(text, "workers: 2 alive of 2\n") != NULL, "nosa status: no 'workers: 2 alive "
          "of 2' line:\n%s", text);
    for (int w = 0; w < 2; w++) {
        char name[NH_NAME * 2], batch[32];
        snprintf(name, sizeof name, "  %s-%s ", g_workers[w], node->tag);
        snprintf(batch, sizeof batch, " 1/%.0f ", max_seqs[w]);
        const char *line = strstr(text, name);
        const char *eol = line ? strchr(line, '\n') : NULL;
        const char *b = line ? strstr(line, batch) : NULL;
        CHECK(line && b && (!eol || b < eol), "nosa status: no line of %s with batch%s:\n%s",
              name, batch, text);
    }
    const char *arena = strstr(text, "\narena "); /* "arena ipc://...: U of G groups used" */
    const char *counts = arena ? strstr(arena, ": ") : NULL;
    unsigned long long used = 0, total = 0;
    int n = counts ? sscanf(counts, ": %llu of %llu groups used", &used, &total) : 0;
    CHECK(n == 2 && total == (unsigned long long)groups && used > 0 && used <= total,
          "nosa status: arena line: %d fields, %llu of %llu groups used, want 0 < used <= %.0f "
          "(--json's groups):\n%s", n, used, total, groups, text);
    const char *tps = strstr(text, "\ntokens/s: ");
    double t = tps ? strtod(tps + strlen("\ntokens/s: "), NULL) : NAN;
    CHECK(t > 0, "nosa status: no 'tokens/s: T' line with T > 0:\n%s", text);
    free(out);
}

/* nosa --json status, polled while the long jobs run until status_running_ok, then the text
 * form while they still run. */
static void check_status_running(struct nh_node *node)
{
    double max_seqs[2] = {0, 0}, groups = 0;
    char why[512] = "";
    char *out = NULL;
    int ok = 0;
    for (uint64_t end = nh_now_ms() + 10000; !ok && nh_now_ms() < end; nh_sleep_ms(50)) {
        free(out);
        out = NULL;
        ok = run_status(node, 1, &out) == 0 &&
             status_running_ok(node, out, max_seqs, &groups, why, sizeof why);
    }
    CHECK(ok, "nosa --json status while two long jobs run: %s; last:\n%s", why,
          out ? out : "(no output)");
    free(out);
    if (ok) check_status_text(node, max_seqs, groups);
}

/* The per-step gauges of the offload: each worker in nosa mode, decoding a job whose context
 * (past 100 tokens) selects and evicts, moves KV blocks into its pool (blocks and bytes per
 * step > 0) and finds some of the selected ones there (hit rate in (0, 1]). The gauges are
 * of the steps since a worker's last heartbeat (0 once idle), so they are read while two long
 * jobs run, one on each worker (the coordinator places a job on the worker with the most free
 * slots), with the step time, the arena's gauges and the node's tokens/s, and `nosa status`
 * (check_status_running); then the jobs are cancelled (or found finished). */
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
    int seen_step[2] = {0, 0}, seen_arena = 0, seen_tps = 0;
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
            seen_step[w] |=
                worker_metric(node, text, "nosa_worker_step_seconds", g_workers[w]) > 0;
            all &= seen_blocks[w] && seen_bytes[w] && seen_hit[w] && seen_step[w];
        }
        /* One scrape renders the arena's gauges from one answer of its kv-host: the used
         * ratio is exactly (groups - free) / groups, and two jobs hold some groups. */
        double groups = first_metric(text, "nosa_arena_groups");
        double free_g = first_metric(text, "nosa_arena_free_groups");
        double used = first_metric(text, "nosa_arena_used_ratio");
        seen_arena |= groups > 0 && free_g < groups && used > 0 &&
                      fabs(used - (groups - free_g) / groups) < 1e-12;
        seen_tps |= text && strstr(text, "\n# TYPE nosa_tokens_per_second gauge\n") &&
                    first_metric(text, "nosa_tokens_per_second") > 0;
        if (all && seen_arena && seen_tps) break;
    }
    for (int w = 0; w < 2; w++)
        CHECK(seen_blocks[w] && seen_bytes[w] && seen_hit[w] && seen_step[w],
              "%s while decoding a long job: blocks moved per step > 0 %s, bytes > 0 %s, hit "
              "rate in (0,1] %s, step seconds > 0 %s; last /metrics:\n%s",
              g_workers[w], seen_blocks[w] ? "seen" : "never", seen_bytes[w] ? "seen" : "never",
              seen_hit[w] ? "seen" : "never", seen_step[w] ? "seen" : "never",
              text ? text : "(no answer)");
    CHECK(seen_arena, "while two long jobs run: never nosa_arena_groups > 0 with "
          "nosa_arena_free_groups < groups and nosa_arena_used_ratio = (groups - free) / groups "
          "> 0; last /metrics:\n%s", text ? text : "(no answer)");
    CHECK(seen_tps, "while two long jobs run: never a nosa_tokens_per_second gauge > 0; last "
          "/metrics:\n%s", text ? text : "(no answer)");
    free(text);
    check_status_running(node);
    for (int i = 0; i < 2; i++) {
        const char *argv[] = {"nosa", "--coordinator", node->clients_ep, "--run-dir",
                              node->run_dir, "cancel", ids[i], NULL};
        char *out = NULL;
        int rc = nh_run(node, argv, 5000, &out);
        /* Clean-up, not the cancel test (tests/cli, tests/coordinator): on a fast or idle
         * machine a job may have decoded its 3800 tokens during the checks above. */
        int finished = rc == 4 && out && strstr(out, "has already finished");
        CHECK(rc == 0 || finished, "nosa cancel %s (a long job): exit %d: %s", ids[i], rc,
              out ? out : "");
        free(out);
    }
}

static void check_status(struct nh_node *node)
{
    char *out = NULL;
    int rc = run_status(node, 1, &out);
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
