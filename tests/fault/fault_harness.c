/* fault_harness.c: fault injection over the real processes (issue 7, docs/FAULTS.md).
 *
 *   fault_harness BIN_DIR --fault KIND [--seed S] [--at-tokens T] [--arm PROC:POINT[:SKIP|:pP]]
 *                 [--model-config FILE] [--backend cpu|cuda]
 *   fault_harness BIN_DIR --soak [--faults N] [--seconds M] [--seed S] [--model-config FILE]
 *                 [--backend cpu|cuda]
 *
 * --backend: the workers' and the reference's (nosa-generate) backend; default cpu, or
 * $NOSA_TEST_BACKEND (tests/e2e/node_harness.h). cuda puts both workers on GPU 0 (CI runs cpu;
 * scripts/gpu-faults.sh runs a subset on the GPU machine).
 *
 * KIND (each reachable deterministically: the harness acts once the jobs have streamed
 * --at-tokens tokens in all, default 24, or when the process hits the armed NOSA_FAULT point;
 * and at random: with --seed and no --at-tokens the moment and the victim come from the seed):
 *   worker-kill     SIGKILL of a worker mid-decode; its jobs move to the other worker
 *   worker-hang     SIGSTOP of a worker; the coordinator must declare it dead (heartbeats)
 *   worker-pause    SIGSTOP of a worker past the heartbeat timeout, then SIGCONT (a delayed
 *                   peer): declared dead, its jobs move; woken, it re-registers, drops the
 *                   moved jobs without freeing their kv-host sequences, and serves again
 *   kvhost-kill     SIGKILL of the kv-host (workers paused around it), restart --recover:
 *                   every sequence's block table must be the same after as before
 *   coord-kill      SIGKILL of the coordinator, restart on the same journal
 *   coord-pause     SIGSTOP of the coordinator for twice the heartbeat timeout, then SIGCONT:
 *                   its own silence must not make it declare (and fence) live workers dead
 *   arena-truncate  the arena file truncated: --recover must refuse it with a clear error
 *   arena-header    a header byte flipped (the magic, or a seeded one of the checksummed
 *                   header): --recover must refuse it with a clear error
 *   journal-full    the coordinator's journal on /dev/full: refused with a clear error
 *   journal-fsize   RLIMIT_FSIZE on the coordinator: its journal fills up mid-run
 *   bad-input       every kind of bad frame (bad_input.h) to the coordinator's client and
 *                   worker links and to the kv-host mid-decode: each refused with its error,
 *                   the jobs unaffected (not drawn by the soak)
 *
 * After each run: every job completed, or failed with a reason (none silently lost);
 * completed outputs equal nosa-generate's (the fault-free reference) exactly; recomputed
 * tokens per job <= the open block (block_size); once every job has ended, the kv-host's arena
 * is empty again (no sequence leaked by a fault). Exit 0 when all holds, 1 otherwise, 77 when
 * a binary is not built. Soak: N random faults (or M seconds), then a summary table. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bad_input.h"
#include "kvh_probe.h"
#include "node_harness.h"
#include "parse.h"
#include "test_util.h"

enum fault_kind {
    FAULT_WORKER_KILL,
    FAULT_WORKER_HANG,
    FAULT_WORKER_PAUSE,
    FAULT_KVHOST_KILL,
    FAULT_COORD_KILL,
    FAULT_COORD_PAUSE,
    FAULT_ARENA_TRUNCATE,
    FAULT_ARENA_HEADER,
    FAULT_JOURNAL_FULL,
    FAULT_JOURNAL_FSIZE,
    FAULT_BAD_INPUT,
    FAULT_KINDS
};
/* The soak draws from the kinds before bad-input (a fixed seed's rounds stay as they were). */
#define SOAK_KINDS FAULT_BAD_INPUT
static const char *const g_fault_names[FAULT_KINDS] = {
    "worker-kill",    "worker-hang",  "worker-pause", "kvhost-kill",  "coord-kill",
    "coord-pause",    "arena-truncate", "arena-header", "journal-full", "journal-fsize",
    "bad-input"};

#define N_JOBS 6
static const int g_prompt_len[N_JOBS] = {12, 30, 57, 64, 90, 121};
static const int g_max_tokens[N_JOBS] = {90, 120, 70, 140, 60, 100};

struct fault_opts {
    enum fault_kind kind;
    int soak;
    uint64_t seed;
    int seeded;
    long at_tokens;     /* -1: from the seed */
    const char *arm;    /* PROC:POINT[:SKIP] */
    long faults;
    long seconds;
    const char *model_config;
    const char *backend; /* NULL: the node harness's default */
};

struct fault_summary {
    int runs, faults, jobs, completed, failed_with_reason, lost, mismatched;
    long recomputed, recompute_over_block;
};

