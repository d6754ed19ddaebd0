/* bench_link.c: --link-test: how fast pinned host memory reaches each device alone, and with
 * every device of --devices copying at once (issue 8: does one GPU's host-to-device traffic
 * slow another's beyond what the machine's topology explains?).
 *
 * One host buffer, as one kv-host's arena serves every GPU of a node: an anonymous mapping
 * written by this thread first (so its pages sit on this thread's NUMA node, as the arena's
 * sit on the kv-host's), registered with CUDA once, portable (every device's context sees it
 * pinned) and mapped. Each device copies the whole buffer into one device buffer, in 64 MiB
 * cudaMemcpyAsync chunks on its own stream, BENCH_LINK_REPS times: the copy engines' bulk
 * rate, the ceiling of what the link gives. What the backend itself reaches (the misses read
 * inside attention) is each row's link_gbps. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "log.h"

#ifdef BENCH_HAVE_CUDART
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

#define BENCH_LINK_REPS 5
#define BENCH_LINK_CHUNK (64ull << 20)
#define BENCH_LINK_MAX (64ull << 30) /* one cudaHostRegister call (docs/ARCHITECTURE.md) */

struct bench_link_dev {
    int device;
    const uint8_t *host;
    uint64_t bytes;
    void *dst;               /* BENCH_LINK_CHUNK bytes on the device */
    cudaStream_t stream;
    double t0, t1;           /* the timed copies' start and end */
    cudaError_t e;
    const char *what;        /* the call that failed */
};

/* Copies the buffer reps times; on error sets e and what. */
static void bench_link_copy(struct bench_link_dev *d, int reps)
{
    d->what = "cudaSetDevice";
    if ((d->e = cudaSetDevice(d->device)) != cudaSuccess) return;
    d->t0 = bench_now();
    for (int r = 0; r < reps; r++)
        for (uint64_t off = 0; off < d->bytes; off += BENCH_LINK_CHUNK) {
            uint64_t n = d->bytes - off < BENCH_LINK_CHUNK ? d->bytes - off : BENCH_LINK_CHUNK;
            d->what = "cudaMemcpyAsync";
            d->e = cudaMemcpyAsync(d->dst, d->host + off, (size_t)n, cudaMemcpyHostToDevice,
                                   d->stream);
            if (d->e != cudaSuccess) return;
        }
    d->what = "cudaStreamSynchronize";
    d->e = cudaStreamSynchronize(d->stream);
    d->t1 = bench_now();
}

static void *bench_link_thread(void *arg)
{
    bench_link_copy(arg, BENCH_LINK_REPS);
    return NULL;
}

/* Runs devices [0, k) at once (one thread each); *span: first start to last end. */
static int bench_link_together(struct bench_link_dev *dev, int k, double *span, char *err,
                               size_t errlen)
{
    pthread_t th[BENCH_MAX_DEVICES];
    int launched = 0, rc = 0;
    for (; launched < k; launched++) {
        int e = pthread_create(&th[launched], NULL, bench_link_thread, &dev[launched]);
        if (e) {
            nosa_set_error(err, errlen, "link test: pthread_create: %s", strerror(e));
            rc = -e;
            break;
        }
    }
    for (int i = 0; i < launched; i++) {
        int e = pthread_join(th[i], NULL);
        if (e && !rc) {
            nosa_set_error(err, errlen, "link test: pthread_join: %s", strerror(e));
            rc = -e;
        }
    }
    double t0 = dev[0].t0, t1 = dev[0].t1;
    for (int i = 0; i < launched; i++) {
        if (!rc && dev[i].e != cudaSuccess) {
            nosa_set_error(err, errlen, "link test: device %d: %s: %s", dev[i].device,
                           dev[i].what, cudaGetErrorString(dev[i].e));
            rc = -EIO;
        }
        t0 = dev[i].t0 < t0 ? dev[i].t0 : t0;
        t1 = dev[i].t1 > t1 ? dev[i].t1 : t1;
    }
    *span = t1 - t0;
    return rc;
}

/* One result: printed and appended to arr. */
static int bench_link_add(cJSON *arr, const char *device, const char *devices, double bytes,
                          double seconds)
{
    double gbps = bytes / seconds / 1e9;
    printf("  device %-4s with %-12s %8.2f GB/s\n", device, devices, gbps);
    cJSON *o = cJSON_CreateObject();
    if (!o) return -ENOMEM;
    cJSON_AddItemToArray(arr, o);
    int ok = cJSON_AddStringToObject(o, "device", device) &&
             cJSON_AddStringToObject(o, "devices", devices) &&
             cJSON_AddNumberToObject(o, "bytes", bytes) &&
             cJSON_AddNumberToObject(o, "seconds", seconds) &&
             cJSON_AddNumberToObject(o, "gbps", gbps);
    return ok ? 0 : -ENOMEM;
}

#define LINK_CHECK(call)                                                                  \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess) {                                                          \
            nosa_set_error(err, errlen, "link test: %s: %s", #call, cudaGetErrorString(e_)); \
            rc = -EIO;                                                                    \
            goto out;                                                                     \
        }                                                                                 \
    } while (0)

