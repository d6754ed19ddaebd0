/* node_harness.c: real processes of one node for the e2e and fault tests (node_harness.h). */
#include "node_harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "parse.h"
#include "test_util.h"

/* The node the cleanup handlers act on (one node per test process). */
static struct nh_node *g_nh_node;

uint64_t nh_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void nh_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void nh_arena_path(const struct nh_node *node, char *out, size_t len)
{
    snprintf(out, len, "/dev/shm/nosa-%u-%s", (unsigned)getuid(), node->kvhost_name);
}

/* Unlinks every arena of the node's kv-hosts (the kv-host keeps its arena by design, for
 * --recover; we own the names). Async-signal-safe. */
static void unlink_arenas(const struct nh_node *node)
{
    char arena[NH_PATH];
    nh_arena_path(node, arena, sizeof arena);
    unlink(arena);
    for (int i = 0; i < node->n_extra_kvhosts; i++) {
        snprintf(arena, sizeof arena, "/dev/shm/nosa-%u-%s", (unsigned)getuid(),
                 node->extra_kvhosts[i]);
        unlink(arena);
    }
}

/* Async-signal-safe part of the cleanup: SIGKILL (and SIGCONT, for a stopped one) every
 * child, reap it, unlink the arenas. */
static void kill_and_reap_all(struct nh_node *node)
{
    for (int i = 0; i < node->n_procs; i++) {
        if (node->procs[i].pid <= 0) continue;
        kill(node->procs[i].pid, SIGKILL);
        kill(node->procs[i].pid, SIGCONT);
    }
    for (int i = 0; i < node->n_procs; i++) {
        if (node->procs[i].pid <= 0) continue;
        waitpid(node->procs[i].pid, &node->procs[i].status, 0);
        node->procs[i].pid = 0;
    }
    unlink_arenas(node);
}

static void on_fatal_signal(int sig)
{
    static const char msg[] = "node_harness: deadline or signal: killing every process started\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) { /* nothing more to do */ }
    if (g_nh_node) kill_and_reap_all(g_nh_node);
    _exit(sig == SIGALRM ? 124 : 128 + sig);
}

static void on_exit_cleanup(void)
{
    if (g_nh_node) nh_node_free(g_nh_node);
}

static int remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return unlink(path);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[NH_PATH * 2];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(sub);
        else unlink(sub);
    }
    closedir(d);
    return rmdir(path);
}

static int read_block_size(struct nh_node *node)
{
    char path[NH_PATH + 16];
    snprintf(path, sizeof path, "%s/config.json", node->model);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "node_harness: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char buf[16384];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    cJSON *root = cJSON_Parse(buf);
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(root, "sparse_config");
    const cJSON *bs = cJSON_GetObjectItemCaseSensitive(sc, "block_size");
    int rc = -1;
    if (cJSON_IsNumber(bs) && bs->valuedouble >= 1) {
        node->block_size = (uint32_t)bs->valuedouble;
        rc = 0;
    } else {
        fprintf(stderr, "node_harness: %s has no sparse_config.block_size\n", path);
    }
    cJSON_Delete(root);
    return rc;
}

int nh_node_init(struct nh_node *node, const char *test_name, const char *bin_dir,
                 const char *model_config, unsigned deadline_s)
{
    return nh_node_init_needing(node, test_name, bin_dir, model_config, deadline_s, NULL);
}