struct job_set {
    char prompt[N_JOBS][160];
    double temperature[N_JOBS], top_p[N_JOBS];
    struct nh_job reference[N_JOBS];
    int have_reference;
};

static uint64_t g_rng;
static uint64_t rng_next(void) /* xorshift64*: the soak is reproducible from --seed */
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ull;
}
static long rng_range(long lo, long hi) { return lo + (long)(rng_next() % (uint64_t)(hi - lo + 1)); }

static void make_jobs(struct job_set *js)
{
    static const char *const words[] = {"a ", "long ", "context ", "decodes ", "while ",
                                        "the ", "cache ", "moves. "};
    for (int i = 0; i < N_JOBS; i++) {
        int n = 0;
        for (int w = i; n < g_prompt_len[i]; w++)
            for (const char *c = words[w % 8]; *c && n < g_prompt_len[i]; c++) js->prompt[i][n++] = *c;
        js->prompt[i][n] = '\0';
        /* Greedy, except the last job: seeded top-p, a pure function of (seed, t) too. */
        js->temperature[i] = i == N_JOBS - 1 ? 0.8 : 0.0;
        js->top_p[i] = i == N_JOBS - 1 ? 0.9 : 1.0;
    }
}

static int compute_references(struct nh_node *node, struct job_set *js)
{
    if (js->have_reference) return 0;
    for (int i = 0; i < N_JOBS; i++)
        if (nh_generate(node, js->prompt[i], g_max_tokens[i], js->temperature[i], js->top_p[i],
                        7 + (uint64_t)i, &js->reference[i]) != 0)
            return -1;
    js->have_reference = 1;
    return 0;
}

/* ---------------------------------------------------------------- node */
/* Per process: NOSA_FAULT=..., NOSA_FAULT_SKIP=... or NOSA_FAULT_PROB=..., NOSA_FAULT_SEED=... */
static char *g_worker_env[2][4];
static char *g_kvh_env[4], *g_coord_env[4];
static char g_arm_env[3][128];

/* --arm PROC:POINT[:SKIP | :pPROB]: that process starts with the point armed (common/fault.h):
 * fired at its SKIP+1-th pass, or at each pass with probability PROB from the harness seed. */
static int parse_arm(const char *arm, uint64_t seed)
{
    char proc[64] = "", point[96] = "", when[32] = "0";
    if (sscanf(arm, "%63[^:]:%95[^:]:%31s", proc, point, when) < 2) {
        fprintf(stderr, "fault_harness: --arm '%s': expected PROC:POINT[:SKIP|:pPROB]\n", arm);
        return -1;
    }
    snprintf(g_arm_env[0], sizeof g_arm_env[0], "NOSA_FAULT=%s", point);
    if (when[0] == 'p') {
        snprintf(g_arm_env[1], sizeof g_arm_env[1], "NOSA_FAULT_PROB=%s", when + 1);
        snprintf(g_arm_env[2], sizeof g_arm_env[2], "NOSA_FAULT_SEED=%llu",
                 (unsigned long long)seed);
    } else {
        snprintf(g_arm_env[1], sizeof g_arm_env[1], "NOSA_FAULT_SKIP=%s", when);
    }
    char **env = strcmp(proc, "kvh") == 0           ? g_kvh_env
                 : strcmp(proc, "coordinator") == 0 ? g_coord_env
                 : strcmp(proc, "cpu0") == 0        ? g_worker_env[0]
                 : strcmp(proc, "cpu1") == 0        ? g_worker_env[1]
                                                    : NULL;
    if (!env) {
        fprintf(stderr, "fault_harness: --arm: process '%s' (kvh, coordinator, cpu0, cpu1)\n", proc);
        return -1;
    }
    env[0] = g_arm_env[0];
    env[1] = g_arm_env[1];
    env[2] = g_arm_env[2][0] ? g_arm_env[2] : NULL;
    return 0;
}

/* Points that kill nothing (common/fault.h, NOSA_FAULT_ACTION): the process does the damage
 * and runs on, so the harness sees the firing in its log, not its exit. */
static const char *const g_action_points[] = {"worker.link.drop"};

static int armed_action_point(void)
{
    for (size_t i = 0; i < sizeof g_action_points / sizeof g_action_points[0]; i++)
        if (!strcmp(g_arm_env[0] + strlen("NOSA_FAULT="), g_action_points[i])) return 1;
    return 0;
}

/* 1 when the log of the running process name holds text (no wait, no message). */
static int log_has(struct nh_node *node, const char *name, const char *text)
{
    const struct nh_proc *p = nh_find(node, name);
    char *log = p ? test_read_file(p->log) : NULL;
    int found = log && strstr(log, text);
    free(log);
    return found;
}

