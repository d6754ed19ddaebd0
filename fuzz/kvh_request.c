/* kvh_request.c: fuzz target for KvhRequest (proto/kvhost.proto),
 * the frame the kv-host decodes and checks (kvh_request_validate). */
#include "kvhost.pb-c.h"
#include "fuzz_proto.h"
#include "fuzz_target.h"
#include "kvh_validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nosa_fuzz_proto(&nosa__kvh__kvh_request__descriptor, kvh_request_validate, data, size);
    return 0;
}
