/* test_worker.c: a real nosa-worker process against a real nosa-kvhost, with the test
 * playing the coordinator (fake_coord: a ROUTER at the worker endpoint). Checks:
 * registration and heartbeats; no --backend picks auto (cpu without a GPU) and says why;
 * jobs' tokens equal nosa-generate's (the single-process reference) for the same prompt and
 * sampling; cancel; bad messages answered with Error
 * (or a refused job with JobFinished) while the worker keeps serving; finished jobs' kv-host
 * sequences freed; a job resumed on a second worker after the first was killed (SIGKILL)
 * recomputes less than a block and continues with exactly the reference tokens; a
 * kv-host killed and restarted with --recover mid-job; a coordinator restart (re-register
 * with running_jobs, tokens re-sent); SIGTERM exits 0; a worker killed right after sending
 * JobFinished leaves the job's kv-host sequence in place (frees come after the send);
 * --mode dense and infllmv2 and nosa's --budget-blocks/--query-aware-blocks give the
 * reference's tokens for the same flags.
 *
 *   test_worker BIN_DIR        (ctest passes the build's bin directory) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_coord.h"
#include "kvh_client.h"
#include "node_harness.h"
#include "test_util.h"
#include "worker_clock.h"

static struct nh_node g_node;
static struct fake_coord g_fc;
static int g_worker_seq;

/* A worker (named into name) with env_extra in its environment and flags (NULL-terminated,
 * or NULL) as its last ones (a later --mode wins). */
static void start_worker_with(char *name, size_t cap, int resident, char *const env_extra[],
                              const char *const *flags)
{
    snprintf(name, cap, "w%d", ++g_worker_seq);
    const char *argv[32] = {"nosa-worker", "--run-dir", g_node.run_dir, "--name", name,
                            "--coordinator", g_node.workers_ep, "--kvhost", g_node.kvhost_ep,
                            "--model", g_node.model, "--backend", "cpu", "--mode", "nosa",
                            "--max-seqs", "4", "--heartbeat-ms", "100"};
    int n = 0;
    while (argv[n]) n++;
    if (resident) argv[n++] = "--resident";
    for (int i = 0; flags && flags[i] && n < 31; i++) argv[n++] = flags[i];
    REQUIRE(nh_spawn(&g_node, name, env_extra, 0, argv) >= 0, "spawn %s", name);
}

/* Starts a worker named w<N> (offloaded, or with --resident; env_extra: NULL or more
 * environment, e.g. an armed fault point); its name goes to name[]. */
static void start_worker_env(char *name, size_t cap, int resident, char *const env_extra[])
{
    start_worker_with(name, cap, resident, env_extra, NULL);
}

static void start_worker(char *name, size_t cap, int resident)
{
    start_worker_env(name, cap, resident, NULL);
}

/* Waits for name to exit; checks it exited 0. */
static void check_clean_exit(const char *name, const char *why)
{
    CHECK(nh_wait_exit(&g_node, name, 5000) == 1, "%s did not exit on %s", name, why);
    const struct nh_proc *p = nh_find_last(&g_node, name);
    CHECK(p && p->pid == 0 && WIFEXITED(p->status) && WEXITSTATUS(p->status) == 0,
          "%s after %s: wait status %d", name, why, p ? p->status : -1);
}

static void wait_registered(int count)
{
    int ok = 0;
    for (int i = 0; i < 200 && !ok; i++) {
        fc_pump(&g_fc, 50);
        ok = g_fc.registers >= count;
    }
    if (!ok) nh_dump_logs(&g_node, 30);
    REQUIRE(ok, "worker did not register (registers %d, want %d)", g_fc.registers, count);
}

static void make_prompt(char *out, int len, int salt)
{
    static const char *const words[] = {"blocks ", "move ", "when ", "the ", "selection ",
                                        "changes; ", "most ", "stay ", "put. "};
    int n = 0;
    for (int w = salt; n < len; w++)
        for (const char *c = words[w % 9]; *c && n < len; c++) out[n++] = *c;
    out[n] = '\0';
}

/* The job's tokens against nosa-generate's for the same prompt and sampling, and the flags
 * (NULL: none) the worker was started with. */
static void check_against_reference(const struct fc_job *j, const char *const *flags,
                                    const char *prompt, int max_tokens, double temperature,
                                    double top_p, uint64_t seed)
{
    static struct nh_job ref;
    REQUIRE(nh_generate_flags(&g_node, flags, prompt, max_tokens, temperature, top_p, seed,
                              &ref) == 0,
            "nosa-generate");
    CHECK(j->n_tokens == (uint32_t)ref.n_tokens, "job %llu: %u tokens, reference %d",
          (unsigned long long)j->job_id, j->n_tokens, ref.n_tokens);
    int same = j->n_tokens == (uint32_t)ref.n_tokens;
    for (int i = 0; same && i < ref.n_tokens; i++) same = j->tokens[i] == ref.tokens[i];
    CHECK(same, "job %llu: tokens differ from nosa-generate's", (unsigned long long)j->job_id);
    CHECK(j->generated_tokens == j->n_tokens, "job %llu: JobFinished says %u generated, got %u",
          (unsigned long long)j->job_id, j->generated_tokens, j->n_tokens);
    int want_reason = ref.n_tokens < max_tokens ? NOSA__SERVE__FINISH_REASON__FINISH_EOS
                                                : NOSA__SERVE__FINISH_REASON__FINISH_LENGTH;
    CHECK(j->reason == want_reason, "job %llu: reason %d, want %d", (unsigned long long)j->job_id,
          j->reason, want_reason);
}

