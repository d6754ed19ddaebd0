/* worker_assign.c: see worker_assign.h. */
#include "worker_assign.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "worker_validate.h"

void worker_job_request_free(struct worker_job_request *req)
{
    if (!req) return;
    free(req->prompt);
    free(req->generated);
    memset(req, 0, sizeof(*req));
}

static int bad(Nosa__ErrorCode *code, Nosa__ErrorCode what, int rc)
{
    *code = what;
    return rc;
}

/* Copies n ids after checking each against the vocabulary. */
static int copy_ids(const int32_t *ids, size_t n, int vocab, const char *what, int32_t **out,
                    char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab) {
            nosa_set_error(err, errlen, "%s[%zu] = %d is outside the vocabulary [0, %d)", what,
                           i, (int)ids[i], vocab);
            return -EINVAL;
        }
    *out = malloc((n ? n : 1) * sizeof(**out));
    if (!*out) {
        nosa_set_error(err, errlen, "out of memory for %zu %s", n, what);
        return -ENOMEM;
    }
    if (n) memcpy(*out, ids, n * sizeof(**out));
    return 0;
}

static int parse_prompt(const Nosa__Serve__JobSpec *job, const struct nosa_tokenizer *tok,
                        uint32_t max_context, struct worker_job_request *req, char *err,
                        size_t errlen)
{
    if (job->prompt_case == NOSA__SERVE__JOB_SPEC__PROMPT_TOKENS) {
        const Nosa__Serve__TokenList *t = job->tokens; /* not empty: worker_assign_check */
        if (t->n_ids > max_context) goto too_long;
        req->n_prompt = (uint32_t)t->n_ids;
        return copy_ids(t->ids, t->n_ids, tok->vocab_size, "prompt token", &req->prompt, err,
                        errlen);
    }
    size_t len = strlen(job->text); /* text, not empty: worker_assign_check */
    /* A byte tokenizer: one id per byte, plus BOS. */
    if (len > max_context) goto too_long;
    req->prompt = malloc((len + 1) * sizeof(*req->prompt));
    if (!req->prompt) {
        nosa_set_error(err, errlen, "out of memory for a %zu-byte prompt", len);
        return -ENOMEM;
    }
    size_t n = 0;
    int rc = nosa_tokenizer_encode(tok, job->text, len, 1, req->prompt, len + 1, &n, err, errlen);
    if (rc) return rc;
    if (n > max_context) goto too_long;
    req->n_prompt = (uint32_t)n;
    return 0;
too_long:
    nosa_set_error(err, errlen, "job %llu: prompt longer than this worker's max context %u",
                   (unsigned long long)req->job_id, max_context);
    return -E2BIG;
}

static int parse_assign(const Nosa__Serve__Assign *a, const struct nosa_tokenizer *tok,
                        uint32_t max_context, struct worker_job_request *req,
                        Nosa__ErrorCode *code, char *err, size_t errlen)
{
    *code = NOSA__ERROR_CODE__ERROR_NONE;
    const Nosa__Serve__JobSpec *job = a->job;
    if (job) req->job_id = job->job_id;
    if (worker_assign_check(a, err, errlen))
        return bad(code, NOSA__ERROR_CODE__ERROR_BAD_MESSAGE, -EINVAL);
    const Nosa__Serve__SamplingParams *s = job->sampling;
    req->max_tokens = s->max_tokens;
    req->temperature = s->temperature;
    req->top_p = s->top_p;
    req->seed = s->seed;
    req->stop_at_eos = s->stop_at_eos;
    int rc = parse_prompt(job, tok, max_context, req, err, errlen);
    if (rc == -E2BIG) return bad(code, NOSA__ERROR_CODE__ERROR_REFUSED, rc);
    if (rc) return bad(code, rc == -ENOMEM ? NOSA__ERROR_CODE__ERROR_INTERNAL
                                            : NOSA__ERROR_CODE__ERROR_BAD_MESSAGE, rc);
    if ((uint64_t)req->n_prompt + req->max_tokens > max_context) {
        nosa_set_error(err, errlen, "job %llu: prompt %u + max_tokens %u exceed this worker's "
                       "max context %u", (unsigned long long)job->job_id, req->n_prompt,
                       req->max_tokens, max_context);
        return bad(code, NOSA__ERROR_CODE__ERROR_REFUSED, -E2BIG);
    }
    req->n_generated = (uint32_t)a->n_generated;
    rc = copy_ids(a->generated, a->n_generated, tok->vocab_size, "generated token",
                  &req->generated, err, errlen);
    if (rc) return bad(code, rc == -ENOMEM ? NOSA__ERROR_CODE__ERROR_INTERNAL
                                            : NOSA__ERROR_CODE__ERROR_BAD_MESSAGE, rc);
    if (a->prompt_done > req->n_prompt || (a->prompt_done && a->n_generated)) {
        nosa_set_error(err, errlen, "job %llu: prompt_done %u with a %u-token prompt and %zu "
                       "generated tokens (it counts prefill progress before the first token)",
                       (unsigned long long)job->job_id, a->prompt_done, req->n_prompt,
                       a->n_generated);
        return bad(code, NOSA__ERROR_CODE__ERROR_BAD_MESSAGE, -EINVAL);
    }
    req->prompt_done = a->prompt_done;
    return 0;
}

int worker_assign_parse(const Nosa__Serve__Assign *a, const struct nosa_tokenizer *tok,
                        uint32_t max_context, struct worker_job_request *req,
                        Nosa__ErrorCode *code, char *err, size_t errlen)
{
    memset(req, 0, sizeof(*req));
    int rc = parse_assign(a, tok, max_context, req, code, err, errlen);
    if (rc) {
        uint64_t job_id = req->job_id;
        worker_job_request_free(req);
        req->job_id = job_id;
    }
    return rc;
}
