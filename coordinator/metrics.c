/* metrics.c: see metrics.h. */
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "log.h"

/* ---------------------------------------------------------------- rendering */
struct text_buf {
    char *s;
    size_t len, cap;
    int oom;
};

static void put(struct text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text_buf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *grown = realloc(b->s, cap);
        if (!grown) {
            b->oom = 1;
            return;
        }
        b->s = grown;
        b->cap = cap;
    }
}

static void family(struct text_buf *b, const char *name, const char *type, const char *help)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value escaped as the format wants (backslash, quote, newline). */
static void escape_label(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (; *in && o + 3 < cap; in++) {
        if (*in == '\\' || *in == '"') {
            out[o++] = '\\';
            out[o++] = *in;
        } else if (*in == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *in;
        }
    }
    out[o] = 0;
}

/* A sample's value: an integer (a count, groups, jobs), printed exactly, or a real number. */
struct sample {
    int integer;
    uint64_t u;
    double d;
};

static struct sample count(uint64_t u) { return (struct sample){.integer = 1, .u = u}; }
static struct sample real(double d) { return (struct sample){.d = d}; }

/* The value and the line's end. A real is printed as the shortest text that reads back as the
 * same double (every digit kept: rate() of a gauge or counter rounded to a few digits goes
 * wrong); non-finite ones as the format spells them. */
static void put_value(struct text_buf *b, struct sample v)
{
    if (v.integer) {
        put(b, " %llu\n", (unsigned long long)v.u);
        return;
    }
    if (isnan(v.d) || isinf(v.d)) {
        put(b, " %s\n", isnan(v.d) ? "NaN" : v.d > 0 ? "+Inf" : "-Inf");
        return;
    }
    char text[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(text, sizeof text, "%.*g", prec, v.d);
        if (strtod(text, NULL) == v.d) break;
    }
    put(b, " %s\n", text);
}

/* One per-worker family: a value from each worker. */
struct worker_metric {
    const char *name, *type, *help;
    struct sample (*value)(const struct coord_worker *w);
};

static struct sample w_up(const struct coord_worker *w) { return count(w->alive != 0); }
static struct sample w_running(const struct coord_worker *w) { return count(w->assigned); }
static struct sample w_slots(const struct coord_worker *w) { return count(w->max_seqs); }
static struct sample w_tps(const struct coord_worker *w) { return real(w->stats.tokens_per_s); }
static struct sample w_step(const struct coord_worker *w) { return real(w->stats.step_seconds); }
static struct sample w_blocks(const struct coord_worker *w)
{
    return real(w->stats.blocks_moved_per_step);
}
static struct sample w_bytes(const struct coord_worker *w)
{
    return real(w->stats.bytes_moved_per_step);
}
static struct sample w_hit(const struct coord_worker *w) { return real(w->stats.cache_hit_rate); }
static struct sample w_steps(const struct coord_worker *w) { return count(w->stats.steps); }
static struct sample w_tokens(const struct coord_worker *w) { return count(w->stats.tokens); }

static const struct worker_metric k_worker_metrics[] = {
    {"nosa_worker_up", "gauge", "1 while the worker sends heartbeats, 0 once declared dead", w_up},
    {"nosa_worker_running_jobs", "gauge", "Jobs assigned to the worker (its batch)", w_running},
    {"nosa_worker_slots", "gauge", "Batch slots the worker registered with", w_slots},
    {"nosa_worker_tokens_per_second", "gauge", "Generated tokens per second (last heartbeat)",
     w_tps},
    {"nosa_worker_step_seconds", "gauge", "Mean wall time of a decode step", w_step},
    {"nosa_worker_blocks_moved_per_step", "gauge", "KV blocks moved into the GPU pool per step",
     w_blocks},
    {"nosa_worker_bytes_moved_per_step", "gauge", "KV bytes moved per step", w_bytes},
    {"nosa_worker_cache_hit_rate", "gauge", "Selected blocks already in the pool / selected",
     w_hit},
    {"nosa_worker_steps_total", "counter", "Decode steps since the worker started", w_steps},
    {"nosa_worker_tokens_total", "counter", "Tokens generated since the worker started",
     w_tokens},
};

/* One per-arena family: a value from each known arena. */
struct arena_metric {
    const char *name, *help;
    struct sample (*value)(const struct coord_metrics_arena *a);
};

static struct sample a_up(const struct coord_metrics_arena *a) { return count(a->up != 0); }
static struct sample a_groups(const struct coord_metrics_arena *a) { return count(a->groups); }
static struct sample a_free(const struct coord_metrics_arena *a) { return count(a->free_groups); }
static struct sample a_reserved(const struct coord_metrics_arena *a)
{
    return count(a->reserved_groups);
}
static struct sample a_used(const struct coord_metrics_arena *a)
{
    return real(a->groups ? (double)(a->groups - a->free_groups) / (double)a->groups : 0.0);
}
static struct sample a_bytes(const struct coord_metrics_arena *a) { return count(a->bytes); }

static const struct arena_metric k_arena_metrics[] = {
    {"nosa_arena_up", "1 while the kv-host answers, 0 when the values are from its last answer",
     a_up},
    {"nosa_arena_groups", "KV groups in the kv-host's arena", a_groups},
    {"nosa_arena_free_groups", "Free KV groups in the kv-host's arena", a_free},
    {"nosa_arena_reserved_groups", "Groups the jobs running on the kv-host will still allocate",
     a_reserved},
    {"nosa_arena_used_ratio", "Used share of the arena's groups", a_used},
    {"nosa_arena_bytes", "Size of the kv-host's arena", a_bytes},
};

