/* kvh_main.c: nosa-kvhost, the arena keeper of one NUMA node (docs/KVHOST.md). Creates (or
 * with --recover re-opens) the arena, then serves its control socket until SIGTERM/SIGINT.
 * The socket is bound only once the arena is ready, so its file means "ready" (deploy). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "fault.h"
#include "kvh_arena.h"
#include "kvh_config.h"
#include "kvh_server.h"
#include "kvh_store.h"
#include "log.h"

static volatile sig_atomic_t g_stop;

static void on_stop_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int install_signals(char *err, size_t errlen)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal; /* no SA_RESTART: zmq_poll returns EINTR at once */
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) || sigaction(SIGINT, &sa, NULL)) {
        nosa_set_error(err, errlen, "sigaction: %s", strerror(errno));
        return -1;
    }
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* Opens the arena (--recover) or creates and formats a new one. */
static int arena_ready(const struct kvh_config *cfg, struct kvh_arena *arena,
                       struct kvh_store *store, char *err, size_t errlen)
{
    struct kvh_arena_options opts = {
        .kvh_name = cfg->name,
        .bytes = cfg->arena_bytes,
        .numa_node = cfg->numa_node,
        .huge_pages = cfg->huge_pages,
    };
    char why[400];
    int rc;
    if (cfg->recover) {
        if ((rc = kvh_arena_open(&opts, arena, err, errlen))) return rc;
        if ((rc = kvh_store_recover(arena->base, arena->bytes, store, why, sizeof(why)))) {
            nosa_set_error(err, errlen, "arena %s refused: %s (remove it with nosa-kvhost "
                           "--destroy %s)", arena->shm_name, why, cfg->name);
            return rc;
        }
        if (!nosa_kv_geometry_equal(&store->geom, &cfg->geom)) {
            nosa_set_error(err, errlen, "arena %s holds n_layers=%u n_kv_heads=%u block_size=%u "
                           "head_dim=%u, the model wants n_layers=%u n_kv_heads=%u "
                           "block_size=%u head_dim=%u", arena->shm_name, store->geom.n_layers,
                           store->geom.n_kv_heads, store->geom.block_size, store->geom.head_dim,
                           cfg->geom.n_layers, cfg->geom.n_kv_heads, cfg->geom.block_size,
                           cfg->geom.head_dim);
            return -EINVAL;
        }
        if (cfg->arena_bytes && cfg->arena_bytes != arena->bytes)
            LOG_WARN("kvhost", "--arena %" PRIu64 " ignored: the recovered arena %s is %" PRIu64
                     " bytes", cfg->arena_bytes, arena->shm_name, arena->bytes);
        return 0;
    }
    struct kvh_store_plan plan;
    uint64_t align = cfg->huge_pages ? KVH_HUGE_PAGE_BYTES : 4096;
    if ((rc = kvh_store_plan(cfg->arena_bytes, &cfg->geom, align, &plan, err, errlen)))
        return rc;
    if ((rc = kvh_arena_create(&opts, arena, err, errlen))) return rc;
    if ((rc = kvh_store_format(arena->base, &plan, &cfg->geom, store, why, sizeof(why)))) {
        nosa_set_error(err, errlen, "formatting arena %s: %s", arena->shm_name, why);
        shm_unlink(arena->shm_name);
        return rc;
    }
    return 0;
}

static void print_summary(const struct kvh_config *cfg, const struct kvh_arena *arena,
                          const struct kvh_store *store)
{
    const struct nosa_kv_geometry *g = &store->geom;
    printf("nosa-kvhost %s: %s arena %s, %.1f MiB: %" PRIu64 " groups of %" PRIu64
           " B (n_layers=%u n_kv_heads=%u block_size=%u head_dim=%u), %" PRIu64
           " free, %zu sequences, blocks at offset %" PRIu64 "; numa_node=%d huge_pages=%s "
           "prefault=%.2fs generation=%" PRIu64 "; serving %s\n",
           cfg->name, cfg->recover ? "recovered" : "created", arena->shm_name,
           (double)arena->bytes / (1 << 20), store->n_groups, store->hdr->group_bytes,
           g->n_layers, g->n_kv_heads, g->block_size, g->head_dim, store->n_free,
           store->seqs.count, store->hdr->blocks_offset, arena->numa_node,
           arena->huge_pages ? "on" : "off", arena->prefault_seconds,
           kvh_store_generation(store), cfg->endpoint);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    nosa_log_init_from_env();
    if (nosa_fault_init()) return 2;
    static struct kvh_config cfg;
    char err[1024];
    if (kvh_config_parse(argc, argv, &cfg, err, sizeof(err))) {
        LOG_ERROR("kvhost", "%s", err);
        kvh_config_usage(stderr);
        return 2;
    }
    if (cfg.help) {
        kvh_config_usage(stdout);
        return 0;
    }
    if (cfg.destroy[0]) {
        if (kvh_arena_destroy(cfg.destroy, err, sizeof(err))) {
            LOG_ERROR("kvhost", "--destroy %s: %s", cfg.destroy, err);
            return 1;
        }
        LOG_INFO("kvhost", "removed the arena of kv-host %s", cfg.destroy);
        return 0;
    }
    if (kvh_config_resolve(&cfg, err, sizeof(err))) {
        LOG_ERROR("kvhost", "%s", err);
        return 2;
    }
    if (install_signals(err, sizeof(err))) {
        LOG_ERROR("kvhost", "%s", err);
        return 1;
    }
    struct kvh_arena arena = {.fd = -1};
    struct kvh_store store = {0};
    struct kvh_server *server = NULL;
    int status = 1;
    if (arena_ready(&cfg, &arena, &store, err, sizeof(err))) {
        LOG_ERROR("kvhost", "%s", err);
        goto out;
    }
    struct kvh_server_config scfg = {cfg.endpoint, cfg.run_dir, cfg.insecure};
    if (kvh_server_start(&scfg, &store, &arena, &server, err, sizeof(err))) {
        LOG_ERROR("kvhost", "%s", err);
        /* A new arena no client has seen goes too: the retry (--insecure, another port)
         * must not find it and need --destroy. A recovered one stays. */
        if (!cfg.recover) shm_unlink(arena.shm_name);
        goto out;
    }
    print_summary(&cfg, &arena, &store);
    if (kvh_server_run(server, &g_stop, err, sizeof(err))) {
        LOG_ERROR("kvhost", "%s", err);
        goto out;
    }
    LOG_INFO("kvhost", "stopping: arena %s %s", arena.shm_name,
             cfg.remove_on_exit ? "removed" : "kept for --recover");
    if (cfg.remove_on_exit) shm_unlink(arena.shm_name);
    status = 0;
out:
    kvh_server_free(server);
    kvh_store_close(&store);
    kvh_arena_close(&arena);
    return status;
}
