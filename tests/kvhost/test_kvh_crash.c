/* test_kvh_crash.c: a kv-host store killed (SIGKILL, common/fault.h) at every fault point of
 * its update order, and at random points, then recovered: every acknowledged allocation is
 * intact, the interrupted request took effect wholly or not at all, no group is in two
 * tables or lost (free + allocated == total), and the recovered store keeps working.
 *
 * The store lives in an anonymous shared mapping; a forked child recovers it, runs a stream
 * of requests and reports each one (intent before, acknowledgement after) through a pipe.
 * A second crash during recovery itself is tested too, at both of its points (a record freed,
 * a record half written). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault.h"
#include "kvh_store.h"
#include "test_util.h"

#define REGION_BYTES (1u << 20)
#define MAX_BATCH 3
#define MAX_MODEL_SEQS 512
#define MAX_SEQ_GROUPS 64
#define OPS_PER_CHILD 40

static const struct nosa_kv_geometry g_geom = {.n_layers = 1, .n_kv_heads = 2, .block_size = 4,
                                               .head_dim = 8, .dtype = NOSA_KV_DTYPE_BF16};

enum rec_kind { REC_INTENT = 1, REC_ACK = 2 };
enum op_kind { OP_ALLOC = 1, OP_FREE = 2 };

/* One pipe record: an op the child is about to run (intent) or has finished (ack). */
struct op_rec {
    int kind, op, n;
    uint64_t seq[MAX_BATCH];
    uint32_t n_groups[MAX_BATCH];
    uint32_t first[MAX_BATCH];
    uint32_t groups[MAX_BATCH * 3];
};

struct model_seq {
    uint64_t id;
    uint32_t n;
    uint32_t groups[MAX_SEQ_GROUPS];
};

/* What the parent knows is acknowledged. */
struct model {
    struct model_seq seqs[MAX_MODEL_SEQS];
    int n;
};

static struct model_seq *model_find(struct model *m, uint64_t id)
{
    for (int i = 0; i < m->n; i++)
        if (m->seqs[i].id == id) return &m->seqs[i];
    return NULL;
}

static void model_apply(struct model *m, const struct op_rec *r)
{
    uint32_t at = 0;
    for (int i = 0; i < r->n; i++) {
        struct model_seq *s = model_find(m, r->seq[i]);
        if (r->op == OP_FREE) {
            REQUIRE(s, "ack frees an unknown seq");
            *s = m->seqs[--m->n];
            continue;
        }
        if (!s) {
            REQUIRE(m->n < MAX_MODEL_SEQS, "model full");
            s = &m->seqs[m->n++];
            memset(s, 0, sizeof(*s));
            s->id = r->seq[i];
        }
        REQUIRE(r->first[i] == s->n, "ack first index %u, model has %u", r->first[i], s->n);
        for (uint32_t k = 0; k < r->n_groups[i]; k++) s->groups[s->n++] = r->groups[at++];
    }
}

static uint64_t rng_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static void write_rec(int fd, const struct op_rec *r)
{
    if (write(fd, r, sizeof(*r)) != (ssize_t)sizeof(*r)) _exit(3);
}