struct job_case {
    uint64_t id;
    int prompt_len, max_tokens;
    double temperature, top_p;
    uint64_t seed;
    char prompt[256];
    const char *const *flags; /* the worker's and the reference's (NULL: none) */
};

/* Assigns c (its prompt made from its id) and waits until it has streamed n tokens. */
static struct fc_job *start_job(struct job_case *c, uint32_t n)
{
    make_prompt(c->prompt, c->prompt_len, (int)(c->id % 9));
    fc_assign_text(&g_fc, c->id, c->prompt, (uint32_t)c->max_tokens, (float)c->temperature,
                   (float)c->top_p, c->seed, NULL);
    struct fc_job *j = fc_wait_tokens(&g_fc, c->id, n, 20000);
    REQUIRE(j, "job %llu did not stream %u tokens", (unsigned long long)c->id, n);
    return j;
}

/* Waits for c to finish without error and checks it against the reference. */
static struct fc_job *finish_job(const struct job_case *c, const char *when)
{
    struct fc_job *j = fc_wait_finished(&g_fc, c->id, 30000);
    REQUIRE(j, "job %llu did not finish %s", (unsigned long long)c->id, when);
    CHECK(j->error_code == 0, "job %llu %s: error %s", (unsigned long long)c->id, when, j->error);
    check_against_reference(j, c->flags, c->prompt, c->max_tokens, c->temperature, c->top_p,
                            c->seed);
    return j;
}

