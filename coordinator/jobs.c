/* jobs.c: see jobs.h. */
#include "jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "serve.pb-c.h"

void coord_jobs_init(struct coord_jobs *t)
{
    memset(t, 0, sizeof *t);
    t->next_id = 1;
}

static void job_free(struct coord_job *j)
{
    if (!j) return;
    free(j->spec);
    token_store_free(&j->tok);
    free(j);
}

void coord_jobs_free(struct coord_jobs *t)
{
    for (size_t i = 0; i < t->n; i++) job_free(t->jobs[i]);
    free(t->jobs);
    memset(t, 0, sizeof *t);
}

/* Index of the first job with id >= id. */
static size_t lower_bound(const struct coord_jobs *t, uint64_t id)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->jobs[mid]->id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

struct coord_job *coord_jobs_find(const struct coord_jobs *t, uint64_t id)
{
    size_t i = lower_bound(t, id);
    return i < t->n && t->jobs[i]->id == id ? t->jobs[i] : NULL;
}

struct coord_job *coord_jobs_add(struct coord_jobs *t, uint64_t id, const uint8_t *spec,
                                 size_t spec_len, uint32_t prompt_tokens, uint32_t max_tokens,
                                 char *err, size_t errlen)
{
    size_t at = lower_bound(t, id);
    if (at < t->n && t->jobs[at]->id == id) {
        nosa_set_error(err, errlen, "job %llu exists already", (unsigned long long)id);
        return NULL;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct coord_job **grown = realloc(t->jobs, cap * sizeof *grown);
        if (!grown) goto oom;
        t->jobs = grown;
        t->cap = cap;
    }
    struct coord_job *j = calloc(1, sizeof *j);
    if (!j) goto oom;
    j->spec = malloc(spec_len ? spec_len : 1);
    if (!j->spec) {
        free(j);
        goto oom;
    }
    memcpy(j->spec, spec, spec_len);
    j->spec_len = spec_len;
    j->id = id;
    j->prompt_tokens = prompt_tokens;
    j->max_tokens = max_tokens;
    j->worker = -1;
    j->prev_worker = -1;
    j->kvhost = COORD_KVHOST_NONE;
    j->state = COORD_JOB_QUEUED;
    j->queue_seq = UINT64_MAX; /* not yet queued */
    memmove(&t->jobs[at + 1], &t->jobs[at], (t->n - at) * sizeof *t->jobs);
    t->jobs[at] = j;
    t->n++;
    if (id >= t->next_id) t->next_id = id + 1;
    return j;
oom:
    nosa_set_error(err, errlen, "out of memory adding job %llu", (unsigned long long)id);
    return NULL;
}

int coord_job_add_token(struct coord_job *j, uint32_t index, int32_t id, const uint8_t *text,
                        size_t text_len, char *err, size_t errlen)
{
    if (index < j->tok.n) return 0;
    if (index > j->tok.n) {
        nosa_set_error(err, errlen, "job %llu: token index %u leaves a gap (have %u)",
                       (unsigned long long)j->id, index, j->tok.n);
        return -1;
    }
    if (token_store_append(&j->tok, id, text, text_len) != 0) {
        nosa_set_error(err, errlen, "out of memory storing job %llu's tokens",
                       (unsigned long long)j->id);
        return -1;
    }
    return 1;
}

void coord_job_enqueue(struct coord_jobs *t, struct coord_job *j)
{
    if (j->queue_seq == UINT64_MAX) j->queue_seq = t->next_queue_seq++;
    j->state = COORD_JOB_QUEUED;
    j->worker = -1;
}

struct coord_job *coord_jobs_next_queued(const struct coord_jobs *t,
                                         int (*fits)(const struct coord_job *, void *),
                                         void *arg)
{
    struct coord_job *best = NULL;
    for (size_t i = 0; i < t->n; i++) {
        struct coord_job *j = t->jobs[i];
        if (j->state != COORD_JOB_QUEUED || (best && best->queue_seq <= j->queue_seq)) continue;
        if (!fits || fits(j, arg)) best = j;
    }
    return best;
}

size_t coord_jobs_count(const struct coord_jobs *t, enum coord_job_state state)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) n += t->jobs[i]->state == state;
    return n;
}

void coord_jobs_drop_old_finished(struct coord_jobs *t)
{
    size_t finished = coord_jobs_count(t, COORD_JOB_FINISHED);
    if (finished <= COORD_JOBS_KEEP_FINISHED) return;
    size_t w = 0;
    for (size_t i = 0; i < t->n; i++) {
        struct coord_job *j = t->jobs[i];
        if (finished > COORD_JOBS_KEEP_FINISHED && j->state == COORD_JOB_FINISHED) {
            job_free(j);
            finished--;
            continue;
        }
        t->jobs[w++] = j;
    }
    t->n = w;
}

void coord_job_finish(struct coord_jobs *t, struct coord_job *j, int reason, int error_code,
                      const char *error, uint32_t recomputed_tokens)
{
    if (j->state == COORD_JOB_FINISHED) return;
    j->state = COORD_JOB_FINISHED;
    j->worker = -1;
    j->reason = reason;
    j->error_code = error_code;
    snprintf(j->error, sizeof j->error, "%s", error ? error : "");
    j->recomputed_tokens = recomputed_tokens;
    if (reason == NOSA__SERVE__FINISH_REASON__FINISH_LENGTH ||
        reason == NOSA__SERVE__FINISH_REASON__FINISH_EOS)
        t->completed++;
    else
        t->failed++;
}

const char *coord_job_state_name(enum coord_job_state s)
{
    switch (s) {
    case COORD_JOB_QUEUED: return "queued";
    case COORD_JOB_RUNNING: return "running";
    case COORD_JOB_RECOVERING: return "recovering";
    case COORD_JOB_FINISHED: return "finished";
    }
    return "?";
}
