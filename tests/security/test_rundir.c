/* test_rundir.c: common/rundir: the resolution order of docs/PROCESSES.md, creation mode
 * 0700 whatever the umask, and refusal of a directory another user could use (group or world
 * bits, another owner, a symlink, not a directory). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rundir.h"
#include "test_util.h"

static char g_base[256];

static void path_in_base(char *out, size_t cap, const char *name)
{
    REQUIRE(snprintf(out, cap, "%s/%s", g_base, name) < (int)cap, "path too long");
}

static void test_resolve_order(void)
{
    char out[NOSA_RUNDIR_MAX], err[256], want[64];
    setenv("NOSA_RUN_DIR", "/env/run", 1);
    setenv("XDG_RUNTIME_DIR", "/xdg", 1);
    CHECK(nosa_rundir_resolve("/flag/run", out, sizeof(out), err, sizeof(err)) == 0 &&
              strcmp(out, "/flag/run") == 0, "flag first: %s", out);
    CHECK(nosa_rundir_resolve(NULL, out, sizeof(out), err, sizeof(err)) == 0 &&
              strcmp(out, "/env/run") == 0, "then $NOSA_RUN_DIR: %s", out);
    setenv("NOSA_RUN_DIR", "", 1); /* empty counts as unset */
    CHECK(nosa_rundir_resolve("", out, sizeof(out), err, sizeof(err)) == 0 &&
              strcmp(out, "/xdg/nosa") == 0, "then $XDG_RUNTIME_DIR/nosa: %s", out);
    unsetenv("XDG_RUNTIME_DIR");
    unsetenv("NOSA_RUN_DIR");
    snprintf(want, sizeof(want), "/tmp/nosa-%u", (unsigned)geteuid());
    CHECK(nosa_rundir_resolve(NULL, out, sizeof(out), err, sizeof(err)) == 0 &&
              strcmp(out, want) == 0, "then /tmp/nosa-$UID: %s", out);
    char small[8];
    CHECK(nosa_rundir_resolve("/a/long/path", small, sizeof(small), err, sizeof(err)) ==
              -ENAMETOOLONG, "too long for the buffer");
}

static void test_create_mode(void)
{
    char dir[512], err[512];
    struct stat st;
    path_in_base(dir, sizeof(dir), "created");
    mode_t old = umask(0); /* a permissive umask must not widen the directory */
    int rc = nosa_rundir_prepare(dir, err, sizeof(err));
    umask(old);
    CHECK(rc == 0, "create: %s", err);
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0700, "mode %o, want 0700",
          (unsigned)(st.st_mode & 07777));
    CHECK(nosa_rundir_prepare(dir, err, sizeof(err)) == 0, "existing private dir: %s", err);
    /* An existing group/world-accessible one is refused, not silently fixed. */
    REQUIRE(chmod(dir, 0755) == 0, "chmod");
    err[0] = '\0';
    CHECK(nosa_rundir_prepare(dir, err, sizeof(err)) == -EPERM && strstr(err, "0755"),
          "mode 0755 refused: %s", err);
    REQUIRE(chmod(dir, 0710) == 0, "chmod");
    CHECK(nosa_rundir_prepare(dir, err, sizeof(err)) == -EPERM, "mode 0710 refused");
    REQUIRE(chmod(dir, 0700) == 0, "chmod");
    char no_parent[512];
    path_in_base(no_parent, sizeof(no_parent), "missing/child");
    CHECK(nosa_rundir_prepare(no_parent, err, sizeof(err)) == -ENOENT && strstr(err, "parent"),
          "missing parent: %s", err);
}

static void test_symlink_and_file(void)
{
    char target[512], link[512], file[512], err[512];
    path_in_base(target, sizeof(target), "created");
    path_in_base(link, sizeof(link), "link");
    path_in_base(file, sizeof(file), "file");
    REQUIRE(symlink(target, link) == 0, "symlink: %s", strerror(errno));
    CHECK(nosa_rundir_prepare(link, err, sizeof(err)) == -EPERM && strstr(err, "symlink"),
          "a symlink is refused even to a good directory: %s", err);
    FILE *fp = fopen(file, "w");
    REQUIRE(fp && fclose(fp) == 0, "create file");
    CHECK(nosa_rundir_prepare(file, err, sizeof(err)) != 0, "a regular file is refused");
}

/* Another owner: as root, a directory given to nobody (65534); otherwise a root-owned one. */
static void test_other_owner(void)
{
    char dir[512], err[512];
    if (geteuid() == 0) {
        path_in_base(dir, sizeof(dir), "theirs");
        REQUIRE(mkdir(dir, 0700) == 0 && chown(dir, 65534, 65534) == 0, "chown: %s",
                strerror(errno));
    } else {
        snprintf(dir, sizeof(dir), "/");
    }
    err[0] = '\0';
    CHECK(nosa_rundir_prepare(dir, err, sizeof(err)) == -EPERM && strstr(err, "owned by uid"),
          "another user's directory is refused: %s", err);
}

int main(void)
{
    snprintf(g_base, sizeof(g_base), "/tmp/nosa-test-rundir-XXXXXX");
    REQUIRE(mkdtemp(g_base), "mkdtemp: %s", strerror(errno));
    test_resolve_order();
    test_create_mode();
    test_symlink_and_file();
    test_other_owner();
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_base);
    REQUIRE(system(cmd) == 0, "cleanup %s", g_base);
    return test_report("security_rundir");
}
