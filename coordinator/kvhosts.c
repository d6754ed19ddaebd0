/* kvhosts.c: see kvhosts.h. */
#include "kvhosts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define KVH_POLL_MS 500
#define KVH_RETRY_MS 2000
/* Short: the requests run on the coordinator's loop, which heartbeats wait for. */
#define KVH_TIMEOUT_MS 100

void coord_kvhosts_init(struct coord_kvhosts *t, void *zmq_ctx,
                        const struct nosa_msg_security *sec)
{
    memset(t, 0, sizeof *t);
    t->zmq_ctx = zmq_ctx;
    t->sec = sec;
}

int coord_kvhosts_get(struct coord_kvhosts *t, const char *endpoint, char *err, size_t errlen)
{
    for (int i = 0; i < t->arenas.n; i++)
        if (strcmp(t->h[i].endpoint, endpoint) == 0) return i;
    if (t->arenas.n == COORD_MAX_KVHOSTS) {
        nosa_set_error(err, errlen, "kv-host %s: the coordinator follows %d kv-hosts already",
                       endpoint, COORD_MAX_KVHOSTS);
        return -1;
    }
    struct coord_kvhost *h = &t->h[t->arenas.n];
    memset(h, 0, sizeof *h);
    if ((size_t)snprintf(h->endpoint, sizeof h->endpoint, "%s", endpoint) >= sizeof h->endpoint) {
        nosa_set_error(err, errlen, "kv-host endpoint too long: %s", endpoint);
        return -1;
    }
    struct kvh_client_options ko = {.timeout_ms = KVH_TIMEOUT_MS,
                                    .client_name = "coordinator",
                                    .zmq_ctx = t->zmq_ctx,
                                    .sec = t->sec};
    if (kvh_client_connect(endpoint, &ko, &h->client, err, errlen)) return -1;
    memset(&t->arenas.a[t->arenas.n], 0, sizeof t->arenas.a[0]);
    LOG_INFO("coordinator", "kv-host %d: %s", t->arenas.n, endpoint);
    return t->arenas.n++;
}

/* Asks kv-host h to free seq: 0 when done (or unknown there), -1 when it did not answer
 * (marked down: no more tries until its stats come back). Other errors are logged. */
static int free_now(struct coord_kvhost *h, uint64_t seq, uint64_t now_ms)
{
    char err[256];
    int rc = kvh_client_free(h->client, &seq, 1, NULL, err, sizeof err);
    if (rc == 0 || rc == -ENOENT) return 0;
    LOG_WARN("coordinator", "job %llu: freeing its sequence in kv-host %s: %s",
             (unsigned long long)seq, h->endpoint, err);
    if (rc != -ETIMEDOUT) return 0; /* refused: trying again would not change that */
    h->up = 0;
    h->next_poll_ms = now_ms + KVH_RETRY_MS;
    return -1;
}

static void tell_queue(struct coord_kvhosts *t, const struct coord_kvhost *h, uint64_t seq,
                       int queued)
{
    if (t->on_queue) t->on_queue(t->on_queue_arg, h->endpoint, seq, queued);
}

/* 1 when seq was queued now, 0 when it was queued already or could not be. */
static int queue_free(struct coord_kvhost *h, uint64_t seq)
{
    for (size_t i = 0; i < h->n_pending; i++)
        if (h->pending[i] == seq) return 0;
    if (h->n_pending == h->pending_cap) {
        size_t cap = h->pending_cap ? h->pending_cap * 2 : 64;
        uint64_t *grown = realloc(h->pending, cap * sizeof *grown);
        if (!grown) {
            LOG_ERROR("coordinator", "job %llu: out of memory queueing its free in kv-host %s: "
                      "its sequence stays there", (unsigned long long)seq, h->endpoint);
            return 0;
        }
        h->pending = grown;
        h->pending_cap = cap;
    }
    h->pending[h->n_pending++] = seq;
    return 1;
}

