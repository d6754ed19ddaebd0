/* test_kvh_kill.c: a real nosa-kvhost killed with SIGKILL during a stream of allocations and
 * frees (at random fault points, NOSA_FAULT=* NOSA_FAULT_PROB, and from outside: a thread
 * kills it a random 0-400 us after a request is sent, so the kill lands while the request is
 * received, applied or answered, not only between requests), restarted with --recover each
 * time: every acknowledged allocation is intact, the interrupted request took effect wholly
 * or not at all, and used + free == total. argv[1]: the nosa-kvhost binary. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvh_client.h"
#include "kvh_proc.h"
#include "test_util.h"

#define MAX_SEQS 256
#define MAX_GROUPS 64
#define ROUNDS 16
#define REQUESTS_PER_ROUND 60

struct seq_model {
    uint64_t id;
    uint32_t n;
    uint32_t groups[MAX_GROUPS];
};

static struct kvh_proc g_kvh;
static struct seq_model g_seqs[MAX_SEQS];
static int g_n_seqs;

static struct seq_model *find(uint64_t id)
{
    for (int i = 0; i < g_n_seqs; i++)
        if (g_seqs[i].id == id) return &g_seqs[i];
    return NULL;
}

static uint64_t rng_next(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* The request in flight when the kv-host died. */
struct pending {
    int is_free;
    int n;
    uint64_t ids[2];
    uint32_t n_groups[2];
};

/* The outside kill: SIGKILL to the kv-host delay_ns after it is started. */
struct killer {
    pthread_t thread;
    long delay_ns;
    int started;
};

static void *killer_main(void *arg)
{
    const struct killer *k = arg;
    struct timespec ts = {0, k->delay_ns};
    nanosleep(&ts, NULL);
    kill(g_kvh.pid, SIGKILL);
    return NULL;
}

/* Runs requests until the kv-host stops answering; returns 1 when it died, with *p set.
 * Request kill_after starts the killer just before it is sent. */
static int stream(struct kvh_client *c, uint64_t *rng, uint64_t *next_id, int kill_after,
                  struct killer *killer, struct pending *p)
{
    char err[512];
    for (int r = 0; r < REQUESTS_PER_ROUND; r++) {
        if (r == kill_after) {
            killer->delay_ns = (long)(rng_next(rng) % 400000);
            REQUIRE(pthread_create(&killer->thread, NULL, killer_main, killer) == 0,
                    "pthread_create");
            killer->started = 1;
        }
        memset(p, 0, sizeof(*p));
        int rc;
        if (g_n_seqs > 0 && (g_n_seqs > 40 || rng_next(rng) % 4 == 0)) {
            p->is_free = 1;
            p->n = 1;
            p->ids[0] = g_seqs[rng_next(rng) % (uint64_t)g_n_seqs].id;
            uint64_t freed;
            rc = kvh_client_free(c, p->ids, 1, &freed, err, sizeof(err));
            if (!rc) {
                struct seq_model *gone = find(p->ids[0]);
                *gone = g_seqs[--g_n_seqs];
            }
        } else {
            struct kvh_seq_alloc reqs[2];
            p->n = 2;
            for (int i = 0; i < 2; i++) {
                struct seq_model *old = g_n_seqs ? &g_seqs[rng_next(rng) % (uint64_t)g_n_seqs]
                                                 : NULL;
                int reuse = old && old->n + 2 <= MAX_GROUPS && rng_next(rng) % 2 &&
                            (i == 0 || old->id != p->ids[0]);
                p->ids[i] = reuse ? old->id : (*next_id)++;
                p->n_groups[i] = 1 + (uint32_t)(rng_next(rng) % 2);
                reqs[i] = (struct kvh_seq_alloc){p->ids[i], p->n_groups[i]};
            }
            uint32_t first[2], groups[4];
            rc = kvh_client_alloc(c, reqs, 2, first, groups, err, sizeof(err));
            if (!rc) {
                uint32_t at = 0;
                for (int i = 0; i < 2; i++) {
                    struct seq_model *s = find(p->ids[i]);
                    if (!s) {
                        REQUIRE(g_n_seqs < MAX_SEQS, "model full");
                        s = &g_seqs[g_n_seqs++];
                        memset(s, 0, sizeof(*s));
                        s->id = p->ids[i];
                    }
                    CHECK(first[i] == s->n, "first index %u, want %u", first[i], s->n);
                    for (uint32_t k = 0; k < p->n_groups[i]; k++) s->groups[s->n++] = groups[at++];
                }
            }
        }
        if (rc == -ETIMEDOUT || rc == -EIO) return 1;
        CHECK(rc == 0, "request failed: %s", err);
        if (rc) return 0;
    }
    return 0;
}

/* After the restart: the model's tables are intact; the pending request is all or nothing.
 * Folds the pending request's outcome into the model. */
