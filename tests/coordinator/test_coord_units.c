/* test_coord_units.c: the coordinator's modules alone: the job table (queue order, a moved job
 * keeps its place, token dedupe, retention), admission (slots, context, arena, the running
 * jobs' growth reserved in exact numbers, the job's own kv-host first, jobs no worker can
 * ever take), a kv-host's queue of frees (each change told once, replay tells nothing), the
 * journal (replay, a torn or corrupted tail cut off, compaction, a write
 * failure), the metrics text and the rule for its address, the message validators and the
 * CLI's argument parser. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "cli_args.h"
#include "fault.h"
#include "jobs.h"
#include "journal.h"
#include "kvhosts.h"
#include "metrics.h"
#include "serve.pb-c.h"
#include "test_util.h"
#include "validate.h"
#include "workers.h"

#define BAD_MESSAGE NOSA__ERROR_CODE__ERROR_BAD_MESSAGE

static struct coord_job *add(struct coord_jobs *t, uint32_t prompt, uint32_t max)
{
    char err[128];
    const uint8_t spec[3] = {1, 2, 3};
    struct coord_job *j = coord_jobs_add(t, t->next_id, spec, sizeof spec, prompt, max, err,
                                         sizeof err);
    REQUIRE(j, "add: %s", err);
    coord_job_enqueue(t, j);
    return j;
}

static void test_jobs(void)
{
    struct coord_jobs t;
    coord_jobs_init(&t);
    struct coord_job *a = add(&t, 4, 8), *b = add(&t, 4, 8), *c = add(&t, 4, 8);
    CHECK(a->id == 1 && b->id == 2 && c->id == 3, "ids %llu %llu %llu",
          (unsigned long long)a->id, (unsigned long long)b->id, (unsigned long long)c->id);
    CHECK(coord_jobs_next_queued(&t, NULL, NULL) == a, "FIFO: a first");
    a->state = COORD_JOB_RUNNING;
    a->worker = 0;
    CHECK(coord_jobs_next_queued(&t, NULL, NULL) == b, "then b");
    coord_job_enqueue(&t, a); /* moved: back at its old place, ahead of b */
    CHECK(coord_jobs_next_queued(&t, NULL, NULL) == a, "a moved job keeps its place");
    char err[128];
    CHECK(coord_job_add_token(a, 0, 'x', (const uint8_t *)"x", 1, err, sizeof err) == 1, "t0");
    CHECK(coord_job_add_token(a, 1, 'y', (const uint8_t *)"yy", 2, err, sizeof err) == 1, "t1");
    CHECK(coord_job_add_token(a, 0, 'x', (const uint8_t *)"x", 1, err, sizeof err) == 0, "dup");
    CHECK(coord_job_add_token(a, 5, 'z', NULL, 0, err, sizeof err) == -1, "gap refused");
    size_t len;
    const uint8_t *txt = token_store_text(&a->tok, 1, &len);
    CHECK(a->tok.n == 2 && len == 2 && memcmp(txt, "yy", 2) == 0, "token text");
    CHECK(coord_jobs_find(&t, 2) == b && coord_jobs_find(&t, 9) == NULL, "find");
    CHECK(coord_jobs_add(&t, 2, (const uint8_t *)"s", 1, 1, 1, err, sizeof err) == NULL,
          "duplicate id refused");
    coord_job_finish(&t, b, NOSA__SERVE__FINISH_REASON__FINISH_LENGTH, 0, NULL, 0);
    coord_job_finish(&t, c, NOSA__SERVE__FINISH_REASON__FINISH_ERROR, 7, "boom", 0);
    CHECK(t.completed == 1 && t.failed == 1, "completed %llu failed %llu",
          (unsigned long long)t.completed, (unsigned long long)t.failed);
    CHECK(coord_jobs_count(&t, COORD_JOB_QUEUED) == 1, "one queued");
    for (int i = 0; i < COORD_JOBS_KEEP_FINISHED + 5; i++) {
        struct coord_job *j = add(&t, 1, 1);
        coord_job_finish(&t, j, NOSA__SERVE__FINISH_REASON__FINISH_LENGTH, 0, NULL, 0);
    }
    CHECK(coord_jobs_count(&t, COORD_JOB_FINISHED) == COORD_JOBS_KEEP_FINISHED + 7,
          "a finish keeps the table as it is: %zu finished",
          coord_jobs_count(&t, COORD_JOB_FINISHED));
    coord_jobs_drop_old_finished(&t);
    CHECK(coord_jobs_count(&t, COORD_JOB_FINISHED) == COORD_JOBS_KEEP_FINISHED,
          "finished kept: %zu", coord_jobs_count(&t, COORD_JOB_FINISHED));
    CHECK(coord_jobs_find(&t, 1) == a, "the unfinished job survives the trimming");
    coord_jobs_free(&t);
}

#define NONE COORD_KVHOST_NONE

