/* worker_validate.c: see worker_validate.h. */
#include "worker_validate.h"

#include <errno.h>
#include <math.h>

#include "log.h"

int worker_coord_msg_check_envelope(const Nosa__Serve__CoordMsg *msg, Nosa__ErrorCode *code,
                                    char *err, size_t errlen)
{
    if (msg->version != NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT) {
        *code = NOSA__ERROR_CODE__ERROR_BAD_VERSION;
        nosa_set_error(err, errlen, "CoordMsg version %u, this worker speaks %d", msg->version,
                       NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT);
        return -EPROTO;
    }
    const void *body = NULL;
    switch (msg->body_case) {
    case NOSA__SERVE__COORD_MSG__BODY_REGISTER_ACK: body = msg->register_ack; break;
    case NOSA__SERVE__COORD_MSG__BODY_ASSIGN: body = msg->assign; break;
    case NOSA__SERVE__COORD_MSG__BODY_CANCEL: body = msg->cancel; break;
    case NOSA__SERVE__COORD_MSG__BODY_SHUTDOWN: body = msg->shutdown; break;
    case NOSA__SERVE__COORD_MSG__BODY_ERROR: body = msg->error; break;
    default: break;
    }
    if (!body) {
        *code = NOSA__ERROR_CODE__ERROR_BAD_MESSAGE;
        nosa_set_error(err, errlen, "CoordMsg without a known body (case %d)",
                       (int)msg->body_case);
        return -EINVAL;
    }
    return 0;
}

int worker_assign_check(const Nosa__Serve__Assign *a, char *err, size_t errlen)
{
    const Nosa__Serve__JobSpec *job = a->job;
    if (!job || job->job_id == 0) {
        nosa_set_error(err, errlen, "Assign without a job or with job_id 0");
        return -EINVAL;
    }
    unsigned long long id = (unsigned long long)job->job_id;
    if (a->seq_id != 0 && a->seq_id != job->job_id) {
        nosa_set_error(err, errlen, "job %llu: seq_id %llu differs from the job id", id,
                       (unsigned long long)a->seq_id);
        return -EINVAL;
    }
    int has_prompt = (job->prompt_case == NOSA__SERVE__JOB_SPEC__PROMPT_TEXT && job->text &&
                      job->text[0]) ||
                     (job->prompt_case == NOSA__SERVE__JOB_SPEC__PROMPT_TOKENS && job->tokens &&
                      job->tokens->n_ids > 0);
    if (!has_prompt) {
        nosa_set_error(err, errlen, "job %llu: no prompt (empty text or token list)", id);
        return -EINVAL;
    }
    const Nosa__Serve__SamplingParams *s = job->sampling;
    if (!s || s->max_tokens == 0) {
        nosa_set_error(err, errlen, "job %llu: max_tokens must be >= 1", id);
        return -EINVAL;
    }
    if (!isfinite(s->temperature) || s->temperature < 0.0f || !isfinite(s->top_p) ||
        s->top_p <= 0.0f || s->top_p > 1.0f) {
        nosa_set_error(err, errlen, "job %llu: temperature %g must be >= 0 and top_p %g in (0, 1]",
                       id, (double)s->temperature, (double)s->top_p);
        return -EINVAL;
    }
    if (a->n_generated >= s->max_tokens) {
        nosa_set_error(err, errlen, "job %llu: resumed with %zu generated tokens, max_tokens %u",
                       id, a->n_generated, s->max_tokens);
        return -EINVAL;
    }
    return 0;
}

int worker_coord_msg_validate(const ProtobufCMessage *msg, char *err, size_t errlen)
{
    if (msg->descriptor != &nosa__serve__coord_msg__descriptor) {
        nosa_set_error(err, errlen, "not a CoordMsg but a %s", msg->descriptor->name);
        return -EINVAL;
    }
    const Nosa__Serve__CoordMsg *m = (const Nosa__Serve__CoordMsg *)msg;
    Nosa__ErrorCode code;
    int rc = worker_coord_msg_check_envelope(m, &code, err, errlen);
    if (rc) return rc;
    if (m->body_case == NOSA__SERVE__COORD_MSG__BODY_ASSIGN)
        return worker_assign_check(m->assign, err, errlen);
    return 0;
}