/* Fault points of docs/FAULTS.md a soak arms at random (one pass count from the seed). */
static const struct {
    const char *proc, *point;
    long max_skip;
} g_soak_points[] = {
    {"cpu", "worker.step.after_decode", 20},  {"cpu", "worker.step.tokens_sent", 20},
    {"cpu", "worker.finished.sent", 1},       {"kvh", "kvhost.alloc.journal", 20},
    {"kvh", "kvhost.alloc.owner_torn", 40},   {"kvh", "kvhost.alloc.owner", 40},
    {"kvh", "kvhost.commit.torn", 20},        {"kvh", "kvhost.alloc.committed", 20},
    {"kvh", "kvhost.alloc.replied", 20},      {"kvh", "kvhost.free.journal", 2},
    {"kvh", "kvhost.free.owner", 20},         {"kvh", "kvhost.free.committed", 2},
    {"coordinator", "coordinator.accept.replied", 5},
    {"coordinator", "coordinator.assign.sent", 5},
    {"coordinator", "coordinator.journal.after_append", 60},
    {"coordinator", "coordinator.finish.journaled", 4},
};

static void disarm(void)
{
    memset(g_arm_env, 0, sizeof g_arm_env);
    memset(g_worker_env, 0, sizeof g_worker_env);
    memset(g_kvh_env, 0, sizeof g_kvh_env);
    memset(g_coord_env, 0, sizeof g_coord_env);
}

static void soak_arm_point(int victim)
{
    size_t n = sizeof g_soak_points / sizeof g_soak_points[0];
    size_t i = (size_t)rng_range(0, (long)n - 1);
    char arm[192];
    snprintf(arm, sizeof arm, "%s%s:%s:%ld", g_soak_points[i].proc,
             strcmp(g_soak_points[i].proc, "cpu") == 0 ? (victim ? "1" : "0") : "",
             g_soak_points[i].point, rng_range(0, g_soak_points[i].max_skip));
    parse_arm(arm, 0);
}

/* A fresh node: previous processes stopped, arena and journal removed. Only a regular file
 * is removed: the journal-full run points the journal at /dev/full, and unlinking that (as
 * root) let the coordinator create a plain file there, which never fills. */
static int node_start(struct nh_node *node, long coord_fsize)
{
    nh_stop_all(node, 5000);
    nh_forget_reaped(node);
    char arena[NH_PATH];
    nh_arena_path(node, arena, sizeof arena);
    unlink(arena);
    struct stat st;
    if (lstat(node->journal, &st) == 0 && S_ISREG(st.st_mode)) unlink(node->journal);
    if (nh_start_kvhost(node, 0, g_kvh_env) < 0) return -1;
    if (nh_start_coordinator(node, g_coord_env, coord_fsize) < 0) return -1;
    if (nh_start_worker(node, "cpu0", g_worker_env[0]) < 0) return -1;
    if (nh_start_worker(node, "cpu1", g_worker_env[1]) < 0) return -1;
    return nh_wait_workers(node, 2, 30000);
}

static void submit_all(struct nh_node *node, const struct job_set *js, int procs[N_JOBS])
{
    for (int i = 0; i < N_JOBS; i++) {
        char name[16];
        snprintf(name, sizeof name, "job%d", i);
        procs[i] = nh_submit(node, name, js->prompt[i], g_max_tokens[i], js->temperature[i],
                             js->top_p[i], 7 + (uint64_t)i);
        REQUIRE(procs[i] >= 0, "cannot start nosa submit");
    }
}

/* Tokens streamed so far over all jobs, and how many jobs ended. */
static long streamed(struct nh_node *node, const int procs[N_JOBS], int *ended, uint64_t ids[N_JOBS])
{
    static struct nh_job j;
    long total = 0;
    *ended = 0;
    for (int i = 0; i < N_JOBS; i++) {
        nh_job_read(node, procs[i], &j);
        total += j.n_tokens;
        *ended += j.done || node->procs[procs[i]].pid == 0;
        if (ids) ids[i] = j.job_id;
    }
    return total;
}