static void test_admission(void)
{
    struct coord_workers ws;
    memset(&ws, 0, sizeof ws);
    int w0 = coord_workers_slot(&ws, "w0"), w1 = coord_workers_slot(&ws, "w1");
    CHECK(w0 == 0 && w1 == 1 && coord_workers_slot(&ws, "w0") == 0 &&
              ws.w[0].kvhost == COORD_KVHOST_UNKNOWN,
          "slots by name, kv-host unknown");
    ws.w[0] = (struct coord_worker){.name = "w0", .alive = 1, .max_seqs = 2, .max_context = 100,
                                    .block_size = 16, .kvhost = 0};
    ws.w[1] = (struct coord_worker){.name = "w1", .alive = 1, .max_seqs = 4, .max_context = 50,
                                    .block_size = 16, .kvhost = 0};
    CHECK(coord_workers_pick(&ws, 40, NONE, NULL, 0) == 1, "most free slots wins");
    CHECK(coord_workers_pick(&ws, 80, NONE, NULL, 0) == 0, "only w0 has the context");
    CHECK(coord_workers_pick(&ws, 101, NONE, NULL, 0) == -1, "nobody has the context");
    ws.w[1].assigned = 4;
    CHECK(coord_workers_pick(&ws, 40, NONE, NULL, 0) == 0, "w1 full by slots");
    ws.w[0].full_until_ms = 1000;
    CHECK(coord_workers_pick(&ws, 40, NONE, NULL, 999) == -1, "NO_SPACE backoff");
    CHECK(coord_workers_pick(&ws, 40, NONE, NULL, 1000) == 0, "NO_SPACE backoff over");
    struct coord_arenas arenas = {.n = 1, .a = {{.known = 1, .n_groups = 10, .free_groups = 3}}};
    CHECK(coord_job_groups(40, 16) == 3 && coord_job_groups(48, 16) == 3 &&
              coord_job_groups(49, 16) == 4, "groups per job");
    CHECK(coord_workers_pick(&ws, 48, NONE, &arenas, 2000) == 0, "fits the arena");
    arenas.a[0].reserved_groups = 1;
    CHECK(coord_workers_pick(&ws, 48, NONE, &arenas, 2000) == -1, "arena space reserved");
    arenas.a[0].known = 0;
    CHECK(coord_workers_pick(&ws, 48, NONE, &arenas, 2000) == 0, "an unknown arena: slots only");
    ws.w[0].alive = 0;
    CHECK(coord_workers_alive(&ws) == 1 && coord_workers_pick(&ws, 10, NONE, NULL, 2000) == -1,
          "a dead worker takes nothing");
    struct nosa_msg_peer p = {.id = {1, 2, 3}, .len = 3};
    ws.w[1].peer = p;
    CHECK(coord_workers_by_peer(&ws, &p) == 1, "by peer");
}

/* A running job on worker 0 (block_size 16, kv-host 0) with prompt, max_tokens, generated. */
static struct coord_job *running(struct coord_jobs *t, uint32_t prompt, uint32_t max,
                                 uint32_t generated)
{
    struct coord_job *j = add(t, prompt, max);
    char err[128];
    for (uint32_t i = 0; i < generated; i++)
        REQUIRE(coord_job_add_token(j, i, 'a', (const uint8_t *)"a", 1, err, sizeof err) == 1,
                "token: %s", err);
    j->state = COORD_JOB_RUNNING;
    j->worker = 0;
    j->kvhost = 0;
    return j;
}

/* Admission reserves what each running job will still allocate, as of the arena's stats
 * (block_size 16 throughout). */
