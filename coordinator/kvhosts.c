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

static void queue_free(struct coord_kvhost *h, uint64_t seq)
{
    if (h->n_pending == h->pending_cap) {
        size_t cap = h->pending_cap ? h->pending_cap * 2 : 64;
        uint64_t *grown = realloc(h->pending, cap * sizeof *grown);
        if (!grown) {
            LOG_ERROR("coordinator", "job %llu: out of memory queueing its free in kv-host %s: "
                      "its sequence stays there", (unsigned long long)seq, h->endpoint);
            return;
        }
        h->pending = grown;
        h->pending_cap = cap;
    }
    h->pending[h->n_pending++] = seq;
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
    while (done < h->n_pending && free_now(h, h->pending[done], now_ms) == 0) done++;
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
    if (!h->up || free_now(h, seq, now_ms) != 0) queue_free(h, seq);
}

void coord_kvhosts_keep(struct coord_kvhosts *t, int i, uint64_t seq)
{
    struct coord_kvhost *h = &t->h[i];
    size_t w = 0;
    for (size_t r = 0; r < h->n_pending; r++)
        if (h->pending[r] != seq) h->pending[w++] = h->pending[r];
    h->n_pending = w;
}

void coord_kvhosts_close(struct coord_kvhosts *t)
{
    for (int i = 0; i < t->arenas.n; i++) {
        if (t->h[i].n_pending)
            LOG_WARN("coordinator", "kv-host %s did not answer: %zu sequences of ended jobs "
                     "stay in its arena (the queue of frees is not journaled)",
                     t->h[i].endpoint, t->h[i].n_pending);
        kvh_client_close(t->h[i].client);
        free(t->h[i].pending);
    }
    t->arenas.n = 0;
}
