/* kvh_proc.h: a real nosa-kvhost process for tests: a private run dir, a unique kv-host name
 * (so a unique arena and socket), start/stop, and cleanup on every exit path (an atexit
 * handler kills the process, removes the arena, the socket and the run dir; a test that dies
 * without running it still takes the kv-host with it: PR_SET_PDEATHSIG). */
#ifndef NOSA_TEST_KVH_PROC_H
#define NOSA_TEST_KVH_PROC_H

#include <sys/types.h>

struct kvh_proc {
    const char *exe;
    pid_t pid;           /* 0 when not running */
    char run_dir[64];
    char name[32];
    char endpoint[160];
    char sock_path[128];
    char log_path[96];   /* <run_dir>/kvhost.log */
    int capture;         /* set: each start's stdout and stderr go to log_path, rewritten */
};

/* Makes the run dir and names; registers the cleanup. One kvh_proc per test program. */
void kvh_proc_setup(struct kvh_proc *p, const char *exe);
/* Starts nosa-kvhost --run-dir --name --config tiny plus extra args (NULL-terminated), with
 * env (NULL-terminated "NAME=VALUE" list, may be NULL) added. wait_ready: wait (up to 10 s)
 * for the socket file. Returns 0, or -1 when the process exited or never got ready (its exit
 * status in *status if status != NULL). */
int kvh_proc_start(struct kvh_proc *p, const char *const *extra, const char *const *env,
                   int wait_ready, int *status);
/* Sends sig (0: none) and waits up to 10 s for the exit; returns the wait status. */
int kvh_proc_stop(struct kvh_proc *p, int sig);
/* Runs nosa-kvhost with args to completion (for --destroy, a refused --recover): status.
 * With capture set its output goes to log_path too. */
int kvh_proc_run(struct kvh_proc *p, const char *const *args);
/* /dev/shm path of the arena. */
void kvh_proc_shm_path(const struct kvh_proc *p, char *out, size_t cap);

#endif
