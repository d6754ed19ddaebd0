/* test_cli.c: the `nosa` CLI as a process against a real nosa-coordinator with a fake worker
 * (tests/coordinator/coord_harness.h): every command in text and --json, and every error
 * with its exit code: unreachable coordinator (3, for each command), bad flags (2), refused
 * requests (4), a failed or cancelled job (1, 5); a job streamed on a terminal keeps its text
 * whole under the progress line; a streamed job survives a kill -9 and restart of the
 * coordinator with its text exact. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <zmq.h>

#include "coord_harness.h"
#include "test_util.h"

#define HB_TIMEOUT_MS 400

static struct ch_env g_e;

/* The fake worker, driven while a CLI runs. */
struct bg {
    struct fake_worker *w;
    int emit;             /* tokens per call (0: hold them) */
    unsigned emit_every_ms; /* at most one call's tokens this often (0: every call) */
    uint64_t next_emit;
    uint64_t next_hb;
    void *cl;             /* raw client for the cancel */
    int cancel_after;     /* > 0: cancel the worker's job once it has sent this many */
    int restart_after;    /* > 0: kill -9 + restart the coordinator once past this many */
    int restarted, cancelled;
};

static void bg_pump(void *arg)
{
    struct bg *b = arg;
    fw_pump(b->w);
    if (ch_now_ms() >= b->next_hb) {
        fw_heartbeat(b->w);
        b->next_hb = ch_now_ms() + 50;
    }
    struct fw_job *j = b->w->n_jobs ? &b->w->jobs[0] : NULL;
    if (j && b->cancel_after && !b->cancelled && (int)j->next >= b->cancel_after) {
        Nosa__Serve__CancelRequest cq = NOSA__SERVE__CANCEL_REQUEST__INIT;
        cq.job_id = j->id;
        Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
        m.body_case = NOSA__SERVE__CLIENT_MSG__BODY_CANCEL;
        m.cancel = &cq;
        cl_send(b->cl, &m, 0);
        b->cancelled = 1;
        return;
    }
    if (j && b->restart_after && !b->restarted && (int)j->next >= b->restart_after) {
        ch_stop_coordinator(&g_e, SIGKILL);
        CHECK(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, NULL) == 0, "coordinator restart");
        b->restarted = 1;
    }
    if (b->emit && !(b->cancel_after && b->cancelled) && ch_now_ms() >= b->next_emit) {
        fw_emit(b->w, (uint32_t)b->emit);
        b->next_emit = ch_now_ms() + b->emit_every_ms;
    }
}

/* Runs nosa with args, checks its exit code and that stdout/stderr contain the given text
 * (NULL: not checked); returns stdout (caller frees). */
static char *run(struct bg *b, const char *const *args, int want_rc, const char *want_out,
                 const char *want_err)
{
    char *out = NULL, *err = NULL;
    int rc = ch_run_cli(&g_e, args, b ? bg_pump : NULL, b, 20000, &out, &err);
    char line[256] = "";
    size_t used = 0;
    for (int i = 0; args[i] && used < sizeof line; i++)
        used += (size_t)snprintf(line + used, sizeof line - used, "%s ", args[i]);
    CHECK(rc == want_rc, "`nosa %s`: exit %d, want %d\nstdout: %s\nstderr: %s", line, rc, want_rc,
          out ? out : "", err ? err : "");
    if (want_out) CHECK(out && strstr(out, want_out), "`nosa %s`: stdout lacks '%s':\n%s", line,
                        want_out, out ? out : "");
    if (want_err) CHECK(err && strstr(err, want_err), "`nosa %s`: stderr lacks '%s':\n%s", line,
                        want_err, err ? err : "");
    free(err);
    return out;
}

