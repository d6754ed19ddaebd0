/* worker_stats.c: see worker_stats.h. */
#include "worker_stats.h"

#include <string.h>

void worker_stats_init(struct worker_stats *s, double now_s)
{
    memset(s, 0, sizeof(*s));
    s->window_start_s = now_s;
}

void worker_stats_add_step(struct worker_stats *s, const struct nosa_engine_step_stats *st)
{
    s->steps++;
    s->total_steps++;
    s->tokens += st->generated;
    s->total_tokens += st->generated;
    s->total_prefill_tokens += st->prefill_tokens;
    s->selected += st->decode.blocks_selected + st->prefill.blocks_selected;
    s->transferred += st->decode.blocks_transferred + st->prefill.blocks_transferred;
    s->hits += st->decode.block_hits + st->prefill.block_hits;
    s->bytes_h2d += st->decode.bytes_h2d + st->prefill.bytes_h2d;
    s->step_seconds += st->seconds;
}

void worker_stats_take(struct worker_stats *s, double now_s, Nosa__Serve__StepStats *out)
{
    double wall = now_s - s->window_start_s;
    double steps = s->steps ? (double)s->steps : 1.0;
    out->tokens_per_s = wall > 0.0 ? (double)s->tokens / wall : 0.0;
    out->step_seconds = s->step_seconds / steps;
    out->blocks_moved_per_step = (double)s->transferred / steps;
    out->bytes_moved_per_step = (double)s->bytes_h2d / steps;
    out->cache_hit_rate = s->selected ? (double)s->hits / (double)s->selected : 0.0;
    out->steps = s->total_steps;
    out->tokens = s->total_tokens;
    out->prefill_tokens = s->total_prefill_tokens;
    out->taken_s = now_s;
    uint64_t total_steps = s->total_steps, total_tokens = s->total_tokens;
    uint64_t total_prefill = s->total_prefill_tokens;
    worker_stats_init(s, now_s);
    s->total_steps = total_steps;
    s->total_tokens = total_tokens;
    s->total_prefill_tokens = total_prefill;
}
