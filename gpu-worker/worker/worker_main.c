/* worker_main.c: nosa-worker's start-up and teardown (worker.h, docs/WORKER.md): flags, run
 * directory, model, backend, kv-host attach + arena mapping, engine, coordinator link; then
 * the serving loop (worker_serve.c). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "fault.h"
#include "host_id.h"
#include "local_blocks.h"
#include "log.h"
#include "rundir.h"
#include "worker.h"

/* kv-host requests: one try, and how long an unanswered kv-host is retried. */
#define WORKER_KVH_TIMEOUT_MS 1000
#define WORKER_KVH_RETRY_MS 30000

enum { EXIT_STARTUP = 1, EXIT_BACKEND = 2 };

static void on_stop_signal(int sig)
{
    (void)sig;
    g_worker_stop = 1;
}

static int install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) || sigaction(SIGINT, &sa, NULL)) return -errno;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* The backend, and in why[] the reason it was chosen (for the first line). */
static int pick_backend(struct worker *w, char *why, size_t whylen, char *err, size_t errlen)
{
    w->backend = nosa_backend_find(w->cfg.backend, err, errlen);
    if (!w->backend) return -EINVAL;
    if (strcmp(w->cfg.backend, "auto") != 0) {
        snprintf(why, whylen, "--backend %s", w->cfg.backend);
    } else if (strcmp(w->backend->name, "cuda") == 0) {
        snprintf(why, whylen, "auto: a GPU is visible");
    } else {
        char no_cuda[200];
        nosa_backend_find("cuda", no_cuda, sizeof(no_cuda));
        snprintf(why, whylen, "auto: %s", no_cuda);
    }
    if (strcmp(w->backend->name, "cuda") != 0) w->cfg.gpu = -1;
    worker_config_default_name(&w->cfg, w->backend->name);
    return 0;
}

static int load_model(struct worker *w, char *err, size_t errlen)
{
    int rc = nosa_model_load(w->cfg.model_dir, &w->model, err, errlen);
    if (rc) return rc;
    if ((rc = worker_config_apply_model(&w->cfg, &w->model->cfg, err, errlen))) return rc;
    return nosa_tokenizer_init(&w->tok, &w->model->cfg, err, errlen);
}

static int open_kvhost(struct worker *w, char *err, size_t errlen)
{
    const struct nosa_model_config *mc = &w->model->cfg;
    struct nosa_kv_geometry geom = nosa_model_kv_geometry(mc);
    struct worker_kvh_options opts = {
        .endpoint = w->cfg.kvhost,
        .client_name = w->cfg.name,
        .zmq_ctx = w->zctx,
        .sec = w->sec,
        .max_seqs = w->cfg.max_seqs,
        .max_blocks_per_seq =
            (uint32_t)((w->cfg.max_context + mc->sparse.block_size - 1) / mc->sparse.block_size),
        .timeout_ms = WORKER_KVH_TIMEOUT_MS,
        .retry_ms = WORKER_KVH_RETRY_MS,
        .waiting = worker_serve_on_kvh_wait,
        .waiting_user = w,
    };
    return worker_kvh_source_open(&opts, &geom, &w->kvh, err, errlen);
}

static int create_engine(struct worker *w, char *err, size_t errlen)
{
    struct nosa_engine_config ec;
    memset(&ec, 0, sizeof(ec));
    ec.backend.mode = w->cfg.mode;
    ec.backend.offload = !w->cfg.resident;
    ec.backend.max_seqs = w->cfg.max_seqs;
    ec.backend.max_context = w->cfg.max_context;
    ec.backend.pool_blocks = w->cfg.pool_blocks;
    ec.backend.prefetch_blocks = w->cfg.prefetch_blocks;
    ec.backend.device = w->cfg.gpu < 0 ? 0 : w->cfg.gpu;
    struct nosa_block_source src = worker_kvh_source_get(w->kvh);
    return nosa_engine_create(w->model, w->backend, &ec, &src, worker_serve_on_event, w,
                              &w->engine, err, errlen);
}

