/* metrics.h: the coordinator's Prometheus metrics (text exposition format 0.0.4) and the HTTP
 * server that serves them at /metrics (libmicrohttpd, its own thread).
 *
 * The coordinator's loop renders the text from its state (coord_metrics_render, a pure
 * function) a few times a second and publishes it (coord_metrics_publish); the HTTP thread
 * only copies the last published text under a mutex, so it never touches the job or worker
 * tables. This module owns the daemon and that text. */
#ifndef NOSA_COORD_METRICS_H
#define NOSA_COORD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "workers.h"

/* One kv-host's arena (label kvhost = its endpoint), as of its last stats. */
struct coord_metrics_arena {
    const char *kvhost;
    int up; /* it answered the last request */
    uint64_t groups, free_groups, reserved_groups, bytes;
};

/* Node-wide values (besides the per-worker ones in the worker table). */
struct coord_metrics_node {
    uint64_t queued, running, completed, failed;
    int draining;
    int journal_ok;
    const struct coord_metrics_arena *arenas; /* the arenas whose stats were read */
    int n_arenas;
};

/* Renders the metrics text into a malloc'd NUL-terminated string (*out, caller frees).
 * Returns 0 or -1 when out of memory. */
int coord_metrics_render(const struct coord_workers *workers,
                         const struct coord_metrics_node *node, char **out);

struct coord_metrics_server;

/* Starts serving on address:port (address an IPv4 literal, e.g. "127.0.0.1" or "0.0.0.0").
 * HTTP has no CURVE, so an address outside 127.0.0.0/8 is refused unless insecure (the
 * rule of the other endpoints, docs/SECURITY.md; then a WARN line). Returns 0 or -1 with err
 * (port taken, bad or non-loopback address). */
int coord_metrics_start(const char *address, uint16_t port, int insecure,
                        struct coord_metrics_server **out, char *err, size_t errlen);
/* Replaces the served text with text (taken: the server frees it). */
void coord_metrics_publish(struct coord_metrics_server *s, char *text);
void coord_metrics_stop(struct coord_metrics_server *s);

#endif
