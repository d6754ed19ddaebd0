/* fuzz_proto.c: see fuzz_proto.h. */
#include "fuzz_proto.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "nosa_msg.h"

/* Packs msg into a malloc'd buffer; aborts when out of memory (not a finding to save). */
static uint8_t *pack_copy(const ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (!buf) abort();
    size_t written = protobuf_c_message_pack(msg, buf);
    if (written != *len) nosa_fuzz_fail(msg->descriptor->name, "packed size != bytes packed");
    return buf;
}

void nosa_fuzz_proto(const ProtobufCMessageDescriptor *desc, nosa_fuzz_validate_fn validate,
                     const uint8_t *data, size_t size)
{
    char err[256] = "";
    ProtobufCMessage *msg = nosa_msg_unpack(desc, data, size, err, sizeof(err));
    if (!msg) { /* refused: what every receiver answers ERROR_BAD_MESSAGE to */
        if (err[0] == '\0') nosa_fuzz_fail(desc->name, "refused without an error message");
        return;
    }
    if (!protobuf_c_message_check(msg)) nosa_fuzz_fail(desc->name, "decoded message fails check");
    if (validate) { /* accepted or refused: either is fine, but a refusal says why */
        err[0] = '\0';
        if (validate(msg, err, sizeof(err)) != 0 && err[0] == '\0')
            nosa_fuzz_fail(desc->name, "validator refused without an error message");
    }
    size_t len1, len2;
    uint8_t *once = pack_copy(msg, &len1);
    ProtobufCMessage *again = protobuf_c_message_unpack(desc, NULL, len1, once);
    if (!again) nosa_fuzz_fail(desc->name, "re-encoded message does not decode");
    uint8_t *twice = pack_copy(again, &len2);
    if (len1 != len2 || memcmp(once, twice, len1) != 0)
        nosa_fuzz_fail(desc->name, "encoding is not stable across decode/encode");
    free(twice);
    free(once);
    protobuf_c_message_free_unpacked(again, NULL);
    protobuf_c_message_free_unpacked(msg, NULL);
}