static void test_arena_reserve(void)
{
    CHECK(coord_job_groups_held(20, 0, 0, 16) == 0, "no token: nothing vouched for");
    CHECK(coord_job_groups_held(20, 1, 0, 16) == 1, "20 positions appended: 1 complete block");
    CHECK(coord_job_groups_held(30, 19, 0, 16) == 3, "48 positions: 3 blocks");
    CHECK(coord_job_groups_held(20, 13, 13, 16) == 0, "moved with 13 tokens, none since: 0");
    CHECK(coord_job_groups_held(20, 14, 13, 16) == 2, "one since the move: 33 appended: 2");
    CHECK(coord_job_groups_held(20, 5, 0, 0) == 0, "no block size");

    struct coord_workers ws;
    memset(&ws, 0, sizeof ws);
    ws.n = 1;
    ws.w[0] = (struct coord_worker){.name = "w0", .alive = 1, .max_seqs = 8, .max_context = 1000,
                                    .block_size = 16, .kvhost = 0, .assigned = 2};
    struct coord_arenas arenas = {
        .n = 2, .a = {{.known = 1, .n_groups = 40, .free_groups = 10}, {.known = 1}}};
    struct coord_jobs t;
    coord_jobs_init(&t);
    struct coord_job *a = running(&t, 20, 60, 0);  /* needs ceil(80/16) = 5, holds 0 */
    struct coord_job *b = running(&t, 30, 34, 19); /* needs ceil(64/16) = 4, holds 3 */
    struct coord_job *q = add(&t, 20, 60);         /* queued: owes nothing */
    q->kvhost = 0;
    coord_arena_snapshot(&t, &ws, 0);
    CHECK(a->held_at_stats == 0 && b->held_at_stats == 3 && q->held_at_stats == 0,
          "held at the stats: %llu %llu %llu", (unsigned long long)a->held_at_stats,
          (unsigned long long)b->held_at_stats, (unsigned long long)q->held_at_stats);
    coord_arenas_reserve(&t, &ws, &arenas);
    CHECK(arenas.a[0].reserved_groups == 6 && arenas.a[1].reserved_groups == 0,
          "reserved %llu (want 5 + 1) and %llu", (unsigned long long)arenas.a[0].reserved_groups,
          (unsigned long long)arenas.a[1].reserved_groups);
    /* 10 free - 6 owed = 4: 64 tokens (4 groups) fit, 65 (5) do not; before, the stats read
     * reset the reservation and 160 tokens (the 10 free groups) were admitted. */
    CHECK(coord_workers_pick(&ws, 64, NONE, &arenas, 0) == 0, "4 groups fit");
    CHECK(coord_workers_pick(&ws, 65, NONE, &arenas, 0) == -1, "5 groups do not");
    CHECK(coord_workers_pick(&ws, 160, NONE, &arenas, 0) == -1, "the running jobs' growth");

    /* Tokens that arrive after the stats change nothing until the next read... */
    char err[128];
    for (uint32_t i = 0; i < 13; i++)
        REQUIRE(coord_job_add_token(a, i, 'a', (const uint8_t *)"a", 1, err, sizeof err) == 1,
                "token");
    coord_arenas_reserve(&t, &ws, &arenas);
    CHECK(arenas.a[0].reserved_groups == 6, "reserved %llu between reads, want 6",
          (unsigned long long)arenas.a[0].reserved_groups);
    /* ...which sees a's 2 groups (32 positions appended) allocated: it owes 3 more. */
    coord_arena_snapshot(&t, &ws, 0);
    coord_arenas_reserve(&t, &ws, &arenas);
    CHECK(a->held_at_stats == 2 && arenas.a[0].reserved_groups == 4,
          "after the next read: a holds %llu, reserved %llu (want 2, 3 + 1)",
          (unsigned long long)a->held_at_stats, (unsigned long long)arenas.a[0].reserved_groups);

    /* A job that moved to this kv-host with its 13 tokens holds nothing here yet. */
    struct coord_job *m = running(&t, 20, 60, 13);
    m->fresh_from = 13;
    coord_arena_snapshot(&t, &ws, 0);
    coord_arenas_reserve(&t, &ws, &arenas);
    CHECK(m->held_at_stats == 0 && arenas.a[0].reserved_groups == 9,
          "a fresh start owes its whole need: reserved %llu, want 4 + 5",
          (unsigned long long)arenas.a[0].reserved_groups);
    /* A job of another kv-host, or one whose arena is unknown, owes this one nothing. */
    m->kvhost = 1;
    arenas.a[1].known = 0;
    coord_arenas_reserve(&t, &ws, &arenas);
    CHECK(arenas.a[0].reserved_groups == 4 && arenas.a[1].reserved_groups == 0,
          "reserved %llu and %llu", (unsigned long long)arenas.a[0].reserved_groups,
          (unsigned long long)arenas.a[1].reserved_groups);
    coord_jobs_free(&t);
}

/* A job whose sequence is in a kv-host resumes on a worker of that kv-host while one could
 * take it; else it starts fresh elsewhere. */
static void test_kvhost_preference(void)
{
    struct coord_workers ws;
    memset(&ws, 0, sizeof ws);
    ws.n = 2;
    ws.w[0] = (struct coord_worker){.name = "a", .alive = 1, .max_seqs = 2, .max_context = 100,
                                    .block_size = 16, .kvhost = 0};
    ws.w[1] = (struct coord_worker){.name = "b", .alive = 1, .max_seqs = 4, .max_context = 100,
                                    .block_size = 16, .kvhost = 1};
    CHECK(coord_workers_pick(&ws, 40, NONE, NULL, 0) == 1, "a new job: most free slots");
    CHECK(coord_workers_pick(&ws, 40, 0, NULL, 0) == 0, "its table in kv-host 0: worker a");
    CHECK(coord_workers_pick(&ws, 40, COORD_KVHOST_UNKNOWN, NULL, 0) == 1, "unknown: any");
    ws.w[0].assigned = 2;
    CHECK(coord_workers_pick(&ws, 40, 0, NULL, 0) == -1, "a is busy: it waits for a slot");
    ws.w[0].alive = 0;
    CHECK(coord_workers_pick(&ws, 40, 0, NULL, 0) == 1, "a is dead: a fresh start on b");
    ws.w[0].alive = 1;
    ws.w[0].max_context = 30;
    CHECK(coord_workers_pick(&ws, 40, 0, NULL, 0) == 1, "a can never take it: b");
    ws.w[0].max_context = 100;
    struct coord_arenas arenas = {
        .n = 2, .a = {{.known = 1, .n_groups = 2, .free_groups = 2}, {.known = 0}}};
    CHECK(coord_workers_pick(&ws, 40, 0, &arenas, 0) == 1, "a's arena is too small: b");
}

struct queue_log {
    int n;
    uint64_t seq[8];
    int queued[8];
};