/* Start-up failures: one line naming what is wrong, exit 1. */
static void test_startup_errors(void)
{
    char nobody[600];
    snprintf(nobody, sizeof(nobody), "ipc://%s/nobody.sock", g_node.run_dir);
    const char *bad_flag[] = {"nosa-worker", "--model", g_node.model, "--max-seqs", "0", NULL};
    const char *no_coord[] = {"nosa-worker", "--run-dir", g_node.run_dir, "--name", "lonely",
                              "--coordinator", nobody, "--kvhost", g_node.kvhost_ep, "--model",
                              g_node.model, "--backend", "cpu", "--register-timeout-ms", "300",
                              NULL};
    const char *no_model[] = {"nosa-worker", "--run-dir", g_node.run_dir, "--model",
                              "/nonexistent-model", "--backend", "cpu", NULL};
    struct {
        const char *const *argv;
        const char *want;
    } cases[] = {
        {bad_flag, "--max-seqs"},
        {no_coord, "did not answer Register"},
        {no_model, "/nonexistent-model"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL;
        int rc = nh_run(&g_node, cases[i].argv, 10000, &out);
        CHECK(rc == 1 && out && strstr(out, cases[i].want), "case %zu: exit %d, want 1 and "
              "'%s' in: %s", i, rc, cases[i].want, out ? out : "");
        free(out);
    }
}

/* No --backend: auto, said in the first line with its reason. Without a usable GPU (none
 * visible, or a build without CUDA) that is cpu and why cuda was not taken; with one, cuda.
 * The coordinator endpoint answers nothing, so it exits 1 after that line. */
static void test_backend_auto(void)
{
    char nobody[600];
    snprintf(nobody, sizeof(nobody), "ipc://%s/nobody.sock", g_node.run_dir);
    const char *argv[] = {"nosa-worker", "--run-dir", g_node.run_dir, "--name", "auto",
                          "--coordinator", nobody, "--kvhost", g_node.kvhost_ep, "--model",
                          g_node.model, "--register-timeout-ms", "300", NULL};
    char *out = NULL;
    int rc = nh_run(&g_node, argv, 10000, &out);
    static const char cpu[] = "nosa-worker auto: backend cpu (auto: backend cuda: ";
    static const char cuda[] = "nosa-worker auto: backend cuda (auto: a GPU is visible)\n";
    int is_cpu = out && strncmp(out, cpu, strlen(cpu)) == 0;
    const char *eol = out ? strchr(out, '\n') : NULL;
    CHECK(rc == 1 && eol && ((is_cpu && eol[-1] == ')') ||
                             strncmp(out, cuda, strlen(cuda)) == 0),
          "no --backend: exit %d, want 1 and a first line '%s...)' or '%s' in:\n%s", rc, cpu,
          cuda, out ? out : "");
    free(out);
}

static void test_register(void)
{
    wait_registered(1);
    CHECK(strcmp(g_fc.backend, "cpu") == 0, "Register.backend '%s'", g_fc.backend);
    CHECK(strcmp(g_fc.worker_name, "w1") == 0, "Register.worker_name '%s'", g_fc.worker_name);
    CHECK(g_fc.block_size == g_node.block_size, "Register.block_size %u, model %u",
          g_fc.block_size, g_node.block_size);
    CHECK(g_fc.max_seqs == 4, "Register.max_seqs %u", g_fc.max_seqs);
    int before = g_fc.heartbeats;
    for (int i = 0; i < 40 && g_fc.heartbeats < before + 2; i++) fc_pump(&g_fc, 50);
    CHECK(g_fc.heartbeats >= before + 2, "heartbeats every 100 ms: %d in 2 s",
          g_fc.heartbeats - before);
    CHECK(g_fc.last_free_slots == 4 && g_fc.last_running == 0, "idle heartbeat: %u running, "
          "%u free", g_fc.last_running, g_fc.last_free_slots);
    /* Its first line (stdout and stderr go to one log) says which backend and why. */
    const struct nh_proc *p = nh_find(&g_node, "w1");
    FILE *f = p ? fopen(p->log, "r") : NULL;
    char first[256] = "";
    if (f) {
        if (!fgets(first, sizeof first, f)) first[0] = '\0';
        fclose(f);
    }
    CHECK(strncmp(first, "nosa-worker w1: backend cpu (--backend cpu)", 43) == 0,
          "the worker's first line: '%s'", first);
}

/* Four jobs at once (a full batch), prompts around and past block boundaries, greedy and
 * seeded top-p. */
static void test_jobs(void)
{
    static struct job_case jobs[] = {
        {101, 5, 12, 0.0, 1.0, 0, "", NULL},
        {102, 8, 30, 0.0, 1.0, 0, "", NULL},
        {103, 37, 20, 0.8, 0.9, 7, "", NULL},
        {104, 70, 25, 1.0, 0.95, 99, "", NULL},
    };
    for (size_t i = 0; i < 4; i++) start_job(&jobs[i], 0);
    uint64_t total = 0, prefilled = 0;
    for (size_t i = 0; i < 4; i++) {
        struct fc_job *j = finish_job(&jobs[i], "in a full batch");
        total += j->n_tokens;
        prefilled += (uint64_t)jobs[i].prompt_len + 1;
        CHECK(j->out_of_order == 0, "job %llu: %u tokens out of order",
              (unsigned long long)j->job_id, j->out_of_order);
        CHECK(j->recomputed_tokens == 0, "new job recomputed %u", j->recomputed_tokens);
        CHECK(j->prompt_tokens == (uint32_t)jobs[i].prompt_len + 1, "prompt_tokens %u (BOS + %d)",
              j->prompt_tokens, jobs[i].prompt_len);
    }
    /* The next heartbeat counts every token since start. */
    int before = g_fc.heartbeats;
    for (int i = 0; i < 40 && g_fc.heartbeats < before + 2; i++) fc_pump(&g_fc, 50);
    CHECK(g_fc.last_tokens_total == total && g_fc.last_steps > 0 &&
              g_fc.last_prefill_total == prefilled,
          "heartbeat stats: %llu tokens in %llu steps, %llu prefilled, want %llu tokens and "
          "%llu prefilled",
          (unsigned long long)g_fc.last_tokens_total, (unsigned long long)g_fc.last_steps,
          (unsigned long long)g_fc.last_prefill_total, (unsigned long long)total,
          (unsigned long long)prefilled);
    /* Dated on the worker's monotonic clock, which this process reads too. */
    double now_s = worker_now_s();
    CHECK(g_fc.last_taken_s > now_s - 10.0 && g_fc.last_taken_s <= now_s &&
              g_fc.taken_not_after == 0,
          "heartbeat taken_s %.3f, now %.3f, %d not after the one before", g_fc.last_taken_s,
          now_s, g_fc.taken_not_after);
    /* The totals since start: every selected block was a hit or was moved (offloaded). */
    CHECK(g_fc.last_step_seconds_total > 0.0 && g_fc.last_selected_total > 0 &&
              g_fc.last_hits_total + g_fc.last_moved_total == g_fc.last_selected_total,
          "heartbeat totals: %.3f s of steps, %llu selected, %llu hits, %llu moved",
          g_fc.last_step_seconds_total, (unsigned long long)g_fc.last_selected_total,
          (unsigned long long)g_fc.last_hits_total, (unsigned long long)g_fc.last_moved_total);
}

static int send_error_case(const void *bytes, size_t len, int frames, int want_code,
                           const char *what)
{
    int before = g_fc.errors;
    fc_send_raw(&g_fc, bytes, len, frames);
    fc_wait_error(&g_fc, before, 3000);
    CHECK(g_fc.errors == before + 1 && g_fc.last_error_code == want_code,
          "%s: %d Error replies, code %d (want %d): %s", what, g_fc.errors - before,
          g_fc.last_error_code, want_code, g_fc.last_error);
    return 0;
}

static void test_bad_messages(void)
{
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34};
    send_error_case(garbage, sizeof(garbage), 1, NOSA__ERROR_CODE__ERROR_BAD_MESSAGE, "garbage");

    uint8_t buf[256];
    Nosa__Serve__CoordMsg msg = NOSA__SERVE__COORD_MSG__INIT;
    Nosa__Serve__Shutdown sd = NOSA__SERVE__SHUTDOWN__INIT;
    msg.version = 99;
    msg.body_case = NOSA__SERVE__COORD_MSG__BODY_SHUTDOWN;
    msg.shutdown = &sd;
    size_t n = nosa__serve__coord_msg__pack(&msg, buf);
    send_error_case(buf, n, 1, NOSA__ERROR_CODE__ERROR_BAD_VERSION, "version 99 (a Shutdown)");
    msg.version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    n = nosa__serve__coord_msg__pack(&msg, buf);
    send_error_case(buf, n, 2, NOSA__ERROR_CODE__ERROR_BAD_MESSAGE, "a Shutdown in two frames");

    Nosa__Serve__CoordMsg empty = NOSA__SERVE__COORD_MSG__INIT;
    empty.version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    n = nosa__serve__coord_msg__pack(&empty, buf);
    send_error_case(buf, n, 1, NOSA__ERROR_CODE__ERROR_BAD_MESSAGE, "no body");

    int before = g_fc.errors;
    fc_cancel(&g_fc, 424242, 0);
    fc_wait_error(&g_fc, before, 3000);
    CHECK(g_fc.last_error_code == NOSA__ERROR_CODE__ERROR_UNKNOWN_ID,
          "cancel of an unknown job: code %d: %s", g_fc.last_error_code, g_fc.last_error);

    before = g_fc.errors;
    fc_assign_text(&g_fc, 0, "x", 4, 0, 1, 0, NULL);
    fc_wait_error(&g_fc, before, 3000);
    CHECK(g_fc.last_error_code == NOSA__ERROR_CODE__ERROR_BAD_MESSAGE, "job_id 0: code %d: %s",
          g_fc.last_error_code, g_fc.last_error);

    /* Refused jobs end with JobFinished{ERROR} and a code the coordinator acts on. */
    fc_assign_text(&g_fc, 201, "x", 0, 0, 1, 0, NULL);
    struct fc_job *j = fc_wait_finished(&g_fc, 201, 3000);
    CHECK(j && j->reason == NOSA__SERVE__FINISH_REASON__FINISH_ERROR &&
          j->error_code == NOSA__ERROR_CODE__ERROR_BAD_MESSAGE, "max_tokens 0: %d %d %s",
          j ? j->reason : -1, j ? j->error_code : -1, j ? j->error : "");
    fc_assign_text(&g_fc, 202, "x", 4, -1.0f, 1, 0, NULL);
    j = fc_wait_finished(&g_fc, 202, 3000);
    CHECK(j && j->error_code == NOSA__ERROR_CODE__ERROR_BAD_MESSAGE, "temperature -1: %s",
          j ? j->error : "no answer");
    fc_assign_text(&g_fc, 205, "", 4, 0, 1, 0, NULL);
    j = fc_wait_finished(&g_fc, 205, 3000);
    CHECK(j && j->error_code == NOSA__ERROR_CODE__ERROR_BAD_MESSAGE, "empty prompt: %s",
          j ? j->error : "no answer");
    fc_assign_text(&g_fc, 203, "a prompt", 1u << 20, 0, 1, 0, NULL);
    j = fc_wait_finished(&g_fc, 203, 3000);
    CHECK(j && j->error_code == NOSA__ERROR_CODE__ERROR_REFUSED, "beyond the context: %s",
          j ? j->error : "no answer");

    /* A job moved after its last worker generated EOS (it died before JobFinished): done. */
    static const int32_t ended[2] = {65, 257}; /* the byte tokenizer's EOS */
    fc_assign_text(&g_fc, 206, "x", 8, 0, 1, 0, &(struct fc_resume){ended, 2, 0});
    j = fc_wait_finished(&g_fc, 206, 3000);
    CHECK(j && j->reason == NOSA__SERVE__FINISH_REASON__FINISH_EOS && j->error_code == 0 &&
              j->generated_tokens == 2,
          "resumed after its EOS: reason %d code %d generated %u %s", j ? j->reason : -1,
          j ? j->error_code : -1, j ? j->generated_tokens : 0, j ? j->error : "no answer");

    /* ... and the worker still serves. */
    static char prompt[64];
    make_prompt(prompt, 12, 3);
    fc_assign_text(&g_fc, 204, prompt, 6, 0, 1, 0, NULL);
    j = fc_wait_finished(&g_fc, 204, 10000);
    REQUIRE(j, "job after bad messages did not finish");
    check_against_reference(j, NULL, prompt, 6, 0, 1, 0);
}