/* ---------------------------------------------------------------- faults mid-run */
static int inject_kvhost_kill(struct nh_node *node, const int procs[N_JOBS])
{
    uint64_t ids[N_JOBS];
    int ended, n = 0;
    nh_signal(node, "cpu0", SIGSTOP);
    nh_signal(node, "cpu1", SIGSTOP);
    usleep(100000); /* a request sent before the stop is answered */
    streamed(node, procs, &ended, ids);
    uint64_t known[N_JOBS];
    for (int i = 0; i < N_JOBS; i++)
        if (ids[i]) known[n++] = ids[i];
    static struct kvh_probe_snapshot before, after;
    char err[256] = "";
    int rc = kvh_probe_snapshot(node->kvhost_ep, known, n, &before, err, sizeof err);
    CHECK(rc == 0, "kv-host snapshot before the kill: %s", err);
    nh_signal(node, "kvh", SIGKILL);
    nh_wait_exit(node, "kvh", 5000);
    int up = nh_start_kvhost(node, 1, g_kvh_env) >= 0;
    CHECK(up, "kv-host did not come back with --recover");
    if (up && rc == 0) {
        rc = kvh_probe_snapshot(node->kvhost_ep, known, n, &after, err, sizeof err);
        CHECK(rc == 0, "kv-host snapshot after --recover: %s", err);
        if (rc == 0)
            CHECK(kvh_probe_compare(&before, &after) == 0,
                  "kv-host after --recover lost or changed sequences (%d of them probed)", n);
    }
    nh_signal(node, "cpu0", SIGCONT);
    nh_signal(node, "cpu1", SIGCONT);
    return up ? 0 : -1;
}

/* Every kind of bad frame to the coordinator's links and the kv-host while the jobs decode
 * (bad_input.h): each must get its Error, and (checked after, as for every fault) no job may
 * notice. The jobs must still be running when the last one has been answered. */
static int inject_bad_input(struct nh_node *node, const int procs[N_JOBS])
{
    uint64_t ids[N_JOBS], live[N_JOBS];
    int ended, n = 0, checked = 0;
    streamed(node, procs, &ended, ids);
    for (int i = 0; i < N_JOBS; i++)
        if (ids[i]) live[n++] = ids[i];
    int failed = bad_input_send(node, live, n, &checked);
    long total = streamed(node, procs, &ended, NULL);
    printf("bad-input: %d of %d bad frames answered as they must be; %d of %d jobs still "
           "running after them (%ld tokens streamed)\n", checked - failed, checked,
           N_JOBS - ended, N_JOBS, total);
    CHECK(failed == 0, "bad-input: %d of %d bad frames not refused as they must be", failed,
          checked);
    CHECK(ended < N_JOBS, "bad-input: every job ended before the bad input was all answered");
    return failed ? -1 : 0;
}

/* Restarts the process an armed NOSA_FAULT point killed, as the kind's recovery does. */
static void recover_armed(struct nh_node *node, const char *proc)
{
    if (strcmp(proc, "kvh") == 0) {
        g_kvh_env[0] = NULL; /* disarmed on the restart */
        CHECK(nh_start_kvhost(node, 1, NULL) >= 0, "kv-host did not come back with --recover");
    } else if (strcmp(proc, "coordinator") == 0) {
        CHECK(nh_start_coordinator(node, NULL, 0) >= 0, "coordinator did not restart");
    }
}

static int inject(struct nh_node *node, enum fault_kind kind, const int procs[N_JOBS], int victim)
{
    const char *w = victim ? "cpu1" : "cpu0";
    switch (kind) {
    case FAULT_WORKER_KILL: return nh_signal(node, w, SIGKILL);
    case FAULT_WORKER_HANG: return nh_signal(node, w, SIGSTOP);
    case FAULT_WORKER_PAUSE:
        if (nh_signal(node, w, SIGSTOP)) return -1;
        usleep((useconds_t)(node->heartbeat_timeout_ms + 500) * 1000); /* declared dead */
        return nh_signal(node, w, SIGCONT);
    case FAULT_KVHOST_KILL: return inject_kvhost_kill(node, procs);
    case FAULT_BAD_INPUT: return inject_bad_input(node, procs);
    case FAULT_COORD_KILL:
        nh_signal(node, "coordinator", SIGKILL);
        nh_wait_exit(node, "coordinator", 5000);
        return nh_start_coordinator(node, g_coord_env, 0) >= 0 ? 0 : -1;
    case FAULT_COORD_PAUSE:
        if (nh_signal(node, "coordinator", SIGSTOP)) return -1;
        usleep((useconds_t)node->heartbeat_timeout_ms * 2 * 1000);
        return nh_signal(node, "coordinator", SIGCONT);
    default: return -1;
    }
}

/* Waits for every job, then checks the invariants; adds to the summary. */
/* must_complete: a failure (even with a reason) is an error; failure_names: when set, a
 * failed job's error must contain it (the fault it reports). */
