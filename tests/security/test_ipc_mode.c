/* test_ipc_mode.c: nosa_msg_bind makes ipc socket files mode 0600 (whatever the umask, which
 * it restores), replaces a stale file, and, run as root, shows that another user cannot
 * connect to a socket in the run directory. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "nosa_msg.h"
#include "rundir.h"
#include "test_util.h"

/* In a child running as nobody: 0 if it could connect to the unix socket at path, else the
 * errno it got (CHILD_SETUP_FAILED if it could not become nobody or make a socket). */
#define CHILD_SETUP_FAILED 255
static int connect_as_nobody(const char *path)
{
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0) _exit(CHILD_SETUP_FAILED);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || strlen(path) >= sizeof(a.sun_path)) _exit(CHILD_SETUP_FAILED);
        memcpy(a.sun_path, path, strlen(path) + 1);
        _exit(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 ? 0 : errno);
    }
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid && WIFEXITED(status), "child");
    return WEXITSTATUS(status);
}

int main(void)
{
    char base[] = "/tmp/nosa-test-ipc-XXXXXX", run_dir[256], endpoint[512], err[512];
    REQUIRE(mkdtemp(base), "mkdtemp: %s", strerror(errno));
    snprintf(run_dir, sizeof(run_dir), "%s/run", base);
    REQUIRE(nosa_rundir_prepare(run_dir, err, sizeof(err)) == 0, "%s", err);
    REQUIRE(nosa_rundir_endpoint(run_dir, "coord.sock", endpoint, sizeof(endpoint), err,
                                 sizeof(err)) == 0, "%s", err);
    const char *path = endpoint + strlen("ipc://");

    /* A stale file (a killed server's) is replaced. */
    FILE *fp = fopen(path, "w");
    REQUIRE(fp && fclose(fp) == 0, "stale file");
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_ROUTER);
    REQUIRE(ctx && sock, "zmq");
    mode_t before = umask(0); /* the most permissive umask */
    int rc = nosa_msg_bind(sock, endpoint, err, sizeof(err));
    mode_t after = umask(before);
    CHECK(rc == 0, "bind %s: %s", endpoint, err);
    CHECK(after == 0, "umask restored after bind (got %o)", (unsigned)after);
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0600,
          "socket file mode %o, want 0600", (unsigned)(st.st_mode & 07777));
    CHECK(st.st_uid == geteuid(), "socket owned by us");

    char long_name[200];
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    CHECK(nosa_rundir_endpoint(run_dir, long_name, endpoint, sizeof(endpoint), err,
                               sizeof(err)) == -ENAMETOOLONG,
          "an ipc path longer than a unix socket address is refused");

    int e = geteuid() == 0 ? connect_as_nobody(path) : CHILD_SETUP_FAILED;
    if (e == CHILD_SETUP_FAILED)
        printf("security_ipc_mode: cannot run a process as another user here (not root, or "
               "no setuid in this sandbox): the cross-user connect check is skipped\n");
    else
        CHECK(e == EACCES, "another user cannot connect: got %s", e ? strerror(e) : "connected");
    zmq_close(sock);
    zmq_ctx_term(ctx);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
    REQUIRE(system(cmd) == 0, "cleanup");
    return test_report("security_ipc_mode");
}