static void record_queue(void *arg, const char *endpoint, uint64_t seq, int queued)
{
    struct queue_log *l = arg;
    CHECK(strcmp(endpoint, "ipc:///nonexistent/kvh0.sock") == 0, "told about %s", endpoint);
    if (l->n < 8) {
        l->seq[l->n] = seq;
        l->queued[l->n] = queued;
    }
    l->n++;
}

/* A kv-host not yet answering (never polled): frees queue, each change told once; a job
 * run there again drops its free; a replayed change (the journal's) tells nothing. */
static void test_kvhost_queue(void)
{
    void *ctx = zmq_ctx_new();
    REQUIRE(ctx, "zmq_ctx_new");
    struct coord_kvhosts t;
    coord_kvhosts_init(&t, ctx, NULL);
    char err[256];
    const char *ep = "ipc:///nonexistent/kvh0.sock";
    int k = coord_kvhosts_get(&t, ep, err, sizeof err);
    REQUIRE(k == 0, "follow %s: %s", ep, err);
    struct queue_log l = {0};
    coord_kvhosts_watch_queues(&t, record_queue, &l);
    coord_kvhosts_free(&t, k, 7, 0);
    coord_kvhosts_free(&t, k, 7, 0); /* already queued: once */
    coord_kvhosts_free(&t, k, 9, 0);
    coord_kvhosts_keep(&t, k, 7);
    coord_kvhosts_keep(&t, k, 8); /* not queued: nothing to tell */
    CHECK(l.n == 3 && l.seq[0] == 7 && l.queued[0] == 1 && l.seq[1] == 9 && l.queued[1] == 1 &&
              l.seq[2] == 7 && l.queued[2] == 0,
          "queue changes told: %d", l.n);
    CHECK(t.h[k].n_pending == 1 && t.h[k].pending[0] == 9, "queued: %zu", t.h[k].n_pending);
    CHECK(coord_kvhosts_replay_queue(&t, ep, 11, 1, err, sizeof err) == 0 &&
              coord_kvhosts_replay_queue(&t, ep, 9, 0, err, sizeof err) == 0,
          "replay: %s", err);
    CHECK(l.n == 3 && t.h[k].n_pending == 1 && t.h[k].pending[0] == 11,
          "after the replay: %d told, %zu queued", l.n, t.h[k].n_pending);
    const char *other = "ipc:///nonexistent/kvh1.sock";
    CHECK(coord_kvhosts_replay_queue(&t, other, 12, 1, err, sizeof err) == 0 &&
              t.arenas.n == 2 && t.h[1].n_pending == 1,
          "a replayed free for a kv-host not given follows it: %d kv-hosts", t.arenas.n);
    coord_kvhosts_close(&t);
    zmq_ctx_term(ctx);
}

/* Jobs no registered worker can ever take, and why. */
static void test_never_fit(void)
{
    struct coord_workers ws;
    memset(&ws, 0, sizeof ws);
    char why[256] = "";
    CHECK(coord_workers_never_fit(&ws, NULL, 1000000, why, sizeof why) == 0,
          "no worker yet: one may come");
    ws.n = 2;
    ws.w[0] = (struct coord_worker){.name = "w0", .alive = 0, .max_seqs = 2, .max_context = 100,
                                    .block_size = 16, .kvhost = 0};
    ws.w[1] = (struct coord_worker){.name = "w1", .alive = 1, .max_seqs = 2, .max_context = 50,
                                    .block_size = 16, .kvhost = 1};
    CHECK(coord_workers_never_fit(&ws, NULL, 100, why, sizeof why) == 0, "a dead worker counts");
    CHECK(coord_workers_never_fit(&ws, NULL, 101, why, sizeof why) == 1 &&
              strcmp(why, "longer than every registered worker's max_context (100)") == 0,
          "101 tokens: %s", why);
    struct coord_arenas arenas = {.n = 2, .a = {{.known = 1, .n_groups = 5}, {.known = 0}}};
    CHECK(coord_workers_never_fit(&ws, &arenas, 80, why, sizeof why) == 0, "5 groups: fits");
    CHECK(coord_workers_never_fit(&ws, &arenas, 81, why, sizeof why) == 1 &&
              strcmp(why, "it needs 6 groups of 16 tokens, more than the largest arena a "
                          "worker with that context uses (5 groups)") == 0,
          "81 tokens: %s", why);
    CHECK(coord_workers_never_fit(&ws, &arenas, 40, why, sizeof why) == 0, "40 tokens fit");
    ws.w[0].max_context = 0; /* none given: any length */
    CHECK(coord_workers_never_fit(&ws, &arenas, 5000, why, sizeof why) == 1 &&
              strstr(why, "313 groups") && strstr(why, "(5 groups)"), "5000 tokens: %s", why);
}

/* ---------------------------------------------------------------- journal */
struct replayed {
    int n, types[64];
    uint64_t ids[64];
    char payloads[64][32];
};

static int on_record(enum coord_journal_type type, uint64_t id, const uint8_t *payload,
                     size_t len, void *arg, char *err, size_t errlen)
{
    struct replayed *r = arg;
    if (r->n < 64) {
        r->types[r->n] = type;
        r->ids[r->n] = id;
        snprintf(r->payloads[r->n], sizeof r->payloads[0], "%.*s", (int)len, (const char *)payload);
        r->n++;
    }
    return 0;
}