static void test_cancel(void)
{
    static struct job_case c = {301, 14, 3000, 0, 1, 0, "", NULL};
    start_job(&c, 3);
    fc_cancel(&g_fc, c.id, 0);
    struct fc_job *j = fc_wait_finished(&g_fc, c.id, 5000);
    CHECK(j && j->reason == NOSA__SERVE__FINISH_REASON__FINISH_CANCELLED,
          "cancelled job: reason %d", j ? j->reason : -1);
    CHECK(j && j->generated_tokens == j->n_tokens && j->n_tokens < 3000,
          "cancelled job: %u generated, %u received", j ? j->generated_tokens : 0,
          j ? j->n_tokens : 0);
}

/* Every finished job's kv-host sequence is freed. The worker frees only after its
 * JobFinished went out, so a test that just received JobFinished waits for the free. */
static void check_kvhost_empty(const char *when)
{
    struct kvh_client *c = NULL;
    char err[256];
    REQUIRE(kvh_client_connect(g_node.kvhost_ep, NULL, &c, err, sizeof(err)) == 0, "%s", err);
    struct kvh_stats st;
    int rc;
    uint64_t deadline = nh_now_ms() + 5000;
    for (;;) {
        rc = kvh_client_stats(c, &st, err, sizeof(err));
        if (rc || (st.n_seqs == 0 && st.free_groups == st.n_groups) || nh_now_ms() > deadline)
            break;
        usleep(20 * 1000);
    }
    CHECK(rc == 0 && st.n_seqs == 0 && st.free_groups == st.n_groups,
          "%s: kv-host holds %llu sequences, %llu of %llu groups free (%s)", when,
          (unsigned long long)st.n_seqs, (unsigned long long)st.free_groups,
          (unsigned long long)st.n_groups, rc ? err : "ok");
    kvh_client_close(c);
}