int nh_node_init_needing(struct nh_node *node, const char *test_name, const char *bin_dir,
                         const char *model_config, unsigned deadline_s,
                         const char *const *needed)
{
    memset(node, 0, sizeof *node);
    const char *bins = bin_dir ? bin_dir : getenv("NOSA_BIN");
    if (!bins) {
        fprintf(stderr, "node_harness: no binary directory (argument or $NOSA_BIN)\n");
        return -1;
    }
    if ((size_t)snprintf(node->bin_dir, sizeof node->bin_dir, "%s", bins) >= sizeof node->bin_dir) {
        fprintf(stderr, "node_harness: binary directory path too long: %s\n", bins);
        return -1;
    }
    static const char *const whole_node[] = {"nosa-kvhost", "nosa-worker", "nosa-coordinator",
                                             "nosa", "nosa-generate", NULL};
    if (!needed) needed = whole_node;
    for (size_t i = 0; i == 0 || needed[i - 1]; i++) {
        const char *name = needed[i] ? needed[i] : "nosa-mkmodel";
        char p[NH_PATH * 2];
        snprintf(p, sizeof p, "%s/%s", node->bin_dir, name);
        if (access(p, X_OK) != 0) {
            printf("%s: skipped: %s is not built (%s)\n", test_name, name, p);
            return 77;
        }
    }
    snprintf(node->tag, sizeof node->tag, "%s-%ld", test_name, (long)getpid());
    snprintf(node->kvhost_name, sizeof node->kvhost_name, "kvh-%s", node->tag);
    const char *tmp = getenv("TMPDIR");
    int len = snprintf(node->run_dir, sizeof node->run_dir, "%s/nosa-%s-XXXXXX",
                       tmp ? tmp : "/tmp", node->tag);
    if (len < 0 || (size_t)len >= sizeof node->run_dir || !mkdtemp(node->run_dir)) {
        fprintf(stderr, "node_harness: mkdtemp %s: %s\n", node->run_dir, strerror(errno));
        return -1;
    }
    chmod(node->run_dir, 0700);
    snprintf(node->kvhost_ep, sizeof node->kvhost_ep, "ipc://%s/kvh0.sock", node->run_dir);
    snprintf(node->workers_ep, sizeof node->workers_ep, "ipc://%s/coord-workers.sock",
             node->run_dir);
    snprintf(node->clients_ep, sizeof node->clients_ep, "ipc://%s/coord.sock", node->run_dir);
    snprintf(node->journal, sizeof node->journal, "%s/coordinator.journal", node->run_dir);
    snprintf(node->model, sizeof node->model, "%s/model", node->run_dir);
    /* Short, so that a hung worker is seen in seconds; a sanitizer build, several times
     * slower in everything (start-up, the coordinator's loop), sets a longer one. */
    node->heartbeat_timeout_ms = 3000;
    const char *hb = getenv("NOSA_TEST_HEARTBEAT_TIMEOUT_MS");
    if (hb) {
        char err[128];
        long ms;
        if (nosa_parse_long(hb, 100, 600000, &ms, err, sizeof err) != 0) {
            fprintf(stderr, "node_harness: NOSA_TEST_HEARTBEAT_TIMEOUT_MS: %s\n", err);
            return -1;
        }
        node->heartbeat_timeout_ms = (int)ms;
    }
    node->keep = getenv("NOSA_TEST_KEEP") != NULL;
    const char *backend = getenv("NOSA_TEST_BACKEND");
    if (backend && strcmp(backend, "cpu") != 0 && strcmp(backend, "cuda") != 0) {
        fprintf(stderr, "node_harness: NOSA_TEST_BACKEND '%s': expected cpu or cuda\n", backend);
        return -1;
    }
    snprintf(node->backend, sizeof node->backend, "%s", backend ? backend : "cpu");

    g_nh_node = node;
    atexit(on_exit_cleanup);
    struct sigaction sa = {0};
    sa.sa_handler = on_fatal_signal;
    sigaction(SIGALRM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    alarm(deadline_s);

    const char *mk[] = {"nosa-mkmodel", "--config", model_config, "--out", node->model, NULL};
    char *out = NULL;
    int rc = nh_run(node, mk, 60000, &out);
    if (rc != 0) {
        fprintf(stderr, "node_harness: nosa-mkmodel --config %s failed (%d): %s\n", model_config,
                rc, out ? out : "");
        free(out);
        return -1;
    }
    free(out);
    return read_block_size(node);
}

void nh_node_free(struct nh_node *node)
{
    if (!node->run_dir[0]) return;
    nh_stop_all(node, 3000);
    kill_and_reap_all(node);
    if (!node->keep) remove_tree(node->run_dir);
    else fprintf(stderr, "node_harness: kept %s (NOSA_TEST_KEEP)\n", node->run_dir);
    node->run_dir[0] = '\0';
    if (g_nh_node == node) g_nh_node = NULL;
}

int nh_spawn(struct nh_node *node, const char *name, char *const env_extra[], long fsize_limit,
             const char *const argv[])
{
    int slot = node->n_procs;
    /* A finished nh_run's slot is reused: status polls would fill the table otherwise. */
    for (int i = 0; i < node->n_procs && strcmp(name, "run") == 0; i++)
        if (node->procs[i].pid == 0 && strcmp(node->procs[i].name, "run") == 0) {
            slot = i;
            break;
        }
    if (slot >= NH_MAX_PROCS) {
        fprintf(stderr, "node_harness: more than %d processes\n", NH_MAX_PROCS);
        return -1;
    }
    struct nh_proc *p = &node->procs[slot];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    /* A log per start (never reused: a soak's rounds reuse slots and names). */
    snprintf(p->log, sizeof p->log, "%s/%s.%u.log", node->run_dir, name, node->n_spawned++);
    char exe[NH_PATH * 2];
    snprintf(exe, sizeof exe, "%s/%s", node->bin_dir, argv[0]);
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "node_harness: fork %s: %s\n", name, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* Dies with the harness, whatever kills it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || in < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0 || dup2(in, 0) < 0) _exit(127);
        for (int i = 0; env_extra && env_extra[i]; i++) putenv(env_extra[i]);
        if (fsize_limit > 0) {
            struct rlimit rl = {(rlim_t)fsize_limit, (rlim_t)fsize_limit};
            setrlimit(RLIMIT_FSIZE, &rl);
            signal(SIGXFSZ, SIG_IGN); /* write() fails with EFBIG instead of killing */
        }
        execv(exe, (char *const *)argv);
        fprintf(stderr, "node_harness: exec %s: %s\n", exe, strerror(errno));
        _exit(127);
    }
    p->pid = pid;
    if (slot == node->n_procs) node->n_procs++;
    return slot;
}

