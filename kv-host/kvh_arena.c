/* kvh_arena.c: shm object, mapping, NUMA placement, huge pages, pre-faulting (kvh_arena.h). */
#include "kvh_arena.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <numa.h>
#include <numaif.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define KVH_PREFAULT_MAX_THREADS 8
#define KVH_THP_SHMEM_PATH "/sys/kernel/mm/transparent_hugepage/shmem_enabled"

int kvh_arena_shm_name(const char *kvh_name, char *out, size_t cap, char *err, size_t errlen)
{
    size_t n = strlen(kvh_name);
    if (n == 0 || n > KVH_ARENA_NAME_MAX ||
        strspn(kvh_name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
            n) {
        nosa_set_error(err, errlen, "kv-host name '%s' must be 1-%d of [A-Za-z0-9._-]", kvh_name,
                       KVH_ARENA_NAME_MAX);
        return -EINVAL;
    }
    if ((size_t)snprintf(out, cap, "/nosa-%u-%s", (unsigned)getuid(), kvh_name) >= cap) {
        nosa_set_error(err, errlen, "shm name for '%s' too long", kvh_name);
        return -ENAMETOOLONG;
    }
    return 0;
}

/* Exclusive, released by the kernel when the process dies (even by SIGKILL). */
static int lock_object(int fd, const char *shm_name, char *err, size_t errlen)
{
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return 0;
    int e = errno;
    if (e == EWOULDBLOCK) {
        nosa_set_error(err, errlen, "arena %s is held by another running kv-host", shm_name);
        return -EBUSY;
    }
    nosa_set_error(err, errlen, "flock %s: %s", shm_name, strerror(e));
    return -e;
}

static int huge_pages_enable(struct kvh_arena *a, char *err, size_t errlen)
{
    char mode[128] = "";
    FILE *f = fopen(KVH_THP_SHMEM_PATH, "r");
    if (!f) {
        nosa_set_error(err, errlen, "--huge-pages: %s: %s (no transparent huge pages here)",
                       KVH_THP_SHMEM_PATH, strerror(errno));
        return -ENOTSUP;
    }
    if (!fgets(mode, sizeof(mode), f)) mode[0] = '\0';
    fclose(f);
    if (!strstr(mode, "[advise]") && !strstr(mode, "[always]") &&
        !strstr(mode, "[within_size]") && !strstr(mode, "[force]")) {
        mode[strcspn(mode, "\n")] = '\0';
        nosa_set_error(err, errlen, "--huge-pages: shared-memory huge pages are off (%s: %s); "
                       "as root: echo advise > %s", KVH_THP_SHMEM_PATH, mode,
                       KVH_THP_SHMEM_PATH);
        return -ENOTSUP;
    }
    if (madvise(a->base, a->bytes, MADV_HUGEPAGE)) {
        int e = errno;
        nosa_set_error(err, errlen, "--huge-pages: madvise(MADV_HUGEPAGE) on %s: %s",
                       a->shm_name, strerror(e));
        return -e;
    }
    return 0;
}

static int arena_numa_bind(struct kvh_arena *a, int node, char *err, size_t errlen)
{
    if (numa_available() < 0) {
        nosa_set_error(err, errlen, "--numa-node %d: libnuma says NUMA is not available here",
                       node);
        return -ENOTSUP;
    }
    if (node > numa_max_node()) {
        nosa_set_error(err, errlen, "--numa-node %d: this machine's highest node is %d", node,
                       numa_max_node());
        return -EINVAL;
    }
    if (numa_run_on_node(node)) {
        int e = errno;
        nosa_set_error(err, errlen, "numa_run_on_node(%d): %s", node, strerror(e));
        return -e;
    }
    unsigned long mask[16] = {0};
    mask[node / 64] = 1ul << (node % 64);
    if (mbind(a->base, a->bytes, MPOL_BIND, mask, sizeof(mask) * 8, MPOL_MF_MOVE)) {
        int e = errno;
        nosa_set_error(err, errlen, "mbind %s to node %d: %s", a->shm_name, node, strerror(e));
        return -e;
    }
    return 0;
}

struct prefault_slice {
    uint8_t *start;
    size_t len;
    int node;
};

static void *prefault_thread(void *arg)
{
    const struct prefault_slice *s = arg;
    if (s->node >= 0) numa_run_on_node(s->node); /* best effort: the pages are bound anyway */
    long page = sysconf(_SC_PAGESIZE);
    /* A write fault allocates the page (under the mbind policy). An atomic add of 0, not
     * *p = *p: on --recover the workers still write blocks into the mapping, and a plain
     * read-then-write could put back a byte one of them wrote in between. */
    for (size_t off = 0; off < s->len; off += (size_t)page)
        __atomic_fetch_add(s->start + off, (uint8_t)0, __ATOMIC_RELAXED);
    return NULL;
}

static int prefault(struct kvh_arena *a, char *err, size_t errlen)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t n = cpus > 0 ? (size_t)cpus : 1;
    if (n > KVH_PREFAULT_MAX_THREADS) n = KVH_PREFAULT_MAX_THREADS;
    size_t per_thread_min = 64u << 20;
    if (n > a->bytes / per_thread_min + 1) n = a->bytes / per_thread_min + 1;
    size_t slice = (a->bytes / n + KVH_HUGE_PAGE_BYTES - 1) / KVH_HUGE_PAGE_BYTES *
                   KVH_HUGE_PAGE_BYTES;
    struct prefault_slice slices[KVH_PREFAULT_MAX_THREADS];
    pthread_t threads[KVH_PREFAULT_MAX_THREADS];
    size_t started = 0;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        size_t off = i * slice;
        if (off >= a->bytes) break;
        slices[i] = (struct prefault_slice){a->base + off,
                                            a->bytes - off < slice ? a->bytes - off : slice,
                                            a->numa_node};
        int e = pthread_create(&threads[i], NULL, prefault_thread, &slices[i]);
        if (e) {
            nosa_set_error(err, errlen, "pre-faulting %s: pthread_create: %s", a->shm_name,
                           strerror(e));
            rc = -e;
            break;
        }
        started++;
    }
    for (size_t i = 0; i < started; i++) pthread_join(threads[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    a->prefault_seconds = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    return rc;
}

/* Maps fd and applies the options: the common part of create and open. */
static int arena_map(const struct kvh_arena_options *opts, struct kvh_arena *a, char *err,
                     size_t errlen)
{
    void *p = mmap(NULL, a->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, a->fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        nosa_set_error(err, errlen, "mmap %s (%" PRIu64 " bytes): %s", a->shm_name, a->bytes,
                       strerror(e));
        return -e;
    }
    a->base = p;
    a->numa_node = opts->numa_node;
    a->huge_pages = opts->huge_pages;
    int rc = 0;
    if (opts->huge_pages && (rc = huge_pages_enable(a, err, errlen))) return rc;
    if (opts->numa_node >= 0 && (rc = arena_numa_bind(a, opts->numa_node, err, errlen))) return rc;
    return prefault(a, err, errlen);
}

/* Names out after the kv-host and opens its object (O_CREAT | O_EXCL when creating), locked. */
static int arena_shm_open(const struct kvh_arena_options *opts, int create, struct kvh_arena *out,
                          char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->fd = -1;
    int rc = kvh_arena_shm_name(opts->kvh_name, out->shm_name, sizeof(out->shm_name), err,
                                errlen);
    if (rc) return rc;
    out->fd = shm_open(out->shm_name, create ? O_RDWR | O_CREAT | O_EXCL : O_RDWR, 0600);
    if (out->fd < 0) {
        rc = -errno;
        if (rc == -EEXIST)
            nosa_set_error(err, errlen, "arena %s already exists: pass --recover to serve it, "
                           "or remove it with nosa-kvhost --destroy %s", out->shm_name,
                           opts->kvh_name);
        else
            nosa_set_error(err, errlen, "arena %s: shm_open: %s", out->shm_name, strerror(-rc));
        return rc;
    }
    rc = lock_object(out->fd, out->shm_name, err, errlen);
    if (rc) {
        if (create) shm_unlink(out->shm_name);
        kvh_arena_close(out);
    }
    return rc;
}

int kvh_arena_create(const struct kvh_arena_options *opts, struct kvh_arena *out, char *err,
                     size_t errlen)
{
    int rc = arena_shm_open(opts, 1, out, err, errlen);
    if (rc) return rc;
    out->bytes = opts->bytes;
    if (fchmod(out->fd, 0600)) { /* shm_open's mode is filtered by the umask */
        rc = -errno;
        nosa_set_error(err, errlen, "fchmod %s: %s", out->shm_name, strerror(-rc));
        goto fail;
    }
    if (ftruncate(out->fd, (off_t)out->bytes)) {
        rc = -errno;
        nosa_set_error(err, errlen, "ftruncate %s to %" PRIu64 " bytes: %s", out->shm_name,
                       out->bytes, strerror(-rc));
        goto fail;
    }
    if ((rc = arena_map(opts, out, err, errlen))) goto fail;
    return 0;
fail:
    shm_unlink(out->shm_name);
    kvh_arena_close(out);
    return rc;
}

int kvh_arena_open(const struct kvh_arena_options *opts, struct kvh_arena *out, char *err,
                   size_t errlen)
{
    int rc = arena_shm_open(opts, 0, out, err, errlen);
    if (rc) return rc;
    struct stat st;
    if (fstat(out->fd, &st)) {
        rc = -errno;
        nosa_set_error(err, errlen, "fstat %s: %s", out->shm_name, strerror(-rc));
        goto fail;
    }
    if (st.st_uid != getuid() || (st.st_mode & 077)) {
        nosa_set_error(err, errlen, "arena %s is not private to this user (uid %u, mode %03o)",
                       out->shm_name, (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
        rc = -EPERM;
        goto fail;
    }
    if (st.st_size <= 0) {
        nosa_set_error(err, errlen, "arena %s is empty", out->shm_name);
        rc = -EINVAL;
        goto fail;
    }
    out->bytes = (uint64_t)st.st_size;
    if ((rc = arena_map(opts, out, err, errlen))) goto fail;
    return 0;
fail:
    kvh_arena_close(out);
    return rc;
}

void kvh_arena_close(struct kvh_arena *a)
{
    if (a->base) munmap(a->base, a->bytes);
    if (a->fd >= 0) close(a->fd); /* drops the flock */
    memset(a, 0, sizeof(*a));
    a->fd = -1;
}

int kvh_arena_destroy(const char *kvh_name, char *err, size_t errlen)
{
    char name[KVH_ARENA_NAME_MAX + 32];
    int rc = kvh_arena_shm_name(kvh_name, name, sizeof(name), err, errlen);
    if (rc) return rc;
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0) {
        rc = -errno;
        nosa_set_error(err, errlen, "arena %s: %s", name, strerror(-rc));
        return rc;
    }
    rc = lock_object(fd, name, err, errlen);
    if (!rc && shm_unlink(name)) {
        rc = -errno;
        nosa_set_error(err, errlen, "shm_unlink %s: %s", name, strerror(-rc));
    }
    close(fd);
    return rc;
}
