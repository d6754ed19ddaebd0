/* rundir.c: see rundir.h. */
#include "rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

int nosa_rundir_resolve(const char *flag, char *out, size_t outlen, char *err, size_t errlen)
{
    const char *xdg = env_nonempty("XDG_RUNTIME_DIR");
    const char *from;
    int n;
    if (flag && flag[0]) {
        from = "--run-dir";
        n = snprintf(out, outlen, "%s", flag);
    } else if (env_nonempty("NOSA_RUN_DIR")) {
        from = "$NOSA_RUN_DIR";
        n = snprintf(out, outlen, "%s", env_nonempty("NOSA_RUN_DIR"));
    } else if (xdg) {
        from = "$XDG_RUNTIME_DIR";
        n = snprintf(out, outlen, "%s/nosa", xdg);
    } else {
        from = "the default";
        n = snprintf(out, outlen, "/tmp/nosa-%u", (unsigned)geteuid());
    }
    if (n < 0 || (size_t)n >= outlen) {
        nosa_set_error(err, errlen, "run directory from %s is longer than %zu bytes", from,
                       outlen - 1);
        return -ENAMETOOLONG;
    }
    return 0;
}

int nosa_rundir_prepare(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        nosa_set_error(err, errlen, "run directory %s: cannot create: %s%s", dir, strerror(e),
                       e == ENOENT ? " (its parent must exist)" : "");
        return -e;
    }
    /* Checked through an open descriptor, so what we check is what is there now: a symlink
     * (to another user's directory, say) is refused by O_NOFOLLOW. */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        nosa_set_error(err, errlen, "run directory %s: %s", dir,
                       e == ELOOP || e == ENOTDIR ? "is a symlink or not a directory"
                                                  : strerror(e));
        return e == ELOOP || e == ENOTDIR ? -EPERM : -e;
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        nosa_set_error(err, errlen, "run directory %s: stat: %s", dir, strerror(errno));
    } else if (st.st_uid != geteuid()) {
        nosa_set_error(err, errlen,
                       "run directory %s is owned by uid %u, not by us (uid %u): another user "
                       "could reach our sockets; use --run-dir or $NOSA_RUN_DIR",
                       dir, (unsigned)st.st_uid, (unsigned)geteuid());
        rc = -EPERM;
    } else if (st.st_mode & 077) {
        nosa_set_error(err, errlen,
                       "run directory %s has mode %04o: group or others can use it (chmod 700 "
                       "%s)",
                       dir, (unsigned)(st.st_mode & 07777), dir);
        rc = -EPERM;
    }
    close(fd);
    return rc;
}

int nosa_rundir_open(const char *flag, char *out, size_t outlen, char *err, size_t errlen)
{
    int rc = nosa_rundir_resolve(flag, out, outlen, err, errlen);
    return rc ? rc : nosa_rundir_prepare(out, err, errlen);
}

int nosa_rundir_endpoint(const char *dir, const char *name, char *out, size_t outlen, char *err,
                         size_t errlen)
{
    struct sockaddr_un addr;
    size_t path_len = strlen(dir) + 1 + strlen(name);
    int n = snprintf(out, outlen, "ipc://%s/%s", dir, name);
    if (path_len >= sizeof(addr.sun_path) || n < 0 || (size_t)n >= outlen) {
        nosa_set_error(err, errlen,
                       "socket path %s/%s is %zu bytes; a unix socket path has at most %zu: "
                       "use a shorter --run-dir",
                       dir, name, path_len, sizeof(addr.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    return 0;
}
