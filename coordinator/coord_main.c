/* coord_main.c: nosa-coordinator's process life (docs/COORDINATOR.md; flags: coord_flags.h).
 * Exit 0 after SIGTERM/SIGINT, 1 when it cannot start (one line says why), 2 on a bad flag. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "coord.h"
#include "coord_flags.h"
#include "fault.h"
#include "log.h"
#include "rundir.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

int main(int argc, char **argv)
{
    nosa_log_init_from_env();
    if (nosa_fault_init() != 0) return 1;
    static struct coord_options opt;
    static char run_dir_flag[NOSA_RUNDIR_MAX];
    char err[1024];
    int rc = coord_flags_parse(argc, argv, &opt, run_dir_flag, sizeof run_dir_flag, err,
                               sizeof err);
    if (rc == 1) {
        coord_flags_usage(stdout);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "nosa-coordinator: %s\n", err);
        coord_flags_usage(stderr);
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
