/* coord_harness.h: what the coordinator and CLI tests share: a private run directory, a real
 * nosa-coordinator process, fake workers (DEALER sockets in the test that register, take
 * Assign, stream tokens, heartbeat, or go silent), a raw client (DEALER on the client link)
 * and running the `nosa` CLI with its output captured.
 *
 * A fake worker's token at index i of any job is id 'a' + i % 26 with that one byte as its
 * text, so a job's text is "abcdef..." whichever worker produced which part: a move that
 * repeats or skips a token shows in the text. Everything started is killed and the run
 * directory removed by ch_cleanup, which a test calls once it has closed its sockets (at an
 * exit without it, after a failed REQUIRE, the same runs but leaves the ZeroMQ context). */
#ifndef NOSA_COORD_HARNESS_H
#define NOSA_COORD_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "nosa_msg.h"
#include "serve.pb-c.h"

struct ch_env {
    char bin_dir[1024];
    char run_dir[256];
    char workers_ep[300], clients_ep[300], journal[300], log[300];
    pid_t coord_pid;
    int metrics_port;
    long fsize_limit; /* RLIMIT_FSIZE of the next coordinator started, 0 = none */
    const char *fault; /* NOSA_FAULT for the next coordinator started (common/fault.h) */
    const char *fault_skip; /* NOSA_FAULT_SKIP with it */
    void *ctx;
};

/* Sets up the run dir under /tmp; skips the test (exit 77) when a binary is missing. */
void ch_init(struct ch_env *e, const char *bin_dir, const char *tag);
/* For a coordinator started by someone else (tests/e2e's node_harness): e talks to its links
 * (fake workers, raw clients) and owns a ZeroMQ context (zmq_ctx_term it), nothing else.
 * 0, or -1 when an endpoint does not fit. */
int ch_env_attach(struct ch_env *e, const char *workers_ep, const char *clients_ep);
/* Starts nosa-coordinator with these extra flags (NULL-terminated, may be NULL), waits for its
 * client socket. The journal is e->journal unless extra gives --journal. 0 or -1. */
int ch_start_coordinator(struct ch_env *e, int heartbeat_timeout_ms, const char *const *extra);
/* Sends sig and reaps the coordinator; returns its exit status (or -1). */
int ch_stop_coordinator(struct ch_env *e, int sig);
void ch_cleanup(void);
uint64_t ch_now_ms(void);
void ch_sleep_ms(unsigned ms);

/* ---------------------------------------------------------------- fake worker */
#define FW_MAX_JOBS 16
struct fw_job {
    uint64_t id;
    uint32_t next;        /* the next token index to send */
    uint32_t max_tokens;
    uint32_t assigned_generated; /* Assign.generated's length */
    uint32_t assigned_prompt_done; /* Assign.prompt_done */
    int generated_ok;     /* Assign.generated held the right tokens */
};
struct fake_worker {
    void *sock;
    char name[32];
    uint32_t max_seqs, max_context;
    const char *kvhost;   /* Register.kvhost_endpoint (NULL: none), set before registering */
    struct fw_job jobs[FW_MAX_JOBS];
    int n_jobs;
    int assigns, cancels, shutdowns, acks, errors;
    int moved_cancels;    /* CancelJob with moved set: keep the kv-host sequence */
    int last_error_code;
    char last_error[256]; /* its message */
    int silent;           /* stops heartbeats and tokens (a hung worker) */
    uint64_t stat_beats;  /* heartbeats with statistics sent: the last one's StepStats.steps */
};
int fw_open(struct ch_env *e, struct fake_worker *w, const char *name, uint32_t max_seqs,
            uint32_t max_context);
void fw_close(struct fake_worker *w);
/* Sends Register (listing its jobs; block_size 16) and waits for RegisterAck. 0 or -1. */
int fw_register(struct fake_worker *w);
/* Handles what arrived (Assign, CancelJob, Shutdown, Error, RegisterAck); an Error
 * UNAUTHORIZED/UNKNOWN_ID makes it register again, as nosa-worker does. */
