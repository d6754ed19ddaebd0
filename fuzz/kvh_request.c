/* kvh_request.c: fuzz target for KvhRequest (proto/kvhost.proto),
 * the frame the kv-host decodes. */
#include "kvhost.pb-c.h"
#include "fuzz_proto.h"
#include "fuzz_target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nosa_fuzz_proto(&nosa__kvh__kvh_request__descriptor, NULL, data, size);
    return 0;
}
