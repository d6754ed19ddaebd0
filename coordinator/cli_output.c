/* cli_output.c: see cli_output.h. */
#include "cli_output.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

const char *cli_reason_name(int reason)
{
    switch (reason) {
    case NOSA__SERVE__FINISH_REASON__FINISH_LENGTH: return "length";
    case NOSA__SERVE__FINISH_REASON__FINISH_EOS: return "eos";
    case NOSA__SERVE__FINISH_REASON__FINISH_CANCELLED: return "cancelled";
    case NOSA__SERVE__FINISH_REASON__FINISH_ERROR: return "error";
    default: return "unspecified";
    }
}

const char *cli_error_code_name(int code)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&nosa__error_code__descriptor, code);
    return v ? v->name : "ERROR_UNKNOWN";
}

/* Bytes as valid UTF-8 (each invalid byte becomes U+FFFD), NUL-terminated, malloc'd; NUL
 * bytes become U+FFFD too so the string stays whole. NULL when out of memory. */
static char *utf8_clean(const uint8_t *s, size_t n)
{
    char *out = malloc(n * 3 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0 && c != 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) ok = (s[i + k] & 0xC0) == 0x80;
        if (ok && len == 2) ok = c >= 0xC2;
        if (ok && len == 3) /* no overlong forms, no surrogates */
            ok = !(c == 0xE0 && s[i + 1] < 0xA0) && !(c == 0xED && s[i + 1] >= 0xA0);
        if (ok && len == 4) /* no overlong forms, nothing past U+10FFFF */
            ok = !(c == 0xF0 && s[i + 1] < 0x90) && !(c == 0xF4 && s[i + 1] >= 0x90) && c <= 0xF4;
        if (ok) {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = 0;
    return out;
}

static void add_text(cJSON *o, const char *key, const uint8_t *s, size_t n)
{
    char *clean = utf8_clean(s, n);
    cJSON_AddStringToObject(o, key, clean ? clean : "");
    free(clean);
}

/* Prints o as one line on stdout, flushes, frees o. */
static void emit(cJSON *o)
{
    char *line = o ? cJSON_PrintUnformatted(o) : NULL;
    if (line) {
        fputs(line, stdout);
        fputc('\n', stdout);
        fflush(stdout);
    } else {
        fprintf(stderr, "nosa: out of memory printing JSON\n");
    }
    cJSON_free(line);
    cJSON_Delete(o);
}

void cli_print_error(int json, const char *code_name, const char *message)
{
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", message);
        cJSON_AddStringToObject(o, "code", code_name);
        emit(o);
    }
    fprintf(stderr, "nosa: %s\n", message);
}

/* One kv-host's arena in `nosa --json status`. */
static cJSON *arena_json(const Nosa__Serve__ArenaStatus *a)
{
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "kvhost", a->kvhost);
    cJSON_AddBoolToObject(x, "up", a->up);
    const struct {
        const char *name;
        double value;
    } nums[] = {{"groups", (double)a->groups},
                {"free_groups", (double)a->free_groups},
                {"reserved_groups", (double)a->reserved_groups},
                {"arena_bytes", (double)a->arena_bytes},
                {"numa_node", a->numa_node}};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        cJSON_AddNumberToObject(x, nums[i].name, nums[i].value);
    return x;
}

