/* cli_main.c: the `nosa` CLI (cli_args.h for its command line, cli_output.h for what it
 * prints): one DEALER connection to the coordinator's client link, one request, and for
 * submit the job's stream. While streaming it sends AttachRequest whenever the link has been
 * quiet for a second (a keep-alive, and how it finds its job again on a restarted
 * coordinator); tokens are kept by index, so none is printed twice or skipped. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "cli_args.h"
#include "cli_output.h"
#include "log.h"
#include "nosa_msg.h"
#include "rundir.h"
#include "serve.pb-c.h"

enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,      /* the job failed, or a local error */
    EXIT_USAGE = 2,       /* bad flags */
    EXIT_UNREACHABLE = 3, /* no answer from the coordinator */
    EXIT_REFUSED = 4,     /* the coordinator answered with an Error */
    EXIT_CANCELLED = 5,
};

/* Quiet link while streaming: send an AttachRequest after this long ... */
#define ATTACH_EVERY_MS 1000
/* ... and give up after this many of the first-reply timeout without any message. */
#define LOST_FACTOR 6
#define LOST_MIN_MS 30000
#define PROGRESS_EVERY_S 0.2
#define MAX_PROMPT_FILE (1u << 20)

struct conn {
    void *ctx, *sock;
    void *monitor;        /* handshake events of sock: was the coordinator ever there? */
    int ever_connected;   /* a handshake with it succeeded */
    int handshake_failed; /* it refused ours (CURVE keys missing or not authorized) */
    struct nosa_msg_security *sec;
    char endpoint[1024];
    uint64_t request_id;
    int json;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int fail(const struct conn *c, int exit_code, const char *code_name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(const struct conn *c, int exit_code, const char *code_name, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_print_error(c->json, code_name, msg);
    return exit_code;
}

static int conn_open(struct conn *c, const struct nosa_cli_args *a, const char *run_dir)
{
    char err[1024];
    const char *env = getenv("NOSA_COORDINATOR");
    if (a->coordinator) snprintf(c->endpoint, sizeof c->endpoint, "%s", a->coordinator);
    else if (env && env[0]) snprintf(c->endpoint, sizeof c->endpoint, "%s", env);
    else if (nosa_rundir_endpoint(run_dir, "coord.sock", c->endpoint, sizeof c->endpoint, err,
                                  sizeof err))
        return fail(c, EXIT_FAILED, "local", "%s", err);
    struct stat st;
    if (strncmp(c->endpoint, "ipc://", 6) == 0 && stat(c->endpoint + 6, &st) != 0)
        return fail(c, EXIT_UNREACHABLE, "unreachable",
                    "no coordinator at %s (%s; is nosa-coordinator running? `deploy/node.sh "
                    "status`)", c->endpoint, strerror(errno));
    c->ctx = zmq_ctx_new();
    if (!c->ctx) return fail(c, EXIT_FAILED, "local", "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    if (nosa_msg_security_init(c->ctx, run_dir, a->insecure, &c->sec, err, sizeof err))
        return fail(c, EXIT_FAILED, "local", "%s", err);
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!c->sock) return fail(c, EXIT_FAILED, "local", "zmq_socket: %s", zmq_strerror(zmq_errno()));
    static const char monitor_ep[] = "inproc://nosa-cli-monitor";
    /* A CURVE refusal reaches the client as HANDSHAKE_FAILED_NO_DETAIL (libzmq 4.3), as does
     * a peer closing mid-handshake: the message below names both. */
    if (zmq_socket_monitor(c->sock, monitor_ep,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) ||
        !(c->monitor = zmq_socket(c->ctx, ZMQ_PAIR)) || zmq_connect(c->monitor, monitor_ep))
        return fail(c, EXIT_FAILED, "local", "socket monitor: %s", zmq_strerror(zmq_errno()));
    if (nosa_msg_socket_defaults(c->sock, -1, err, sizeof err))
        return fail(c, EXIT_FAILED, "local", "%s", err);
    /* A send waits at most the timeout: once a refused handshake has dropped the link's pipe
     * (libzmq does when that happens before the first send), a send would wait for ever. */
    if (zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &a->timeout_ms, sizeof a->timeout_ms) != 0)
        return fail(c, EXIT_FAILED, "local", "ZMQ_SNDTIMEO: %s", zmq_strerror(zmq_errno()));
    if (nosa_msg_connect_secure(c->sec, c->sock, c->endpoint, err, sizeof err))
        return fail(c, EXIT_FAILED, "local", "%s", err);
    c->request_id = ((uint64_t)getpid() << 20) ^ (uint64_t)time(NULL);
    return EXIT_OK;
}

static void conn_close(struct conn *c)
{
    if (c->sock) zmq_socket_monitor(c->sock, NULL, 0);
    if (c->monitor) zmq_close(c->monitor);
    if (c->sock) zmq_close(c->sock);
    if (c->ctx) zmq_ctx_term(c->ctx);
    nosa_msg_security_free(c->sec);
}

/* Drains the monitor: a completed handshake sets ever_connected, a refused one (a
 * coordinator with CURVE and this client without authorized keys) handshake_failed. An
 * event is two frames (event + value, then the endpoint). */
static void conn_events(struct conn *c)
{
    zmq_msg_t ev;
    zmq_msg_init(&ev);
    while (zmq_msg_recv(&ev, c->monitor, ZMQ_DONTWAIT) >= 0) {
        uint16_t event = 0;
        if (zmq_msg_size(&ev) >= sizeof event) memcpy(&event, zmq_msg_data(&ev), sizeof event);
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) c->ever_connected = 1;
        else c->handshake_failed = 1;
        while (zmq_msg_more(&ev) && zmq_msg_recv(&ev, c->monitor, ZMQ_DONTWAIT) >= 0) {
        }
    }
    zmq_msg_close(&ev);
}

