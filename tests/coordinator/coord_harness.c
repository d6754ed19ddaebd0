/* coord_harness.c: see coord_harness.h. */
#include "coord_harness.h"
#include "test_http.h"
#include "test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

static struct ch_env *g_env;

uint64_t ch_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void ch_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void cleanup(int term_ctx)
{
    struct ch_env *e = g_env;
    if (!e) return;
    g_env = NULL;
    if (e->coord_pid > 0) {
        kill(e->coord_pid, SIGKILL);
        waitpid(e->coord_pid, NULL, 0);
        e->coord_pid = 0;
    }
    if (e->ctx && term_ctx) zmq_ctx_term(e->ctx);
    e->ctx = NULL;
    if (e->run_dir[0] && getenv("NOSA_TEST_KEEP") == NULL) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->run_dir);
        if (system(cmd) != 0) fprintf(stderr, "coord_harness: could not remove %s\n", e->run_dir);
    }
}

void ch_cleanup(void)
{
    cleanup(1);
}

/* After a failed REQUIRE (exit without ch_cleanup): the sockets the test left open would
 * make zmq_ctx_term wait for them forever, so the context is left to the exit. */
static void cleanup_at_exit(void)
{
    cleanup(0);
}

void ch_init(struct ch_env *e, const char *bin_dir, const char *tag)
{
    memset(e, 0, sizeof *e);
    snprintf(e->bin_dir, sizeof e->bin_dir, "%s", bin_dir);
    const char *need[] = {"nosa-coordinator", "nosa"};
    for (size_t i = 0; i < 2; i++) {
        char p[1100];
        snprintf(p, sizeof p, "%s/%s", bin_dir, need[i]);
        if (access(p, X_OK) != 0) {
            printf("SKIP: %s not built\n", p);
            exit(77);
        }
    }
    snprintf(e->run_dir, sizeof e->run_dir, "/tmp/nosa-%s-XXXXXX", tag);
    if (!mkdtemp(e->run_dir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        exit(1);
    }
    snprintf(e->workers_ep, sizeof e->workers_ep, "ipc://%s/coord-workers.sock", e->run_dir);
    snprintf(e->clients_ep, sizeof e->clients_ep, "ipc://%s/coord.sock", e->run_dir);
    snprintf(e->journal, sizeof e->journal, "%s/coordinator.journal", e->run_dir);
    snprintf(e->log, sizeof e->log, "%s/coordinator.log", e->run_dir);
    e->metrics_port = test_free_port();
    e->ctx = zmq_ctx_new();
    g_env = e;
    atexit(cleanup_at_exit);
    signal(SIGPIPE, SIG_IGN);
}

int ch_env_attach(struct ch_env *e, const char *workers_ep, const char *clients_ep)
{
    memset(e, 0, sizeof *e);
    if ((size_t)snprintf(e->workers_ep, sizeof e->workers_ep, "%s", workers_ep) >=
            sizeof e->workers_ep ||
        (size_t)snprintf(e->clients_ep, sizeof e->clients_ep, "%s", clients_ep) >=
            sizeof e->clients_ep) {
        fprintf(stderr, "coord_harness: endpoints too long: %s, %s\n", workers_ep, clients_ep);
        return -1;
    }
    e->ctx = zmq_ctx_new();
    return e->ctx ? 0 : -1;
}

int ch_start_coordinator(struct ch_env *e, int heartbeat_timeout_ms, const char *const *extra)
{
    char hb[32], port[32], bin[1100];
    snprintf(hb, sizeof hb, "%d", heartbeat_timeout_ms);
    snprintf(port, sizeof port, "%d", e->metrics_port);
    snprintf(bin, sizeof bin, "%s/nosa-coordinator", e->bin_dir);
    const char *argv[40] = {bin, "--run-dir", e->run_dir, "--workers", e->workers_ep,
                            "--clients", e->clients_ep, "--metrics-port", port,
                            "--heartbeat-timeout-ms", hb};
    int n = 11, journal_given = 0;
    for (int i = 0; extra && extra[i] && n < 36; i++) {
        journal_given |= strcmp(extra[i], "--journal") == 0;
        argv[n++] = extra[i];
    }
    if (!journal_given) {
        argv[n++] = "--journal";
        argv[n++] = e->journal;
    }
    argv[n] = NULL;
    char sock[300];
    snprintf(sock, sizeof sock, "%s", e->clients_ep + 6);
    unlink(sock);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open(e->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (e->fault) setenv("NOSA_FAULT", e->fault, 1);
        if (e->fault_skip) setenv("NOSA_FAULT_SKIP", e->fault_skip, 1);
        if (e->fsize_limit > 0) {
            struct rlimit rl = {(rlim_t)e->fsize_limit, (rlim_t)e->fsize_limit};
            setrlimit(RLIMIT_FSIZE, &rl);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    e->coord_pid = pid;
    uint64_t end = ch_now_ms() + 10000;
    struct stat st;
    while (ch_now_ms() < end) {
        if (stat(sock, &st) == 0) return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            e->coord_pid = 0;
            fprintf(stderr, "coord_harness: nosa-coordinator exited at start; see %s\n", e->log);
            return -1;
        }
        ch_sleep_ms(5);
    }
    fprintf(stderr, "coord_harness: no %s after 10 s\n", sock);
    return -1;
}

int ch_stop_coordinator(struct ch_env *e, int sig)
{
    if (e->coord_pid <= 0) return -1;
    kill(e->coord_pid, sig);
    int status = 0;
    waitpid(e->coord_pid, &status, 0);
    e->coord_pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---------------------------------------------------------------- fake worker */
int fw_open(struct ch_env *e, struct fake_worker *w, const char *name, uint32_t max_seqs,
            uint32_t max_context)
{
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->max_seqs = max_seqs;
    w->max_context = max_context;
    char err[256];
    w->sock = zmq_socket(e->ctx, ZMQ_DEALER);
    if (!w->sock || nosa_msg_socket_defaults(w->sock, -1, err, sizeof err) ||
        zmq_connect(w->sock, e->workers_ep) != 0)
        return -1;
    return 0;
}

void fw_close(struct fake_worker *w)
{
    if (w->sock) zmq_close(w->sock);
    w->sock = NULL;
}

int fw_send(struct fake_worker *w, Nosa__Serve__WorkerMsg *m, int keep_version)
{
    char err[256];
    if (!keep_version) m->version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    return nosa_msg_send(w->sock, NULL, &m->base, err, sizeof err);
}

int fw_send_raw(struct fake_worker *w, const void *data, size_t len)
{
    return zmq_send(w->sock, data, len, 0) < 0 ? -1 : 0;
}

static void send_register(struct fake_worker *w)
{
    uint64_t ids[FW_MAX_JOBS];
    for (int i = 0; i < w->n_jobs; i++) ids[i] = w->jobs[i].id;
    Nosa__Serve__Register r = NOSA__SERVE__REGISTER__INIT;
    r.worker_name = w->name;
    r.backend = "fake";
    r.mode = "nosa";
    r.max_seqs = w->max_seqs;
    r.max_context = w->max_context;
    r.block_size = 16;
    r.kvhost_endpoint = (char *)(w->kvhost ? w->kvhost : "");
    r.pid = getpid();
    r.gpu = -1;
    r.running_jobs = ids;
    r.n_running_jobs = (size_t)w->n_jobs;
    Nosa__Serve__WorkerMsg m = NOSA__SERVE__WORKER_MSG__INIT;
    m.body_case = NOSA__SERVE__WORKER_MSG__BODY_REGISTER;
    m.register_ = &r;
    fw_send(w, &m, 0);
}

int fw_register(struct fake_worker *w)
{
    int before = w->acks;
    send_register(w);
    uint64_t end = ch_now_ms() + 3000;
    while (ch_now_ms() < end) {
        fw_pump(w);
        if (w->acks > before) return 0;
        ch_sleep_ms(2);
    }
    return -1;
}

struct fw_job *fw_job(struct fake_worker *w, uint64_t id)
{
    for (int i = 0; i < w->n_jobs; i++)
        if (w->jobs[i].id == id) return &w->jobs[i];
    return NULL;
}

static void drop_job(struct fake_worker *w, uint64_t id)
{
    for (int i = 0; i < w->n_jobs; i++)
        if (w->jobs[i].id == id) {
            w->jobs[i] = w->jobs[--w->n_jobs];
            return;
        }
}

static void fill_token(Nosa__Serve__Token *t, uint8_t *byte, uint32_t index)
{
    nosa__serve__token__init(t);
    t->index = index;
    t->id = 'a' + (int32_t)(index % 26);
    *byte = (uint8_t)t->id;
    t->text.data = byte;
    t->text.len = 1;
}

/* Sends tokens [from[i], to[i]) of each job in one TokensBatch. */
static void send_tokens(struct fake_worker *w, const uint32_t *from, const uint32_t *to)
{
    static Nosa__Serve__Token toks[FW_MAX_JOBS][512];
    static Nosa__Serve__Token *ptrs[FW_MAX_JOBS][512];
    static uint8_t bytes[FW_MAX_JOBS][512];
    Nosa__Serve__JobTokens jt[FW_MAX_JOBS], *jtp[FW_MAX_JOBS];
    size_t n = 0;
    for (int i = 0; i < w->n_jobs; i++) {
        if (to[i] <= from[i]) continue;
        nosa__serve__job_tokens__init(&jt[n]);
        jt[n].job_id = w->jobs[i].id;
        uint32_t k = 0;
        for (uint32_t x = from[i]; x < to[i] && k < 512; x++, k++) {
            fill_token(&toks[i][k], &bytes[i][k], x);
            ptrs[i][k] = &toks[i][k];
        }
        jt[n].tokens = ptrs[i];
        jt[n].n_tokens = k;
        jtp[n] = &jt[n];
        n++;
    }
    if (!n) return;
    Nosa__Serve__TokensBatch b = NOSA__SERVE__TOKENS_BATCH__INIT;
    b.jobs = jtp;
    b.n_jobs = n;
    Nosa__Serve__WorkerMsg m = NOSA__SERVE__WORKER_MSG__INIT;
    m.body_case = NOSA__SERVE__WORKER_MSG__BODY_TOKENS;
    m.tokens = &b;
    fw_send(w, &m, 0);
}

void fw_send_finished(struct fake_worker *w, uint64_t id, int reason, uint32_t generated)
{
    Nosa__Serve__JobFinished f = NOSA__SERVE__JOB_FINISHED__INIT;
    f.job_id = id;
    f.reason = (Nosa__Serve__FinishReason)reason;
    f.generated_tokens = generated;
    Nosa__Serve__WorkerMsg m = NOSA__SERVE__WORKER_MSG__INIT;
    m.body_case = NOSA__SERVE__WORKER_MSG__BODY_FINISHED;
    m.finished = &f;
    fw_send(w, &m, 0);
}

static void on_assign(struct fake_worker *w, const Nosa__Serve__Assign *a)
{
    w->assigns++;
    if (!a->job || w->n_jobs == FW_MAX_JOBS) return;
    struct fw_job *j = &w->jobs[w->n_jobs++];
    memset(j, 0, sizeof *j);
    j->id = a->job->job_id;
    j->max_tokens = a->job->sampling ? a->job->sampling->max_tokens : 1;
    if (j->max_tokens > 500) j->max_tokens = 500;
    j->assigned_generated = (uint32_t)a->n_generated;
    j->assigned_prompt_done = a->prompt_done;
    j->next = (uint32_t)a->n_generated;
    j->generated_ok = a->seq_id == j->id;
    for (size_t i = 0; i < a->n_generated; i++)
        if (a->generated[i] != 'a' + (int32_t)(i % 26)) j->generated_ok = 0;
}

void fw_pump(struct fake_worker *w) { fw_pump_n(w, -1); }

void fw_pump_n(struct fake_worker *w, int max)
{
    for (int n = 0; max < 0 || n < max; n++) {
        struct nosa_msg_frame f;
        char err[256];
        if (nosa_msg_recv(w->sock, NULL, &f, NOSA_MSG_MAX_BYTES, ZMQ_DONTWAIT, err, sizeof err) !=
            NOSA_MSG_OK)
            return;
        Nosa__Serve__CoordMsg *m = (Nosa__Serve__CoordMsg *)nosa_msg_unpack(
            &nosa__serve__coord_msg__descriptor, f.data, f.len, err, sizeof err);
        nosa_msg_frame_free(&f);
        if (!m) continue;
        switch (m->body_case) {
        case NOSA__SERVE__COORD_MSG__BODY_REGISTER_ACK: {
            w->acks++;
            uint32_t from[FW_MAX_JOBS] = {0}, to[FW_MAX_JOBS];
            for (int i = 0; i < w->n_jobs; i++) to[i] = w->jobs[i].next;
            send_tokens(w, from, to); /* re-send from index 0, as nosa-worker does */
            break;
        }
        case NOSA__SERVE__COORD_MSG__BODY_ASSIGN: on_assign(w, m->assign); break;
        case NOSA__SERVE__COORD_MSG__BODY_CANCEL:
            w->cancels++;
            if (m->cancel->moved) w->moved_cancels++;
            if (fw_job(w, m->cancel->job_id)) {
                uint32_t g = fw_job(w, m->cancel->job_id)->next;
                drop_job(w, m->cancel->job_id);
                fw_send_finished(w, m->cancel->job_id,
                              NOSA__SERVE__FINISH_REASON__FINISH_CANCELLED, g);
            }
            break;
        case NOSA__SERVE__COORD_MSG__BODY_SHUTDOWN:
            w->shutdowns++;
            w->silent = 1;
            break;
        case NOSA__SERVE__COORD_MSG__BODY_ERROR:
            w->errors++;
            w->last_error_code = m->error ? (int)m->error->code : 0;
            snprintf(w->last_error, sizeof w->last_error, "%s",
                     m->error && m->error->message ? m->error->message : "");
            if (!w->silent && (w->last_error_code == NOSA__ERROR_CODE__ERROR_UNAUTHORIZED ||
                               w->last_error_code == NOSA__ERROR_CODE__ERROR_UNKNOWN_ID))
                send_register(w);
            break;
        default: break;
        }
        protobuf_c_message_free_unpacked(&m->base, NULL);
    }
}

/* with_stats: as a worker's step loop does (0: as its pulse thread, liveness only). */
static void send_heartbeat(struct fake_worker *w, int leaving, int with_stats)
{
    Nosa__Serve__StepStats st = NOSA__SERVE__STEP_STATS__INIT;
    st.tokens_per_s = 100.0;
    st.step_seconds = 0.01;
    st.blocks_moved_per_step = 3;
    st.bytes_moved_per_step = 4096;
    st.cache_hit_rate = 0.5;
    Nosa__Serve__Heartbeat h = NOSA__SERVE__HEARTBEAT__INIT;
    h.worker_name = w->name;
    h.running = (uint32_t)w->n_jobs;
    h.free_slots = w->max_seqs - (uint32_t)w->n_jobs;
    if (with_stats) {
        st.steps = ++w->stat_beats;
        /* A worker clock and totals the status must pass on. */
        st.taken_s = 0.25 * (double)st.steps;
        st.step_seconds_total = 0.01 * (double)st.steps;
        st.blocks_selected_total = 10 * st.steps;
        st.blocks_moved_total = 3 * st.steps;
        st.block_hits_total = 5 * st.steps;
        h.stats = &st;
    }
    h.leaving = leaving;
    Nosa__Serve__WorkerMsg m = NOSA__SERVE__WORKER_MSG__INIT;
    m.body_case = NOSA__SERVE__WORKER_MSG__BODY_HEARTBEAT;
    m.heartbeat = &h;
    fw_send(w, &m, 0);
}

void fw_heartbeat(struct fake_worker *w)
{
    if (!w->silent) send_heartbeat(w, 0, 1);
}

void fw_heartbeat_bare(struct fake_worker *w)
{
    if (!w->silent) send_heartbeat(w, 0, 0);
}

void fw_leave(struct fake_worker *w)
{
    send_heartbeat(w, 1, 1);
    w->silent = 1;
}

void fw_progress(struct fake_worker *w, uint64_t job_id, uint32_t prompt_done)
{
    Nosa__Serve__JobTokens jt = NOSA__SERVE__JOB_TOKENS__INIT, *jtp = &jt;
    jt.job_id = job_id;
    jt.prompt_done = prompt_done;
    Nosa__Serve__TokensBatch b = NOSA__SERVE__TOKENS_BATCH__INIT;
    b.jobs = &jtp;
    b.n_jobs = 1;
    Nosa__Serve__WorkerMsg m = NOSA__SERVE__WORKER_MSG__INIT;
    m.body_case = NOSA__SERVE__WORKER_MSG__BODY_TOKENS;
    m.tokens = &b;
    fw_send(w, &m, 0);
}

void fw_emit(struct fake_worker *w, uint32_t n)
{
    if (w->silent || !w->n_jobs) return;
    uint32_t from[FW_MAX_JOBS], to[FW_MAX_JOBS];
    for (int i = 0; i < w->n_jobs; i++) {
        from[i] = w->jobs[i].next;
        to[i] = from[i] + n < w->jobs[i].max_tokens ? from[i] + n : w->jobs[i].max_tokens;
        w->jobs[i].next = to[i];
    }
    send_tokens(w, from, to);
    for (int i = 0; i < w->n_jobs;) {
        if (w->jobs[i].next >= w->jobs[i].max_tokens) {
            uint64_t id = w->jobs[i].id;
            uint32_t g = w->jobs[i].next;
            drop_job(w, id);
            fw_send_finished(w, id, NOSA__SERVE__FINISH_REASON__FINISH_LENGTH, g);
        } else {
            i++;
        }
    }
}

/* ---------------------------------------------------------------- raw client */
void *cl_open(struct ch_env *e)
{
    char err[256];
    void *s = zmq_socket(e->ctx, ZMQ_DEALER);
    if (!s || nosa_msg_socket_defaults(s, -1, err, sizeof err) ||
        zmq_connect(s, e->clients_ep) != 0)
        return NULL;
    return s;
}

int cl_send(void *sock, Nosa__Serve__ClientMsg *m, int keep_version)
{
    char err[256];
    if (!keep_version) m->version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    return nosa_msg_send(sock, NULL, &m->base, err, sizeof err);
}

static void (*g_idle)(void *);
static void *g_idle_arg;

void ch_set_idle(void (*idle)(void *), void *arg)
{
    g_idle = idle;
    g_idle_arg = arg;
}

void ch_idle(void)
{
    if (g_idle) g_idle(g_idle_arg);
}

Nosa__Serve__ClientReply *cl_recv(void *sock, int timeout_ms)
{
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    uint64_t end = ch_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int rc = zmq_poll(&item, 1, timeout_ms < 10 ? timeout_ms : 10);
        if (rc > 0) break;
        if (rc < 0 || ch_now_ms() >= end) return NULL;
        ch_idle();
    }
    struct nosa_msg_frame f;
    char err[256];
    if (nosa_msg_recv(sock, NULL, &f, NOSA_MSG_MAX_BYTES, 0, err, sizeof err) != NOSA_MSG_OK)
        return NULL;
    Nosa__Serve__ClientReply *r = (Nosa__Serve__ClientReply *)nosa_msg_unpack(
        &nosa__serve__client_reply__descriptor, f.data, f.len, err, sizeof err);
    nosa_msg_frame_free(&f);
    return r;
}

Nosa__Serve__ClientReply *cl_submit(void *sock, const char *prompt, uint32_t max_tokens,
                                    int stream)
{
    return cl_submit_wait(sock, prompt, max_tokens, stream, 3000);
}

Nosa__Serve__ClientReply *cl_submit_wait(void *sock, const char *prompt, uint32_t max_tokens,
                                         int stream, int wait_ms)
{
    return cl_submit_keyed(sock, prompt, max_tokens, stream, 0, wait_ms);
}

Nosa__Serve__ClientReply *cl_submit_keyed(void *sock, const char *prompt, uint32_t max_tokens,
                                          int stream, uint64_t client_key, int wait_ms)
{
    Nosa__Serve__SamplingParams sp = NOSA__SERVE__SAMPLING_PARAMS__INIT;
    sp.max_tokens = max_tokens;
    sp.top_p = 1.0f;
    Nosa__Serve__JobSpec spec = NOSA__SERVE__JOB_SPEC__INIT;
    spec.prompt_case = NOSA__SERVE__JOB_SPEC__PROMPT_TEXT;
    spec.text = (char *)prompt;
    spec.sampling = &sp;
    spec.client_key = client_key;
    Nosa__Serve__SubmitRequest s = NOSA__SERVE__SUBMIT_REQUEST__INIT;
    s.job = &spec;
    s.stream = stream;
    Nosa__Serve__ClientMsg m = NOSA__SERVE__CLIENT_MSG__INIT;
    m.request_id = 7;
    m.body_case = NOSA__SERVE__CLIENT_MSG__BODY_SUBMIT;
    m.submit = &s;
    if (cl_send(sock, &m, 0)) return NULL;
    return cl_recv(sock, wait_ms);
}

/* ---------------------------------------------------------------- the nosa CLI */
/* A pseudo-terminal: the master (read here) and the slave the CLI writes to. 0 or -1. */
static int open_pty(int *master, int *slave)
{
    *master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    const char *name = NULL;
    if (*master < 0 || grantpt(*master) || unlockpt(*master) || !(name = ptsname(*master)) ||
        (*slave = open(name, O_RDWR | O_NOCTTY)) < 0) {
        if (*master >= 0) close(*master);
        return -1;
    }
    return fcntl(*master, F_SETFL, O_NONBLOCK) == 0 ? 0 : -1;
}

/* Appends what the master has now to *buf (size *len, malloc'd). */
static void drain_pty(int master, char **buf, size_t *len)
{
    char chunk[4096];
    ssize_t r;
    while ((r = read(master, chunk, sizeof chunk)) > 0) {
        char *grown = realloc(*buf, *len + (size_t)r + 1);
        if (!grown) return;
        memcpy(grown + *len, chunk, (size_t)r);
        *len += (size_t)r;
        grown[*len] = 0;
        *buf = grown;
    }
}

int ch_run_cli_tty(struct ch_env *e, const char *const *args, enum ch_cli_tty tty,
                   void (*pump)(void *), void *arg, unsigned timeout_ms, char **out,
                   char **errout)
{
    char bin[1100], out_path[300], err_path[300];
    snprintf(bin, sizeof bin, "%s/nosa", e->bin_dir);
    snprintf(out_path, sizeof out_path, "%s/cli.out", e->run_dir);
    snprintf(err_path, sizeof err_path, "%s/cli.err", e->run_dir);
    const char *argv[64] = {bin, "--run-dir", e->run_dir};
    int n = 3;
    for (int i = 0; args[i] && n < 63; i++) argv[n++] = args[i];
    argv[n] = NULL;
    int master = -1, slave = -1;
    if (tty != CH_TTY_NONE && open_pty(&master, &slave)) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        if (master >= 0) close(master), close(slave);
        return -1;
    }
    if (pid == 0) {
        int fo = tty == CH_TTY_BOTH ? slave : open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = tty != CH_TTY_NONE ? slave : open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fo < 0 || fe < 0) _exit(126);
        dup2(fo, 1);
        dup2(fe, 2);
        unsetenv("NOSA_COORDINATOR");
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    /* The slave stays open here until the end: the master then never reads EIO, and what
     * the CLI wrote last is still there to read after it exits. */
    char *term = NULL;
    size_t term_len = 0;
    uint64_t end = ch_now_ms() + timeout_ms;
    int status = 0, rc = -1;
    for (;;) {
        if (master >= 0) drain_pty(master, &term, &term_len);
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            break;
        }
        if (ch_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            break;
        }
        if (pump) pump(arg);
        ch_sleep_ms(3);
    }
    if (master >= 0) {
        drain_pty(master, &term, &term_len);
        close(master);
        close(slave);
        if (!term) term = calloc(1, 1);
    }
    *out = tty == CH_TTY_BOTH ? term : test_read_file(out_path);
    *errout = tty == CH_TTY_STDERR ? term : tty == CH_TTY_BOTH ? calloc(1, 1)
                                                                : test_read_file(err_path);
    return rc;
}

int ch_run_cli(struct ch_env *e, const char *const *args, void (*pump)(void *), void *arg,
               unsigned timeout_ms, char **out, char **errout)
{
    return ch_run_cli_tty(e, args, CH_TTY_NONE, pump, arg, timeout_ms, out, errout);
}

void ch_expected_text(uint32_t n, char *out, size_t cap)
{
    size_t i = 0;
    for (; i < n && i + 1 < cap; i++) out[i] = (char)('a' + i % 26);
    out[i] = 0;
}
