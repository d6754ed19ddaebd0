/* worker_stats.h: the decode statistics a worker reports in each Heartbeat (StepStats).
 *
 * This module owns: the window of steps since the last heartbeat (time, tokens, blocks and
 * bytes moved, cache hits) and the totals since start. */
#ifndef NOSA_WORKER_STATS_H
#define NOSA_WORKER_STATS_H

#include <stdint.h>

#include "engine.h"
#include "serve.pb-c.h"

struct worker_stats {
    /* the window since the last heartbeat */
    double window_start_s;
    uint64_t steps, tokens, selected, transferred, hits, bytes_h2d;
    double step_seconds;
    /* since start */
    uint64_t total_steps, total_tokens, total_prefill_tokens;
};

void worker_stats_init(struct worker_stats *s, double now_s);
/* Adds one engine step (its decode and prefill calls together). */
void worker_stats_add_step(struct worker_stats *s, const struct nosa_engine_step_stats *st);
/* Fills out (its fields only; out must be initialised) for the window ending at now_s and
 * starts a new window. */
void worker_stats_take(struct worker_stats *s, double now_s, Nosa__Serve__StepStats *out);

#endif
