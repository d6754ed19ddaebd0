/* coord_msg.c: fuzz target for CoordMsg (proto/serve.proto),
 * the frame a worker decodes and checks (worker_coord_msg_validate). */
#include "serve.pb-c.h"
#include "fuzz_proto.h"
#include "fuzz_target.h"
#include "worker_validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nosa_fuzz_proto(&nosa__serve__coord_msg__descriptor, worker_coord_msg_validate, data, size);
    return 0;
}