/* The child: recover, run the request stream, report. Killed by an armed fault point. */
static void child_run(uint8_t *base, int fd, uint64_t seed, uint64_t id_base)
{
    struct kvh_store st;
    char err[256];
    if (kvh_store_recover(base, REGION_BYTES, &st, err, sizeof(err))) {
        fprintf(stderr, "child recovery: %s\n", err);
        _exit(4);
    }
    uint64_t rng = seed, next_id = id_base;
    for (int op = 0; op < OPS_PER_CHILD; op++) {
        struct op_rec r = {.kind = REC_INTENT};
        uint64_t live[MAX_BATCH];
        int n_live = 0;
        for (size_t i = 0; i < st.seqs.n_slots && n_live < MAX_BATCH; i++)
            if (st.seqs.slots[i].used && rng_next(&rng) % 4 == 0 &&
                st.seqs.slots[i].n_groups + 3 <= MAX_SEQ_GROUPS)
                live[n_live++] = st.seqs.slots[i].seq_id;
        if (n_live > 0 && (st.seqs.count > 40 || rng_next(&rng) % 3 == 0)) {
            r.op = OP_FREE;
            r.n = 1 + (int)(rng_next(&rng) % (uint64_t)n_live);
            memcpy(r.seq, live, (size_t)r.n * sizeof(live[0]));
        } else {
            r.op = OP_ALLOC;
            r.n = 1 + (int)(rng_next(&rng) % MAX_BATCH);
            for (int i = 0; i < r.n; i++) {
                r.seq[i] = i < n_live && rng_next(&rng) % 2 ? live[i] : next_id++;
                r.n_groups[i] = 1 + (uint32_t)(rng_next(&rng) % 3);
            }
        }
        write_rec(fd, &r);
        if (r.op == OP_ALLOC) {
            struct kvh_seq_alloc reqs[MAX_BATCH];
            for (int i = 0; i < r.n; i++) reqs[i] = (struct kvh_seq_alloc){r.seq[i], r.n_groups[i]};
            if (kvh_store_alloc(&st, reqs, (size_t)r.n, r.first, r.groups, err, sizeof(err))) {
                fprintf(stderr, "child alloc: %s\n", err);
                _exit(5);
            }
        } else {
            uint64_t freed;
            if (kvh_store_free(&st, r.seq, (size_t)r.n, &freed, err, sizeof(err))) {
                fprintf(stderr, "child free: %s\n", err);
                _exit(5);
            }
        }
        r.kind = REC_ACK;
        write_rec(fd, &r);
    }
    kvh_store_close(&st);
    _exit(0);
}

/* Runs one child with the given fault environment; applies its acks to m and returns the
 * op it was in the middle of (n == 0 when none). Returns 1 when the child was killed. */
static int run_child(uint8_t *base, struct model *m, const char *points, const char *skip,
                     const char *prob, uint64_t seed, uint64_t id_base, struct op_rec *in_flight)
{
    int pfd[2];
    REQUIRE(pipe(pfd) == 0, "pipe");
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        close(pfd[0]);
        setenv("NOSA_FAULT", points, 1);
        if (skip) setenv("NOSA_FAULT_SKIP", skip, 1);
        if (prob) {
            char s[32];
            snprintf(s, sizeof(s), "%llu", (unsigned long long)seed);
            setenv("NOSA_FAULT_PROB", prob, 1);
            setenv("NOSA_FAULT_SEED", s, 1);
        }
        if (nosa_fault_init()) _exit(6);
        child_run(base, pfd[1], seed, id_base);
    }
    close(pfd[1]);
    memset(in_flight, 0, sizeof(*in_flight));
    struct op_rec r;
    ssize_t got;
    while ((got = read(pfd[0], &r, sizeof(r))) == (ssize_t)sizeof(r)) {
        if (r.kind == REC_INTENT) {
            *in_flight = r;
        } else {
            model_apply(m, &r);
            memset(in_flight, 0, sizeof(*in_flight));
        }
    }
    close(pfd[0]);
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
    int killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    REQUIRE(killed || (WIFEXITED(status) && WEXITSTATUS(status) == 0),
            "child failed: status 0x%x", status);
    return killed;
}

/* s's first n groups are ms's. */
static int table_starts_with(const struct kvh_seq *s, const struct model_seq *ms, uint32_t n)
{
    if (!s || s->n_groups < n) return 0;
    return memcmp(s->groups, ms->groups, n * sizeof(uint32_t)) == 0;
}

static int table_equals(const struct kvh_seq *s, const struct model_seq *ms, uint32_t n)
{
    return s && s->n_groups == n && table_starts_with(s, ms, n);
}

/* Recovers base in this process and checks it against the model and the interrupted op;
 * then folds the op's outcome into the model. */