/* The last JSON line of text. */
static cJSON *last_json(const char *text)
{
    const char *last = NULL;
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (*p == '{') last = p;
    if (!last) return NULL;
    const char *eol = strchr(last, '\n');
    return cJSON_ParseWithLength(last, eol ? (size_t)(eol - last) : strlen(last));
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static void test_no_coordinator(void)
{
    free(run(NULL, (const char *[]){"status", NULL}, 3, NULL, "no coordinator at"));
    char *out = run(NULL, (const char *[]){"--json", "status", NULL}, 3, "\"code\":\"unreachable\"",
                    NULL);
    free(out);
    free(run(NULL, (const char *[]){"--coordinator", "tcp://127.0.0.1:9", "--timeout-ms", "300",
                                    "status", NULL},
             3, NULL, "did not answer within 300 ms"));
    /* every command that talks to the coordinator: no socket file, and a tcp endpoint with
     * nothing behind it (a submit is sent again only to a coordinator that was there) */
    const char *const commands[][5] = {{"submit", "--prompt", "x", "--max-tokens", "3"},
                                       {"cancel", "5"},
                                       {"drain"}};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const char *args[12] = {0}, *json_args[12] = {"--json"},
                   *tcp_args[12] = {"--coordinator", "tcp://127.0.0.1:9", "--timeout-ms", "300"};
        for (int k = 0; k < 5 && commands[i][k]; k++)
            args[k] = json_args[k + 1] = tcp_args[k + 4] = commands[i][k];
        free(run(NULL, args, 3, NULL, "no coordinator at"));
        out = run(NULL, json_args, 3, "\"code\":\"unreachable\"", "no coordinator at");
        CHECK(out && strstr(out, "\"error\":\"no coordinator at "),
              "`nosa --json %s`: no JSON error line: %s", commands[i][0], out ? out : "");
        free(out);
        free(run(NULL, tcp_args, 3, NULL, "did not answer within 300 ms"));
    }
    free(run(NULL, (const char *[]){"submit", "--prompt", "x", "--max-tokens", "0", NULL}, 2, NULL,
             "--max-tokens"));
    free(run(NULL, (const char *[]){"--json", "frobnicate", NULL}, 2, "\"code\":\"usage\"",
             "unknown command"));
    free(run(NULL, (const char *[]){"submit", "--prompt", "x", NULL}, 2, NULL, "--max-tokens"));
    free(run(NULL, (const char *[]){"submit", "--prompt-file", "/nonexistent/p", "--max-tokens",
                                    "3", NULL},
             2, NULL, "/nonexistent/p"));
    free(run(NULL, (const char *[]){"--help", NULL}, 0, "usage: nosa", NULL));
    free(run(NULL, (const char *[]){"keygen", NULL}, 0, "CURVE keys written", NULL));
    char pub[400];
    snprintf(pub, sizeof pub, "%s/curve/server.public", g_e.run_dir);
    CHECK(access(pub, R_OK) == 0, "keygen wrote no %s", pub);
    free(run(NULL, (const char *[]){"keygen", NULL}, 1, NULL, "keygen"));
    /* the CURVE keys are for tcp; the ipc tests below do not use them */
}

/* stats_age_s dates the last Heartbeat with statistics; heartbeat_age_s any message. A
 * worker that sends only bare heartbeats (its pulse thread) for 250 ms keeps the second near
 * zero while the first grows, and steps, stats_taken_s and the totals are the last
 * statistics'. */