static int reap(struct nh_proc *p, int block)
{
    if (p->pid <= 0) return 1;
    pid_t r = waitpid(p->pid, &p->status, block ? 0 : WNOHANG);
    if (r == p->pid) {
        p->pid = 0;
        return 1;
    }
    return 0;
}

static struct nh_proc *find(struct nh_node *node, const char *name, int running)
{
    for (int i = node->n_procs - 1; i >= 0; i--)
        if ((!running || node->procs[i].pid > 0) && strcmp(node->procs[i].name, name) == 0)
            return &node->procs[i];
    return NULL;
}

struct nh_proc *nh_find(struct nh_node *node, const char *name) { return find(node, name, 1); }
struct nh_proc *nh_find_last(struct nh_node *node, const char *name)
{
    return find(node, name, 0);
}

int nh_signal(struct nh_node *node, const char *name, int sig)
{
    struct nh_proc *p = nh_find(node, name);
    if (!p) {
        fprintf(stderr, "node_harness: no running process '%s'\n", name);
        return -1;
    }
    return kill(p->pid, sig);
}

static int wait_index(struct nh_node *node, int idx, unsigned timeout_ms)
{
    uint64_t end = nh_now_ms() + timeout_ms;
    for (;;) {
        if (reap(&node->procs[idx], 0)) return 1;
        if (nh_now_ms() >= end) return 0;
        nh_sleep_ms(10);
    }
}

int nh_wait_exit(struct nh_node *node, const char *name, unsigned timeout_ms)
{
    struct nh_proc *p = nh_find(node, name);
    if (!p) return 1;
    return wait_index(node, (int)(p - node->procs), timeout_ms);
}

/* Stop order: clients and workers, then the coordinator, then the kv-host. */
static int stop_rank(const char *name)
{
    if (strncmp(name, "kvh", 3) == 0) return 2;
    if (strcmp(name, "coordinator") == 0) return 1;
    return 0;
}