int bench_link_test(const struct bench_opts *o, cJSON **out, char *err, size_t errlen)
{
    struct bench_link_dev dev[BENCH_MAX_DEVICES];
    int n = o->n_devices, made = 0, registered = 0, rc = 0, count = 0;
    uint64_t bytes = o->link_test_bytes;
    cJSON *arr = NULL;
    uint8_t *host = MAP_FAILED;
    char all[64] = "", one[8];
    *out = NULL;
    memset(dev, 0, sizeof(dev));
    cudaError_t ce = cudaGetDeviceCount(&count);
    if (ce != cudaSuccess || count == 0) {
        nosa_set_error(err, errlen, "no CUDA device (%s)",
                       ce != cudaSuccess ? cudaGetErrorString(ce) : "none listed");
        return -ENOTSUP;
    }
    if (bytes > BENCH_LINK_MAX) {
        nosa_set_error(err, errlen, "--link-test: at most 64G (one registration)");
        return -EINVAL;
    }
    if (!(arr = cJSON_CreateArray())) {
        nosa_set_error(err, errlen, "link test: out of memory");
        return -ENOMEM;
    }
    host = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (host == MAP_FAILED) {
        rc = -errno;
        nosa_set_error(err, errlen, "link test: mmap of %llu bytes: %s",
                       (unsigned long long)bytes, strerror(-rc));
        goto out;
    }
    memset(host, 0x5a, (size_t)bytes); /* fault every page in, here */
    LINK_CHECK(cudaSetDevice(o->devices[0]));
    LINK_CHECK(cudaHostRegister(host, (size_t)bytes,
                                cudaHostRegisterPortable | cudaHostRegisterMapped));
    registered = 1;
    for (int i = 0; i < n; i++) {
        struct bench_link_dev *d = &dev[i];
        size_t len = strlen(all);
        made = i + 1; /* from here on the teardown frees what it holds */
        snprintf(all + len, sizeof(all) - len, "%s%d", i ? "+" : "", o->devices[i]);
        d->device = o->devices[i];
        d->host = host;
        d->bytes = bytes;
        LINK_CHECK(cudaSetDevice(d->device));
        LINK_CHECK(cudaMalloc(&d->dst, BENCH_LINK_CHUNK));
        LINK_CHECK(cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking));
        bench_link_copy(d, 1); /* warm-up: the first copy maps the buffer for the device */
        if (d->e != cudaSuccess) {
            nosa_set_error(err, errlen, "link test: device %d: %s: %s", d->device, d->what,
                           cudaGetErrorString(d->e));
            rc = -EIO;
            goto out;
        }
    }
    printf("\nlink test: %llu bytes x %d per device from one pinned host buffer, "
           "cudaMemcpyAsync in 64 MiB chunks\n", (unsigned long long)bytes, BENCH_LINK_REPS);
    double per_dev = (double)bytes * BENCH_LINK_REPS, span;
    for (int i = 0; i < n; i++) {
        if ((rc = bench_link_together(&dev[i], 1, &span, err, errlen))) goto out;
        snprintf(one, sizeof(one), "%d", dev[i].device);
        if ((rc = bench_link_add(arr, one, one, per_dev, span))) goto oom;
    }
    if (n > 1) {
        if ((rc = bench_link_together(dev, n, &span, err, errlen))) goto out;
        for (int i = 0; i < n; i++) {
            snprintf(one, sizeof(one), "%d", dev[i].device);
            if ((rc = bench_link_add(arr, one, all, per_dev, dev[i].t1 - dev[i].t0))) goto oom;
        }
        if ((rc = bench_link_add(arr, "all", all, per_dev * n, span))) goto oom;
    }
    *out = arr;
    arr = NULL;
    goto out;
oom:
    nosa_set_error(err, errlen, "link test: out of memory");
out:
    /* Teardown: a failure here changes no result; it is logged. */
    for (int i = 0; i < made; i++) {
        cudaError_t e = cudaSetDevice(dev[i].device);
        if (e == cudaSuccess && dev[i].stream) e = cudaStreamDestroy(dev[i].stream);
        if (e == cudaSuccess && dev[i].dst) e = cudaFree(dev[i].dst);
        if (e != cudaSuccess)
            LOG_WARN("bench", "link test: device %d teardown: %s", dev[i].device,
                     cudaGetErrorString(e));
    }
    if (registered && (ce = cudaHostUnregister(host)) != cudaSuccess)
        LOG_WARN("bench", "link test: cudaHostUnregister: %s", cudaGetErrorString(ce));
    if (host != MAP_FAILED) munmap(host, (size_t)bytes);
    cJSON_Delete(arr);
    return rc;
}
#else
int bench_link_test(const struct bench_opts *o, cJSON **out, char *err, size_t errlen)
{
    (void)o;
    *out = NULL;
    nosa_set_error(err, errlen, "nosa-bench was built without the CUDA runtime");
    return -ENOTSUP;
}
#endif