static int write_two(struct coord_journal *out, void *arg, char *err, size_t errlen)
{
    return coord_journal_append(out, COORD_JOURNAL_ACCEPT, 7, (const uint8_t *)"seven", 5, 0,
                                err, errlen) ||
           coord_journal_append(out, COORD_JOURNAL_FINISH, 7, (const uint8_t *)"done", 4, 0,
                                err, errlen);
}

static void test_journal(void)
{
    char dir[] = "/tmp/nosa-coord-units-XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp");
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/j", dir);
    struct coord_journal j;
    struct replayed r;
    memset(&r, 0, sizeof r);
    REQUIRE(coord_journal_open(&j, path, on_record, &r, err, sizeof err) == 0, "open: %s", err);
    CHECK(r.n == 0, "new journal replays nothing");
    CHECK(coord_journal_append(&j, COORD_JOURNAL_ACCEPT, 1, (const uint8_t *)"one", 3, 1, err,
                               sizeof err) == 0, "append: %s", err);
    CHECK(coord_journal_append(&j, COORD_JOURNAL_TOKENS, 1, (const uint8_t *)"tok", 3, 0, err,
                               sizeof err) == 0, "append tokens");
    CHECK(coord_journal_append(&j, COORD_JOURNAL_FINISH, 1, (const uint8_t *)"end", 3, 1, err,
                               sizeof err) == 0, "append finish");
    off_t good = (off_t)j.size;
    coord_journal_close(&j);

    /* a torn record: the header and part of the payload of a fourth one */
    int fd = open(path, O_WRONLY | O_APPEND);
    REQUIRE(fd >= 0, "reopen");
    const uint8_t torn[] = {10, 0, 0, 0, 1, 2, 3, 4, 2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 'h', 'a'};
    CHECK(write(fd, torn, sizeof torn) == (ssize_t)sizeof torn, "write torn");
    close(fd);
    memset(&r, 0, sizeof r);
    REQUIRE(coord_journal_open(&j, path, on_record, &r, err, sizeof err) == 0, "replay: %s", err);
    CHECK(r.n == 3 && r.types[0] == COORD_JOURNAL_ACCEPT && r.types[2] == COORD_JOURNAL_FINISH &&
              r.ids[1] == 1 && strcmp(r.payloads[1], "tok") == 0,
          "replayed %d records", r.n);
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size == good, "torn tail cut: size %lld, want %lld",
          (long long)st.st_size, (long long)good);
    CHECK(coord_journal_append(&j, COORD_JOURNAL_META, 0, (const uint8_t *)"m", 1, 1, err,
                               sizeof err) == 0, "append after the cut");
    coord_journal_close(&j);

    /* a flipped byte in the second record: it and what follows are dropped */
    fd = open(path, O_RDWR);
    uint8_t byte;
    CHECK(pread(fd, &byte, 1, 23 + 20) == 1, "read");
    byte ^= 0x40;
    CHECK(pwrite(fd, &byte, 1, 23 + 20) == 1, "flip");
    close(fd);
    memset(&r, 0, sizeof r);
    REQUIRE(coord_journal_open(&j, path, on_record, &r, err, sizeof err) == 0, "replay");
    CHECK(r.n == 1 && strcmp(r.payloads[0], "one") == 0, "checksum stops replay: %d", r.n);

    /* killed at coordinator.compact.written (the new file written, not yet renamed): the
     * journal it reopens is the old one, whole; the next compaction goes through */
    pid_t child = fork();
    REQUIRE(child >= 0, "fork");
    if (child == 0) {
        setenv("NOSA_FAULT", "coordinator.compact.written", 1);
        if (nosa_fault_init() == 0) coord_journal_compact(&j, write_two, NULL, err, sizeof err);
        _exit(3); /* not killed at the point */
    }
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
          "compaction not killed at its point: wait status %d", status);
    coord_journal_close(&j);
    memset(&r, 0, sizeof r);
    REQUIRE(coord_journal_open(&j, path, on_record, &r, err, sizeof err) == 0, "replay");
    CHECK(r.n == 1 && strcmp(r.payloads[0], "one") == 0,
          "after a crash mid-compaction: %d records, want the old journal's 1", r.n);

    CHECK(coord_journal_compact(&j, write_two, NULL, err, sizeof err) == 0, "compact: %s", err);
    CHECK(coord_journal_append(&j, COORD_JOURNAL_META, 0, (const uint8_t *)"z", 1, 1, err,
                               sizeof err) == 0, "append after compaction");
    coord_journal_close(&j);
    memset(&r, 0, sizeof r);
    REQUIRE(coord_journal_open(&j, path, on_record, &r, err, sizeof err) == 0, "replay");
    CHECK(r.n == 3 && r.ids[0] == 7 && strcmp(r.payloads[1], "done") == 0 &&
              r.types[2] == COORD_JOURNAL_META, "compacted journal: %d records", r.n);
    coord_journal_close(&j);

    /* writes that fail (EFBIG past RLIMIT_FSIZE, as ENOSPC on a full disk): the journal
     * says why, and stays failed */
    snprintf(path, sizeof path, "%s/small", dir);
    struct rlimit old, small = {0, 0};
    getrlimit(RLIMIT_FSIZE, &old);
    small.rlim_cur = 64;
    small.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0, "setrlimit");
    memset(&r, 0, sizeof r);
    REQUIRE(coord_journal_open(&j, path, on_record, &r, err, sizeof err) == 0, "open small");
    uint8_t big[100] = {0};
    CHECK(coord_journal_append(&j, COORD_JOURNAL_ACCEPT, 1, big, sizeof big, 1, err,
                               sizeof err) == -1 && j.failed, "write past the limit fails");
    CHECK(strstr(err, "small") && strstr(err, "File too large"), "error names it: %s", err);
    CHECK(coord_journal_append(&j, COORD_JOURNAL_ACCEPT, 1, (const uint8_t *)"x", 1, 0, err,
                               sizeof err) == -1, "stays failed");
    coord_journal_close(&j);
    setrlimit(RLIMIT_FSIZE, &old);
    memset(&r, 0, sizeof r);
    REQUIRE(coord_journal_open(&j, path, on_record, &r, err, sizeof err) == 0, "reopen small");
    CHECK(r.n == 0 && j.size == 0, "the partial record is cut off on replay (%d records)", r.n);
    coord_journal_close(&j);
    snprintf(path, sizeof path, "%s/missing/j", dir);
    CHECK(coord_journal_open(&j, path, on_record, &r, err, sizeof err) == -1 &&
              strstr(err, "missing"), "open in a missing folder fails naming it");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

