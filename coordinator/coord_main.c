/* coord_main.c: nosa-coordinator's flags and process life (docs/COORDINATOR.md). Exit 0 after
 * SIGTERM/SIGINT, 1 when it cannot start (one line says why), 2 on a bad flag. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "coord.h"
#include "fault.h"
#include "log.h"
#include "parse.h"
#include "rundir.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nosa-coordinator [--run-dir D] [--workers EP] [--clients EP] [--kvhost EP]...\n"
            "                        [--journal FILE] [--metrics-port P] [--metrics-address A]\n"
            "                        [--heartbeat-timeout-ms N] [--journal-compact-bytes N]\n"
            "                        [--insecure]\n"
            "  --workers EP        worker link (ROUTER), default ipc://D/coord-workers.sock\n"
            "  --clients EP        client link for `nosa`, default ipc://D/coord.sock\n"
            "  --kvhost EP         a kv-host to follow: its arena feeds admission, status and\n"
            "                      metrics, its jobs' sequences are freed there; repeatable (one\n"
            "                      per NUMA node); those the workers register with are followed\n"
            "                      too\n"
            "  --journal FILE      job journal, default D/coordinator.journal\n"
            "  --journal-compact-bytes N  compact the journal once it is past max(N, 4 x its\n"
            "                      size after the last compaction), default 1048576\n"
            "  --metrics-port P    Prometheus /metrics over HTTP, default 9464; 0 = off\n"
            "  --metrics-address A IPv4 address to serve metrics on, default 127.0.0.1 (one\n"
            "                      outside 127.0.0.0/8 needs --insecure)\n"
            "  --heartbeat-timeout-ms N  a worker silent this long is dead, default 3000\n"
            "  --insecure          allow plain tcp, and metrics over HTTP, on non-loopback\n"
            "                      addresses (docs/SECURITY.md)\n");
}

/* Parses argv into opt. Returns 0, 1 for --help, or -1 with err. */
static int parse_flags(int argc, char **argv, struct coord_options *opt, char *run_dir_flag,
                       size_t run_dir_cap, char *err, size_t errlen)
{
    long v;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) return 1;
        if (strcmp(f, "--insecure") == 0) {
            opt->insecure = 1;
            continue;
        }
        if (i + 1 >= argc) {
            nosa_set_error(err, errlen, "%s needs a value (or is unknown; see --help)", f);
            return -1;
        }
        const char *val = argv[++i];
        char *dst = NULL;
        size_t cap = 0;
        if (strcmp(f, "--run-dir") == 0) dst = run_dir_flag, cap = run_dir_cap;
        else if (strcmp(f, "--workers") == 0) dst = opt->workers_ep, cap = sizeof opt->workers_ep;
        else if (strcmp(f, "--clients") == 0) dst = opt->clients_ep, cap = sizeof opt->clients_ep;
        else if (strcmp(f, "--kvhost") == 0) {
            if (opt->n_kvhosts == COORD_MAX_KVHOSTS) {
                nosa_set_error(err, errlen, "--kvhost: %d at most", COORD_MAX_KVHOSTS);
                return -1;
            }
            dst = opt->kvhost_eps[opt->n_kvhosts++], cap = sizeof opt->kvhost_eps[0];
        }
        else if (strcmp(f, "--journal") == 0) dst = opt->journal, cap = sizeof opt->journal;
        else if (strcmp(f, "--metrics-address") == 0)
            dst = opt->metrics_address, cap = sizeof opt->metrics_address;
        if (dst) {
            if (!val[0] || snprintf(dst, cap, "%s", val) >= (int)cap) {
                nosa_set_error(err, errlen, "%s: empty or too long (%zu bytes at most)", f,
                               cap - 1);
                return -1;
            }
        } else if (strcmp(f, "--metrics-port") == 0) {
            if (nosa_parse_long(val, 0, 65535, &v, err, errlen)) return -1;
            opt->metrics_port = (int)v;
        } else if (strcmp(f, "--heartbeat-timeout-ms") == 0) {
            if (nosa_parse_long(val, 10, 3600000, &v, err, errlen)) return -1;
            opt->heartbeat_timeout_ms = (int)v;
        } else if (strcmp(f, "--journal-compact-bytes") == 0) {
            if (nosa_parse_long(val, 4096, 1L << 40, &v, err, errlen)) return -1;
            opt->journal_compact_bytes = (uint64_t)v;
        } else {
            nosa_set_error(err, errlen, "unknown flag %s (see --help)", f);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    nosa_log_init_from_env();
    if (nosa_fault_init() != 0) return 1;
    static struct coord_options opt;
    static char run_dir_flag[NOSA_RUNDIR_MAX];
    char err[1024];
    opt.metrics_port = 9464;
    opt.heartbeat_timeout_ms = 3000;
    snprintf(opt.metrics_address, sizeof opt.metrics_address, "127.0.0.1");
    int rc = parse_flags(argc, argv, &opt, run_dir_flag, sizeof run_dir_flag, err, sizeof err);
    if (rc == 1) {
        usage(stdout);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "nosa-coordinator: %s\n", err);
        usage(stderr);
        return 2;
    }
    if (nosa_rundir_open(run_dir_flag[0] ? run_dir_flag : NULL, opt.run_dir, sizeof opt.run_dir,
                         err, sizeof err) ||
        (!opt.workers_ep[0] && nosa_rundir_endpoint(opt.run_dir, "coord-workers.sock",
                                                    opt.workers_ep, sizeof opt.workers_ep, err,
                                                    sizeof err)) ||
        (!opt.clients_ep[0] && nosa_rundir_endpoint(opt.run_dir, "coord.sock", opt.clients_ep,
                                                    sizeof opt.clients_ep, err, sizeof err))) {
        fprintf(stderr, "nosa-coordinator: %s\n", err);
        return 1;
    }
    if (!opt.journal[0] && snprintf(opt.journal, sizeof opt.journal, "%s/coordinator.journal",
                                    opt.run_dir) >= (int)sizeof opt.journal) {
        fprintf(stderr, "nosa-coordinator: run directory path too long for the journal\n");
        return 1;
    }
    /* A journal over RLIMIT_FSIZE must fail its write (EFBIG), not kill the process. */
    signal(SIGXFSZ, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct coord *c = NULL;
    if (coord_open(&opt, &c, err, sizeof err) != 0) {
        fprintf(stderr, "nosa-coordinator: %s\n", err);
        coord_close(c);
        return 1;
    }
    printf("nosa-coordinator: workers %s, clients %s, journal %s, metrics %s, heartbeat timeout "
           "%d ms\n", opt.workers_ep, opt.clients_ep, opt.journal,
           opt.metrics_port ? "on" : "off", opt.heartbeat_timeout_ms);
    fflush(stdout);
    rc = coord_run(c, &g_stop, err, sizeof err);
    if (rc != 0) fprintf(stderr, "nosa-coordinator: %s\n", err);
    coord_close(c);
    return rc ? 1 : 0;
}