static int open_link(struct worker *w, Nosa__Serve__Register *reg, char *err, size_t errlen)
{
    nosa__serve__register__init(reg);
    reg->worker_name = w->cfg.name;
    reg->backend = (char *)w->backend->name;
    reg->mode = (char *)nosa_attn_mode_name(w->cfg.mode);
    reg->offload = !w->cfg.resident;
    reg->max_seqs = (uint32_t)w->cfg.max_seqs;
    reg->max_context = (uint32_t)w->cfg.max_context;
    reg->block_size = (uint32_t)w->model->cfg.sparse.block_size;
    reg->kvhost_endpoint = w->cfg.kvhost;
    reg->model = (char *)w->cfg.model_dir;
    reg->pid = (int32_t)getpid();
    reg->gpu = w->cfg.gpu;
    reg->numa_node = w->cfg.numa_node;
    int rc = nosa_host_id(w->host_id, sizeof w->host_id, err, errlen);
    if (rc) return rc;
    reg->host_id = w->host_id;
    return worker_link_open(w->zctx, w->sec, w->cfg.coordinator, reg, w->cfg.heartbeat_ms,
                            w->cfg.max_stall_ms, &w->link, err, errlen);
}

/* Everything up to the serving loop; err says which step failed. */
static int start(struct worker *w, Nosa__Serve__Register *reg, char *err, size_t errlen)
{
    char why[256];
    int rc;
    if ((rc = nosa_rundir_prepare(w->cfg.run_dir, err, errlen))) return rc;
    /* The backend first, so that its line is the process's first (before the model's). */
    if ((rc = pick_backend(w, why, sizeof(why), err, errlen))) return rc;
    printf("nosa-worker %s: backend %s (%s)\n", w->cfg.name, w->backend->name, why);
    fflush(stdout);
    if ((rc = load_model(w, err, errlen))) return rc;
    const struct nosa_sparse_config *sp = &w->model->cfg.sparse;
    printf("nosa-worker %s: mode %s %s, budget %d blocks of %d tokens, %d slots, context %d, "
           "model %s, kv-host %s, coordinator %s\n",
           w->cfg.name, nosa_attn_mode_name(w->cfg.mode),
           w->cfg.resident ? "resident" : "offloaded", sp->budget_blocks, sp->block_size,
           w->cfg.max_seqs, w->cfg.max_context, w->cfg.model_dir, w->cfg.kvhost,
           w->cfg.coordinator);
    fflush(stdout);
    w->zctx = zmq_ctx_new();
    if (!w->zctx) {
        nosa_set_error(err, errlen, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        return -ENOMEM;
    }
    if ((rc = nosa_msg_security_init(w->zctx, w->cfg.run_dir, w->cfg.insecure, &w->sec, err,
                                     errlen)))
        return rc;
    if ((rc = worker_serve_init(w, err, errlen))) return rc;
    /* The link first: the kv-host wait hook may send heartbeats while attaching. */
    if ((rc = open_link(w, reg, err, errlen))) return rc;
    if ((rc = open_kvhost(w, err, errlen))) return rc;
    const struct kvh_attach_info *ai = worker_kvh_source_info(w->kvh);
    LOG_INFO("worker", "kv-host attached endpoint=%s arena=%s groups=%llu generation=%llu",
             w->cfg.kvhost, ai->shm_name, (unsigned long long)ai->n_groups,
             (unsigned long long)ai->generation);
    return create_engine(w, err, errlen);
}

static void stop(struct worker *w)
{
    nosa_engine_destroy(w->engine);
    worker_kvh_source_close(w->kvh);
    worker_link_close(w->link);
    worker_serve_free(w);
    if (w->zctx) zmq_ctx_term(w->zctx);
    nosa_msg_security_free(w->sec);
    nosa_model_free(w->model);
}

int main(int argc, char **argv)
{
    static struct worker w; /* large (paths); static storage */
    char err[1024];
    nosa_log_init_from_env();
    if (nosa_fault_init()) return EXIT_STARTUP;
    int rc = worker_config_parse(argc, argv, &w.cfg, err, sizeof(err));
    if (rc == 1) {
        worker_config_usage(stdout);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "nosa-worker: %s\n", err);
        worker_config_usage(stderr);
        return EXIT_STARTUP;
    }
    if (install_signals()) {
        fprintf(stderr, "nosa-worker: sigaction: %s\n", strerror(errno));
        return EXIT_STARTUP;
    }
    Nosa__Serve__Register reg;
    int status = 0;
    if ((rc = start(&w, &reg, err, sizeof(err)))) {
        fprintf(stderr, "nosa-worker %s: %s\n", w.cfg.name[0] ? w.cfg.name : "(starting)", err);
        status = EXIT_STARTUP;
    } else if ((rc = worker_serve_run(&w, err, sizeof(err)))) {
        fprintf(stderr, "nosa-worker %s: %s\n", w.cfg.name, err);
        status = rc == -EFAULT ? EXIT_BACKEND : EXIT_STARTUP;
    }
    stop(&w);
    return status;
}
