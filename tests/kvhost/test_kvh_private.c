/* test_kvh_private.c: only the arena's owner can reach it (docs/SECURITY.md). Run as root
 * (CI), a child that becomes nobody (65534) cannot shm_open the arena (EACCES), and the client
 * library says so: kvh_mapping_open and kvh_client_connect fail with -EACCES and a message
 * naming the object or socket. --recover refuses an object with the arena's name that is
 * readable by others (0644) or, as root, owned by another user ("not private"), and serves it
 * again once it is 0600 and ours. Where the other user cannot be had (not root, or no setuid
 * in a sandbox) the rest still runs and the test exits TEST_SKIP_EXIT (77: skipped in ctest),
 * naming what was not checked. argv[1]: the nosa-kvhost binary. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvh_client.h"
#include "kvh_proc.h"
#include "test_util.h"

#define NOBODY 65534
#define CHILD_SETUP_FAILED 3 /* the child could not become nobody (a sandbox without setuid) */

static struct kvh_proc g_kvh;
static int g_skipped; /* cross-user checks not run here */

static void skip_part(const char *what, const char *why)
{
    printf("test_kvh_private: SKIPPED: %s (%s; CI runs as root)\n", what, why);
    g_skipped++;
}

/* In the child, as nobody: nothing of the arena is reachable, and each refusal says why. */
static int as_nobody(const struct kvh_attach_info *info)
{
    if (setgid(NOBODY) != 0 || setuid(NOBODY) != 0) return CHILD_SETUP_FAILED;
    int fd = shm_open(info->shm_name, O_RDONLY, 0);
    CHECK(fd < 0 && errno == EACCES, "nobody: shm_open(%s) read-only: %s", info->shm_name,
          fd < 0 ? strerror(errno) : "opened");
    if (fd >= 0) close(fd);
    char err[512] = "";
    struct kvh_mapping m;
    int rc = kvh_mapping_open(info, &m, err, sizeof err);
    CHECK(rc == -EACCES, "nobody: kvh_mapping_open returned %d (%s), want -EACCES", rc, err);
    CHECK(strstr(err, info->shm_name) && strstr(err, strerror(EACCES)),
          "nobody: the mapping error names the arena and the cause: %s", err);
    if (rc == 0) kvh_mapping_close(&m);
    struct kvh_client *c = NULL;
    err[0] = '\0';
    rc = kvh_client_connect(g_kvh.endpoint, NULL, &c, err, sizeof err);
    CHECK(rc == -EACCES, "nobody: kvh_client_connect returned %d (%s), want -EACCES", rc, err);
    CHECK(strstr(err, g_kvh.endpoint) && strstr(err, "another user"),
          "nobody: the connect error names the socket and why: %s", err);
    kvh_client_close(c);
    return test_report("test_kvh_private (as nobody)");
}

static void check_other_user_refused(void)
{
    const char *args[] = {"--arena", "64M", NULL};
    REQUIRE(kvh_proc_start(&g_kvh, args, NULL, 1, NULL) == 0, "kv-host did not start");
    char err[512];
    struct kvh_client *c;
    struct kvh_attach_info info;
    REQUIRE(kvh_client_connect(g_kvh.endpoint, NULL, &c, err, sizeof err) == 0, "%s", err);
    REQUIRE(kvh_client_attach(c, NULL, &info, err, sizeof err) == 0, "%s", err);
    kvh_client_close(c);
    if (geteuid() != 0) {
        skip_part("another user's attach refused", "not root");
    } else {
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0) {
            g_test_checks_failed = g_test_checks_passed = 0;
            int rc = as_nobody(&info);
            fflush(NULL);
            _exit(rc);
        }
        int status;
        REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
        if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_SETUP_FAILED)
            skip_part("another user's attach refused", "cannot become nobody here: setuid refused");
        else
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "as nobody: status 0x%x",
                  status);
    }
    int status = kvh_proc_stop(&g_kvh, SIGTERM);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "SIGTERM: exit 0 (0x%x)", status);
}

/* Alters the arena object the stopped kv-host left, then --recover: refused or served. */
static void recover_after(const char *what, mode_t mode, uid_t uid, int want_served)
{
    char shm[128];
    kvh_proc_shm_path(&g_kvh, shm, sizeof shm);
    REQUIRE(chmod(shm, mode) == 0 && chown(shm, uid, (gid_t)-1) == 0, "%s: chmod/chown %s: %s",
            what, shm, strerror(errno));
    const char *recover[] = {"--recover", NULL};
    int status = 0;
    g_kvh.capture = 1;
    int rc = kvh_proc_start(&g_kvh, recover, NULL, 1, &status);
    g_kvh.capture = 0;
    char *log = test_read_file(g_kvh.log_path);
    if (want_served) {
        CHECK(rc == 0, "%s: --recover refused: %s", what, log ? log : "");
        if (rc == 0) kvh_proc_stop(&g_kvh, SIGTERM);
    } else {
        CHECK(rc == -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1,
              "%s: --recover must exit 1, got rc %d status 0x%x", what, rc, status);
        CHECK(log && strstr(log, "is not private to this user") && strstr(log, g_kvh.name),
              "%s: the refusal names the arena and why: %s", what, log ? log : "");
    }
    free(log);
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2, "usage: test_kvh_private NOSA_KVHOST");
    kvh_proc_setup(&g_kvh, argv[1]);
    check_other_user_refused();
    recover_after("mode 0644", 0644, getuid(), 0);
    recover_after("mode 0600 again", 0600, getuid(), 1);
    if (geteuid() == 0) {
        recover_after("owned by nobody", 0600, NOBODY, 0);
    } else {
        skip_part("--recover of an arena owned by another user", "not root: cannot chown");
    }
    int rc = test_report("test_kvh_private");
    if (rc == 0 && g_skipped) {
        printf("test_kvh_private: the checks above passed; %d cross-user part(s) skipped\n",
               g_skipped);
        return TEST_SKIP_EXIT;
    }
    return rc;
}