/* The kv-host still holds job id's table, of at least want_blocks blocks (why says whose
 * it is); then the test frees it, as the coordinator does when the job ends. */
static void check_table_kept(uint64_t id, uint32_t want_blocks, const char *why)
{
    struct kvh_client *kc = NULL;
    char err[256];
    REQUIRE(kvh_client_connect(g_node.kvhost_ep, NULL, &kc, err, sizeof(err)) == 0, "%s", err);
    static uint32_t groups[4096];
    uint32_t n = 0;
    int rc = kvh_client_table(kc, id, groups, 4096, &n, err, sizeof(err));
    CHECK(rc == 0 && n >= want_blocks, "%s: the kv-host table of job %llu has %u blocks (want "
          ">= %u): %s", why, (unsigned long long)id, n, want_blocks, rc ? err : "ok");
    CHECK(kvh_client_free(kc, &id, 1, NULL, err, sizeof(err)) == 0, "free job %llu: %s",
          (unsigned long long)id, err);
    kvh_client_close(kc);
}

/* A CancelJob for a job that moved to another worker (moved = 1) ends it here without
 * freeing its kv-host sequence: the new worker resumes from that table. The test then frees
 * it, as the coordinator does when the job ends. */
static void test_cancel_moved(void)
{
    static struct job_case c = {302, 40, 3000, 0, 1, 0, "", NULL};
    struct fc_job *j = start_job(&c, 10);
    fc_cancel(&g_fc, c.id, 1);
    j = fc_wait_finished(&g_fc, c.id, 5000);
    CHECK(j && j->reason == NOSA__SERVE__FINISH_REASON__FINISH_CANCELLED,
          "moved job: reason %d", j ? j->reason : -1);
    usleep(200 * 1000); /* a free, had the worker sent one, would have landed by now */
    check_table_kept(c.id, (uint32_t)(c.prompt_len + 1 + 10) / g_node.block_size,
                     "moved job (kept for its new worker)");
}

/* Kill the worker mid-job; a second worker resumes from the arena: it recomputes less than
 * a block and continues with the reference's tokens. Returns the new worker's name. */
static void test_resume(char *worker, size_t cap)
{
    static struct job_case c = {401, 45, 80, 0.7, 0.9, 1234, "", NULL};
    /* 402 is moved as if it had reported nothing: started afresh, its stale table dropped. */
    static struct job_case fresh = {402, 30, 60, 0, 1, 0, "", NULL};
    start_job(&fresh, 10);
    struct fc_job *j = start_job(&c, 21);
    CHECK(nh_signal(&g_node, worker, SIGKILL) == 0, "kill %s", worker);
    CHECK(nh_wait_exit(&g_node, worker, 5000) == 1, "%s did not die", worker);
    while (fc_pump(&g_fc, 100) > 0) /* what it sent before it died */
        ;
    REQUIRE(!j->finished && j->n_tokens < (uint32_t)c.max_tokens, "job 401 ended before the kill");
    uint32_t got = j->n_tokens;
    static int32_t generated[FC_MAX_TOKENS];
    memcpy(generated, j->tokens, got * sizeof(int32_t));

    /* The second worker keeps its KV resident: the first one's arena blocks serve it too. */
    int regs = g_fc.registers;
    start_worker(worker, cap, 1);
    wait_registered(regs + 1);
    fc_assign_text(&g_fc, c.id, c.prompt, (uint32_t)c.max_tokens, (float)c.temperature,
                   (float)c.top_p, c.seed, &(struct fc_resume){generated, got, 0});
    fc_assign_text(&g_fc, fresh.id, fresh.prompt, (uint32_t)fresh.max_tokens,
                   (float)fresh.temperature, (float)fresh.top_p, fresh.seed, NULL);
    struct fc_job *f = finish_job(&fresh, "started again from its prompt");
    CHECK(f->recomputed_tokens == 0, "job 402 started afresh recomputed %u", f->recomputed_tokens);
    j = finish_job(&c, "after the resume");
    uint32_t prompt_tokens = (uint32_t)c.prompt_len + 1;
    uint32_t in_open_block = (prompt_tokens + got - 1) % g_node.block_size;
    CHECK(j->recomputed_tokens <= g_node.block_size && j->recomputed_tokens == in_open_block + 1,
          "resumed after %u tokens: recomputed %u, want the open block's %u (block %u)", got,
          j->recomputed_tokens, in_open_block + 1, g_node.block_size);
}

