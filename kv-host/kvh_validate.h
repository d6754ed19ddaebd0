/* kvh_validate.h: the checks a decoded KvhRequest passes before nosa-kvhost serves it
 * (version, a body, per-request limits). The server calls it on every request; the fuzz target
 * for KvhRequest runs it too (fuzz/, docs/FUZZ.md).
 *
 * This module owns: nothing but the rules; it reads the message and touches no state. */
#ifndef NOSA_KVH_VALIDATE_H
#define NOSA_KVH_VALIDATE_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

/* 0 when msg (a Nosa__Kvh__KvhRequest) may be served; otherwise err names what is wrong and
 * the return says how the server answers: -EPROTONOSUPPORT (ERROR_BAD_VERSION), -E2BIG
 * (ERROR_TOO_LARGE), -EINVAL (ERROR_BAD_MESSAGE: another message type, no body). */
int kvh_request_validate(const ProtobufCMessage *msg, char *err, size_t errlen);

#endif