/* Whether the coordinator refused our handshake and never accepted one (the monitor's
 * events so far). */
static int handshake_refused(struct conn *c)
{
    conn_events(c);
    return c->handshake_failed && !c->ever_connected;
}

static int fail_handshake(const struct conn *c)
{
    return fail(c, EXIT_UNREACHABLE, "unreachable",
                "coordinator %s refused this client's security handshake: its CURVE "
                "keys (RUN_DIR/curve, `nosa keygen`) are missing or not authorized "
                "there (or the endpoint closed mid-handshake: not a coordinator, or "
                "one stopping; docs/SECURITY.md)", c->endpoint);
}

static int send_msg(struct conn *c, Nosa__Serve__ClientMsg *m)
{
    char err[512];
    m->version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    m->request_id = c->request_id;
    if (nosa_msg_send(c->sock, NULL, &m->base, err, sizeof err)) {
        if (handshake_refused(c)) return fail_handshake(c);
        return fail(c, EXIT_UNREACHABLE, "unreachable", "send to %s: %s", c->endpoint, err);
    }
    return EXIT_OK;
}

/* Waits up to timeout_ms for a reply to our request. 0 with *out, 1 on timeout, or an exit
 * code (> 1) after printing why. Replies to other request ids and undecodable frames are
 * skipped. */
static int recv_reply(struct conn *c, int timeout_ms, Nosa__Serve__ClientReply **out)
{
    double end = now_s() + timeout_ms / 1000.0;
    for (;;) {
        int left = (int)((end - now_s()) * 1000.0);
        if (left < 0) left = 0;
        zmq_pollitem_t item = {c->sock, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&item, 1, left);
        if (rc < 0 && zmq_errno() != EINTR)
            return fail(c, EXIT_FAILED, "local", "zmq_poll: %s", zmq_strerror(zmq_errno()));
        if (rc <= 0) {
            if (now_s() >= end) return 1;
            continue;
        }
        struct nosa_msg_frame f;
        char err[512];
        enum nosa_msg_recv_status st =
            nosa_msg_recv(c->sock, NULL, &f, NOSA_MSG_MAX_BYTES, ZMQ_DONTWAIT, err, sizeof err);
        if (st == NOSA_MSG_FAILED) return fail(c, EXIT_FAILED, "local", "receive: %s", err);
        if (st != NOSA_MSG_OK) continue;
        Nosa__Serve__ClientReply *r = (Nosa__Serve__ClientReply *)nosa_msg_unpack(
            &nosa__serve__client_reply__descriptor, f.data, f.len, err, sizeof err);
        nosa_msg_frame_free(&f);
        if (!r) {
            fprintf(stderr, "nosa: skipped a reply: %s\n", err);
            continue;
        }
        if (r->request_id != c->request_id && r->request_id != 0) {
            protobuf_c_message_free_unpacked(&r->base, NULL);
            continue;
        }
        *out = r;
        return 0;
    }
}

