/* kvh_reply.c: fuzz target for KvhReply (proto/kvhost.proto),
 * the frame every kv-host client decodes. */
#include "kvhost.pb-c.h"
#include "fuzz_proto.h"
#include "fuzz_target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nosa_fuzz_proto(&nosa__kvh__kvh_reply__descriptor, NULL, data, size);
    return 0;
}