int coord_metrics_render(const struct coord_workers *workers,
                         const struct coord_metrics_node *node, char **out)
{
    struct text_buf b = {.cap = 4096};
    b.s = malloc(b.cap);
    if (!b.s) return -1;
    b.s[0] = 0;
    double tps = 0;
    for (int i = 0; i < workers->n; i++)
        if (workers->w[i].alive) tps += workers->w[i].stats.tokens_per_s;
    family(&b, "nosa_queue_depth", "gauge", "Jobs waiting for a worker");
    put(&b, "nosa_queue_depth %llu\n", (unsigned long long)node->queued);
    family(&b, "nosa_jobs_running", "gauge", "Jobs assigned to workers");
    put(&b, "nosa_jobs_running %llu\n", (unsigned long long)node->running);
    family(&b, "nosa_jobs_completed_total", "counter", "Jobs that finished (length or eos)");
    put(&b, "nosa_jobs_completed_total %llu\n", (unsigned long long)node->completed);
    family(&b, "nosa_jobs_failed_total", "counter", "Jobs that ended in error or were cancelled");
    put(&b, "nosa_jobs_failed_total %llu\n", (unsigned long long)node->failed);
    family(&b, "nosa_tokens_per_second", "gauge", "Generated tokens per second, all live workers");
    put(&b, "nosa_tokens_per_second");
    put_value(&b, real(tps));
    family(&b, "nosa_draining", "gauge", "1 while new jobs are refused (nosa drain)");
    put(&b, "nosa_draining %d\n", node->draining ? 1 : 0);
    family(&b, "nosa_journal_ok", "gauge", "0 once a journal write failed (new jobs refused)");
    put(&b, "nosa_journal_ok %d\n", node->journal_ok ? 1 : 0);
    for (size_t m = 0; m < sizeof k_arena_metrics / sizeof k_arena_metrics[0]; m++) {
        const struct arena_metric *am = &k_arena_metrics[m];
        if (node->n_arenas) family(&b, am->name, "gauge", am->help);
        for (int i = 0; i < node->n_arenas; i++) {
            char kvhost[2 * COORD_ENDPOINT_MAX + 1];
            escape_label(node->arenas[i].kvhost, kvhost, sizeof kvhost);
            put(&b, "%s{kvhost=\"%s\"}", am->name, kvhost);
            put_value(&b, am->value(&node->arenas[i]));
        }
    }
    for (size_t m = 0; m < sizeof k_worker_metrics / sizeof k_worker_metrics[0]; m++) {
        const struct worker_metric *wm = &k_worker_metrics[m];
        if (workers->n) family(&b, wm->name, wm->type, wm->help);
        for (int i = 0; i < workers->n; i++) {
            const struct coord_worker *w = &workers->w[i];
            char name[2 * COORD_WORKER_NAME_MAX + 1], backend[40];
            escape_label(w->name, name, sizeof name);
            escape_label(w->backend, backend, sizeof backend);
            put(&b, "%s{worker=\"%s\",backend=\"%s\"}", wm->name, name, backend);
            put_value(&b, wm->value(w));
        }
    }
    if (b.oom) {
        free(b.s);
        return -1;
    }
    *out = b.s;
    return 0;
}

/* ---------------------------------------------------------------- HTTP */
struct coord_metrics_server {
    struct MHD_Daemon *daemon;
    pthread_mutex_t lock;
    char *text; /* the last published text */
};

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
    struct coord_metrics_server *s = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char msg[] = "only GET /metrics\n";
        struct MHD_Response *r = MHD_create_response_from_buffer(
            sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, r);
        MHD_destroy_response(r);
        return rc;
    }
    unsigned status = MHD_HTTP_OK;
    struct MHD_Response *r;
    if (strcmp(url, "/metrics") == 0) {
        pthread_mutex_lock(&s->lock);
        const char *text = s->text ? s->text : "";
        r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
        pthread_mutex_unlock(&s->lock);
        if (r) MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
    } else {
        static const char msg[] = "not found: the metrics are at /metrics\n";
        status = MHD_HTTP_NOT_FOUND;
        r = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
    }
    if (!r) return MHD_NO;
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

int coord_metrics_start(const char *address, uint16_t port, int insecure,
                        struct coord_metrics_server **out, char *err, size_t errlen)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, address, &sa.sin_addr) != 1) {
        nosa_set_error(err, errlen, "metrics address '%s' is not an IPv4 address", address);
        return -1;
    }
    if ((ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
        if (!insecure) {
            nosa_set_error(err, errlen, "refusing to serve metrics on %s: not a loopback "
                           "address, and HTTP has no CURVE (pass --insecure to serve them in "
                           "plain text to anyone who can reach %s:%u; docs/SECURITY.md)",
                           address, address, (unsigned)port);
            return -1;
        }
        LOG_WARN("coordinator", "metrics on http://%s:%u/metrics in plain text: --insecure",
                 address, (unsigned)port);
    }
    struct coord_metrics_server *s = calloc(1, sizeof *s);
    if (!s) {
        nosa_set_error(err, errlen, "out of memory starting the metrics server");
        return -1;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, port, NULL,
                                 NULL, answer, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!s->daemon) {
        nosa_set_error(err, errlen, "metrics: cannot serve http://%s:%u/metrics (port taken?)",
                       address, (unsigned)port);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

void coord_metrics_publish(struct coord_metrics_server *s, char *text)
{
    pthread_mutex_lock(&s->lock);
    char *old = s->text;
    s->text = text;
    pthread_mutex_unlock(&s->lock);
    free(old);
}

void coord_metrics_stop(struct coord_metrics_server *s)
{
    if (!s) return;
    MHD_stop_daemon(s->daemon);
    pthread_mutex_destroy(&s->lock);
    free(s->text);
    free(s);
}
