/* host_id.h: what makes a process id meaningful: the kernel boot and the pid namespace.
 * Two processes with the same host id can name each other by pid (the coordinator fences a
 * worker it declared dead by killing it: docs/COORDINATOR.md "Fencing"). */
#ifndef NOSA_HOST_ID_H
#define NOSA_HOST_ID_H

#include <stddef.h>

#define NOSA_HOST_ID_MAX 96

/* "<boot id>/<pid namespace>", e.g. "6f1c...e2/pid:[4026531836]". 0, or -errno with err. */
int nosa_host_id(char *out, size_t cap, char *err, size_t errlen);

#endif
