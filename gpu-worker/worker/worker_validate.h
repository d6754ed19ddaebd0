/* worker_validate.h: the checks a nosa-worker makes on every CoordMsg before acting on it,
 * apart from those that need the model (vocabulary, context length: worker_assign.c).
 *
 * This module owns: the envelope rules (version, a known body, the body's message present)
 * and the structure of an Assign (job and ids, a prompt, sampling parameters in range, a
 * resume shorter than max_tokens). worker_coord_msg_validate has the shape the fuzz targets
 * run (fuzz/, docs/FUZZ.md). */
#ifndef NOSA_WORKER_VALIDATE_H
#define NOSA_WORKER_VALIDATE_H

#include <stddef.h>

#include "serve.pb-c.h"

/* Version and body. 0, or -EPROTO (*code BAD_VERSION) / -EINVAL (*code BAD_MESSAGE) with
 * err naming what is wrong. */
int worker_coord_msg_check_envelope(const Nosa__Serve__CoordMsg *msg, Nosa__ErrorCode *code,
                                    char *err, size_t errlen);
/* An Assign's structure. 0, or -EINVAL with err naming the field (the job id first when
 * there is one). */
int worker_assign_check(const Nosa__Serve__Assign *a, char *err, size_t errlen);
/* Both, for any decoded CoordMsg: 0 when a worker accepts it (the fuzz targets' shape). */
int worker_coord_msg_validate(const ProtobufCMessage *msg, char *err, size_t errlen);

#endif