static void check_jobs(struct nh_node *node, const struct job_set *js, const int procs[N_JOBS],
                       int must_complete, const char *failure_names, const char *label,
                       struct fault_summary *sum)
{
    static struct nh_job got;
    for (int i = 0; i < N_JOBS; i++) {
        int rc = nh_job_wait(node, procs[i], 90000, &got);
        sum->jobs++;
        if (rc == 0 && got.done && got.exit_status == 0 &&
            (strcmp(got.reason, "length") == 0 || strcmp(got.reason, "eos") == 0)) {
            sum->completed++;
            const struct nh_job *want = &js->reference[i];
            int same = got.n_tokens == want->n_tokens &&
                       !memcmp(got.tokens, want->tokens, sizeof(int32_t) * (size_t)got.n_tokens);
            CHECK(same, "%s: job %d: %d tokens differ from the fault-free %d", label, i,
                  got.n_tokens, want->n_tokens);
            sum->mismatched += !same;
            CHECK(got.recomputed >= 0, "%s: job %d: recomputed_tokens not reported", label, i);
            if (got.recomputed > 0) sum->recomputed += got.recomputed;
            CHECK(got.recomputed <= (long)node->block_size,
                  "%s: job %d recomputed %ld tokens > the open block (%u)", label, i,
                  got.recomputed, node->block_size);
            sum->recompute_over_block += got.recomputed > (long)node->block_size;
        } else if (got.error[0]) {
            sum->failed_with_reason++;
            CHECK(!must_complete, "%s: job %d failed: %s", label, i, got.error);
            CHECK(!failure_names || strstr(got.error, failure_names),
                  "%s: job %d failed without naming the %s: %s", label, i, failure_names,
                  got.error);
        } else {
            sum->lost++;
            CHECK(0, "%s: job %d lost: no result and no reason (exit %d, reason '%s')", label,
                  i, got.exit_status, got.reason);
        }
    }
}

/* Every job has ended: the workers free their sequences after each JobFinished, the
 * coordinator those its workers could not (a retried free waits up to 2 s for a kv-host that
 * did not answer), so the arena must be empty again within a few seconds. */
static void check_arena_empty(struct nh_node *node, const char *label)
{
    static struct kvh_probe_snapshot st;
    char err[256] = "";
    int ok = 1, empty = 0;
    uint64_t end = nh_now_ms() + 10000;
    while (ok && !empty && nh_now_ms() < end) {
        ok = kvh_probe_snapshot(node->kvhost_ep, NULL, 0, &st, err, sizeof err) == 0;
        empty = ok && st.n_seqs == 0 && st.free_groups == st.n_groups;
        if (!empty) usleep(50000);
    }
    CHECK(empty, "%s: the arena is not empty once every job ended: %llu sequences, %llu of %llu "
          "groups used%s%s", label, (unsigned long long)st.n_seqs,
          (unsigned long long)(st.n_groups - st.free_groups), (unsigned long long)st.n_groups,
          ok ? "" : "; ", ok ? "" : err);
}

/* must_fire: a fault that does not come (the jobs ended first, an armed point was not passed
 * often enough) is a failure; in a soak it is only counted out. */
static void run_midrun(struct nh_node *node, struct job_set *js, enum fault_kind kind,
                       long at_tokens, int victim, int must_fire, struct fault_summary *sum)
{
    char label[300];
    if (g_arm_env[0][0]) snprintf(label, sizeof label, "armed %s %s", g_arm_env[0], g_arm_env[1]);
    else snprintf(label, sizeof label, "%s@%ld tokens (cpu%d)", g_fault_names[kind], at_tokens, victim);
    sum->runs++;
    if (node_start(node, 0) != 0) {
        CHECK(0, "%s: the node did not start", label);
        return;
    }
    int procs[N_JOBS];
    submit_all(node, js, procs);
    const char *armed_proc = NULL;
    if (g_kvh_env[0]) armed_proc = "kvh";
    else if (g_coord_env[0]) armed_proc = "coordinator";
    else if (g_worker_env[0][0]) armed_proc = "cpu0";
    else if (g_worker_env[1][0]) armed_proc = "cpu1";
    int acts = armed_proc && armed_action_point();
    int injected = 0, ended = 0;
    uint64_t end = nh_now_ms() + 60000;
    while (!injected && nh_now_ms() < end) {
        long total = streamed(node, procs, &ended, NULL);
        if (acts) { /* the process does the damage and runs on */
            injected = log_has(node, armed_proc, "firing point=");
        } else if (armed_proc) { /* the process kills itself at its point */
            if (nh_wait_exit(node, armed_proc, 0) == 1) {
                recover_armed(node, armed_proc);
                injected = 1;
            }
        } else if (total >= at_tokens) {
            CHECK(inject(node, kind, procs, victim) == 0, "%s: injection failed", label);
            injected = 1;
        }
        if (ended == N_JOBS) break;
        usleep(5000);
    }
    CHECK(injected || !must_fire, "%s: the fault never happened (jobs ended first: %d of %d)",
          label, ended, N_JOBS);
    if (!injected) printf("%s: not reached (the jobs ended first)\n", label);
    sum->faults += injected;
    check_jobs(node, js, procs, 1, NULL, label, sum);
    check_arena_empty(node, label);
    if (injected && kind == FAULT_WORKER_PAUSE && !armed_proc) {
        /* Declared dead while stopped, the worker is fenced: the coordinator kills it. */
        const char *w = victim ? "cpu1" : "cpu0";
        int gone = nh_wait_exit(node, w, 5000) == 1;
        const struct nh_proc *p = nh_find_last(node, w);
        CHECK(gone && p && WIFSIGNALED(p->status) && WTERMSIG(p->status) == SIGKILL,
              "%s: the paused worker %s was not fenced (killed) by the coordinator: %s", label,
              w, gone ? "it exited otherwise" : "it still runs");
    }
    if (injected && acts) {
        /* worker.link.drop: the same worker, on a new connection, nothing killed or fenced. */
        CHECK(nh_find(node, armed_proc) != NULL, "%s: %s died after its link dropped", label,
              armed_proc);
        CHECK(log_has(node, "coordinator", "registered again from a new connection"),
              "%s: the coordinator never saw %s come back on a new connection", label,
              armed_proc);
        CHECK(!log_has(node, "coordinator", "declared dead"),
              "%s: a worker was declared dead over a dropped link", label);
    }
    if (injected && kind == FAULT_COORD_PAUSE)
        CHECK(nh_find(node, "cpu0") && nh_find(node, "cpu1"),
              "%s: a worker died while only the coordinator was stopped", label);
}

