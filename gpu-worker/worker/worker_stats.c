/* worker_stats.c: see worker_stats.h. */
#include "worker_stats.h"

#include <string.h>

void worker_stats_init(struct worker_stats *s, double now_s)
{
    memset(s, 0, sizeof(*s));
    s->window_start_s = now_s;
}

void worker_stats_take(struct worker_stats *s, double now_s, const struct nosa_engine_totals *t,
                       Nosa__Serve__StepStats *out)
{
    const struct nosa_engine_totals *a = &s->at_start;
    double wall = now_s - s->window_start_s;
    uint64_t steps = t->steps - a->steps, selected = t->blocks_selected - a->blocks_selected;
    double per = steps ? (double)steps : 1.0;
    out->tokens_per_s = wall > 0.0 ? (double)(t->generated - a->generated) / wall : 0.0;
    out->step_seconds = (t->seconds - a->seconds) / per;
    out->blocks_moved_per_step = (double)(t->blocks_transferred - a->blocks_transferred) / per;
    out->bytes_moved_per_step = (double)(t->bytes_h2d - a->bytes_h2d) / per;
    out->cache_hit_rate =
        selected ? (double)(t->block_hits - a->block_hits) / (double)selected : 0.0;
    out->steps = t->steps;
    out->tokens = t->generated;
    out->prefill_tokens = t->prefill_tokens;
    out->taken_s = now_s;
    out->step_seconds_total = t->seconds;
    out->blocks_selected_total = t->blocks_selected;
    out->blocks_moved_total = t->blocks_transferred;
    out->block_hits_total = t->block_hits;
    s->at_start = *t;
    s->window_start_s = now_s;
}