/* Removes the queued free of seq; 1 when there was one. */
static int unqueue_free(struct coord_kvhost *h, uint64_t seq)
{
    size_t w = 0;
    for (size_t r = 0; r < h->n_pending; r++)
        if (h->pending[r] != seq) h->pending[w++] = h->pending[r];
    int found = w != h->n_pending;
    h->n_pending = w;
    return found;
}

int coord_kvhosts_poll(struct coord_kvhosts *t, int i, uint64_t now_ms)
{
    struct coord_kvhost *h = &t->h[i];
    struct coord_arena *a = &t->arenas.a[i];
    if (now_ms < h->next_poll_ms) return 0;
    char err[256];
    if (kvh_client_stats(h->client, &h->stats, err, sizeof err) != 0) {
        if (h->up)
            LOG_WARN("coordinator", "kv-host %s stats: %s; admission on its workers goes on from "
                     "its last stats, its frees wait", h->endpoint, err);
        h->up = 0;
        h->next_poll_ms = now_ms + KVH_RETRY_MS;
        return -1;
    }
    if (!h->up)
        LOG_INFO("coordinator", "kv-host %s: arena stats read (%llu groups, %llu free; %zu "
                 "frees queued)", h->endpoint, (unsigned long long)h->stats.n_groups,
                 (unsigned long long)h->stats.free_groups, h->n_pending);
    h->up = 1;
    h->next_poll_ms = now_ms + KVH_POLL_MS;
    size_t done = 0;
    while (done < h->n_pending && free_now(h, h->pending[done], now_ms) == 0)
        tell_queue(t, h, h->pending[done++], 0);
    if (done) {
        memmove(h->pending, h->pending + done, (h->n_pending - done) * sizeof *h->pending);
        h->n_pending -= done;
    }
    if (h->n_pending) return -1; /* it stopped answering: these stats may be stale already */
    a->known = 1;
    a->n_groups = h->stats.n_groups;
    a->free_groups = h->stats.free_groups;
    return 1;
}

void coord_kvhosts_free(struct coord_kvhosts *t, int i, uint64_t seq, uint64_t now_ms)
{
    struct coord_kvhost *h = &t->h[i];
    if ((!h->up || free_now(h, seq, now_ms) != 0) && queue_free(h, seq)) {
        LOG_INFO("coordinator", "job %llu: its sequence's free waits for kv-host %s to answer",
                 (unsigned long long)seq, h->endpoint);
        tell_queue(t, h, seq, 1);
    }
}

void coord_kvhosts_keep(struct coord_kvhosts *t, int i, uint64_t seq)
{
    struct coord_kvhost *h = &t->h[i];
    if (unqueue_free(h, seq)) tell_queue(t, h, seq, 0);
}

void coord_kvhosts_watch_queues(struct coord_kvhosts *t, coord_kvhosts_queue_fn fn, void *arg)
{
    t->on_queue = fn;
    t->on_queue_arg = arg;
}

int coord_kvhosts_replay_queue(struct coord_kvhosts *t, const char *endpoint, uint64_t seq,
                               int queued, char *err, size_t errlen)
{
    int i = coord_kvhosts_get(t, endpoint, err, errlen);
    if (i < 0) return -1;
    if (queued) queue_free(&t->h[i], seq);
    else unqueue_free(&t->h[i], seq);
    return 0;
}

void coord_kvhosts_close(struct coord_kvhosts *t)
{
    for (int i = 0; i < t->arenas.n; i++) {
        if (t->h[i].n_pending)
            LOG_WARN("coordinator", "kv-host %s did not answer: %zu frees of ended jobs' "
                     "sequences stay queued in the journal for the next start",
                     t->h[i].endpoint, t->h[i].n_pending);
        kvh_client_close(t->h[i].client);
        free(t->h[i].pending);
    }
    t->arenas.n = 0;
}
