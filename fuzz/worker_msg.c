/* worker_msg.c: fuzz target for WorkerMsg (proto/serve.proto),
 * the frame the coordinator decodes and checks (coord_worker_msg_validate). */
#include "serve.pb-c.h"
#include "fuzz_proto.h"
#include "fuzz_target.h"
#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nosa_fuzz_proto(&nosa__serve__worker_msg__descriptor, coord_worker_msg_validate, data, size);
    return 0;
}