/* The kv-host is killed (SIGKILL) mid-job and restarted with --recover: the worker waits
 * for it (retrying its requests) and the job finishes with the reference's tokens. */
static void test_kvhost_restart(void)
{
    static struct job_case c = {601, 30, 300, 0.9, 0.8, 55, "", NULL};
    start_job(&c, 5);
    CHECK(nh_signal(&g_node, "kvh", SIGKILL) == 0, "kill the kv-host");
    CHECK(nh_wait_exit(&g_node, "kvh", 5000) == 1, "kv-host did not die");
    fc_pump(&g_fc, 300);
    REQUIRE(nh_start_kvhost(&g_node, 1, NULL) >= 0, "kv-host --recover did not start");
    finish_job(&c, "after the kv-host restart");
}

/* The coordinator goes away mid-job and comes back at the same endpoint: the worker
 * registers again listing the job, re-sends its tokens, and the job finishes right. */
static void test_coordinator_restart(void)
{
    static struct job_case c = {501, 20, 400, 0, 1, 0, "", NULL};
    start_job(&c, 5);
    fc_close(&g_fc);
    usleep(300 * 1000);
    REQUIRE(fc_open(&g_fc, g_node.workers_ep) == 0, "rebind the coordinator endpoint");
    wait_registered(1);
    CHECK(g_fc.last_running_jobs == 1, "Register after a restart lists %zu running jobs",
          g_fc.last_running_jobs);
    /* Job 601 ended on this worker before: a coordinator that restarted may never have read
     * its end, so Register lists it and its tokens and JobFinished come again. */
    CHECK(g_fc.last_finished_jobs >= 1, "Register after a restart lists %zu ended jobs",
          g_fc.last_finished_jobs);
    struct fc_job *ended = fc_wait_finished(&g_fc, 601, 3000);
    CHECK(ended && ended->finished == 1 && ended->error_code == 0 && ended->n_tokens > 0 &&
              ended->n_tokens == ended->generated_tokens && ended->out_of_order == 0,
          "job 601's end told again: finished %d, %u tokens of %u", ended ? ended->finished : 0,
          ended ? ended->n_tokens : 0, ended ? ended->generated_tokens : 0);
    finish_job(&c, "after the coordinator restart");
}

/* A finished job's kv-host sequence is freed only after its JobFinished went out: a worker
 * killed right after that send (fault point worker.finished.sent) leaves the table in the
 * kv-host, so a coordinator that had not yet seen JobFinished could still resume the job.
 * The test then frees it, as the coordinator does on JobFinished. */
static void test_free_after_finished(void)
{
    static struct job_case c = {701, 40, 12, 0, 1, 0, "", NULL};
    char *armed[] = {"NOSA_FAULT=worker.finished.sent", NULL};
    char worker[16];
    int regs = g_fc.registers;
    start_worker_env(worker, sizeof(worker), 0, armed);
    wait_registered(regs + 1);
    struct fc_job *j = start_job(&c, 1);
    REQUIRE(nh_wait_exit(&g_node, worker, 20000) == 1, "%s did not die at its fault point",
            worker);
    const struct nh_proc *p = nh_find_last(&g_node, worker);
    CHECK(p && WIFSIGNALED(p->status) && WTERMSIG(p->status) == SIGKILL,
          "%s: wait status %d, want SIGKILL (its fault point)", worker, p ? p->status : -1);
    /* The sends were handed to the socket; a process killed at once may lose them still
     * queued, so the tokens received so far are what the table must cover. */
    while (fc_pump(&g_fc, 100) > 0)
        ;
    if (j->finished) check_against_reference(j, NULL, c.prompt, c.max_tokens, 0, 1, 0);
    uint32_t positions = (uint32_t)c.prompt_len + 1 + (j->n_tokens ? j->n_tokens : 1) - 1;
    uint32_t want_blocks = positions / g_node.block_size;
    REQUIRE(want_blocks > 0, "job 701 completes no block (%u positions)", positions);
    check_table_kept(c.id, want_blocks, "killed after JobFinished");
}

/* A worker killed while it prefills a long prompt (701 tokens, chunks of 256; the fault point
 * worker.step.tokens_sent after its second prefill step): the TokensBatches of its prefill
 * steps said how many prompt tokens it had done, and a new worker given that (Assign
 * prompt_done) restores their complete blocks from the arena: it recomputes at most the open
 * block, not the prompt, and its tokens equal the reference. */