static void test_stats_age(struct bg *b)
{
    fw_heartbeat(b->w);
    uint64_t until = ch_now_ms() + 250;
    while (ch_now_ms() < until) {
        ch_sleep_ms(40);
        fw_pump(b->w);
        fw_heartbeat_bare(b->w);
    }
    char *out = run(NULL, (const char *[]){"--json", "status", NULL}, 0, NULL, NULL);
    cJSON *o = last_json(out);
    const cJSON *w = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "workers"), 0);
    double stats_age = jnum(w, "stats_age_s"), hb_age = jnum(w, "heartbeat_age_s");
    CHECK(stats_age >= 0.25 && stats_age < 5.0, "stats_age_s %g, want >= 0.25: %s", stats_age,
          out);
    CHECK(hb_age >= 0.0 && hb_age < stats_age - 0.15,
          "heartbeat_age_s %g, want well below stats_age_s %g: %s", hb_age, stats_age, out);
    CHECK(jnum(w, "steps") == (double)b->w->stat_beats, "steps %g, want %llu: %s",
          jnum(w, "steps"), (unsigned long long)b->w->stat_beats, out);
    double beats = (double)b->w->stat_beats;
    CHECK(jnum(w, "stats_taken_s") == 0.25 * beats &&
              jnum(w, "step_seconds_total") == 0.01 * beats &&
              jnum(w, "blocks_selected_total") == 10 * beats &&
              jnum(w, "blocks_moved_total") == 3 * beats &&
              jnum(w, "block_hits_total") == 5 * beats,
          "stats_taken_s and the totals, want the worker's for %g heartbeats: %s", beats, out);
    cJSON_Delete(o);
    free(out);
}