int nh_stop_all(struct nh_node *node, unsigned timeout_ms)
{
    int killed = 0;
    for (int rank = 0; rank <= 2; rank++) {
        for (int i = 0; i < node->n_procs; i++) {
            struct nh_proc *p = &node->procs[i];
            if (p->pid <= 0 || stop_rank(p->name) != rank) continue;
            /* SIGCONT first, for a stopped (hang-injected) process to see the SIGTERM: a
             * SIGCONT after it could reach the process while LeakSanitizer's exit check
             * attaches, and discard the SIGSTOP that attach waits for (a hang until SIGKILL). */
            kill(p->pid, SIGCONT);
            kill(p->pid, SIGTERM);
        }
        uint64_t end = nh_now_ms() + timeout_ms;
        for (int i = 0; i < node->n_procs; i++) {
            struct nh_proc *p = &node->procs[i];
            if (p->pid <= 0 || stop_rank(p->name) != rank) continue;
            while (!reap(p, 0) && nh_now_ms() < end) nh_sleep_ms(10);
            if (p->pid > 0) {
                fprintf(stderr, "node_harness: %s (pid %d) ignored SIGTERM for %u ms: SIGKILL\n",
                        p->name, (int)p->pid, timeout_ms);
                kill(p->pid, SIGKILL);
                reap(p, 1);
                killed++;
            }
        }
    }
    return killed;
}

int nh_run(struct nh_node *node, const char *const argv[], unsigned timeout_ms, char **out)
{
    *out = NULL;
    int idx = nh_spawn(node, "run", NULL, 0, argv);
    if (idx < 0) return -1;
    struct nh_proc *p = &node->procs[idx];
    if (!wait_index(node, idx, timeout_ms)) {
        fprintf(stderr, "node_harness: %s did not finish in %u ms: killed\n", argv[0], timeout_ms);
        kill(p->pid, SIGKILL);
        reap(p, 1);
        *out = test_read_file(p->log);
        unlink(p->log);
        return -1;
    }
    *out = test_read_file(p->log);
    unlink(p->log);
    return WIFEXITED(p->status) ? WEXITSTATUS(p->status) : -1;
}