/* ---------------------------------------------------------------- faults at rest */
/* The arena of a killed kv-host: first re-opened intact with --recover (every sequence kept),
 * then altered on disk: --recover must exit non-zero, say why, and never serve it. Needs only
 * nosa-kvhost: the arena gets its state from kvh_probe_fill. */
static void run_arena(struct nh_node *node, enum fault_kind kind, int random_damage,
                      struct fault_summary *sum)
{
    const char *label = g_fault_names[kind];
    sum->runs++;
    nh_stop_all(node, 5000);
    nh_forget_reaped(node);
    char arena[NH_PATH], err[256] = "";
    nh_arena_path(node, arena, sizeof arena);
    unlink(arena);
    static const uint64_t seqs[] = {11, 12, 13, 14, 15};
    static struct kvh_probe_snapshot before, after;
    if (nh_start_kvhost(node, 0, NULL) < 0 ||
        kvh_probe_fill(node->kvhost_ep, seqs, 5, 3, err, sizeof err) != 0 ||
        kvh_probe_snapshot(node->kvhost_ep, seqs, 5, &before, err, sizeof err) != 0) {
        CHECK(0, "%s: kv-host with 5 sequences: %s", label, err);
        return;
    }
    nh_signal(node, "kvh", SIGKILL);
    nh_wait_exit(node, "kvh", 5000);
    int up = nh_start_kvhost(node, 1, NULL) >= 0;
    CHECK(up, "%s: an intact arena was not recovered", label);
    if (up) {
        int rc = kvh_probe_snapshot(node->kvhost_ep, seqs, 5, &after, err, sizeof err);
        CHECK(rc == 0 && kvh_probe_compare(&before, &after) == 0,
              "%s: the intact arena lost sequences on --recover %s", label, err);
    }
    nh_signal(node, "kvh", SIGKILL);
    nh_wait_exit(node, "kvh", 5000);
    int fd = open(arena, O_RDWR);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        CHECK(0, "%s: %s: %s (a killed kv-host leaves its arena)", label, arena, strerror(errno));
        if (fd >= 0) close(fd);
        return;
    }
    int damaged;
    if (kind == FAULT_ARENA_TRUNCATE) {
        off_t len = random_damage ? (off_t)rng_range(0, (long)(st.st_size - 1) / 4096) * 4096
                                  : st.st_size / 2;
        damaged = ftruncate(fd, len) == 0;
    } else {
        /* The magic, or a seeded byte of the header the checksum covers (kv-host/kvh_layout.h:
         * struct kvh_header, checksum at offset 112 over the bytes before it). */
        off_t at = random_damage ? rng_range(0, 115) : 0;
        unsigned char b = 0;
        damaged = pread(fd, &b, 1, at) == 1;
        b ^= 0xff;
        damaged = damaged && pwrite(fd, &b, 1, at) == 1;
    }
    close(fd);
    CHECK(damaged, "%s: could not alter %s", label, arena);
    sum->faults++;
    const char *argv[] = {"nosa-kvhost", "--run-dir", node->run_dir, "--name", node->kvhost_name,
                          "--endpoint", node->kvhost_ep, "--arena", "64M", "--model",
                          node->model, "--recover", NULL};
    char *out = NULL;
    int rc = nh_run(node, argv, 15000, &out);
    CHECK(rc > 0, "%s: nosa-kvhost --recover on a damaged arena: exit %d (must refuse)", label,
          rc);
    CHECK(out && (strstr(out, "arena") || strstr(out, node->kvhost_name)),
          "%s: the refusal does not name the arena: %s", label, out ? out : "");
    printf("%s: refused: %s", label, out ? out : "(no output)\n");
    if (rc > 0) sum->failed_with_reason++;
    free(out);
}

