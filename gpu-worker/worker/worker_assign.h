/* worker_assign.h: turning a coordinator's Assign into a checked job request.
 *
 * This module owns: the checks on an Assign that need the model (token ids against the
 * vocabulary, lengths against --max-context), after the structural ones of
 * worker_validate.h, and the tokenization of a text prompt (byte tokenizer, BOS first).
 * What it refuses comes back with the ErrorCode the coordinator acts on. */
#ifndef NOSA_WORKER_ASSIGN_H
#define NOSA_WORKER_ASSIGN_H

#include <stddef.h>
#include <stdint.h>

#include "serve.pb-c.h"
#include "tokenizer.h"

struct worker_job_request {
    uint64_t job_id;       /* == the kv-host sequence id */
    int32_t *prompt;       /* malloc'd */
    uint32_t n_prompt;
    int32_t *generated;    /* tokens already streamed by an earlier worker (resume); malloc'd */
    uint32_t n_generated;
    uint32_t prompt_done;  /* no token yet: prompt tokens an earlier worker prefilled */
    uint32_t max_tokens;
    float temperature;     /* 0: greedy */
    float top_p;
    uint64_t seed;
    int stop_at_eos;
};

/* Fills req from a. Returns 0, or a negated errno with *code (ERROR_BAD_MESSAGE for a
 * malformed job, ERROR_REFUSED for one longer than max_context) and err naming the field.
 * On failure nothing is left allocated; req->job_id is still set whenever the Assign
 * carried one, so the refusal can name the job. */
int worker_assign_parse(const Nosa__Serve__Assign *a, const struct nosa_tokenizer *tok,
                        uint32_t max_context, struct worker_job_request *req,
                        Nosa__ErrorCode *code, char *err, size_t errlen);
void worker_job_request_free(struct worker_job_request *req); /* accepts a zeroed one */

#endif
