/* fuzz_proto.h: the body of every protobuf decoder target (one target per message we
 * receive: fuzz/<message>.c). */
#ifndef NOSA_FUZZ_PROTO_H
#define NOSA_FUZZ_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* Checks a decoded message the way its receiver does; 0 = accepted, else refused with err set.
 * NULL when the receiver has no validation beyond decoding. */
typedef int (*nosa_fuzz_validate_fn)(const ProtobufCMessage *msg, char *err, size_t errlen);

/* Decodes data as desc the way receivers do (nosa_msg_unpack). A message that decodes must
 * pass protobuf_c_message_check, run through validate (if any) without crashing, with an error
 * text when it is refused, and re-encode canonically: pack, unpack, pack again gives the same
 * bytes. Aborts otherwise. */
void nosa_fuzz_proto(const ProtobufCMessageDescriptor *desc, nosa_fuzz_validate_fn validate,
                     const uint8_t *data, size_t size);

#endif
