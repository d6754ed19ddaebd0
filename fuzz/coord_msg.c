/* coord_msg.c: fuzz target for CoordMsg (proto/serve.proto),
 * the frame a worker decodes. */
#include "serve.pb-c.h"
#include "fuzz_proto.h"
#include "fuzz_target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nosa_fuzz_proto(&nosa__serve__coord_msg__descriptor, NULL, data, size);
    return 0;
}