static void verify(struct kvh_client *c, const struct pending *p, int round)
{
    char err[512];
    uint32_t groups[MAX_GROUPS + 4], n;
    int applied = -1; /* unknown until the first pending seq is looked at */
    for (int i = 0; i < p->n; i++) {
        struct seq_model *s = find(p->ids[i]);
        uint32_t before = s ? s->n : 0;
        int rc = kvh_client_table(c, p->ids[i], groups, MAX_GROUPS + 4, &n, err, sizeof(err));
        if (rc == -ENOENT) n = 0;
        else CHECK(rc == 0, "round %d: table: %s", round, err);
        uint32_t after = p->is_free ? 0 : before + p->n_groups[i];
        int this_applied = n == after && (n != before || applied == 1);
        CHECK(n == before || n == after, "round %d: seq %lu has %u groups (before %u, after %u)",
              round, (unsigned long)p->ids[i], n, before, after);
        if (applied < 0) applied = this_applied;
        CHECK(applied == this_applied, "round %d: request half applied", round);
        if (p->is_free) {
            if (applied && s) *s = g_seqs[--g_n_seqs];
            continue;
        }
        if (!applied) continue;
        if (!s) {
            s = &g_seqs[g_n_seqs++];
            memset(s, 0, sizeof(*s));
            s->id = p->ids[i];
        }
        CHECK(memcmp(groups, s->groups, before * sizeof(uint32_t)) == 0,
              "round %d: seq %lu's acknowledged groups changed", round, (unsigned long)s->id);
        memcpy(s->groups, groups, n * sizeof(uint32_t));
        s->n = n;
    }
    uint64_t used = 0;
    for (int i = 0; i < g_n_seqs; i++) {
        const struct seq_model *s = &g_seqs[i];
        CHECK(kvh_client_table(c, s->id, groups, MAX_GROUPS + 4, &n, err, sizeof(err)) == 0 &&
                  n == s->n && memcmp(groups, s->groups, n * sizeof(uint32_t)) == 0,
              "round %d: acknowledged seq %lu lost or changed", round, (unsigned long)s->id);
        used += s->n;
    }
    struct kvh_stats st;
    REQUIRE(kvh_client_stats(c, &st, err, sizeof(err)) == 0, "%s", err);
    CHECK(st.n_seqs == (uint64_t)g_n_seqs, "round %d: %lu seqs, want %d", round,
          (unsigned long)st.n_seqs, g_n_seqs);
    CHECK(st.n_groups - st.free_groups == used, "round %d: %lu used, model %lu (leak)", round,
          (unsigned long)(st.n_groups - st.free_groups), (unsigned long)used);
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2, "usage: test_kvh_kill NOSA_KVHOST");
    kvh_proc_setup(&g_kvh, argv[1]);
    uint64_t rng = 2024, next_id = 1;
    int deaths = 0;
    char err[512];
    for (int round = 0; round < ROUNDS; round++) {
        /* Even rounds die at a random fault point; odd ones are killed from outside. */
        char seed[32];
        snprintf(seed, sizeof(seed), "NOSA_FAULT_SEED=%d", round + 1);
        const char *fault_env[] = {"NOSA_FAULT=kvhost.alloc.journal,kvhost.alloc.owner_torn,"
                                   "kvhost.alloc.owner,kvhost.alloc.committed,"
                                   "kvhost.alloc.replied,kvhost.free.journal,"
                                   "kvhost.free.owner_torn,kvhost.free.owner,"
                                   "kvhost.free.committed,kvhost.commit.torn,"
                                   "kvhost.journal.torn",
                                   "NOSA_FAULT_PROB=0.02", seed, "NOSA_LOG_LEVEL=error", NULL};
        const char *quiet_env[] = {"NOSA_LOG_LEVEL=error", NULL};
        const char *first_args[] = {"--arena", "64M", NULL};
        const char *recover_args[] = {"--recover", NULL};
        struct pending p = {0};
        int status = 0;
        if (kvh_proc_start(&g_kvh, round ? recover_args : first_args,
                           round % 2 ? quiet_env : fault_env, 1, &status)) {
            /* The generation bump at start is a commit too: it may be the point that fires. */
            CHECK(round > 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "round %d: kv-host did not start (status 0x%x)", round, status);
        } else {
            struct kvh_client *c;
            struct kvh_client_options opts = {.timeout_ms = 300};
            REQUIRE(kvh_client_connect(g_kvh.endpoint, &opts, &c, err, sizeof(err)) == 0, "%s",
                    err);
            int kill_after = round % 2 ? 5 + (int)(rng_next(&rng) % 40) : -1;
            struct killer killer = {0};
            int died = stream(c, &rng, &next_id, kill_after, &killer, &p);
            if (killer.started) pthread_join(killer.thread, NULL);
            kvh_client_close(c);
            status = kvh_proc_stop(&g_kvh, died ? 0 : SIGKILL);
            CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "round %d: killed", round);
            deaths += died;
            if (!died) memset(&p, 0, sizeof(p));
        }

        REQUIRE(kvh_proc_start(&g_kvh, recover_args, quiet_env, 1, NULL) == 0,
                "round %d: --recover did not start", round);
        struct kvh_client *c;
        struct kvh_client_options opts = {.timeout_ms = 2000};
        REQUIRE(kvh_client_connect(g_kvh.endpoint, &opts, &c, err, sizeof(err)) == 0, "%s", err);
        verify(c, &p, round);
        kvh_client_close(c);
        int st = kvh_proc_stop(&g_kvh, SIGTERM);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "round %d: clean stop", round);
    }
    printf("%d of %d rounds died mid-stream, %d sequences at the end\n", deaths, ROUNDS,
           g_n_seqs);
    CHECK(deaths >= ROUNDS / 2, "the kv-host died mid-stream in most rounds (%d)", deaths);
    return test_report("test_kvh_kill");
}
