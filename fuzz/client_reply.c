/* client_reply.c: fuzz target for ClientReply (proto/serve.proto),
 * the frame the nosa CLI decodes. */
#include "serve.pb-c.h"
#include "fuzz_proto.h"
#include "fuzz_target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nosa_fuzz_proto(&nosa__serve__client_reply__descriptor, NULL, data, size);
    return 0;
}
