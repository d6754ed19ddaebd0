/* daemon_args.c: fuzz target for the daemons' flag parsers: coord_flags_parse
 * (coordinator/coord_flags.h), kvh_config_parse (kv-host/kvh_config.h) and worker_config_parse
 * (gpu-worker/worker/worker_config.h), each on the same argv (the input split on NUL bytes,
 * fuzz_argv.h). Parsers only: none reads a file or creates the run directory. Besides no crash
 * and no leak: each returns one of its documented results, a refusal has an error text, and
 * what it accepts is a configuration the daemon can start from (flags in their ranges, the
 * required ones given, endpoints and the run directory filled in). */
#include <errno.h>
#include <string.h>

#include "backend.h"
#include "coord_flags.h"
#include "fuzz_argv.h"
#include "fuzz_target.h"
#include "kvh_config.h"
#include "worker_config.h"

static const char k_target[] = "daemon_args";

static void check_refusal(int rc, const char *err)
{
    if (rc < 0 && err[0] == '\0') nosa_fuzz_fail(k_target, "refused without an error message");
}

static void coord(char **argv, int argc)
{
    static struct coord_options opt;
    char run_dir[NOSA_RUNDIR_MAX], err[512] = "";
    int rc = coord_flags_parse(argc, argv, &opt, run_dir, sizeof run_dir, err, sizeof err);
    if (rc != 0 && rc != 1 && rc != -1) nosa_fuzz_fail(k_target, "coordinator: bad return");
    check_refusal(rc, err);
    if (rc != 0) return;
    if (opt.metrics_port < 0 || opt.metrics_port > 65535 || opt.heartbeat_timeout_ms < 10 ||
        opt.heartbeat_timeout_ms > 3600000 ||
        (opt.journal_compact_bytes && opt.journal_compact_bytes < 4096) ||
        opt.n_kvhosts < 0 || opt.n_kvhosts > COORD_MAX_KVHOSTS || !opt.metrics_address[0])
        nosa_fuzz_fail(k_target, "coordinator: a value out of range accepted");
    for (int i = 0; i < opt.n_kvhosts; i++)
        if (!opt.kvhost_eps[i][0]) nosa_fuzz_fail(k_target, "coordinator: empty --kvhost");
}

static void kvhost(char **argv, int argc)
{
    static struct kvh_config cfg;
    char err[512] = "";
    int rc = kvh_config_parse(argc, argv, &cfg, err, sizeof err);
    if (rc > 0) nosa_fuzz_fail(k_target, "kv-host: positive return");
    check_refusal(rc, err);
    if (rc != 0 || cfg.help || cfg.destroy[0]) return;
    if (!cfg.model_dir == !cfg.model_config)
        nosa_fuzz_fail(k_target, "kv-host: accepted without exactly one of --model, --config");
    if (!cfg.arena_bytes && !cfg.recover)
        nosa_fuzz_fail(k_target, "kv-host: accepted without an arena size");
    if (!cfg.run_dir[0] || !cfg.endpoint[0] || !cfg.name[0])
        nosa_fuzz_fail(k_target, "kv-host: no run directory, endpoint or name");
    if (cfg.numa_node < -1 || cfg.numa_node > 1023)
        nosa_fuzz_fail(k_target, "kv-host: --numa-node out of range accepted");
}

static void worker(char **argv, int argc)
{
    static struct worker_config cfg;
    char err[512] = "";
    int rc = worker_config_parse(argc, argv, &cfg, err, sizeof err);
    if (rc != 0 && rc != 1 && rc != -EINVAL) nosa_fuzz_fail(k_target, "worker: bad return");
    check_refusal(rc, err);
    if (rc != 0) return;
    if (!cfg.model_dir || !cfg.backend || !cfg.run_dir[0] || !cfg.coordinator[0] ||
        !cfg.kvhost[0])
        nosa_fuzz_fail(k_target, "worker: accepted without a model, run directory or endpoint");
    if (cfg.max_seqs < 1 || cfg.heartbeat_ms < 1 || cfg.register_timeout_ms < 1 ||
        cfg.max_stall_ms < 100 || cfg.max_context < 0 || cfg.budget_blocks < 0 ||
        cfg.query_aware_blocks < 0 || cfg.pool_blocks < 0 || cfg.prefetch_blocks < 0 ||
        cfg.prefetch_blocks > NOSA_MAX_PREFETCH_BLOCKS)
        nosa_fuzz_fail(k_target, "worker: a value out of range accepted");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* getopt_long permutes argv: each parser gets its own split. */
    static void (*const parsers[])(char **, int) = {coord, kvhost, worker};
    static const char *const names[] = {"nosa-coordinator", "nosa-kvhost", "nosa-worker"};
    for (int i = 0; i < 3; i++) {
        struct nosa_fuzz_argv in;
        nosa_fuzz_argv_split(data, size, names[i], &in);
        parsers[i](in.argv, in.argc);
        nosa_fuzz_argv_free(&in);
    }
    return 0;
}