/* How long a link that answered before may stay silent. */
static int lost_ms(int timeout_ms)
{
    return timeout_ms * LOST_FACTOR > LOST_MIN_MS ? timeout_ms * LOST_FACTOR : LOST_MIN_MS;
}

/* Sends m and waits for the first reply; an Error reply is printed and ends the CLI. With
 * resend (a submit, made idempotent by its client key), a coordinator that was reachable but
 * did not answer (it died, and comes back) is asked again until lost_ms passes. */
static int request_resending(struct conn *c, Nosa__Serve__ClientMsg *m, int timeout_ms,
                             int resend, Nosa__Serve__ClientReply **out)
{
    double give_up = now_s() + lost_ms(timeout_ms) / 1000.0;
    int rc;
    for (;;) {
        if ((rc = send_msg(c, m))) return rc;
        rc = recv_reply(c, timeout_ms, out);
        if (rc != 1) break;
        if (handshake_refused(c)) return fail_handshake(c);
        if (!resend || !c->ever_connected || now_s() >= give_up)
            return fail(c, EXIT_UNREACHABLE, "unreachable",
                        "coordinator %s did not answer within %d ms (is nosa-coordinator "
                        "running?)", c->endpoint, timeout_ms);
        fprintf(stderr, "nosa: no answer from %s within %d ms: sending the submit again (the "
                "same job, by its client key)\n", c->endpoint, timeout_ms);
    }
    if (rc) return rc;
    if ((*out)->error) {
        rc = fail(c, EXIT_REFUSED, cli_error_code_name((*out)->error->code), "refused: %s (%s)",
                  (*out)->error->message, cli_error_code_name((*out)->error->code));
        protobuf_c_message_free_unpacked(&(*out)->base, NULL);
        *out = NULL;
        return rc;
    }
    return EXIT_OK;
}

static int request(struct conn *c, Nosa__Serve__ClientMsg *m, int timeout_ms,
                   Nosa__Serve__ClientReply **out)
{
    return request_resending(c, m, timeout_ms, 0, out);
}