static void test_commands(struct bg *b)
{
    char *out = run(b, (const char *[]){"--json", "status", NULL}, 0, NULL, NULL);
    cJSON *o = last_json(out);
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(o, "workers");
    const cJSON *w0 = cJSON_GetArrayItem(ws, 0);
    CHECK(cJSON_GetArraySize(ws) == 1 && strcmp(jstr(w0, "name"), "w") == 0 &&
              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(w0, "alive")),
          "status JSON workers: %s", out);
    CHECK(jnum(o, "queued") == 0 && jnum(o, "completed") == 0, "status JSON counts: %s", out);
    cJSON_Delete(o);
    free(out);
    free(run(b, (const char *[]){"status", NULL}, 0, "workers: 1 alive of 1", NULL));

    b->emit = 1;
    free(run(b, (const char *[]){"submit", "--prompt", "hello", "--max-tokens", "7", NULL}, 0,
             "abcdefg\n", "tokens/s"));
    out = run(b, (const char *[]){"--json", "submit", "--tokens", "1,2,3", "--max-tokens", "5",
                                  "--seed", "3", "--temperature", "0.5", "--top-p", "0.9", NULL},
              0, NULL, NULL);
    o = last_json(out);
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(o, "tokens");
    CHECK(strcmp(jstr(o, "reason"), "length") == 0 && strcmp(jstr(o, "text"), "abcde") == 0 &&
              cJSON_GetArraySize(toks) == 5 && cJSON_GetArrayItem(toks, 4)->valuedouble == 'e' &&
              jnum(o, "generated_tokens") == 5 && jnum(o, "prompt_tokens") == 3 &&
              jnum(o, "recomputed_tokens") == 0,
          "submit --json final line: %s", out);
    CHECK(strstr(out, "\"queue_position\"") && strstr(out, "{\"index\":0,\"id\":97}"),
          "submit --json: submitted and token lines: %s", out);
    cJSON_Delete(o);
    free(out);

    char pf[300];
    snprintf(pf, sizeof pf, "%s/prompt.txt", g_e.run_dir);
    FILE *f = fopen(pf, "w");
    REQUIRE(f, "prompt file");
    fputs("from a file", f);
    fclose(f);
    b->emit = 0; /* held: the job waits on the worker */
    out = run(b, (const char *[]){"--json", "submit", "--prompt-file", pf, "--max-tokens", "4",
                                  "--no-stream", NULL},
              0, "\"job_id\"", NULL);
    o = last_json(out);
    char id[32];
    snprintf(id, sizeof id, "%.0f", jnum(o, "job_id"));
    cJSON_Delete(o);
    free(out);
    out = run(b, (const char *[]){"--json", "status", "--job", id, NULL}, 0, NULL, NULL);
    o = last_json(out);
    CHECK(strcmp(jstr(o, "state"), "running") == 0 && strcmp(jstr(o, "worker"), "w") == 0 &&
              jnum(o, "prompt_tokens") == 12,
          "a held job: %s", out);
    cJSON_Delete(o);
    free(out);
    b->emit = 1;
    uint64_t end = ch_now_ms() + 2000;
    while (b->w->n_jobs && ch_now_ms() < end) {
        bg_pump(b);
        ch_sleep_ms(3);
    }
    out = run(b, (const char *[]){"--json", "status", "--job", id, NULL}, 0, NULL, NULL);
    o = last_json(out);
    CHECK(strcmp(jstr(o, "state"), "finished") == 0 && strcmp(jstr(o, "reason"), "length") == 0 &&
              strcmp(jstr(o, "text"), "abcd") == 0,
          "status --job of a finished job: %s", out);
    cJSON_Delete(o);
    free(out);
    free(run(b, (const char *[]){"status", "--job", id, NULL}, 0, "finished (length)", NULL));

    /* refusals */
    char longp[120];
    memset(longp, 'x', 100);
    longp[100] = 0;
    free(run(b, (const char *[]){"--json", "submit", "--prompt", longp, "--max-tokens", "10", NULL},
             4, "\"code\":\"ERROR_REFUSED\"", "max_context (64)"));
    free(run(b, (const char *[]){"cancel", "999", NULL}, 4, NULL, "no job 999"));
    free(run(b, (const char *[]){"status", "--job", "999", NULL}, 4, NULL, "ERROR_UNKNOWN_ID"));
    free(run(b, (const char *[]){"cancel", id, NULL}, 4, NULL, "already finished"));

    /* cancel: by id, and a streamed job cancelled while it runs */
    b->emit = 0;
    out = run(b, (const char *[]){"submit", "--prompt", "x", "--max-tokens", "40", "--no-stream",
                                  NULL},
              0, NULL, NULL);
    char cid[32];
    snprintf(cid, sizeof cid, "%llu", strtoull(out ? out : "0", NULL, 10));
    free(out);
    free(run(b, (const char *[]){"cancel", cid, NULL}, 0, "cancelled", NULL));
    free(run(b, (const char *[]){"status", "--job", cid, NULL}, 0, "finished (cancelled", NULL));
    out = run(b, (const char *[]){"--json", "submit", "--prompt", "y", "--max-tokens", "40",
                                  "--no-stream", NULL},
              0, NULL, NULL);
    cJSON *sub = last_json(out);
    snprintf(cid, sizeof cid, "%.0f", jnum(sub, "job_id"));
    cJSON_Delete(sub);
    free(out);
    out = run(b, (const char *[]){"--json", "cancel", cid, NULL}, 0, NULL, NULL);
    cJSON *can = last_json(out);
    CHECK(can && jnum(can, "job_id") == strtod(cid, NULL) &&
              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(can, "cancelled")),
          "--json cancel %s: %s", cid, out ? out : "");
    cJSON_Delete(can);
    free(out);
    b->emit = 1;
    b->cancel_after = 3;
    free(run(b, (const char *[]){"submit", "--prompt", "x", "--max-tokens", "40", NULL}, 5, "abc",
             "cancelled"));
    b->cancel_after = 0;
}

/* The first "[job N] K/20 tokens" progress line in s with K > 0, or NULL. */
static const char *progress_past_zero(const char *s)
{
    for (const char *p = s; (p = strstr(p, "[job ")); p++) {
        unsigned k = 0;
        if (sscanf(p, "[job %*u] %u/20 tokens", &k) == 1 && k > 0) return p;
    }
    return NULL;
}

/* submit on a terminal, tokens 30 ms apart (past the progress line's 0.2 s redraw): every
 * byte of the text stays on the screen. On the terminal stdout also writes to, the progress
 * line shows until the text begins and nothing erases a line after that; with stdout
 * elsewhere, the line on stderr is redrawn as tokens come and erased before the summary. */