static void test_resume_prefill(void)
{
    static char prompt[704];
    make_prompt(prompt, 700, 5);
    const uint64_t id = 901;
    const int max_tokens = 10;
    char *armed[] = {"NOSA_FAULT=worker.step.tokens_sent", "NOSA_FAULT_SKIP=1", NULL};
    char worker[16];
    int regs = g_fc.registers;
    start_worker_env(worker, sizeof(worker), 0, armed);
    wait_registered(regs + 1);
    fc_assign_text(&g_fc, id, prompt, max_tokens, 0, 1, 0, NULL);
    REQUIRE(nh_wait_exit(&g_node, worker, 20000) == 1, "%s did not die mid-prefill", worker);
    while (fc_pump(&g_fc, 100) > 0)
        ;
    struct fc_job *j = fc_job(&g_fc, id);
    uint32_t done = j->prompt_done;
    REQUIRE(done >= 256 && j->n_tokens == 0, "killed mid-prefill: prompt_done %u, %u tokens",
            done, j->n_tokens);
    regs = g_fc.registers;
    start_worker(worker, sizeof(worker), 0);
    wait_registered(regs + 1);
    fc_assign_text(&g_fc, id, prompt, max_tokens, 0, 1, 0, &(struct fc_resume){NULL, 0, done});
    j = fc_wait_finished(&g_fc, id, 30000);
    REQUIRE(j, "job %llu did not finish after the resume mid-prefill", (unsigned long long)id);
    check_against_reference(j, NULL, prompt, max_tokens, 0, 1, 0);
    CHECK(j->recomputed_tokens == done % g_node.block_size,
          "resumed after %u prefilled tokens: recomputed %u (want the open block's %u; the "
          "whole prompt again would be %u)", done, j->recomputed_tokens,
          done % g_node.block_size, done);
    /* Steps of the new worker (its heartbeats count them): the rest of the prompt after the
     * restored blocks in 256-token chunks, the last of which gives the first token, then one
     * step per token. The whole prompt prefilled again would take more. */
    uint32_t rest = 701 - done / g_node.block_size * g_node.block_size;
    uint64_t want = (rest + 255) / 256 - 1 + (uint64_t)max_tokens;
    uint64_t end = nh_now_ms() + 1000;
    while (g_fc.last_steps < want && nh_now_ms() < end) fc_pump(&g_fc, 50);
    fc_pump(&g_fc, 300); /* one more heartbeat: no step may follow */
    CHECK(g_fc.last_steps == want, "the resumed worker ran %llu steps, want %llu",
          (unsigned long long)g_fc.last_steps, (unsigned long long)want);
    CHECK(nh_signal(&g_node, worker, SIGTERM) == 0, "SIGTERM %s", worker);
    check_clean_exit(worker, "SIGTERM");
}

/* A step that stalls 2.5 s (fault point worker.step.after_decode in stall mode, as a GPU's
 * first steps or a long prefill chunk do): the pulse thread keeps heartbeats going every
 * ~100 ms through it, and the job ends right. With --max-stall-ms below the stall the
 * heartbeats stop (a hung worker must be declared dead). Returns nothing; checks both. */
static void test_slow_step(void)
{
    char *stall[] = {"NOSA_FAULT=worker.step.after_decode", "NOSA_FAULT_SKIP=3",
                     "NOSA_FAULT_STALL_MS=2500", NULL};
    static struct job_case c = {801, 20, 12, 0, 1, 0, "", NULL};
    static struct job_case d = {802, 20, 12, 0, 1, 0, "", NULL};
    struct job_case *cases[2] = {&c, &d};
    const char *max_stall[2] = {NULL, "500"};
    for (int k = 0; k < 2; k++) {
        char worker[16];
        int regs = g_fc.registers;
        const char *flags[] = {"--max-stall-ms", max_stall[k], NULL};
        start_worker_with(worker, sizeof(worker), 0, stall, max_stall[k] ? flags : NULL);
        wait_registered(regs + 1);
        g_fc.max_heartbeat_gap_ms = 0;
        g_fc.last_heartbeat_ms = 0;
        uint64_t t0 = nh_now_ms();
        start_job(cases[k], 1);
        finish_job(cases[k], "through a stalled step");
        uint64_t took = nh_now_ms() - t0;
        CHECK(took >= 2500, "job %llu took %llu ms: the 2.5 s stall did not happen",
              (unsigned long long)cases[k]->id, (unsigned long long)took);
        if (k == 0)
            CHECK(g_fc.max_heartbeat_gap_ms < 1000,
                  "heartbeats stopped for %llu ms during a stalled step (want the pulse thread's, "
                  "every ~100 ms)", (unsigned long long)g_fc.max_heartbeat_gap_ms);
        else
            CHECK(g_fc.max_heartbeat_gap_ms >= 1500,
                  "with --max-stall-ms 500 the heartbeats went on through a 2.5 s stall (longest "
                  "gap %llu ms)", (unsigned long long)g_fc.max_heartbeat_gap_ms);
        CHECK(nh_signal(&g_node, worker, SIGTERM) == 0, "SIGTERM %s", worker);
        check_clean_exit(worker, "SIGTERM");
    }
}

