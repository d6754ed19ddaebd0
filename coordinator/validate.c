/* validate.c: see validate.h. */
#include "validate.h"

#include <math.h>
#include <string.h>

#include "log.h"
#include "serve.pb-c.h"

#define CODE(x) NOSA__ERROR_CODE__ERROR_##x
/* Longest prompt text accepted (the frame limit bounds it too; this names it). */
#define COORD_MAX_PROMPT_BYTES (1u << 20)

static int check_version(uint32_t version, const char *what, char *err, size_t errlen)
{
    if (version == NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT) return 0;
    nosa_set_error(err, errlen, "%s: protocol version %u, this coordinator speaks %d", what,
                   version, NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT);
    return CODE(BAD_VERSION);
}

static int check_job(const Nosa__Serve__JobSpec *job, char *err, size_t errlen)
{
    if (!job) {
        nosa_set_error(err, errlen, "SubmitRequest without a job");
        return CODE(BAD_MESSAGE);
    }
    if (job->job_id != 0) {
        nosa_set_error(err, errlen, "SubmitRequest: job_id %llu given; the coordinator gives ids "
                       "(send 0)", (unsigned long long)job->job_id);
        return CODE(BAD_MESSAGE);
    }
    const Nosa__Serve__SamplingParams *s = job->sampling;
    if (!s) {
        nosa_set_error(err, errlen, "SubmitRequest: job without sampling parameters");
        return CODE(BAD_MESSAGE);
    }
    if (s->max_tokens < 1) {
        nosa_set_error(err, errlen, "max_tokens must be >= 1 (got %u)", s->max_tokens);
        return CODE(BAD_MESSAGE);
    }
    if (!(s->temperature >= 0.0f) || isinf(s->temperature)) {
        nosa_set_error(err, errlen, "temperature must be a number >= 0 (got %g)",
                       (double)s->temperature);
        return CODE(BAD_MESSAGE);
    }
    if (!(s->top_p > 0.0f && s->top_p <= 1.0f)) {
        nosa_set_error(err, errlen, "top_p must be in (0, 1] (got %g)", (double)s->top_p);
        return CODE(BAD_MESSAGE);
    }
    switch (job->prompt_case) {
    case NOSA__SERVE__JOB_SPEC__PROMPT_TEXT:
        if (!job->text || !job->text[0]) {
            nosa_set_error(err, errlen, "empty prompt text");
            return CODE(BAD_MESSAGE);
        }
        if (strlen(job->text) > COORD_MAX_PROMPT_BYTES) {
            nosa_set_error(err, errlen, "prompt text of %zu bytes is over the %u-byte limit",
                           strlen(job->text), COORD_MAX_PROMPT_BYTES);
            return CODE(TOO_LARGE);
        }
        return 0;
    case NOSA__SERVE__JOB_SPEC__PROMPT_TOKENS:
        if (!job->tokens || job->tokens->n_ids == 0) {
            nosa_set_error(err, errlen, "empty prompt token list");
            return CODE(BAD_MESSAGE);
        }
        for (size_t i = 0; i < job->tokens->n_ids; i++)
            if (job->tokens->ids[i] < 0) {
                nosa_set_error(err, errlen, "prompt token %zu is negative (%d)", i,
                               job->tokens->ids[i]);
                return CODE(BAD_MESSAGE);
            }
        return 0;
    default:
        nosa_set_error(err, errlen, "SubmitRequest: job without a prompt (text or tokens)");
        return CODE(BAD_MESSAGE);
    }
}

int coord_client_msg_validate(const ProtobufCMessage *msg, char *err, size_t errlen)
{
    const Nosa__Serve__ClientMsg *m = (const Nosa__Serve__ClientMsg *)msg;
    int rc = check_version(m->version, "ClientMsg", err, errlen);
    if (rc) return rc;
    switch (m->body_case) {
    case NOSA__SERVE__CLIENT_MSG__BODY_SUBMIT:
        if (!m->submit) break;
        return check_job(m->submit->job, err, errlen);
    case NOSA__SERVE__CLIENT_MSG__BODY_STATUS:
    case NOSA__SERVE__CLIENT_MSG__BODY_DRAIN: return 0;
    case NOSA__SERVE__CLIENT_MSG__BODY_CANCEL:
    case NOSA__SERVE__CLIENT_MSG__BODY_ATTACH:
        if ((m->body_case == NOSA__SERVE__CLIENT_MSG__BODY_CANCEL ? m->cancel->job_id
                                                                  : m->attach->job_id) == 0) {
            nosa_set_error(err, errlen, "job id 0 is no job (ids start at 1)");
            return CODE(UNKNOWN_ID);
        }
        return 0;
    default: break;
    }
    nosa_set_error(err, errlen, "ClientMsg without a body (submit, status, cancel, drain, attach)");
    return CODE(BAD_MESSAGE);
}

static int check_register(const Nosa__Serve__Register *r, char *err, size_t errlen)
{
    size_t len = r->worker_name ? strlen(r->worker_name) : 0;
    if (len == 0 || len >= 64) {
        nosa_set_error(err, errlen, "Register: worker_name must be 1..63 characters (got %zu)",
                       len);
        return CODE(BAD_MESSAGE);
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)r->worker_name[i] <= ' ' || (unsigned char)r->worker_name[i] >= 127) {
            nosa_set_error(err, errlen, "Register: worker_name has a byte 0x%02x at %zu (printable "
                           "ASCII, no spaces)", (unsigned char)r->worker_name[i], i);
            return CODE(BAD_MESSAGE);
        }
    if (r->max_seqs < 1 || r->block_size < 1 || r->max_context < 1) {
        nosa_set_error(err, errlen, "Register from %s: max_seqs (%u), block_size (%u) and "
                       "max_context (%u) must be >= 1", r->worker_name, r->max_seqs,
                       r->block_size, r->max_context);
        return CODE(BAD_MESSAGE);
    }
    return 0;
}

int coord_worker_msg_validate(const ProtobufCMessage *msg, char *err, size_t errlen)
{
    const Nosa__Serve__WorkerMsg *m = (const Nosa__Serve__WorkerMsg *)msg;
    int rc = check_version(m->version, "WorkerMsg", err, errlen);
    if (rc) return rc;
    switch (m->body_case) {
    case NOSA__SERVE__WORKER_MSG__BODY_REGISTER: return check_register(m->register_, err, errlen);
    case NOSA__SERVE__WORKER_MSG__BODY_FINISHED:
        if (m->finished->job_id == 0) {
            nosa_set_error(err, errlen, "JobFinished for job id 0");
            return CODE(BAD_MESSAGE);
        }
        return 0;
    case NOSA__SERVE__WORKER_MSG__BODY_HEARTBEAT:
    case NOSA__SERVE__WORKER_MSG__BODY_TOKENS:
    case NOSA__SERVE__WORKER_MSG__BODY_ERROR: return 0;
    default: break;
    }
    nosa_set_error(err, errlen, "WorkerMsg without a body");
    return CODE(BAD_MESSAGE);
}

uint32_t coord_prompt_tokens(const ProtobufCMessage *job_spec)
{
    const Nosa__Serve__JobSpec *job = (const Nosa__Serve__JobSpec *)job_spec;
    if (job->prompt_case == NOSA__SERVE__JOB_SPEC__PROMPT_TEXT && job->text)
        return (uint32_t)strlen(job->text) + 1;
    if (job->prompt_case == NOSA__SERVE__JOB_SPEC__PROMPT_TOKENS && job->tokens)
        return (uint32_t)job->tokens->n_ids;
    return 0;
}
