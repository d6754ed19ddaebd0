/* worker_stats.c: see worker_stats.h. */
#include "worker_stats.h"

#include <string.h>

void worker_stats_init(struct worker_stats *s, double now_s)
{
    memset(s, 0, sizeof(*s));
    s->window_start_s = now_s;
}

static void counts_add(struct worker_stats_counts *c, const struct nosa_engine_step_stats *st)
{
    c->steps++;
    c->tokens += st->generated;
    c->prefill_tokens += st->prefill_tokens;
    c->selected += st->decode.blocks_selected + st->prefill.blocks_selected;
    c->transferred += st->decode.blocks_transferred + st->prefill.blocks_transferred;
    c->hits += st->decode.block_hits + st->prefill.block_hits;
    c->bytes_h2d += st->decode.bytes_h2d + st->prefill.bytes_h2d;
    c->step_seconds += st->seconds;
}

void worker_stats_add_step(struct worker_stats *s, const struct nosa_engine_step_stats *st)
{
    counts_add(&s->window, st);
    counts_add(&s->total, st);
}

void worker_stats_take(struct worker_stats *s, double now_s, Nosa__Serve__StepStats *out)
{
    const struct worker_stats_counts *w = &s->window, *t = &s->total;
    double wall = now_s - s->window_start_s;
    double steps = w->steps ? (double)w->steps : 1.0;
    out->tokens_per_s = wall > 0.0 ? (double)w->tokens / wall : 0.0;
    out->step_seconds = w->step_seconds / steps;
    out->blocks_moved_per_step = (double)w->transferred / steps;
    out->bytes_moved_per_step = (double)w->bytes_h2d / steps;
    out->cache_hit_rate = w->selected ? (double)w->hits / (double)w->selected : 0.0;
    out->steps = t->steps;
    out->tokens = t->tokens;
    out->prefill_tokens = t->prefill_tokens;
    out->taken_s = now_s;
    out->step_seconds_total = t->step_seconds;
    out->blocks_selected_total = t->selected;
    out->blocks_moved_total = t->transferred;
    out->block_hits_total = t->hits;
    memset(&s->window, 0, sizeof(s->window));
    s->window_start_s = now_s;
}
