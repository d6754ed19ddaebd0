/* backend.c: the backend registry (nosa_backend_find in backend.h): the backends built into
 * this binary, by name, and "auto" = cuda when it is built and a GPU is visible, else cpu. */
#include "backend.h"

#include <string.h>

#include "log.h"

#ifdef NOSA_HAVE_CUDA
#include <cuda_runtime_api.h>

/* 0 when a CUDA device is visible, else err says why not. */
static int cuda_usable(char *err, size_t errlen)
{
    int n = 0;
    cudaError_t ce = cudaGetDeviceCount(&n);
    if (ce != cudaSuccess) {
        nosa_set_error(err, errlen, "backend cuda: no usable GPU: %s", cudaGetErrorString(ce));
        return -1;
    }
    if (n < 1) {
        nosa_set_error(err, errlen, "backend cuda: no GPU visible");
        return -1;
    }
    return 0;
}
#endif

const struct nosa_backend_ops *nosa_backend_find(const char *name, char *err, size_t errlen)
{
    if (!name) name = "auto";
    if (strcmp(name, "cpu") == 0) return &nosa_backend_cpu_ops;
    if (strcmp(name, "cuda") == 0) {
#ifdef NOSA_HAVE_CUDA
        return cuda_usable(err, errlen) == 0 ? &nosa_backend_cuda_ops : NULL;
#else
        nosa_set_error(err, errlen, "backend cuda: not built into this binary (no CUDA toolkit "
                       "at build time)");
        return NULL;
#endif
    }
    if (strcmp(name, "auto") == 0) {
#ifdef NOSA_HAVE_CUDA
        char why[160];
        if (cuda_usable(why, sizeof(why)) == 0) return &nosa_backend_cuda_ops;
#endif
        return &nosa_backend_cpu_ops;
    }
    nosa_set_error(err, errlen, "unknown backend '%s' (expected cpu, cuda or auto)", name);
    return NULL;
}