/* The journal cannot be written: "disk full" from the first write (/dev/full, or where this
 * machine has none, RLIMIT_FSIZE 1 byte: EFBIG), or mid-run (RLIMIT_FSIZE 2 KiB: the first
 * wave's records fill it). Two waves of jobs: every job completes or is refused with an
 * error naming the journal; at least one is refused; the coordinator stays up. */
static void run_journal(struct nh_node *node, struct job_set *js, enum fault_kind kind,
                        struct fault_summary *sum)
{
    const char *label = g_fault_names[kind];
    sum->runs++;
    char saved[NH_PATH];
    snprintf(saved, sizeof saved, "%s", node->journal);
    long fsize = kind == FAULT_JOURNAL_FSIZE ? 2048 : 0;
    struct stat st;
    if (kind == FAULT_JOURNAL_FULL) {
        /* Never create /dev/full: the coordinator opens its journal with O_CREAT. */
        if (stat("/dev/full", &st) == 0 && S_ISCHR(st.st_mode))
            snprintf(node->journal, sizeof node->journal, "/dev/full");
        else
            fsize = 1;
    }
    int up = node_start(node, fsize) == 0;
    snprintf(node->journal, sizeof node->journal, "%s", saved);
    sum->faults++;
    CHECK(up, "%s: the node did not start (a full journal must refuse jobs, not the start)",
          label);
    if (!up) return;
    int before_failed = sum->failed_with_reason;
    for (int wave = 0; wave < 2; wave++) {
        int procs[N_JOBS];
        submit_all(node, js, procs);
        check_jobs(node, js, procs, 0, "journal", label, sum);
    }
    CHECK(sum->failed_with_reason > before_failed,
          "%s: no job was refused: the journal never filled up (fault not reached)", label);
    CHECK(nh_find(node, "coordinator") != NULL, "%s: the coordinator died", label);
}

/* ---------------------------------------------------------------- main */
static void print_summary(const struct fault_summary *s, const char *title)
{
    printf("\n%s\n", title);
    printf("| faults injected | runs | jobs | completed | failed (reason) | lost | mismatched "
           "| tokens recomputed | recompute > block | errors (failed checks) |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    printf("| %d | %d | %d | %d | %d | %d | %d | %ld | %ld | %d |\n", s->faults, s->runs, s->jobs,
           s->completed, s->failed_with_reason, s->lost, s->mismatched, s->recomputed,
           s->recompute_over_block, g_test_checks_failed);
}

static void run_one(struct nh_node *node, struct job_set *js, enum fault_kind kind,
                    long at_tokens, int victim, int random_damage, int must_fire,
                    struct fault_summary *sum)
{
    switch (kind) {
    case FAULT_ARENA_TRUNCATE:
    case FAULT_ARENA_HEADER: run_arena(node, kind, random_damage, sum); break;
    case FAULT_JOURNAL_FULL:
    case FAULT_JOURNAL_FSIZE: run_journal(node, js, kind, sum); break;
    default: run_midrun(node, js, kind, at_tokens, victim, must_fire, sum); break;
    }
}

