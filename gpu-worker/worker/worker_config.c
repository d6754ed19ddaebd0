/* worker_config.c: see worker_config.h. */
#include "worker_config.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "log.h"
#include "parse.h"
#include "rundir.h"

enum {
    OPT_RUN_DIR = 1000,
    OPT_NAME,
    OPT_COORDINATOR,
    OPT_KVHOST,
    OPT_MODEL,
    OPT_BACKEND,
    OPT_GPU,
    OPT_NUMA_NODE,
    OPT_MODE,
    OPT_RESIDENT,
    OPT_MAX_SEQS,
    OPT_MAX_CONTEXT,
    OPT_BUDGET,
    OPT_QUERY_AWARE,
    OPT_POOL,
    OPT_PREFETCH,
    OPT_HEARTBEAT,
    OPT_REGISTER_TIMEOUT,
    OPT_MAX_STALL,
    OPT_INSECURE,
};

static const struct option g_options[] = {
    {"run-dir", required_argument, NULL, OPT_RUN_DIR},
    {"name", required_argument, NULL, OPT_NAME},
    {"coordinator", required_argument, NULL, OPT_COORDINATOR},
    {"kvhost", required_argument, NULL, OPT_KVHOST},
    {"model", required_argument, NULL, OPT_MODEL},
    {"backend", required_argument, NULL, OPT_BACKEND},
    {"gpu", required_argument, NULL, OPT_GPU},
    {"numa-node", required_argument, NULL, OPT_NUMA_NODE},
    {"mode", required_argument, NULL, OPT_MODE},
    {"resident", no_argument, NULL, OPT_RESIDENT},
    {"max-seqs", required_argument, NULL, OPT_MAX_SEQS},
    {"max-context", required_argument, NULL, OPT_MAX_CONTEXT},
    {"budget-blocks", required_argument, NULL, OPT_BUDGET},
    {"query-aware-blocks", required_argument, NULL, OPT_QUERY_AWARE},
    {"pool-blocks", required_argument, NULL, OPT_POOL},
    {"prefetch-blocks", required_argument, NULL, OPT_PREFETCH},
    {"heartbeat-ms", required_argument, NULL, OPT_HEARTBEAT},
    {"register-timeout-ms", required_argument, NULL, OPT_REGISTER_TIMEOUT},
    {"max-stall-ms", required_argument, NULL, OPT_MAX_STALL},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

void worker_config_usage(FILE *out)
{
    fputs("usage: nosa-worker --model DIR [options]\n"
          "  --run-dir D              run directory (default $NOSA_RUN_DIR, else\n"
          "                           $XDG_RUNTIME_DIR/nosa, else /tmp/nosa-$UID)\n"
          "  --name NAME              worker name, unique on the node (default gpuN / cpu0)\n"
          "  --coordinator EP         coordinator worker link (default ipc://D/coord-workers.sock)\n"
          "  --kvhost EP              kv-host (default ipc://D/kvh0.sock)\n"
          "  --backend cpu|cuda|auto  compute backend (default auto: cuda when a GPU is visible)\n"
          "  --gpu N                  CUDA device (default 0)\n"
          "  --numa-node N            NUMA node, reported to the coordinator (default -1)\n"
          "  --mode dense|infllmv2|nosa  attention mode (default nosa)\n"
          "  --resident               keep the whole KV with the backend (default: offloaded)\n"
          "  --max-seqs N             batch slots (default 8)\n"
          "  --max-context N          tokens per sequence (default: the model's)\n"
          "  --budget-blocks N        selected blocks per (seq, layer, KV head) (default: model)\n"
          "  --query-aware-blocks N   NOSA's query-aware share (default: model)\n"
          "  --pool-blocks N          offload pool per (slot, layer, KV head) (default 2*budget)\n"
          "  --prefetch-blocks N      offload, sparse: blocks read ahead per (slot, layer, KV\n"
          "                           head) and step, by the query's block score (default 0)\n"
          "  --heartbeat-ms N         heartbeat interval until the coordinator sets one (1000)\n"
          "  --register-timeout-ms N  wait this long for the first RegisterAck (10000)\n"
          "  --max-stall-ms N         a step may run this long with heartbeats going on;\n"
          "                           past it the worker counts as hung (300000)\n"
          "  --insecure               allow plain tcp to a non-loopback address (no CURVE keys)\n",
          out);
}

static int copy_flag(char *dst, size_t cap, const char *flag, const char *val, char *err,
                     size_t errlen)
{
    if (!*val || strlen(val) >= cap) {
        nosa_set_error(err, errlen, "--%s: must be 1..%zu characters", flag, cap - 1);
        return -EINVAL;
    }
    memcpy(dst, val, strlen(val) + 1);
    return 0;
}

static int parse_int_flag(const char *flag, const char *val, long min, long max, int *out,
                          char *err, size_t errlen)
{
    long v;
    char why[128];
    if (nosa_parse_long(val, min, max, &v, why, sizeof(why))) {
        nosa_set_error(err, errlen, "--%s: %s", flag, why);
        return -EINVAL;
    }
    *out = (int)v;
    return 0;
}

static int apply_option(int opt, const char *val, struct worker_config *cfg, char *err,
                        size_t errlen)
{
    switch (opt) {
    case OPT_RUN_DIR: return copy_flag(cfg->run_dir, sizeof(cfg->run_dir), "run-dir", val, err, errlen);
    case OPT_NAME: return copy_flag(cfg->name, sizeof(cfg->name), "name", val, err, errlen);
    case OPT_COORDINATOR:
        return copy_flag(cfg->coordinator, sizeof(cfg->coordinator), "coordinator", val, err,
                         errlen);
    case OPT_KVHOST: return copy_flag(cfg->kvhost, sizeof(cfg->kvhost), "kvhost", val, err, errlen);
    case OPT_MODEL: cfg->model_dir = val; return 0;
    case OPT_BACKEND:
        if (strcmp(val, "cpu") && strcmp(val, "cuda") && strcmp(val, "auto")) {
            nosa_set_error(err, errlen, "--backend: '%s' is not cpu, cuda or auto", val);
            return -EINVAL;
        }
        cfg->backend = val;
        return 0;
    case OPT_GPU: return parse_int_flag("gpu", val, 0, 1023, &cfg->gpu, err, errlen);
    case OPT_NUMA_NODE:
        return parse_int_flag("numa-node", val, -1, 1023, &cfg->numa_node, err, errlen);
    case OPT_MODE:
        if (nosa_attn_mode_parse(val, &cfg->mode)) {
            nosa_set_error(err, errlen, "--mode: '%s' is not dense, infllmv2 or nosa", val);
            return -EINVAL;
        }
        return 0;
    case OPT_RESIDENT: cfg->resident = 1; return 0;
    case OPT_INSECURE: cfg->insecure = 1; return 0;
    case OPT_MAX_SEQS: return parse_int_flag("max-seqs", val, 1, 4096, &cfg->max_seqs, err, errlen);
    case OPT_MAX_CONTEXT:
        return parse_int_flag("max-context", val, 1, 1 << 24, &cfg->max_context, err, errlen);
    case OPT_BUDGET:
        return parse_int_flag("budget-blocks", val, 1, 65536, &cfg->budget_blocks, err, errlen);
    case OPT_QUERY_AWARE:
        return parse_int_flag("query-aware-blocks", val, 1, 65536, &cfg->query_aware_blocks,
                              err, errlen);
    case OPT_POOL:
        return parse_int_flag("pool-blocks", val, 1, 1 << 20, &cfg->pool_blocks, err, errlen);
    case OPT_PREFETCH:
        return parse_int_flag("prefetch-blocks", val, 0, NOSA_MAX_PREFETCH_BLOCKS,
                              &cfg->prefetch_blocks, err, errlen);
    case OPT_HEARTBEAT:
        return parse_int_flag("heartbeat-ms", val, 10, 600000, &cfg->heartbeat_ms, err, errlen);
    case OPT_REGISTER_TIMEOUT:
        return parse_int_flag("register-timeout-ms", val, 1, 3600000, &cfg->register_timeout_ms,
                              err, errlen);
    case OPT_MAX_STALL:
        return parse_int_flag("max-stall-ms", val, 100, 24 * 3600000, &cfg->max_stall_ms, err,
                              errlen);
    default:
        nosa_set_error(err, errlen, "unknown option (see --help)");
        return -EINVAL;
    }
}

/* The run directory and endpoints that default from other flags (PROCESSES.md). */
static int fill_defaults(struct worker_config *cfg, char *err, size_t errlen)
{
    char flag[WORKER_PATH_MAX];
    snprintf(flag, sizeof(flag), "%s", cfg->run_dir);
    if (nosa_rundir_resolve(flag, cfg->run_dir, sizeof(cfg->run_dir), err, errlen))
        return -EINVAL;
    if (!cfg->coordinator[0] &&
        nosa_rundir_endpoint(cfg->run_dir, "coord-workers.sock", cfg->coordinator,
                             sizeof(cfg->coordinator), err, errlen))
        return -EINVAL;
    if (!cfg->kvhost[0] && nosa_rundir_endpoint(cfg->run_dir, "kvh0.sock", cfg->kvhost,
                                                sizeof(cfg->kvhost), err, errlen))
        return -EINVAL;
    return 0;
}

void worker_config_default_name(struct worker_config *cfg, const char *backend)
{
    if (cfg->name[0]) return;
    if (strcmp(backend, "cuda") == 0) snprintf(cfg->name, sizeof(cfg->name), "gpu%d", cfg->gpu);
    else snprintf(cfg->name, sizeof(cfg->name), "cpu0");
}

int worker_config_parse(int argc, char **argv, struct worker_config *cfg, char *err,
                        size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->backend = "auto";
    cfg->numa_node = -1;
    cfg->mode = NOSA_ATTN_NOSA;
    cfg->max_seqs = 8;
    cfg->heartbeat_ms = 1000;
    cfg->register_timeout_ms = 10000;
    cfg->max_stall_ms = 300000;
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "h", g_options, NULL)) != -1) {
        if (opt == 'h') return 1;
        if (opt == '?' || opt == ':') {
            nosa_set_error(err, errlen, "bad argument '%s' (unknown, or missing its value)",
                           argv[optind - 1]);
            return -EINVAL;
        }
        int rc = apply_option(opt, optarg, cfg, err, errlen);
        if (rc) return rc;
    }
    if (optind < argc) {
        nosa_set_error(err, errlen, "unexpected argument '%s'", argv[optind]);
        return -EINVAL;
    }
    if (!cfg->model_dir) {
        nosa_set_error(err, errlen, "--model DIR is required");
        return -EINVAL;
    }
    if (strcmp(cfg->backend, "cpu") == 0) cfg->gpu = -1;
    return fill_defaults(cfg, err, errlen);
}

int worker_config_apply_model(struct worker_config *cfg, struct nosa_model_config *mcfg,
                              char *err, size_t errlen)
{
    if (cfg->budget_blocks) mcfg->sparse.budget_blocks = cfg->budget_blocks;
    if (cfg->query_aware_blocks) mcfg->sparse.query_aware_blocks = cfg->query_aware_blocks;
    char why[256];
    if (nosa_model_config_validate(mcfg, why, sizeof(why))) {
        nosa_set_error(err, errlen,
                       "--budget-blocks %d / --query-aware-blocks %d do not fit the model: %s",
                       mcfg->sparse.budget_blocks, mcfg->sparse.query_aware_blocks, why);
        return -EINVAL;
    }
    if (!cfg->max_context) cfg->max_context = mcfg->max_position;
    if (cfg->max_context > mcfg->max_position) {
        nosa_set_error(err, errlen, "--max-context %d exceeds the model's max_position %d",
                       cfg->max_context, mcfg->max_position);
        return -EINVAL;
    }
    return 0;
}