int nh_wait_socket(struct nh_node *node, int idx, const char *endpoint, unsigned timeout_ms)
{
    const char *path = endpoint + strlen("ipc://");
    uint64_t end = nh_now_ms() + timeout_ms;
    struct stat st;
    while (stat(path, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        if (reap(&node->procs[idx], 0)) {
            fprintf(stderr, "node_harness: %s exited before binding %s; see %s\n",
                    node->procs[idx].name, endpoint, node->procs[idx].log);
            return -1;
        }
        if (nh_now_ms() >= end) {
            fprintf(stderr, "node_harness: %s did not bind %s in %u ms; see %s\n",
                    node->procs[idx].name, endpoint, timeout_ms, node->procs[idx].log);
            return -1;
        }
        nh_sleep_ms(20);
    }
    return 0;
}

static int start_kvhost(struct nh_node *node, const char *proc, const char *name,
                        const char *endpoint, const char *arena_size, int recover,
                        char *const env_extra[])
{
    const char *argv[16] = {"nosa-kvhost", "--run-dir", node->run_dir, "--name", name,
                            "--endpoint", endpoint, "--arena", arena_size, "--model",
                            node->model};
    int n = 11;
    if (recover) argv[n++] = "--recover";
    argv[n] = NULL;
    int idx = nh_spawn(node, proc, env_extra, 0, argv);
    if (idx < 0) return -1;
    return nh_wait_socket(node, idx, endpoint, 20000) == 0 ? idx : -1;
}

int nh_start_kvhost(struct nh_node *node, int recover, char *const env_extra[])
{
    return start_kvhost(node, "kvh", node->kvhost_name, node->kvhost_ep, "64M", recover,
                        env_extra);
}

int nh_start_kvhost_extra(struct nh_node *node, const char *suffix, const char *arena_size,
                          char *endpoint, size_t endpoint_len)
{
    if (node->n_extra_kvhosts == NH_MAX_EXTRA_KVHOSTS) {
        fprintf(stderr, "node_harness: %d extra kv-hosts at most\n", NH_MAX_EXTRA_KVHOSTS);
        return -1;
    }
    char proc[NH_NAME], *name = node->extra_kvhosts[node->n_extra_kvhosts];
    snprintf(proc, sizeof proc, "kvh-%s", suffix);
    snprintf(name, sizeof node->extra_kvhosts[0], "%s-%s", node->kvhost_name, suffix);
    node->n_extra_kvhosts++;
    snprintf(endpoint, endpoint_len, "ipc://%s/kvh-%s.sock", node->run_dir, suffix);
    return start_kvhost(node, proc, name, endpoint, arena_size, 0, NULL);
}

int nh_start_coordinator(struct nh_node *node, char *const env_extra[], long fsize_limit)
{
    char hb[32], port[16];
    snprintf(hb, sizeof hb, "%d", node->heartbeat_timeout_ms);
    snprintf(port, sizeof port, "%d", node->metrics_port);
    const char *argv[] = {"nosa-coordinator", "--run-dir", node->run_dir, "--workers",
                          node->workers_ep, "--clients", node->clients_ep, "--kvhost",
                          node->kvhost_ep, "--journal", node->journal, "--metrics-port", port,
                          "--heartbeat-timeout-ms", hb, NULL};
    int idx = nh_spawn(node, "coordinator", env_extra, fsize_limit, argv);
    if (idx < 0) return -1;
    return nh_wait_socket(node, idx, node->clients_ep, 20000) == 0 ? idx : -1;
}

int nh_start_worker(struct nh_node *node, const char *name, char *const env_extra[])
{
    char wname[NH_NAME * 2];
    snprintf(wname, sizeof wname, "%s-%s", name, node->tag);
    const char *argv[] = {"nosa-worker", "--run-dir", node->run_dir, "--name", wname,
                          "--coordinator", node->workers_ep, "--kvhost", node->kvhost_ep,
                          "--model", node->model, "--backend", node->backend, "--mode", "nosa",
                          NULL};
    return nh_spawn(node, name, env_extra, 0, argv);
}

/* `nosa --json status`: how many workers are listed alive, or -1. */
static int live_workers(struct nh_node *node)
{
    const char *argv[] = {"nosa", "--coordinator", node->clients_ep, "--run-dir", node->run_dir,
                          "--json", "status", NULL};
    char *out = NULL;
    int rc = nh_run(node, argv, 5000, &out);
    int alive = -1;
    if (rc == 0 && out) {
        cJSON *root = cJSON_Parse(out);
        const cJSON *ws = cJSON_GetObjectItemCaseSensitive(root, "workers");
        if (cJSON_IsArray(ws)) {
            alive = 0;
            const cJSON *w;
            cJSON_ArrayForEach(w, ws)
            {
                const cJSON *a = cJSON_GetObjectItemCaseSensitive(w, "alive");
                if (!a || cJSON_IsTrue(a)) alive++;
            }
        }
        cJSON_Delete(root);
    }
    free(out);
    return alive;
}

int nh_wait_workers(struct nh_node *node, int n, unsigned timeout_ms)
{
    uint64_t end = nh_now_ms() + timeout_ms;
    int last = -1;
    while ((last = live_workers(node)) < n) {
        for (int i = 0; i < node->n_procs; i++) {
            struct nh_proc *p = &node->procs[i];
            if (p->pid > 0 && strncmp(p->name, "cpu", 3) == 0 && reap(p, 0)) {
                fprintf(stderr, "node_harness: worker %s exited before registering; see %s\n",
                        p->name, p->log);
                return -1;
            }
        }
        if (nh_now_ms() >= end) {
            fprintf(stderr, "node_harness: %d of %d workers alive after %u ms (`nosa --json "
                    "status`)\n", last, n, timeout_ms);
            return -1;
        }
        nh_sleep_ms(100);
    }
    return 0;
}

int nh_submit(struct nh_node *node, const char *name, const char *prompt, int max_tokens,
              double temperature, double top_p, uint64_t seed)
{
    char mt[32], t[32], tp[32], sd[32];
    snprintf(mt, sizeof mt, "%d", max_tokens);
    snprintf(t, sizeof t, "%g", temperature);
    snprintf(tp, sizeof tp, "%g", top_p);
    snprintf(sd, sizeof sd, "%llu", (unsigned long long)seed);
    const char *argv[] = {"nosa", "--coordinator", node->clients_ep, "--run-dir", node->run_dir,
                          "--json", "submit", "--prompt", prompt, "--max-tokens", mt,
                          "--temperature", t, "--top-p", tp, "--seed", sd, NULL};
    return nh_spawn(node, name, NULL, 0, argv);
}

static void put_token(struct nh_job *job, const cJSON *tok, int *next)
{
    const cJSON *id = cJSON_IsNumber(tok) ? tok : cJSON_GetObjectItemCaseSensitive(tok, "id");
    const cJSON *index = cJSON_GetObjectItemCaseSensitive(tok, "index");
    if (!cJSON_IsNumber(id)) return;
    int at = cJSON_IsNumber(index) ? (int)index->valuedouble : *next;
    if (at < 0 || at >= NH_MAX_TOKENS) return;
    job->tokens[at] = (int32_t)id->valuedouble;
    if (at + 1 > job->n_tokens) job->n_tokens = at + 1;
    *next = at + 1;
}

/* One JSON line of `nosa --json submit` or nosa-generate (see requests in docs/DEPLOY.md):
 * "job_id", token chunks ("tokens": ids or {"index","id"}; or one {"index","id"}), and the
 * last line with "reason" (the whole "tokens" list, "error", "recomputed_tokens"). */
static void parse_job_line(struct nh_job *job, const cJSON *o, int *next)
{
    const cJSON *v;
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "job_id")))
        job->job_id = (uint64_t)v->valuedouble;
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(o, "reason");
    if (!reason) reason = cJSON_GetObjectItemCaseSensitive(o, "finish_reason");
    const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(o, "tokens");
    if (cJSON_IsArray(tokens)) {
        if (cJSON_IsString(reason)) { /* the final line holds the whole list */
            job->n_tokens = 0;
            *next = 0;
        }
        const cJSON *t;
        cJSON_ArrayForEach(t, tokens) put_token(job, t, next);
    } else if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "index"))) {
        put_token(job, o, next);
    }
    if (cJSON_IsString(reason)) {
        job->done = 1;
        snprintf(job->reason, sizeof job->reason, "%s", reason->valuestring);
    }
    v = cJSON_GetObjectItemCaseSensitive(o, "error");
    if (cJSON_IsString(v) && v->valuestring[0])
        snprintf(job->error, sizeof job->error, "%s", v->valuestring);
    else if (cJSON_IsObject(v) &&
             cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "message")))
        snprintf(job->error, sizeof job->error, "%s",
                 cJSON_GetObjectItemCaseSensitive(v, "message")->valuestring);
    if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(o, "recomputed_tokens")))
        job->recomputed = (long)v->valuedouble;
}

