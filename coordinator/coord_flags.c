/* coord_flags.c: see coord_flags.h. */
#include "coord_flags.h"

#include <string.h>

#include "log.h"
#include "parse.h"

void coord_flags_usage(FILE *f)
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

int coord_flags_parse(int argc, char **argv, struct coord_options *opt, char *run_dir_flag,
                      size_t run_dir_cap, char *err, size_t errlen)
{
    long v;
    memset(opt, 0, sizeof *opt);
    if (run_dir_cap) run_dir_flag[0] = '\0';
    opt->metrics_port = 9464;
    opt->heartbeat_timeout_ms = 3000;
    snprintf(opt->metrics_address, sizeof opt->metrics_address, "127.0.0.1");
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