void cli_print_status(int json, const Nosa__Serve__StatusReply *s)
{
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON *ws = cJSON_AddArrayToObject(o, "workers");
        for (size_t i = 0; i < s->n_workers; i++) {
            const Nosa__Serve__WorkerStatus *w = s->workers[i];
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "name", w->worker_name);
            cJSON_AddStringToObject(x, "backend", w->backend);
            cJSON_AddStringToObject(x, "mode", w->mode);
            cJSON_AddBoolToObject(x, "alive", w->alive);
            cJSON_AddNumberToObject(x, "running", w->running);
            cJSON_AddNumberToObject(x, "max_seqs", w->max_seqs);
            cJSON_AddNumberToObject(x, "gpu", w->gpu);
            cJSON_AddStringToObject(x, "kvhost", w->kvhost);
            cJSON_AddNumberToObject(x, "heartbeat_age_s", w->last_heartbeat_age_s);
            if (w->stats) {
                cJSON_AddNumberToObject(x, "tokens_per_s", w->stats->tokens_per_s);
                cJSON_AddNumberToObject(x, "step_seconds", w->stats->step_seconds);
                const Nosa__Serve__StepStats *st = w->stats;
                cJSON_AddNumberToObject(x, "blocks_moved_per_step", st->blocks_moved_per_step);
                cJSON_AddNumberToObject(x, "bytes_moved_per_step", st->bytes_moved_per_step);
                cJSON_AddNumberToObject(x, "cache_hit_rate", w->stats->cache_hit_rate);
                cJSON_AddNumberToObject(x, "stats_age_s", w->stats_age_s);
                cJSON_AddNumberToObject(x, "steps", (double)w->stats->steps);
                cJSON_AddNumberToObject(x, "tokens", (double)w->stats->tokens);
                cJSON_AddNumberToObject(x, "prefill_tokens", (double)w->stats->prefill_tokens);
                cJSON_AddNumberToObject(x, "stats_taken_s", st->taken_s);
                cJSON_AddNumberToObject(x, "step_seconds_total", st->step_seconds_total);
                cJSON_AddNumberToObject(x, "blocks_selected_total",
                                        (double)st->blocks_selected_total);
                cJSON_AddNumberToObject(x, "blocks_moved_total", (double)st->blocks_moved_total);
                cJSON_AddNumberToObject(x, "block_hits_total", (double)st->block_hits_total);
            }
            cJSON_AddItemToArray(ws, x);
        }
        cJSON_AddNumberToObject(o, "queued", s->queued);
        cJSON_AddNumberToObject(o, "running", s->running);
        cJSON_AddNumberToObject(o, "completed", (double)s->completed);
        cJSON_AddNumberToObject(o, "failed", (double)s->failed);
        cJSON_AddBoolToObject(o, "draining", s->draining);
        cJSON_AddNumberToObject(o, "arena_groups", (double)s->arena_groups);
        cJSON_AddNumberToObject(o, "arena_free_groups", (double)s->arena_free_groups);
        cJSON *as = cJSON_AddArrayToObject(o, "arenas");
        for (size_t i = 0; i < s->n_arenas; i++) cJSON_AddItemToArray(as, arena_json(s->arenas[i]));
        cJSON_AddNumberToObject(o, "tokens_per_s", s->tokens_per_s);
        cJSON_AddStringToObject(o, "journal_error", s->journal_error ? s->journal_error : "");
        emit(o);
        return;
    }
    size_t alive = 0;
    for (size_t i = 0; i < s->n_workers; i++) alive += s->workers[i]->alive;
    printf("workers: %zu alive of %zu\n", alive, s->n_workers);
    if (s->n_workers)
        printf("  %-16s %-8s %-9s %-5s %-9s %9s %9s %8s\n", "NAME", "BACKEND", "MODE", "ALIVE",
               "BATCH", "TOK/S", "STEP_MS", "HB_AGE_S");
    for (size_t i = 0; i < s->n_workers; i++) {
        const Nosa__Serve__WorkerStatus *w = s->workers[i];
        char batch[32];
        snprintf(batch, sizeof batch, "%u/%u", w->running, w->max_seqs);
        printf("  %-16s %-8s %-9s %-5s %-9s %9.1f %9.2f %8.1f\n", w->worker_name, w->backend,
               w->mode, w->alive ? "yes" : "no", batch, w->stats ? w->stats->tokens_per_s : 0.0,
               w->stats ? w->stats->step_seconds * 1e3 : 0.0, w->last_heartbeat_age_s);
    }
    printf("jobs: %u queued, %u running, %llu completed, %llu failed%s\n", s->queued, s->running,
           (unsigned long long)s->completed, (unsigned long long)s->failed,
           s->draining ? " (draining: no new jobs)" : "");
    if (!s->n_arenas) printf("arena: unknown (the coordinator follows no kv-host)\n");
    for (size_t i = 0; i < s->n_arenas; i++) {
        const Nosa__Serve__ArenaStatus *a = s->arenas[i];
        if (a->groups)
            printf("arena %s: %llu of %llu groups used (%.1f%%), %llu reserved%s\n", a->kvhost,
                   (unsigned long long)(a->groups - a->free_groups),
                   (unsigned long long)a->groups,
                   100.0 * (double)(a->groups - a->free_groups) / (double)a->groups,
                   (unsigned long long)a->reserved_groups,
                   a->up ? "" : " (at its last answer: the kv-host does not answer)");
        else
            printf("arena %s: unknown (the kv-host has not answered)\n", a->kvhost);
    }
    printf("tokens/s: %.1f\n", s->tokens_per_s);
    if (s->journal_error && s->journal_error[0]) printf("journal: %s\n", s->journal_error);
    fflush(stdout);
}