static void verify(uint8_t *base, struct model *m, const struct op_rec *in_flight,
                   const char *what)
{
    struct kvh_store st;
    char err[256];
    int rc = kvh_store_recover(base, REGION_BYTES, &st, err, sizeof(err));
    CHECK(rc == 0, "%s: recovery: %s", what, err);
    if (rc) return;
    static uint8_t seen[1u << 16];
    REQUIRE(st.n_groups <= sizeof(seen), "region too big for the check");
    memset(seen, 0, st.n_groups);
    uint64_t used = 0;
    for (size_t i = 0; i < st.seqs.n_slots; i++) {
        const struct kvh_seq *s = &st.seqs.slots[i];
        if (!s->used) continue;
        for (uint32_t k = 0; k < s->n_groups; k++) {
            CHECK(!seen[s->groups[k]], "%s: group %u in two tables", what, s->groups[k]);
            seen[s->groups[k]] = 1;
        }
        used += s->n_groups;
    }
    for (uint64_t i = 0; i < st.n_free; i++) {
        CHECK(!seen[st.free_stack[i]], "%s: free group %u is in a table", what,
              st.free_stack[i]);
        seen[st.free_stack[i]] = 1;
    }
    CHECK(used + st.n_free == st.n_groups, "%s: %lu used + %lu free != %lu", what,
          (unsigned long)used, (unsigned long)st.n_free, (unsigned long)st.n_groups);

    /* Did the interrupted op take effect? Judge by its first sequence, then demand that every
     * one of its sequences agrees. */
    int applied = 0;
    if (in_flight->n) {
        const struct kvh_seq *s = kvh_store_table(&st, in_flight->seq[0]);
        const struct model_seq *ms = model_find(m, in_flight->seq[0]);
        uint32_t before = ms ? ms->n : 0;
        applied = in_flight->op == OP_FREE ? s == NULL
                                           : (s && s->n_groups == before + in_flight->n_groups[0]);
    }
    size_t expect_seqs = (size_t)m->n;
    for (int i = 0; i < in_flight->n; i++) {
        const struct kvh_seq *s = kvh_store_table(&st, in_flight->seq[i]);
        struct model_seq *ms = model_find(m, in_flight->seq[i]);
        uint32_t before = ms ? ms->n : 0;
        if (in_flight->op == OP_FREE) {
            CHECK(applied ? s == NULL : table_equals(s, ms, before),
                  "%s: free of seq %lu half done", what, (unsigned long)in_flight->seq[i]);
            if (applied) expect_seqs--;
            continue;
        }
        uint32_t want = applied ? before + in_flight->n_groups[i] : before;
        CHECK(want == 0 ? s == NULL : (s && s->n_groups == want),
              "%s: alloc of seq %lu half done (%u groups, want %u)", what,
              (unsigned long)in_flight->seq[i], s ? s->n_groups : 0, want);
        if (before) CHECK(table_starts_with(s, ms, before), "%s: seq %lu prefix changed", what,
                          (unsigned long)in_flight->seq[i]);
        if (applied && !ms) expect_seqs++;
        if (applied && s && s->n_groups == want) {
            if (!ms) {
                ms = &m->seqs[m->n++];
                memset(ms, 0, sizeof(*ms));
                ms->id = in_flight->seq[i];
            }
            memcpy(ms->groups, s->groups, want * sizeof(uint32_t));
            ms->n = want;
        }
    }
    if (applied && in_flight->op == OP_FREE)
        for (int i = 0; i < in_flight->n; i++) {
            struct model_seq *ms = model_find(m, in_flight->seq[i]);
            if (ms) *ms = m->seqs[--m->n];
        }
    CHECK(st.seqs.count == expect_seqs, "%s: %zu sequences, want %zu", what, st.seqs.count,
          expect_seqs);
    for (int i = 0; i < m->n; i++)
        CHECK(table_equals(kvh_store_table(&st, m->seqs[i].id), &m->seqs[i], m->seqs[i].n),
              "%s: acknowledged seq %lu lost or changed", what, (unsigned long)m->seqs[i].id);
    kvh_store_close(&st);
}

static const char *const g_points[] = {
    "kvhost.alloc.journal", "kvhost.alloc.owner_torn", "kvhost.alloc.owner",
    "kvhost.alloc.committed", "kvhost.free.journal", "kvhost.free.owner_torn",
    "kvhost.free.owner", "kvhost.free.committed", "kvhost.commit.torn", "kvhost.journal.torn",
};

