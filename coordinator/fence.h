/* fence.h: fencing a worker the coordinator declared dead. A worker only slow to answer (a
 * stopped process, a stalled GPU) still holds its in-flight step: once it runs again, that
 * step writes blocks into arena groups its jobs' new workers now use, or that were freed and
 * handed to other sequences. So a worker on this host (same boot, same pid namespace: its
 * Register.host_id equals ours) is killed before its jobs move, and they move once it has
 * exited. A pidfd, taken at Register, names the very process that registered (no pid
 * reuse). Workers elsewhere are not fenced (docs/COORDINATOR.md "Fencing"). */
#ifndef NOSA_COORD_FENCE_H
#define NOSA_COORD_FENCE_H

#include <stddef.h>
#include <stdint.h>

/* *pidfd: the registering worker's pidfd when it runs on this host (host_id equal to ours
 * and pid > 0), else -1 (nothing to fence). 0, or -errno with err (*pidfd -1) when it should
 * be fenceable and its pidfd cannot be had (it has already exited: ESRCH). */
int coord_fence_open(const char *our_host_id, const char *worker_host_id, int32_t pid,
                     int *pidfd, char *err, size_t errlen);
/* SIGKILL through the pidfd. 0, or -errno (-ESRCH: it has already exited). */
int coord_fence_kill(int pidfd);
/* 1 once the process has exited, 0 while it has not. */
int coord_fence_exited(int pidfd);

#endif