void cli_print_job_status(int json, const Nosa__Serve__JobStatus *j)
{
    int finished = strcmp(j->state, "finished") == 0;
    const char *error = j->error && j->error->message ? j->error->message : "";
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "job_id", (double)j->job_id);
        cJSON_AddStringToObject(o, "state", j->state);
        cJSON_AddStringToObject(o, "worker", j->worker);
        if (finished) cJSON_AddStringToObject(o, "reason", cli_reason_name(j->reason));
        cJSON_AddStringToObject(o, "error", error);
        cJSON *ids = cJSON_AddArrayToObject(o, "tokens");
        for (size_t i = 0; i < j->n_tokens; i++)
            cJSON_AddItemToArray(ids, cJSON_CreateNumber(j->tokens[i]));
        add_text(o, "text", j->text.data, j->text.len);
        cJSON_AddNumberToObject(o, "prompt_tokens", j->prompt_tokens);
        cJSON_AddNumberToObject(o, "max_tokens", j->max_tokens);
        cJSON_AddNumberToObject(o, "generated_tokens", (double)j->n_tokens);
        cJSON_AddNumberToObject(o, "recomputed_tokens", j->recomputed_tokens);
        emit(o);
        return;
    }
    printf("job %llu: %s", (unsigned long long)j->job_id, j->state);
    if (j->worker[0]) printf(" on %s", j->worker);
    if (finished) printf(" (%s%s%s)", cli_reason_name(j->reason), error[0] ? ": " : "", error);
    printf(", %zu of %u tokens, prompt %u tokens\n", j->n_tokens, j->max_tokens, j->prompt_tokens);
    if (j->text.len) fwrite(j->text.data, 1, j->text.len, stdout);
    printf("\n");
    fflush(stdout);
}

void cli_print_submitted(int json, uint64_t job_id, uint32_t queue_position, int stream)
{
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "job_id", (double)job_id);
        cJSON_AddNumberToObject(o, "queue_position", queue_position);
        emit(o);
    } else if (!stream) {
        printf("%llu\n", (unsigned long long)job_id);
        fflush(stdout);
    } else {
        fprintf(stderr, "nosa: job %llu submitted (queue position %u)\n",
                (unsigned long long)job_id, queue_position);
    }
}

void cli_print_tokens(int json, struct cli_job *j, size_t from)
{
    if (!json) { /* the text not printed yet */
        if (j->tok.text_len > j->text_printed)
            fwrite(j->tok.text + j->text_printed, 1, j->tok.text_len - j->text_printed,
                   stdout);
        fflush(stdout);
        j->text_printed = j->tok.text_len;
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "job_id", (double)j->job_id);
    cJSON *arr = cJSON_AddArrayToObject(o, "tokens");
    for (size_t i = from; i < j->tok.n; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "index", (double)i);
        cJSON_AddNumberToObject(t, "id", j->tok.ids[i]);
        cJSON_AddItemToArray(arr, t);
    }
    emit(o);
}

void cli_print_finished(int json, const struct cli_job *j, const Nosa__Serve__JobFinished *f,
                        double now_s)
{
    double secs = now_s - j->start_s;
    double tps = secs > 0 ? (double)j->tok.n / secs : 0.0;
    const char *error = f->error && f->error->message ? f->error->message : "";
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "job_id", (double)j->job_id);
        cJSON_AddStringToObject(o, "reason", cli_reason_name(f->reason));
        cJSON_AddStringToObject(o, "error", error);
        cJSON *ids = cJSON_AddArrayToObject(o, "tokens");
        for (uint32_t i = 0; i < j->tok.n; i++)
            cJSON_AddItemToArray(ids, cJSON_CreateNumber(j->tok.ids[i]));
        add_text(o, "text", j->tok.text, j->tok.text_len);
        cJSON_AddNumberToObject(o, "prompt_tokens", f->prompt_tokens);
        cJSON_AddNumberToObject(o, "generated_tokens", (double)j->tok.n);
        cJSON_AddNumberToObject(o, "recomputed_tokens", f->recomputed_tokens);
        cJSON_AddNumberToObject(o, "seconds", secs);
        cJSON_AddNumberToObject(o, "tokens_per_s", tps);
        emit(o);
        return;
    }
    printf("\n");
    fflush(stdout);
    fprintf(stderr, "nosa: job %llu: %s%s%s, %u tokens in %.2f s (%.1f tokens/s)\n",
            (unsigned long long)j->job_id, cli_reason_name(f->reason), error[0] ? ": " : "",
            error, j->tok.n, secs, tps);
}

void cli_progress(const struct cli_job *j, double now_s, int clear)
{
    if (clear) {
        fputs("\r\033[K", stderr);
        return;
    }
    double secs = now_s - j->start_s;
    fprintf(stderr, "\r\033[K[job %llu] %u/%u tokens, %.1f tokens/s",
            (unsigned long long)j->job_id, j->tok.n, j->max_tokens,
            secs > 0 ? (double)j->tok.n / secs : 0.0);
}
