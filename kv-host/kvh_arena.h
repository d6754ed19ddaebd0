/* kvh_arena.h: the shared-memory object behind the arena (docs/PROCESSES.md: POSIX shm
 * "/nosa-<uid>-<kv-host name>", mode 0600).
 *
 * This module owns: the shm object's descriptor (with an exclusive flock, so two kv-hosts never
 * serve one arena), its mapping, NUMA placement (pages bound to the node, pre-faulted by
 * threads running there), transparent huge pages, and removing the object by name. What is
 * inside the mapping belongs to kvh_store. */
#ifndef NOSA_KVH_ARENA_H
#define NOSA_KVH_ARENA_H

#include <stddef.h>
#include <stdint.h>

#define KVH_ARENA_NAME_MAX 200
#define KVH_HUGE_PAGE_BYTES (2u << 20)

struct kvh_arena_options {
    const char *kvh_name; /* --name: [A-Za-z0-9._-]+ */
    uint64_t bytes;       /* create: the size; open: 0 = whatever the object holds */
    int numa_node;        /* -1: no binding */
    int huge_pages;       /* madvise(MADV_HUGEPAGE); an error when shmem THP is off */
};

struct kvh_arena {
    char shm_name[KVH_ARENA_NAME_MAX + 32];
    int fd;
    uint8_t *base;
    uint64_t bytes;
    int numa_node;
    int huge_pages;
    double prefault_seconds;
};

/* Writes "/nosa-<uid>-<kvh_name>" to out. -EINVAL for a name with other characters. */
int kvh_arena_shm_name(const char *kvh_name, char *out, size_t cap, char *err, size_t errlen);

/* Creates the object (it must not exist: -EEXIST tells to --recover or --destroy it), sizes,
 * maps, places and pre-faults it. On failure nothing is left behind. */
int kvh_arena_create(const struct kvh_arena_options *opts, struct kvh_arena *out, char *err,
                     size_t errlen);
/* Opens and maps an existing object (-ENOENT when absent, -EBUSY when another process holds
 * it), placed and pre-faulted like a new one. */
int kvh_arena_open(const struct kvh_arena_options *opts, struct kvh_arena *out, char *err,
                   size_t errlen);
/* Unmaps and closes (the object stays). Accepts an arena whose create/open failed, or one
 * initialised as { .fd = -1 }. */
void kvh_arena_close(struct kvh_arena *a);
/* Removes the object of kv-host kvh_name; -EBUSY when a running kv-host holds it, -ENOENT
 * when there is none. */
int kvh_arena_destroy(const char *kvh_name, char *err, size_t errlen);

#endif