static void parse_job_output(const char *text, struct nh_job *job)
{
    int next = 0;
    char last_plain[256] = "";
    for (const char *line = text; line && *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > 0 && line[0] == '{') {
            cJSON *o = cJSON_ParseWithLength(line, len);
            if (cJSON_IsObject(o)) parse_job_line(job, o, &next);
            cJSON_Delete(o);
        } else if (len > 0) {
            snprintf(last_plain, sizeof last_plain, "%.*s", (int)(len < 255 ? len : 255), line);
        }
        line = eol ? eol + 1 : NULL;
    }
    /* A CLI that failed without a JSON error line still said why on stderr. */
    if (!job->error[0] && !job->done && last_plain[0])
        snprintf(job->error, sizeof job->error, "%s", last_plain);
}

int nh_job_read(struct nh_node *node, int proc, struct nh_job *job)
{
    memset(job, 0, sizeof *job);
    job->recomputed = -1;
    job->exit_status = -1;
    char *text = test_read_file(node->procs[proc].log);
    if (!text) return -1;
    parse_job_output(text, job);
    free(text);
    struct nh_proc *p = &node->procs[proc];
    if (p->pid == 0 && WIFEXITED(p->status)) job->exit_status = WEXITSTATUS(p->status);
    return 0;
}

int nh_job_wait(struct nh_node *node, int proc, unsigned timeout_ms, struct nh_job *job)
{
    int exited = wait_index(node, proc, timeout_ms);
    int rc = nh_job_read(node, proc, job);
    if (!exited) {
        fprintf(stderr, "node_harness: %s (pid %d) still runs after %u ms; see %s\n",
                node->procs[proc].name, (int)node->procs[proc].pid, timeout_ms,
                node->procs[proc].log);
        return -1;
    }
    return rc;
}

