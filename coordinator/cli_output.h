/* cli_output.h: how the `nosa` CLI prints replies: plain text for people, or one JSON object a
 * line (--json, cJSON) for scripts; stdout is flushed after every line.
 *
 * This module owns the formats (docs/COORDINATOR.md lists the JSON fields). */
#ifndef NOSA_CLI_OUTPUT_H
#define NOSA_CLI_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "serve.pb-c.h"
#include "token_store.h"

/* "length", "eos", "cancelled", "error" or "unspecified". */
const char *cli_reason_name(int reason);
/* The ErrorCode's name, e.g. "ERROR_REFUSED". */
const char *cli_error_code_name(int code);

/* Prints a refusal or a local failure: JSON {"error", "code"} on stdout with --json; always
 * "nosa: MESSAGE" on stderr. */
void cli_print_error(int json, const char *code_name, const char *message);

void cli_print_status(int json, const Nosa__Serve__StatusReply *s);
void cli_print_job_status(int json, const Nosa__Serve__JobStatus *j);

/* A submitted job's stream, as the CLI collects it. */
struct cli_job {
    uint64_t job_id;
    uint32_t max_tokens;
    struct token_store tok; /* tokens 0 .. tok.n - 1, in order */
    size_t text_printed;    /* plain output: bytes of text already on stdout */
    double start_s;
};

void cli_print_submitted(int json, uint64_t job_id, uint32_t queue_position, int stream);
/* The tokens [from, n) just received: their text (plain) or a chunk line (JSON). */
void cli_print_tokens(int json, struct cli_job *j, size_t from);
/* The job's end: the whole token list and text (JSON), or a summary on stderr (plain). */
void cli_print_finished(int json, const struct cli_job *j, const Nosa__Serve__JobFinished *f,
                        double now_s);
/* Overwrites the progress line on stderr (call only when it is a terminal); clear erases it. */
void cli_progress(const struct cli_job *j, double now_s, int clear);

#endif
