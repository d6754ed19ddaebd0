/* kvh_proc.c: see kvh_proc.h. */
#include "kvh_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

static struct kvh_proc *g_proc;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void cleanup(void)
{
    struct kvh_proc *p = g_proc;
    if (!p) return;
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        p->pid = 0;
    }
    char shm[96];
    snprintf(shm, sizeof(shm), "/nosa-%u-%s", (unsigned)getuid(), p->name);
    shm_unlink(shm);
    unlink(p->sock_path);
    unlink(p->log_path);
    rmdir(p->run_dir);
}

void kvh_proc_setup(struct kvh_proc *p, const char *exe)
{
    memset(p, 0, sizeof(*p));
    p->exe = exe;
    snprintf(p->run_dir, sizeof(p->run_dir), "/tmp/kvht-XXXXXX");
    REQUIRE(mkdtemp(p->run_dir), "mkdtemp: %s", strerror(errno));
    snprintf(p->name, sizeof(p->name), "kvhtest%d", (int)getpid());
    snprintf(p->sock_path, sizeof(p->sock_path), "%s/%s.sock", p->run_dir, p->name);
    snprintf(p->endpoint, sizeof(p->endpoint), "ipc://%s", p->sock_path);
    snprintf(p->log_path, sizeof(p->log_path), "%s/kvhost.log", p->run_dir);
    g_proc = p;
    atexit(cleanup);
}

void kvh_proc_shm_path(const struct kvh_proc *p, char *out, size_t cap)
{
    snprintf(out, cap, "/dev/shm/nosa-%u-%s", (unsigned)getuid(), p->name);
}

static pid_t spawn(struct kvh_proc *p, const char *const *extra, const char *const *env,
                   int with_defaults)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = p->exe;
    if (with_defaults) {
        const char *defaults[] = {"--run-dir", p->run_dir, "--name", p->name, "--config", "tiny"};
        for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) argv[n++] = defaults[i];
    }
    for (int i = 0; extra && extra[i]; i++) {
        REQUIRE(n < 31, "too many args");
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* A test that crashes (a sanitizer abort skips atexit) must not leave it running. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (p->capture) {
            int fd = open(p->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(127);
            close(fd);
        }
        for (int i = 0; env && env[i]; i++) putenv((char *)env[i]);
        execv(p->exe, (char *const *)argv);
        fprintf(stderr, "execv %s: %s\n", p->exe, strerror(errno));
        _exit(127);
    }
    return pid;
}

int kvh_proc_start(struct kvh_proc *p, const char *const *extra, const char *const *env,
                   int wait_ready, int *status)
{
    REQUIRE(p->pid == 0, "kv-host already running");
    unlink(p->sock_path); /* a killed kv-host leaves it; its presence means ready */
    p->pid = spawn(p, extra, env, 1);
    if (!wait_ready) return 0;
    for (int waited = 0; waited < 10000; waited += 5) {
        struct stat st;
        if (stat(p->sock_path, &st) == 0) return 0;
        int s;
        if (waitpid(p->pid, &s, WNOHANG) == p->pid) {
            p->pid = 0;
            if (status) *status = s;
            return -1;
        }
        sleep_ms(5);
    }
    return -1;
}

int kvh_proc_stop(struct kvh_proc *p, int sig)
{
    REQUIRE(p->pid > 0, "kv-host not running");
    if (sig) kill(p->pid, sig);
    int status = -1;
    for (int waited = 0; waited < 10000; waited += 5) {
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            return status;
        }
        sleep_ms(5);
    }
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    p->pid = 0;
    REQUIRE(0, "kv-host did not stop in 10 s");
    return status;
}

int kvh_proc_run(struct kvh_proc *p, const char *const *args)
{
    pid_t pid = spawn(p, args, NULL, 0);
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
    return status;
}
