/* host_id.c: see host_id.h. */
#include "host_id.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

int nosa_host_id(char *out, size_t cap, char *err, size_t errlen)
{
    static const char boot_path[] = "/proc/sys/kernel/random/boot_id";
    char boot[64] = "", ns[64];
    FILE *f = fopen(boot_path, "r");
    if (!f || !fgets(boot, sizeof boot, f)) {
        int e = f ? EIO : errno;
        if (f) fclose(f);
        nosa_set_error(err, errlen, "%s: %s", boot_path, strerror(e));
        return -e;
    }
    fclose(f);
    boot[strcspn(boot, "\n")] = '\0';
    ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
    if (n < 0) {
        int e = errno;
        nosa_set_error(err, errlen, "/proc/self/ns/pid: %s", strerror(e));
        return -e;
    }
    ns[n] = '\0';
    if (snprintf(out, cap, "%s/%s", boot, ns) >= (int)cap) {
        nosa_set_error(err, errlen, "host id longer than %zu bytes", cap - 1);
        return -ENAMETOOLONG;
    }
    return 0;
}