/* A format killed before its header's magic is written leaves a region recovery refuses. */
static void test_interrupted_format(void)
{
    uint8_t *base = mmap(NULL, REGION_BYTES, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(base != MAP_FAILED, "mmap");
    const char *points[] = {"kvhost.format.owner_torn", "kvhost.format.header"};
    const char *skips[] = {"3", "0"}; /* the header point is passed once */
    for (int i = 0; i < 2; i++) {
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork");
        if (pid == 0) {
            setenv("NOSA_FAULT", points[i], 1);
            setenv("NOSA_FAULT_SKIP", skips[i], 1);
            if (nosa_fault_init()) _exit(6);
            struct kvh_store_plan plan;
            struct kvh_store st;
            char err[256];
            if (kvh_store_plan(REGION_BYTES, &g_geom, 4096, &plan, err, sizeof(err)) ||
                kvh_store_format(base, &plan, &g_geom, &st, err, sizeof(err)))
                _exit(7);
            _exit(0);
        }
        int status;
        REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "%s fired", points[i]);
        struct kvh_store st;
        char err[256] = "";
        CHECK(kvh_store_recover(base, REGION_BYTES, &st, err, sizeof(err)) == -EINVAL,
              "%s: interrupted format refused", points[i]);
        CHECK(strstr(err, "bad magic") != NULL, "%s: err %s", points[i], err);
    }
    munmap(base, REGION_BYTES);
}

int main(void)
{
    test_interrupted_format();
    uint8_t *base = mmap(NULL, REGION_BYTES, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(base != MAP_FAILED, "mmap");
    struct kvh_store_plan plan;
    struct kvh_store st;
    char err[256];
    REQUIRE(kvh_store_plan(REGION_BYTES, &g_geom, 4096, &plan, err, sizeof(err)) == 0, "%s", err);
    REQUIRE(kvh_store_format(base, &plan, &g_geom, &st, err, sizeof(err)) == 0, "%s", err);
    kvh_store_close(&st);

    static struct model m;
    struct op_rec in_flight;
    uint64_t id_base = 1000;
    int kills = 0;
    const char *skips[] = {"0", "1", "4", "11"};
    for (size_t p = 0; p < sizeof(g_points) / sizeof(g_points[0]); p++)
        for (size_t k = 0; k < sizeof(skips) / sizeof(skips[0]); k++) {
            char what[96];
            snprintf(what, sizeof(what), "%s skip %s", g_points[p], skips[k]);
            kills += run_child(base, &m, g_points[p], skips[k], NULL, id_base, id_base,
                               &in_flight);
            id_base += 1000;
            verify(base, &m, &in_flight, what);
        }
    for (uint64_t seed = 1; seed <= 40; seed++) {
        char what[64];
        snprintf(what, sizeof(what), "random seed %llu", (unsigned long long)seed);
        kills += run_child(base, &m, "*", NULL, "0.01", seed, id_base, &in_flight);
        id_base += 1000;
        verify(base, &m, &in_flight, what);
    }
    /* A crash during recovery (while undoing an interrupted alloc), then recovery again:
     * after a record freed (recover.owner) or half written (recover.owner_torn: the next
     * recovery finds it torn and frees it too). The interrupted alloc left at least one
     * record to undo, so each point fires at its first pass. */
    static const char *const recover_points[] = {"kvhost.recover.owner",
                                                 "kvhost.recover.owner_torn"};
    for (size_t p = 0; p < sizeof(recover_points) / sizeof(recover_points[0]); p++)
        for (int skip = 0; skip < 3; skip++) {
            kills += run_child(base, &m, "kvhost.alloc.owner", "5", NULL, 7, id_base, &in_flight);
            id_base += 1000;
            struct op_rec recovering = {0};
            char s[8], what[96];
            snprintf(s, sizeof(s), "%d", skip);
            snprintf(what, sizeof(what), "crash during recovery at %s skip %d",
                     recover_points[p], skip);
            /* Killed while recovering: it reported nothing and the first child's op is
             * still the interrupted one. Not killed (fewer records to undo than skip): it
             * recovered and ran its own stream. */
            int killed = run_child(base, &m, recover_points[p], s, NULL, 8, id_base,
                                   &recovering);
            id_base += 1000;
            CHECK(killed || skip > 0, "%s: the point was not reached", what);
            verify(base, &m, killed && !recovering.n ? &in_flight : &recovering, what);
        }
    printf("%d children killed at fault points, %d sequences live at the end\n", kills, m.n);
    CHECK(kills >= 36, "most armed runs were killed (%d)", kills);
    munmap(base, REGION_BYTES);
    return test_report("test_kvh_crash");
}