static int parse_opts(int argc, char **argv, struct fault_opts *o)
{
    char err[128];
    *o = (struct fault_opts){.kind = FAULT_KINDS, .at_tokens = -1, .faults = 4, .seconds = 90,
                             .model_config = "tiny"};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--soak")) { o->soak = 1; continue; }
        if (!v) { fprintf(stderr, "fault_harness: %s needs a value\n", a); return -1; }
        i++;
        if (!strcmp(a, "--fault")) {
            for (int k = 0; k < FAULT_KINDS; k++)
                if (!strcmp(v, g_fault_names[k])) o->kind = (enum fault_kind)k;
            if (o->kind == FAULT_KINDS) { fprintf(stderr, "fault_harness: unknown fault '%s'\n", v); return -1; }
        } else if (!strcmp(a, "--seed")) {
            if (nosa_parse_u64(v, 0, UINT64_MAX, &o->seed, err, sizeof err)) goto bad;
            o->seeded = 1;
        } else if (!strcmp(a, "--at-tokens")) {
            if (nosa_parse_long(v, 1, 100000, &o->at_tokens, err, sizeof err)) goto bad;
        } else if (!strcmp(a, "--faults")) {
            if (nosa_parse_long(v, 1, 100000, &o->faults, err, sizeof err)) goto bad;
        } else if (!strcmp(a, "--seconds")) {
            if (nosa_parse_long(v, 1, 86400, &o->seconds, err, sizeof err)) goto bad;
        } else if (!strcmp(a, "--arm")) {
            o->arm = v;
        } else if (!strcmp(a, "--model-config")) {
            o->model_config = v;
        } else if (!strcmp(a, "--backend")) {
            if (strcmp(v, "cpu") != 0 && strcmp(v, "cuda") != 0) {
                fprintf(stderr, "fault_harness: --backend '%s': expected cpu or cuda\n", v);
                return -1;
            }
            o->backend = v;
        } else {
            fprintf(stderr, "fault_harness: unknown argument '%s'\n", a);
            return -1;
        }
        continue;
    bad:
        fprintf(stderr, "fault_harness: %s '%s': %s\n", a, v, err);
        return -1;
    }
    if (!o->soak && o->kind == FAULT_KINDS) {
        fprintf(stderr, "fault_harness: --fault KIND or --soak\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct fault_opts o;
    if (argc < 2 || parse_opts(argc, argv, &o) != 0) return 2;
    if (o.arm && parse_arm(o.arm, o.seed) != 0) return 2;
    g_rng = o.seed * 0x9e3779b97f4a7c15ull + 1;
    unsigned deadline = (unsigned)(o.soak ? o.seconds + 100 : 170);
    static struct nh_node node; /* static: the atexit cleanup runs after main returns */
    /* The arena faults need the kv-host alone; everything else a whole node. */
    static const char *const kvhost_only[] = {"nosa-kvhost", NULL};
    int arena_only = !o.soak && (o.kind == FAULT_ARENA_TRUNCATE || o.kind == FAULT_ARENA_HEADER);
    int rc = nh_node_init_needing(&node, "fault", argv[1], o.model_config, deadline,
                                  arena_only ? kvhost_only : NULL);
    if (rc == 77) return TEST_SKIP_EXIT;
    REQUIRE(rc == 0, "harness setup failed");
    if (o.backend) snprintf(node.backend, sizeof node.backend, "%s", o.backend);
    static struct job_set js;
    make_jobs(&js);
    if (!arena_only)
        REQUIRE(compute_references(&node, &js) == 0, "nosa-generate (the reference) failed");
    struct fault_summary sum = {0};
    char title[160];
    if (!o.soak) {
        long at = o.at_tokens > 0 ? o.at_tokens : o.seeded ? rng_range(4, 120) : 24;
        int victim = o.seeded ? (int)rng_range(0, 1) : 0;
        run_one(&node, &js, o.kind, at, victim, o.seeded, 1, &sum);
        snprintf(title, sizeof title, "fault %s (seed %llu, backend %s)", g_fault_names[o.kind],
                 (unsigned long long)o.seed, node.backend);
    } else {
        /* Random faults, each on a fresh node, until N faults or M seconds. */
        uint64_t end = nh_now_ms() + (uint64_t)o.seconds * 1000u;
        while (sum.faults < o.faults && nh_now_ms() < end) {
            /* One round in three: a named fault point of a worker or the kv-host. */
            long pick = rng_range(0, SOAK_KINDS + SOAK_KINDS / 2 - 1);
            enum fault_kind k = pick < SOAK_KINDS ? (enum fault_kind)pick : FAULT_WORKER_KILL;
            long at = rng_range(4, 120);
            int victim = (int)rng_range(0, 1);
            if (pick >= SOAK_KINDS) soak_arm_point(victim);
            if (g_arm_env[0][0]) printf("soak: %s %s\n", g_arm_env[0], g_arm_env[1]);
            else printf("soak: %s at %ld tokens, victim cpu%d\n", g_fault_names[k], at, victim);
            fflush(stdout);
            run_one(&node, &js, k, at, victim, 1, 0, &sum);
            disarm();
        }
        snprintf(title, sizeof title, "soak: seed %llu, %ld faults or %ld s, backend %s",
                 (unsigned long long)o.seed, o.faults, o.seconds, node.backend);
        /* Every round counted out (its fault not reached) would pass having tested nothing. */
        CHECK(sum.faults > 0, "soak: %d rounds and not one fault injected", sum.runs);
    }
    print_summary(&sum, title);
    nh_stop_all(&node, 5000);
    CHECK(nh_leaks(&node) == 0, "leaked processes or /dev/shm objects");
    if (g_test_checks_failed) nh_dump_logs(&node, 12);
    return test_report("fault_harness");
}
