/* fence.c: see fence.h. */
#include "fence.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/pidfd.h>

#include "log.h"

int coord_fence_open(const char *our_host_id, const char *worker_host_id, int32_t pid,
                     int *pidfd, char *err, size_t errlen)
{
    *pidfd = -1;
    if (!worker_host_id || !*worker_host_id || strcmp(our_host_id, worker_host_id) || pid <= 0)
        return 0;
    int fd = pidfd_open((pid_t)pid, 0);
    if (fd < 0) {
        int e = errno;
        nosa_set_error(err, errlen, "pidfd_open(%d): %s", (int)pid, strerror(e));
        return -e;
    }
    *pidfd = fd;
    return 0;
}

int coord_fence_kill(int pidfd)
{
    return pidfd_send_signal(pidfd, SIGKILL, NULL, 0) == 0 ? 0 : -errno;
}

int coord_fence_exited(int pidfd)
{
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    return poll(&p, 1, 0) > 0; /* readable once the process has terminated */
}