int nh_generate(struct nh_node *node, const char *prompt, int max_tokens, double temperature,
                double top_p, uint64_t seed, struct nh_job *out)
{
    return nh_generate_flags(node, NULL, prompt, max_tokens, temperature, top_p, seed, out);
}

int nh_generate_flags(struct nh_node *node, const char *const *flags, const char *prompt,
                      int max_tokens, double temperature, double top_p, uint64_t seed,
                      struct nh_job *out)
{
    char mt[32], t[32], tp[32], sd[32];
    snprintf(mt, sizeof mt, "%d", max_tokens);
    snprintf(t, sizeof t, "%g", temperature);
    snprintf(tp, sizeof tp, "%g", top_p);
    snprintf(sd, sizeof sd, "%llu", (unsigned long long)seed);
    const char *argv[32] = {"nosa-generate", "--model", node->model, "--backend", node->backend,
                            "--mode", "nosa", "--prompt", prompt, "--max-tokens", mt,
                            "--temperature", t, "--top-p", tp, "--seed", sd, "--json"};
    int n = 18;
    for (int i = 0; flags && flags[i] && n < 31; i++) argv[n++] = flags[i];
    argv[n] = NULL;
    char *text = NULL;
    int rc = nh_run(node, argv, 60000, &text);
    memset(out, 0, sizeof *out);
    out->recomputed = -1;
    out->exit_status = rc;
    if (text) parse_job_output(text, out);
    if (rc != 0) fprintf(stderr, "node_harness: nosa-generate failed (%d): %s\n", rc, text ? text : "");
    free(text);
    return rc == 0 ? 0 : -1;
}

int nh_log_wait(struct nh_node *node, const char *name, const char *text, unsigned timeout_ms)
{
    const struct nh_proc *p = nh_find_last(node, name);
    if (!p) {
        fprintf(stderr, "node_harness: no process '%s'\n", name);
        return -1;
    }
    uint64_t end = nh_now_ms() + timeout_ms;
    for (;;) {
        char *log = test_read_file(p->log);
        int found = log && strstr(log, text);
        free(log);
        if (found) return 0;
        if (nh_now_ms() >= end) break;
        nh_sleep_ms(20);
    }
    fprintf(stderr, "node_harness: '%s' not in %s after %u ms\n", text, p->log, timeout_ms);
    return -1;
}

void nh_dump_logs(struct nh_node *node, int lines)
{
    for (int i = 0; i < node->n_procs; i++) {
        char *text = test_read_file(node->procs[i].log);
        if (!text) continue;
        const char *start = text + strlen(text);
        for (int n = 0; start > text && n <= lines; start--)
            if (start[-1] == '\n') n++;
        fprintf(stderr, "---- %s (%s), last %d lines:\n%s\n", node->procs[i].name,
                node->procs[i].log, lines, start);
        free(text);
    }
}

void nh_forget_reaped(struct nh_node *node)
{
    int kept = 0;
    for (int i = 0; i < node->n_procs; i++)
        if (node->procs[i].pid > 0) node->procs[kept++] = node->procs[i];
    node->n_procs = kept;
}

int nh_leaks(struct nh_node *node)
{
    int leaks = 0;
    for (int i = 0; i < node->n_procs; i++) {
        if (node->procs[i].pid > 0 && kill(node->procs[i].pid, 0) == 0) {
            fprintf(stderr, "LEAK: process %s (pid %d) still runs\n", node->procs[i].name,
                    (int)node->procs[i].pid);
            leaks++;
        }
    }
    unlink_arenas(node);
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strstr(e->d_name, node->tag)) {
            fprintf(stderr, "LEAK: /dev/shm/%s\n", e->d_name);
            leaks++;
        }
    }
    if (d) closedir(d);
    return leaks;
}
