/* worker_stats.h: the decode statistics a worker reports in each Heartbeat (StepStats).
 *
 * This module owns: the window of steps since the last heartbeat (time, tokens, blocks and
 * bytes moved, cache hits) and the totals since start, which let a reader take any two
 * heartbeats' difference as that window's exact figures. */
#ifndef NOSA_WORKER_STATS_H
#define NOSA_WORKER_STATS_H

#include <stdint.h>

#include "engine.h"
#include "serve.pb-c.h"

struct worker_stats_counts {
    uint64_t steps, tokens, prefill_tokens, selected, transferred, hits, bytes_h2d;
    double step_seconds;
};

struct worker_stats {
    double window_start_s;
    struct worker_stats_counts window; /* since the last heartbeat */
    struct worker_stats_counts total;  /* since start */
};

void worker_stats_init(struct worker_stats *s, double now_s);
/* Adds one engine step (its decode and prefill calls together). */
void worker_stats_add_step(struct worker_stats *s, const struct nosa_engine_step_stats *st);
/* Fills out (its fields only; out must be initialised) for the window ending at now_s and
 * starts a new window. */
void worker_stats_take(struct worker_stats *s, double now_s, Nosa__Serve__StepStats *out);

#endif