static void test_metrics_text(void)
{
    struct coord_workers ws;
    memset(&ws, 0, sizeof ws);
    ws.n = 2;
    ws.w[0] = (struct coord_worker){.name = "gpu0", .backend = "cuda", .alive = 1, .assigned = 3,
                                    .max_seqs = 8,
                                    .stats = {.tokens_per_s = 250.5, .step_seconds = 0.012,
                                              .blocks_moved_per_step = 7,
                                              .bytes_moved_per_step = 1048576,
                                              .cache_hit_rate = 0.75, .steps = 10, .tokens = 99}};
    /* past 1e7 (and 2^32): counters and reals print every digit */
    ws.w[1] = (struct coord_worker){.name = "we\"ird", .backend = "cpu", .alive = 0,
                                    .stats = {.tokens_per_s = 12345678.25,
                                              .bytes_moved_per_step = 10000001.5,
                                              .cache_hit_rate = NAN, .steps = 10000001,
                                              .tokens = 12345678901ull}};
    const struct coord_metrics_arena arenas[2] = {
        {.kvhost = "ipc:///run/nosa/kvh0.sock", .up = 1, .groups = 100, .free_groups = 25,
         .reserved_groups = 7, .bytes = 1 << 20},
        {.kvhost = "ipc:///run/nosa/kvh1.sock", .groups = 50, .free_groups = 50, .bytes = 4096}};
    struct coord_metrics_node node = {.queued = 4, .running = 3, .completed = 11, .failed = 2,
                                      .journal_ok = 1, .arenas = arenas, .n_arenas = 2};
    char *text = NULL;
    REQUIRE(coord_metrics_render(&ws, &node, &text) == 0, "render");
    const char *want[] = {
        "# TYPE nosa_queue_depth gauge\nnosa_queue_depth 4\n",
        "nosa_jobs_running 3\n",
        "# TYPE nosa_jobs_completed_total counter\nnosa_jobs_completed_total 11\n",
        "nosa_jobs_failed_total 2\n",
        "nosa_tokens_per_second 250.5\n",
        "# TYPE nosa_arena_groups gauge\nnosa_arena_groups{kvhost=\"ipc:///run/nosa/kvh0.sock\"} "
        "100\nnosa_arena_groups{kvhost=\"ipc:///run/nosa/kvh1.sock\"} 50\n",
        "nosa_arena_up{kvhost=\"ipc:///run/nosa/kvh0.sock\"} 1\n"
        "nosa_arena_up{kvhost=\"ipc:///run/nosa/kvh1.sock\"} 0\n",
        "nosa_arena_used_ratio{kvhost=\"ipc:///run/nosa/kvh0.sock\"} 0.75\n",
        "nosa_arena_used_ratio{kvhost=\"ipc:///run/nosa/kvh1.sock\"} 0\n",
        "nosa_arena_free_groups{kvhost=\"ipc:///run/nosa/kvh0.sock\"} 25\n",
        "nosa_arena_reserved_groups{kvhost=\"ipc:///run/nosa/kvh0.sock\"} 7\n",
        "nosa_arena_bytes{kvhost=\"ipc:///run/nosa/kvh1.sock\"} 4096\n",
        "nosa_worker_up{worker=\"gpu0\",backend=\"cuda\"} 1\n",
        "nosa_worker_up{worker=\"we\\\"ird\",backend=\"cpu\"} 0\n",
        "nosa_worker_running_jobs{worker=\"gpu0\",backend=\"cuda\"} 3\n",
        "nosa_worker_step_seconds{worker=\"gpu0\",backend=\"cuda\"} 0.012\n",
        "nosa_worker_blocks_moved_per_step{worker=\"gpu0\",backend=\"cuda\"} 7\n",
        "nosa_worker_bytes_moved_per_step{worker=\"gpu0\",backend=\"cuda\"} 1048576\n",
        "nosa_worker_cache_hit_rate{worker=\"gpu0\",backend=\"cuda\"} 0.75\n",
        "# TYPE nosa_worker_tokens_total counter\n",
        "nosa_worker_tokens_total{worker=\"we\\\"ird\",backend=\"cpu\"} 12345678901\n",
        "nosa_worker_steps_total{worker=\"we\\\"ird\",backend=\"cpu\"} 10000001\n",
        "nosa_worker_tokens_per_second{worker=\"we\\\"ird\",backend=\"cpu\"} 12345678.25\n",
        "nosa_worker_bytes_moved_per_step{worker=\"we\\\"ird\",backend=\"cpu\"} 10000001.5\n",
        "nosa_worker_cache_hit_rate{worker=\"we\\\"ird\",backend=\"cpu\"} NaN\n",
        "nosa_worker_tokens_total{worker=\"gpu0\",backend=\"cuda\"} 99\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(strstr(text, want[i]) != NULL, "metrics lack:\n%s", want[i]);
    free(text);
    node.n_arenas = 0;
    ws.n = 0;
    REQUIRE(coord_metrics_render(&ws, &node, &text) == 0, "render");
    CHECK(!strstr(text, "nosa_arena") && !strstr(text, "nosa_worker_up"),
          "no arena or worker families when unknown");
    free(text);
}

/* HTTP has no CURVE: a non-loopback metrics address needs insecure, as plain tcp does. */
static void test_metrics_address(void)
{
    struct coord_metrics_server *m = NULL;
    char err[512] = "";
    CHECK(coord_metrics_start("0.0.0.0", 0, 0, &m, err, sizeof err) == -1 && !m &&
              strstr(err, "refusing to serve metrics on 0.0.0.0: not a loopback address") &&
              strstr(err, "--insecure"), "0.0.0.0 without insecure: %s", err);
    CHECK(coord_metrics_start("10.1.2.3", 9464, 0, &m, err, sizeof err) == -1 &&
              strstr(err, "10.1.2.3:9464"), "another address: %s", err);
    CHECK(coord_metrics_start("127.0.0.2", 0, 0, &m, err, sizeof err) == 0 && m,
          "127.0.0.2 is loopback: %s", err);
    coord_metrics_stop(m);
    m = NULL;
    CHECK(coord_metrics_start("0.0.0.0", 0, 1, &m, err, sizeof err) == 0 && m,
          "0.0.0.0 with insecure: %s", err);
    coord_metrics_stop(m);
}

static void test_validate(void)
{
    char err[256];
    Nosa__Serve__SamplingParams sp = NOSA__SERVE__SAMPLING_PARAMS__INIT;
    sp.max_tokens = 4;
    sp.top_p = 1.0f;
    Nosa__Serve__JobSpec spec = NOSA__SERVE__JOB_SPEC__INIT;
    spec.prompt_case = NOSA__SERVE__JOB_SPEC__PROMPT_TEXT;
    spec.text = "hello";
    spec.sampling = &sp;
    Nosa__Serve__SubmitRequest s = NOSA__SERVE__SUBMIT_REQUEST__INIT;
    s.job = &spec;
    Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
    m.version = 1;
    m.body_case = NOSA__SERVE__CLIENT_MSG__BODY_SUBMIT;
    m.submit = &s;
    CHECK(coord_client_msg_validate(&m.base, err, sizeof err) == 0, "valid: %s", err);
    CHECK(coord_prompt_tokens(&spec.base) == 6, "text + BOS");
    spec.text = "";
    CHECK(coord_client_msg_validate(&m.base, err, sizeof err) == BAD_MESSAGE &&
              strstr(err, "empty prompt text"), "empty text: %s", err);
    spec.text = "hello";
    sp.top_p = 0.0f;
    CHECK(coord_client_msg_validate(&m.base, err, sizeof err) == BAD_MESSAGE &&
              strstr(err, "top_p"), "top_p 0: %s", err);
    sp.top_p = 1.0f;
    sp.temperature = -1.0f;
    CHECK(coord_client_msg_validate(&m.base, err, sizeof err) && strstr(err, "temperature"),
          "negative temperature: %s", err);
    sp.temperature = 0.0f;
    int32_t ids[2] = {3, -1};
    Nosa__Serve__TokenList tl = NOSA__SERVE__TOKEN_LIST__INIT;
    tl.ids = ids;
    tl.n_ids = 2;
    spec.prompt_case = NOSA__SERVE__JOB_SPEC__PROMPT_TOKENS;
    spec.tokens = &tl;
    CHECK(coord_client_msg_validate(&m.base, err, sizeof err) && strstr(err, "negative"),
          "negative id: %s", err);
    tl.n_ids = 0;
    CHECK(coord_client_msg_validate(&m.base, err, sizeof err) == BAD_MESSAGE &&
              strstr(err, "empty prompt token list"), "no tokens: %s", err);
    tl.n_ids = 1;
    CHECK(coord_client_msg_validate(&m.base, err, sizeof err) == 0 &&
              coord_prompt_tokens(&spec.base) == 1, "token prompt");
    spec.job_id = 5;
    CHECK(coord_client_msg_validate(&m.base, err, sizeof err) && strstr(err, "job_id"),
          "client-given job id: %s", err);
    m.version = 2;
    int code = coord_client_msg_validate(&m.base, err, sizeof err);
    CHECK(code == NOSA__ERROR_CODE__ERROR_BAD_VERSION, "version: %d", code);

    Nosa__Serve__Register r = NOSA__SERVE__REGISTER__INIT;
    r.worker_name = "bad name";
    r.max_seqs = r.block_size = r.max_context = 1;
    Nosa__Serve__WorkerMsg w = NOSA__SERVE__WORKER_MSG__INIT;
    w.version = 1;
    w.body_case = NOSA__SERVE__WORKER_MSG__BODY_REGISTER;
    w.register_ = &r;
    CHECK(coord_worker_msg_validate(&w.base, err, sizeof err) && strstr(err, "0x20"),
          "space in a name: %s", err);
    r.worker_name = "cpu0";
    CHECK(coord_worker_msg_validate(&w.base, err, sizeof err) == 0, "valid Register");
    w.body_case = NOSA__SERVE__WORKER_MSG__BODY__NOT_SET;
    CHECK(coord_worker_msg_validate(&w.base, err, sizeof err) == BAD_MESSAGE,
          "no body");
}

static int parse(const char *line, struct nosa_cli_args *a, char *err, size_t errlen)
{
    char buf[512], *argv[32];
    snprintf(buf, sizeof buf, "%s", line);
    int argc = 0;
    argv[argc++] = "nosa";
    for (char *tok = strtok(buf, " "); tok && argc < 31; tok = strtok(NULL, " "))
        argv[argc++] = tok;
    argv[argc] = NULL;
    int rc = nosa_cli_parse(argc, argv, a, err, errlen);
    return rc;
}

static void test_cli_args(void)
{
    struct nosa_cli_args a;
    char err[256];
    CHECK(parse("--json submit --tokens 1,2,3 --max-tokens 5 --seed 9 --top-p 0.5", &a, err,
                sizeof err) == 0, "submit: %s", err);
    CHECK(a.command == NOSA_CLI_SUBMIT && a.json && a.n_tokens == 3 && a.tokens[2] == 3 &&
              a.max_tokens == 5 && a.seed == 9 && a.top_p == 0.5 && a.stream && a.stop_at_eos,
          "submit fields");
    nosa_cli_args_free(&a);
    CHECK(parse("status --job 4 --coordinator ipc://x", &a, err, sizeof err) == 0 &&
              a.command == NOSA_CLI_STATUS && a.job_id == 4 &&
              strcmp(a.coordinator, "ipc://x") == 0,
          "status --job");
    nosa_cli_args_free(&a);
    CHECK(parse("cancel 12", &a, err, sizeof err) == 0 && a.job_id == 12, "cancel");
    nosa_cli_args_free(&a);
    struct {
        const char *line, *want;
    } bad[] = {
        {"", "no command"},
        {"frobnicate", "unknown command"},
        {"submit --prompt hi", "--max-tokens"},
        {"submit --max-tokens 3", "exactly one"},
        {"submit --prompt a --tokens 1 --max-tokens 3", "exactly one"},
        {"submit --prompt a --max-tokens 0", "out of range"},
        {"submit --prompt a --max-tokens -2", "out of range"},
        {"submit --prompt a --max-tokens 3 --top-p 0", "(0, 1]"},
        {"submit --prompt a --max-tokens 3 --temperature x", "--temperature"},
        {"submit --tokens 1,,2 --max-tokens 3", "empty"},
        {"submit --tokens 1,-2 --max-tokens 3", "out of range"},
        {"status --max-tokens 3", "belong to submit"},
        {"cancel", "needs a job id"},
        {"cancel abc", "job id"},
        {"cancel 1 2", "unexpected"},
        {"drain --job 3", "--job belongs"},
        {"status --bogus 1", "unknown flag"},
        {"status --coordinator", "needs a value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        int rc = parse(bad[i].line, &a, err, sizeof err);
        CHECK(rc == -1 && strstr(err, bad[i].want), "'%s': rc %d err '%s' (want '%s')",
              bad[i].line, rc, err, bad[i].want);
        nosa_cli_args_free(&a);
    }
    CHECK(parse("--help", &a, err, sizeof err) == 0 && a.command == NOSA_CLI_HELP, "--help");
    nosa_cli_args_free(&a);
}

int main(void)
{
    test_jobs();
    test_admission();
    test_arena_reserve();
    test_kvhost_preference();
    test_never_fit();
    test_kvhost_queue();
    test_journal();
    test_metrics_text();
    test_metrics_address();
    test_validate();
    test_cli_args();
    return test_report("coord_units");
}