static char *read_prompt_file(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        nosa_set_error(err, errlen, "--prompt-file %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_PROMPT_FILE + 2);
    size_t n = 0;
    ssize_t r = 0;
    while (buf && n <= MAX_PROMPT_FILE &&
           (r = read(fd, buf + n, MAX_PROMPT_FILE + 1 - n)) > 0)
        n += (size_t)r;
    int e = errno;
    close(fd);
    if (!buf || r < 0 || n > MAX_PROMPT_FILE || n == 0 || memchr(buf, 0, n)) {
        nosa_set_error(err, errlen, "--prompt-file %s: %s", path,
                       !buf ? "out of memory" : r < 0 ? strerror(e) : n == 0 ? "empty"
                       : n > MAX_PROMPT_FILE ? "larger than 1 MiB" : "holds a NUL byte");
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

/* Takes the tokens of a JobTokens reply that come next; the rest are duplicates or early. */
static int take_tokens(struct cli_job *job, const Nosa__Serve__JobTokens *t)
{
    for (size_t i = 0; i < t->n_tokens; i++) {
        const Nosa__Serve__Token *k = t->tokens[i];
        if (k->index != job->tok.n) continue;
        if (token_store_append(&job->tok, k->id, k->text.data, k->text.len)) return -1;
    }
    return 0;
}

static int send_attach(struct conn *c, uint64_t job_id, uint32_t from)
{
    Nosa__Serve__AttachRequest at = NOSA__SERVE__ATTACH_REQUEST__INIT;
    at.job_id = job_id;
    at.from_index = from;
    Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
    m.body_case = NOSA__SERVE__CLIENT_MSG__BODY_ATTACH;
    m.attach = &at;
    return send_msg(c, &m);
}

/* The progress line on stderr, redrawn in place while stderr is a terminal. On the terminal
 * that stdout also writes to, only until the text begins: the streamed text has no newline,
 * so a redraw (\r, erase line) would erase it; from then on the text is the progress, and the
 * summary at the end gives the rate. */
struct progress {
    int on;         /* still drawn */
    int shared;     /* stdout is the same terminal */
    int drawn;      /* a line is on the terminal, to erase before anything else is printed */
    double last_s;
};

static int same_terminal(int a, int b)
{
    struct stat sa, sb;
    return isatty(a) && isatty(b) && fstat(a, &sa) == 0 && fstat(b, &sb) == 0 &&
           sa.st_rdev == sb.st_rdev;
}

static void progress_init(struct progress *p, int json)
{
    memset(p, 0, sizeof *p);
    p->on = !json && isatty(STDERR_FILENO);
    p->shared = same_terminal(STDOUT_FILENO, STDERR_FILENO);
}

/* Erases the line (before the job's end or an error is printed). */
static void progress_clear(struct progress *p, const struct cli_job *job, double now)
{
    if (p->drawn) cli_progress(job, now, 1);
    p->drawn = 0;
}

static void progress_tick(struct progress *p, const struct cli_job *job, double now)
{
    if (!p->on || now - p->last_s < PROGRESS_EVERY_S) return;
    cli_progress(job, now, 0);
    p->drawn = 1;
    p->last_s = now;
}

/* Called before text is printed: on a shared terminal the line goes for good. */
static void progress_text_starts(struct progress *p, const struct cli_job *job, double now)
{
    if (!p->shared) return;
    progress_clear(p, job, now);
    p->on = 0;
}

/* Receives the job's stream until its end. Returns the exit code. */
static int stream_job(struct conn *c, struct cli_job *job, int timeout_ms)
{
    struct progress pg;
    progress_init(&pg, c->json);
    int lost = lost_ms(timeout_ms);
    double heard = now_s(), attached = heard;
    for (;;) {
        progress_tick(&pg, job, now_s());
        Nosa__Serve__ClientReply *r = NULL;
        int rc = recv_reply(c, pg.on ? (int)(PROGRESS_EVERY_S * 1000) : ATTACH_EVERY_MS, &r);
        if (rc > 1) return rc;
        double now = now_s();
        if (rc == 0) {
            heard = now;
            int code = EXIT_OK, done = 0;
            if (r->error) {
                progress_clear(&pg, job, now);
                code = fail(c, EXIT_FAILED, cli_error_code_name(r->error->code),
                            "job %llu: %s", (unsigned long long)job->job_id, r->error->message);
                done = 1;
            } else if (r->body_case == NOSA__SERVE__CLIENT_REPLY__BODY_TOKENS) {
                size_t before = job->tok.n;
                if (take_tokens(job, r->tokens)) {
                    progress_clear(&pg, job, now);
                    code = fail(c, EXIT_FAILED, "local", "out of memory"), done = 1;
                } else if (job->tok.n > before) {
                    if (job->tok.text_len > job->text_printed) progress_text_starts(&pg, job, now);
                    cli_print_tokens(c->json, job, before);
                }
            } else if (r->body_case == NOSA__SERVE__CLIENT_REPLY__BODY_FINISHED) {
                if (r->finished->generated_tokens > job->tok.n) { /* some were lost: ask again */
                    rc = send_attach(c, job->job_id, (uint32_t)job->tok.n);
                    attached = now;
                    if (rc) code = rc, done = 1;
                } else {
                    progress_clear(&pg, job, now);
                    cli_print_finished(c->json, job, r->finished, now);
                    int reason = r->finished->reason;
                    code = reason == NOSA__SERVE__FINISH_REASON__FINISH_LENGTH ||
                                   reason == NOSA__SERVE__FINISH_REASON__FINISH_EOS
                               ? EXIT_OK
                           : reason == NOSA__SERVE__FINISH_REASON__FINISH_CANCELLED ? EXIT_CANCELLED
                                                                                   : EXIT_FAILED;
                    done = 1;
                }
            }
            protobuf_c_message_free_unpacked(&r->base, NULL);
            if (done) return code;
        }
        if ((now - heard) * 1000.0 > lost) {
            progress_clear(&pg, job, now);
            return fail(c, EXIT_UNREACHABLE, "unreachable",
                        "lost the coordinator %s: nothing heard for %d ms (job %llu may still "
                        "run: nosa status --job %llu)", c->endpoint, lost,
                        (unsigned long long)job->job_id, (unsigned long long)job->job_id);
        }
        double quiet_ms = (now - (heard > attached ? heard : attached)) * 1000.0;
        if (quiet_ms >= ATTACH_EVERY_MS) {
            rc = send_attach(c, job->job_id, (uint32_t)job->tok.n);
            if (rc) return rc;
            attached = now;
        }
    }
}

/* file_text: the --prompt-file's contents (read before connecting), else NULL. */
static int cmd_submit(struct conn *c, const struct nosa_cli_args *a, const char *file_text)
{
    Nosa__Serve__SamplingParams sp = NOSA__SERVE__SAMPLING_PARAMS__INIT;
    sp.max_tokens = a->max_tokens;
    sp.temperature = (float)a->temperature;
    sp.top_p = (float)a->top_p;
    sp.seed = a->seed;
    sp.stop_at_eos = a->stop_at_eos;
    Nosa__Serve__TokenList tl = NOSA__SERVE__TOKEN_LIST__INIT;
    Nosa__Serve__JobSpec spec = NOSA__SERVE__JOB_SPEC__INIT;
    spec.sampling = &sp;
    if (a->tokens) {
        tl.ids = a->tokens;
        tl.n_ids = a->n_tokens;
        spec.prompt_case = NOSA__SERVE__JOB_SPEC__PROMPT_TOKENS;
        spec.tokens = &tl;
    } else {
        spec.prompt_case = NOSA__SERVE__JOB_SPEC__PROMPT_TEXT;
        spec.text = (char *)(file_text ? file_text : a->prompt);
    }
    if (getrandom(&spec.client_key, sizeof spec.client_key, 0) != sizeof spec.client_key)
        return fail(c, EXIT_FAILED, "local", "getrandom: %s", strerror(errno));
    Nosa__Serve__SubmitRequest sr = NOSA__SERVE__SUBMIT_REQUEST__INIT;
    sr.job = &spec;
    sr.stream = a->stream;
    Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
    m.body_case = NOSA__SERVE__CLIENT_MSG__BODY_SUBMIT;
    m.submit = &sr;
    struct cli_job job;
    memset(&job, 0, sizeof job);
    job.start_s = now_s();
    job.max_tokens = a->max_tokens;
    Nosa__Serve__ClientReply *r = NULL;
    int rc = request_resending(c, &m, a->timeout_ms, 1, &r);
    if (rc) return rc;
    if (r->body_case != NOSA__SERVE__CLIENT_REPLY__BODY_SUBMITTED) {
        protobuf_c_message_free_unpacked(&r->base, NULL);
        return fail(c, EXIT_FAILED, "local", "the coordinator answered a submit with something "
                    "else than SubmitReply");
    }
    job.job_id = r->submitted->job_id;
    cli_print_submitted(c->json, job.job_id, r->submitted->queue_position, a->stream);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    if (a->stream) rc = stream_job(c, &job, a->timeout_ms);
    token_store_free(&job.tok);
    return rc;
}

static int cmd_status(struct conn *c, const struct nosa_cli_args *a)
{
    Nosa__Serve__StatusRequest sq = NOSA__SERVE__STATUS_REQUEST__INIT;
    sq.job_id = a->job_id;
    Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
    m.body_case = NOSA__SERVE__CLIENT_MSG__BODY_STATUS;
    m.status = &sq;
    Nosa__Serve__ClientReply *r = NULL;
    int rc = request(c, &m, a->timeout_ms, &r);
    if (rc) return rc;
    if (r->body_case != NOSA__SERVE__CLIENT_REPLY__BODY_STATUS)
        rc = fail(c, EXIT_FAILED, "local", "the coordinator answered status with something else");
    else if (a->job_id && r->status->job)
        cli_print_job_status(c->json, r->status->job);
    else
        cli_print_status(c->json, r->status);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return rc;
}

static int cmd_cancel(struct conn *c, const struct nosa_cli_args *a)
{
    Nosa__Serve__CancelRequest cq = NOSA__SERVE__CANCEL_REQUEST__INIT;
    cq.job_id = a->job_id;
    Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
    m.body_case = NOSA__SERVE__CLIENT_MSG__BODY_CANCEL;
    m.cancel = &cq;
    Nosa__Serve__ClientReply *r = NULL;
    int rc = request(c, &m, a->timeout_ms, &r);
    if (rc) return rc;
    if (c->json) printf("{\"job_id\":%llu,\"cancelled\":true}\n", (unsigned long long)a->job_id);
    else printf("job %llu cancelled\n", (unsigned long long)a->job_id);
    fflush(stdout);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return EXIT_OK;
}

static int cmd_drain(struct conn *c, const struct nosa_cli_args *a)
{
    Nosa__Serve__DrainRequest dq = NOSA__SERVE__DRAIN_REQUEST__INIT;
    Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
    m.body_case = NOSA__SERVE__CLIENT_MSG__BODY_DRAIN;
    m.drain = &dq;
    Nosa__Serve__ClientReply *r = NULL;
    int rc = request(c, &m, a->timeout_ms, &r);
    if (rc) return rc;
    uint32_t left = r->body_case == NOSA__SERVE__CLIENT_REPLY__BODY_DRAIN ? r->drain->remaining : 0;
    if (c->json) printf("{\"draining\":true,\"remaining\":%u}\n", left);
    else printf("draining: no new jobs; %u still queued or running\n", left);
    fflush(stdout);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    nosa_log_init_from_env();
    struct nosa_cli_args a;
    char err[1024];
    struct conn c;
    memset(&c, 0, sizeof c);
    if (nosa_cli_parse(argc, argv, &a, err, sizeof err) != 0) {
        c.json = a.json;
        fail(&c, EXIT_USAGE, "usage", "%s", err);
        fprintf(stderr, "%s", nosa_cli_usage());
        nosa_cli_args_free(&a);
        return EXIT_USAGE;
    }
    c.json = a.json;
    if (a.command == NOSA_CLI_HELP) {
        fputs(nosa_cli_usage(), stdout);
        nosa_cli_args_free(&a);
        return EXIT_OK;
    }
    char run_dir[NOSA_RUNDIR_MAX];
    char *file_text = NULL;
    int rc;
    if (a.prompt_file && !(file_text = read_prompt_file(a.prompt_file, err, sizeof err))) {
        rc = fail(&c, EXIT_USAGE, "usage", "%s", err);
    } else if (nosa_rundir_open(a.run_dir, run_dir, sizeof run_dir, err, sizeof err)) {
        rc = fail(&c, EXIT_FAILED, "local", "%s", err);
    } else if (a.command == NOSA_CLI_KEYGEN) {
        rc = nosa_msg_keys_generate(run_dir, err, sizeof err)
                 ? fail(&c, EXIT_FAILED, "local", "keygen: %s", err)
                 : (printf("CURVE keys written to %s/%s/\n", run_dir, NOSA_MSG_CURVE_DIR), EXIT_OK);
    } else if ((rc = conn_open(&c, &a, run_dir)) == EXIT_OK) {
        switch (a.command) {
        case NOSA_CLI_SUBMIT: rc = cmd_submit(&c, &a, file_text); break;
        case NOSA_CLI_STATUS: rc = cmd_status(&c, &a); break;
        case NOSA_CLI_CANCEL: rc = cmd_cancel(&c, &a); break;
        default: rc = cmd_drain(&c, &a); break;
        }
    }
    free(file_text);
    conn_close(&c);
    nosa_cli_args_free(&a);
    return rc;
}
