/* logits.c: the greedy-token rule every backend's argmax output and the sampler share
 * (backend.h): one definition, so a token taken on the GPU equals one taken on the host. */
#include <math.h>

#include "backend.h"

int32_t nosa_logits_argmax(const float *logits, int vocab)
{
    int32_t best = 0;
    for (int32_t i = 0; i < vocab; i++) {
        if (isnan(logits[i])) return -1;
        if (logits[i] > logits[best]) best = i;
    }
    return vocab > 0 && isfinite(logits[best]) ? best : -1;
}
