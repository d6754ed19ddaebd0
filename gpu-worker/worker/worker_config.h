/* worker_config.h: nosa-worker's command line (docs/PROCESSES.md, docs/WORKER.md).
 *
 * This module owns: the flags, their defaults (run directory, endpoints, worker name) and
 * their checks. Values that depend on the model (budgets, context) are kept as "0 = from the
 * model" and applied by worker_config_apply_model once the model is loaded. */
#ifndef NOSA_WORKER_CONFIG_H
#define NOSA_WORKER_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "model.h"

#define WORKER_PATH_MAX 4096 /* NOSA_RUNDIR_MAX */
#define WORKER_NAME_MAX 64

struct worker_config {
    char run_dir[WORKER_PATH_MAX];
    char name[WORKER_NAME_MAX];
    char coordinator[WORKER_PATH_MAX]; /* ZeroMQ endpoint of the coordinator's worker link */
    char kvhost[WORKER_PATH_MAX];      /* ZeroMQ endpoint of the node's kv-host */
    const char *model_dir;
    const char *backend;               /* "cpu", "cuda" or "auto" */
    int gpu;                           /* CUDA device ordinal; -1 for cpu */
    int numa_node;                     /* reported to the coordinator; -1 when unknown */
    enum nosa_attn_mode mode;
    int resident;                      /* 1: whole KV stays with the backend (no offload) */
    int max_seqs;
    int max_context;                   /* 0: the model's max_position */
    int budget_blocks;                 /* 0: the model's sparse.budget_blocks */
    int query_aware_blocks;            /* 0: the model's sparse.query_aware_blocks */
    int pool_blocks;                   /* 0: the backend's default (2 * budget) */
    int prefetch_blocks;               /* backend.h; 0: none */
    int heartbeat_ms;                  /* until the coordinator's RegisterAck says otherwise */
    int register_timeout_ms;           /* first registration; then the worker keeps trying */
    int max_stall_ms;                  /* a step longer than this stops the heartbeats */
    int insecure;                      /* plain tcp to non-loopback peers (docs/SECURITY.md) */
};

/* Parses argv. Returns 0, 1 when --help was printed (exit 0), or -EINVAL with err naming
 * the flag and what is wrong with it. */
int worker_config_parse(int argc, char **argv, struct worker_config *cfg, char *err,
                        size_t errlen);

/* Puts the flags that override the model's sparse settings into mcfg and checks the result
 * (and max_context against the model). -EINVAL with err naming the flag. */
int worker_config_apply_model(struct worker_config *cfg, struct nosa_model_config *mcfg,
                              char *err, size_t errlen);

/* Names the worker for the backend that runs when --name was not given: "gpuN" for cuda,
 * "cpu0" otherwise (so an "auto" worker that fell back to cpu is not called gpu0). */
void worker_config_default_name(struct worker_config *cfg, const char *backend);

void worker_config_usage(FILE *out);

#endif