void fw_pump(struct fake_worker *w);
/* Handles at most max messages (max < 0: all), to hold later ones back in the socket. */
void fw_pump_n(struct fake_worker *w, int max);
/* A Heartbeat with StepStats (fixed figures; steps = ++stat_beats), as the step loop sends. */
void fw_heartbeat(struct fake_worker *w);
/* A Heartbeat without StepStats, as the worker's pulse thread sends between steps. */
void fw_heartbeat_bare(struct fake_worker *w);
/* Heartbeat with leaving set (the worker stops), then silent. */
void fw_leave(struct fake_worker *w);
/* Sends JobFinished{job_id, reason, generated_tokens} (the job stays in its list). */
void fw_send_finished(struct fake_worker *w, uint64_t id, int reason, uint32_t generated);
/* Sends JobTokens{job_id, prompt_done} (prefill progress, no tokens) in one TokensBatch. */
void fw_progress(struct fake_worker *w, uint64_t job_id, uint32_t prompt_done);
/* Sends up to n more tokens of each job (one TokensBatch) and JobFinished for those done. */
void fw_emit(struct fake_worker *w, uint32_t n);
struct fw_job *fw_job(struct fake_worker *w, uint64_t id);
/* Sends raw bytes as one frame. */
int fw_send_raw(struct fake_worker *w, const void *data, size_t len);
/* Sends a WorkerMsg (version set unless keep_version). */
int fw_send(struct fake_worker *w, Nosa__Serve__WorkerMsg *m, int keep_version);

/* ---------------------------------------------------------------- raw client */
/* Called every few ms while cl_recv waits (e.g. to keep fake workers heartbeating). */
void ch_set_idle(void (*idle)(void *), void *arg);
void ch_idle(void);
void *cl_open(struct ch_env *e);
int cl_send(void *sock, Nosa__Serve__ClientMsg *m, int keep_version);
/* The next reply within timeout_ms, or NULL. Free with protobuf_c_message_free_unpacked. */
Nosa__Serve__ClientReply *cl_recv(void *sock, int timeout_ms);
/* Submits a text prompt; returns the reply (SubmitReply or error) within 3 s (or wait_ms). */
Nosa__Serve__ClientReply *cl_submit(void *sock, const char *prompt, uint32_t max_tokens,
                                    int stream);
Nosa__Serve__ClientReply *cl_submit_wait(void *sock, const char *prompt, uint32_t max_tokens,
                                         int stream, int wait_ms);
/* With JobSpec.client_key set (0: none). */
Nosa__Serve__ClientReply *cl_submit_keyed(void *sock, const char *prompt, uint32_t max_tokens,
                                          int stream, uint64_t client_key, int wait_ms);

/* ---------------------------------------------------------------- the nosa CLI */
/* Runs `nosa ARGS` (NULL-terminated; --run-dir is added) with env NOSA_COORDINATOR unset,
 * while calling pump(arg) every few ms (NULL: none); stdout and stderr are captured (*out,
 * *errout, malloc'd). Returns the exit status, or -1 (killed after timeout_ms). */
int ch_run_cli(struct ch_env *e, const char *const *args, void (*pump)(void *), void *arg,
               unsigned timeout_ms, char **out, char **errout);
/* Where ch_run_cli_tty puts the CLI's stderr and stdout: files, or a pseudo-terminal. */
enum ch_cli_tty {
    CH_TTY_NONE,
    CH_TTY_STDERR, /* stderr on a terminal (*errout: what it got), stdout to a file */
    CH_TTY_BOTH,   /* both on one terminal (*out: what it got, both mixed; *errout: "") */
};
int ch_run_cli_tty(struct ch_env *e, const char *const *args, enum ch_cli_tty tty,
                   void (*pump)(void *), void *arg, unsigned timeout_ms, char **out,
                   char **errout);
/* The expected text of a job of n tokens: "abc...". */
void ch_expected_text(uint32_t n, char *out, size_t cap);

#endif
