/* worker_stats.h: the decode statistics a worker reports in each Heartbeat (StepStats).
 *
 * This module owns: the window since the last heartbeat, as the engine's totals then
 * (nosa_engine_totals, which count every step since the engine's creation), so that a
 * heartbeat carries the window's figures (time, tokens, blocks and bytes moved, cache hits)
 * as differences of those totals, and the totals themselves, which let a reader take any two
 * heartbeats' difference as that window's exact figures. */
#ifndef NOSA_WORKER_STATS_H
#define NOSA_WORKER_STATS_H

#include "engine.h"
#include "serve.pb-c.h"

struct worker_stats {
    double window_start_s;
    struct nosa_engine_totals at_start; /* the engine's totals when the window began */
};

/* A first window from now_s, the engine just created (its totals all zero). */
void worker_stats_init(struct worker_stats *s, double now_s);
/* Fills out (its fields only; out must be initialised) for the window ending at now_s, the
 * engine's totals then being *t, and starts a new window. */
void worker_stats_take(struct worker_stats *s, double now_s, const struct nosa_engine_totals *t,
                       Nosa__Serve__StepStats *out);

#endif
