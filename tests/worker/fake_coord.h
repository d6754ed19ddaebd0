/* fake_coord.h: the coordinator side of a nosa-worker's link, played by a test: a ROUTER
 * socket bound at the worker endpoint that acknowledges Register, records heartbeats,
 * tokens, finished jobs and Error replies, and sends CoordMsg frames (or raw bytes) to the
 * worker it last heard from.
 *
 * This module owns the ZeroMQ context and socket it creates (fc_close) and every record. */
#ifndef NOSA_TEST_FAKE_COORD_H
#define NOSA_TEST_FAKE_COORD_H

#include <stddef.h>
#include <stdint.h>

#include "nosa_msg.h"
#include "serve.pb-c.h"

#define FC_MAX_JOBS 32
#define FC_MAX_TOKENS 2048

struct fc_job {
    uint64_t job_id;
    int32_t tokens[FC_MAX_TOKENS]; /* by Token.index */
    uint32_t n_tokens;             /* highest index received + 1 */
    uint32_t token_msgs;           /* JobTokens entries received */
    uint32_t out_of_order;         /* tokens whose index was not n_tokens when they came */
    int finished;
    int reason;                    /* Nosa__Serve__FinishReason */
    int error_code;
    char error[256];
    uint32_t prompt_tokens, generated_tokens, recomputed_tokens;
    uint32_t prompt_done;          /* the highest JobTokens.prompt_done received */
};

struct fake_coord {
    void *ctx, *sock;
    char endpoint[512];
    struct nosa_msg_peer peer;
    int have_peer;
    uint32_t heartbeat_ms;  /* sent in RegisterAck */
    int ack_register;       /* 0: ignore Register (a coordinator that does not answer) */
    int registers;
    char worker_name[64];
    char backend[16];
    uint32_t block_size, max_seqs;
    size_t last_running_jobs;
    size_t last_finished_jobs;     /* Register.finished_jobs of the last Register */
    int heartbeats;
    int leaving;                  /* Heartbeats with leaving set */
    uint64_t last_heartbeat_ms;   /* when the last one came (monotonic) */
    uint64_t max_heartbeat_gap_ms; /* the longest wait between two; a test may reset it */
    uint32_t last_running, last_free_slots;
    uint64_t last_steps, last_tokens_total, last_prefill_total;
    double last_taken_s;  /* StepStats.taken_s of the last heartbeat with statistics */
    double last_step_seconds_total;
    uint64_t last_selected_total, last_moved_total, last_hits_total;
    int taken_not_after;  /* heartbeats whose taken_s was not after the one before */
    int errors;
    int last_error_code;
    char last_error[256];
    struct fc_job jobs[FC_MAX_JOBS];
    int n_jobs;
};

int fc_open(struct fake_coord *fc, const char *endpoint);
void fc_close(struct fake_coord *fc);

/* Receives and records what comes within timeout_ms (returns after the first message, or
 * the timeout). Returns 1 when a message was handled, 0 on timeout, -1 on a socket error. */
int fc_pump(struct fake_coord *fc, int timeout_ms);
/* Pumps until *flag becomes non-zero or timeout_ms passes; returns *flag. */
int fc_wait_int(struct fake_coord *fc, const int *flag, int timeout_ms);
/* Pumps until job_id has finished (or timeout); returns its record, or NULL on timeout. */
struct fc_job *fc_wait_finished(struct fake_coord *fc, uint64_t job_id, int timeout_ms);
/* Pumps until job_id has at least n tokens (or timeout); returns its record or NULL. */
struct fc_job *fc_wait_tokens(struct fake_coord *fc, uint64_t job_id, uint32_t n,
                              int timeout_ms);
/* Pumps until the count of Error replies exceeds `before`; returns the new count. */
int fc_wait_error(struct fake_coord *fc, int before, int timeout_ms);
struct fc_job *fc_job(struct fake_coord *fc, uint64_t job_id); /* the record, created */

int fc_send(struct fake_coord *fc, Nosa__Serve__CoordMsg *msg); /* version filled in */
/* Sends data as `frames` payload frames (1: one message of the usual shape). */
int fc_send_raw(struct fake_coord *fc, const void *data, size_t len, int frames);
/* What an Assign of a moved job carries: the tokens streamed so far, or before the first
 * token the prompt tokens its worker reported prefilled. */
struct fc_resume {
    const int32_t *generated;
    size_t n_generated;
    uint32_t prompt_done;
};
/* Assign of a text prompt (resume: NULL for a new job). */
int fc_assign_text(struct fake_coord *fc, uint64_t job_id, const char *prompt,
                   uint32_t max_tokens, float temperature, float top_p, uint64_t seed,
                   const struct fc_resume *resume);
/* CancelJob; moved: the job runs elsewhere now (the worker keeps its kv-host sequence). */
int fc_cancel(struct fake_coord *fc, uint64_t job_id, int moved);

#endif