static void test_terminal(struct bg *b)
{
    char want[32], *out = NULL, *err = NULL;
    ch_expected_text(20, want, sizeof want);
    const char *args[] = {"submit", "--prompt", "tty", "--max-tokens", "20", NULL};
    b->emit = 1;
    b->emit_every_ms = 30;
    int rc = ch_run_cli_tty(&g_e, args, CH_TTY_BOTH, bg_pump, b, 20000, &out, &err);
    const char *text = out ? strstr(out, want) : NULL;
    CHECK(rc == 0 && text, "submit on a terminal: exit %d, the text '%s' not whole in:\n%s", rc,
          want, out ? out : "");
    const char *zero = out ? strstr(out, "] 0/20 tokens") : NULL;
    CHECK(text && zero && zero < text,
          "submit on a terminal: no progress line before the text:\n%s", out ? out : "");
    CHECK(text && !strstr(text, "\033[K") && strncmp(text + 20, "\r\nnosa: job ", 12) == 0 &&
              strstr(text, ": length, 20 tokens in "),
          "submit on a terminal: the text then a newline and the summary, nothing erased:\n%s",
          out ? out : "");
    free(out);
    free(err);

    rc = ch_run_cli_tty(&g_e, args, CH_TTY_STDERR, bg_pump, b, 20000, &out, &err);
    char want_out[40];
    snprintf(want_out, sizeof want_out, "%s\n", want);
    CHECK(rc == 0 && out && strcmp(out, want_out) == 0, "stdout to a file: exit %d, '%s'", rc,
          out ? out : "");
    CHECK(err && progress_past_zero(err) && strstr(err, "\r\033[Knosa: job ") &&
              strstr(err, ": length, 20 tokens in "),
          "stderr on a terminal: progress redrawn as tokens come, erased before the summary:\n%s",
          err ? err : "");
    free(out);
    free(err);
    b->emit_every_ms = 0;
}

static void test_restart_and_drain(struct bg *b)
{
    b->emit = 1;
    b->restart_after = 10;
    char *out = run(b, (const char *[]){"--json", "submit", "--prompt", "survive", "--max-tokens",
                                        "30", NULL},
                    0, NULL, NULL);
    cJSON *o = last_json(out);
    char want[64];
    ch_expected_text(30, want, sizeof want);
    CHECK(b->restarted, "the coordinator was not restarted mid-stream");
    CHECK(strcmp(jstr(o, "reason"), "length") == 0 && strcmp(jstr(o, "text"), want) == 0 &&
              cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "tokens")) == 30,
          "a stream across a coordinator restart: %s", out);
    cJSON_Delete(o);
    free(out);
    b->restart_after = 0;

    free(run(b, (const char *[]){"drain", NULL}, 0,
             "draining: no new jobs; 0 still queued or running\n", NULL));
    free(run(b, (const char *[]){"--json", "drain", NULL}, 0,
             "{\"draining\":true,\"remaining\":0}\n", NULL));
    free(run(b, (const char *[]){"submit", "--prompt", "late", "--max-tokens", "3", NULL}, 4, NULL,
             "draining"));
    free(run(b, (const char *[]){"status", NULL}, 0, "draining", NULL));
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2, "usage: test_cli BIN_DIR");
    ch_init(&g_e, argv[1], "cli");
    test_no_coordinator();
    REQUIRE(ch_start_coordinator(&g_e, HB_TIMEOUT_MS, NULL) == 0, "coordinator start");
    struct fake_worker w;
    REQUIRE(fw_open(&g_e, &w, "w", 2, 64) == 0 && fw_register(&w) == 0, "fake worker");
    struct bg b = {.w = &w};
    b.cl = cl_open(&g_e);
    REQUIRE(b.cl, "raw client");
    test_stats_age(&b);
    test_commands(&b);
    test_terminal(&b);
    test_restart_and_drain(&b);
    zmq_close(b.cl);
    fw_close(&w);
    ch_cleanup();
    return test_report("cli");
}
