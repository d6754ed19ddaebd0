/* worker_clock.h: the monotonic clock the worker's timers (heartbeat, registration, step
 * statistics) read. Header-only. */
#ifndef NOSA_WORKER_CLOCK_H
#define NOSA_WORKER_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t worker_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline double worker_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