/* --mode dense and infllmv2, and nosa with --budget-blocks/--query-aware-blocks (12 and 8,
 * the model's 10 and 6): a worker started with them says so in its start line and serves a
 * job whose context (past 12 blocks of 8) makes the selection matter with exactly the tokens
 * nosa-generate gives with the same flags, which differ from the default nosa's. */
static void test_modes(void)
{
    static const char *const dense[] = {"--mode", "dense", NULL};
    static const char *const infllm[] = {"--mode", "infllmv2", NULL};
    static const char *const budget[] = {"--budget-blocks", "12", "--query-aware-blocks", "8",
                                         NULL};
    static struct job_case cases[] = {
        {1001, 120, 16, 0.0, 1.0, 0, "", dense},
        {1002, 130, 16, 0.8, 0.9, 5, "", infllm},
        {1003, 140, 16, 0.0, 1.0, 0, "", budget},
    };
    static const char *const start_line[] = {": mode dense offloaded, ",
                                             ": mode infllmv2 offloaded, ",
                                             ": mode nosa offloaded, budget 12 blocks of 8 "};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct job_case *c = &cases[k];
        char worker[16];
        int regs = g_fc.registers;
        start_worker_with(worker, sizeof(worker), 0, NULL, c->flags);
        wait_registered(regs + 1);
        CHECK(nh_log_wait(&g_node, worker, start_line[k], 3000) == 0,
              "%s with %s %s: no '%s' start line", worker, c->flags[0], c->flags[1],
              start_line[k]);
        start_job(c, 0);
        const struct fc_job *j = finish_job(c, c->flags[1]);
        static struct nh_job plain;
        REQUIRE(nh_generate(&g_node, c->prompt, c->max_tokens, c->temperature, c->top_p,
                            c->seed, &plain) == 0,
                "nosa-generate");
        int same = j->n_tokens == (uint32_t)plain.n_tokens;
        for (int i = 0; same && i < plain.n_tokens; i++) same = j->tokens[i] == plain.tokens[i];
        CHECK(!same, "job %llu with %s %s: the same tokens as plain nosa (the flags changed "
              "nothing?)", (unsigned long long)c->id, c->flags[0], c->flags[1]);
        CHECK(nh_signal(&g_node, worker, SIGTERM) == 0, "SIGTERM %s", worker);
        check_clean_exit(worker, "SIGTERM");
    }
}

int main(int argc, char **argv)
{
    static const char *const needed[] = {"nosa-kvhost", "nosa-worker", "nosa-generate", NULL};
    int rc = nh_node_init_needing(&g_node, "worker", argc > 1 ? argv[1] : NULL, "tiny", 120,
                                  needed);
    if (rc == 77) return 77;
    REQUIRE(rc == 0, "node harness init");
    REQUIRE(nh_start_kvhost(&g_node, 0, NULL) >= 0, "kv-host did not start");
    REQUIRE(fc_open(&g_fc, g_node.workers_ep) == 0, "fake coordinator");
    test_startup_errors();
    test_backend_auto();
    char worker[16];
    start_worker(worker, sizeof(worker), 0);

    test_register();
    test_jobs();
    test_bad_messages();
    test_cancel();
    test_cancel_moved();
    check_kvhost_empty("after jobs, refusals and cancels");
    test_resume(worker, sizeof(worker));
    test_kvhost_restart();
    test_coordinator_restart();
    check_kvhost_empty("after the resumed and restarted jobs");

    int leaving = g_fc.leaving;
    CHECK(nh_signal(&g_node, worker, SIGTERM) == 0, "SIGTERM %s", worker);
    check_clean_exit(worker, "SIGTERM");
    while (fc_pump(&g_fc, 100) > 0) /* what it sent before it exited */
        ;
    CHECK(g_fc.leaving == leaving + 1, "a worker stopping on SIGTERM says so (Heartbeat.leaving): "
          "%d", g_fc.leaving - leaving);
    int regs = g_fc.registers;
    start_worker(worker, sizeof(worker), 0);
    wait_registered(regs + 1);
    Nosa__Serve__CoordMsg msg = NOSA__SERVE__COORD_MSG__INIT;
    Nosa__Serve__Shutdown sd = NOSA__SERVE__SHUTDOWN__INIT;
    msg.body_case = NOSA__SERVE__COORD_MSG__BODY_SHUTDOWN;
    msg.shutdown = &sd;
    CHECK(fc_send(&g_fc, &msg) == 0, "send Shutdown");
    check_clean_exit(worker, "Shutdown");
    test_free_after_finished();
    check_kvhost_empty("after the worker killed past JobFinished");
    test_slow_step();
    check_kvhost_empty("after the stalled steps");
    test_resume_prefill();
    check_kvhost_empty("after the resume mid-prefill");
    test_modes();
    check_kvhost_empty("after the jobs in each mode");
    fc_close(&g_fc);
    if (g_test_checks_failed) nh_dump_logs(&g_node, 40);
    nh_stop_all(&g_node, 3000);
    CHECK(nh_leaks(&g_node) == 0, "leaked processes or shared memory");
    return test_report("test_worker");
}
