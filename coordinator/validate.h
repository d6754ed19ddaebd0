/* validate.h: what the coordinator accepts on its two links, checked before anything acts on
 * a decoded frame (the fuzz targets for ClientMsg and WorkerMsg run these too).
 *
 * Each returns 0 (accepted) or the Nosa__ErrorCode to answer with, err naming the field and
 * the limit. They check the envelope (version, a body) and each body's own fields; what
 * depends on the coordinator's state (draining, known ids, the workers' context) is checked
 * where that state is. */
#ifndef NOSA_COORD_VALIDATE_H
#define NOSA_COORD_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* A ClientMsg (serve.proto). */
int coord_client_msg_validate(const ProtobufCMessage *msg, char *err, size_t errlen);
/* A WorkerMsg (serve.proto). */
int coord_worker_msg_validate(const ProtobufCMessage *msg, char *err, size_t errlen);

/* Tokens a JobSpec's prompt takes: a text's bytes plus BOS (the workers' byte tokenizer), or
 * the ids given. */
uint32_t coord_prompt_tokens(const ProtobufCMessage *job_spec);

#endif
