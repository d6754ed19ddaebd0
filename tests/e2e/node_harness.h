/* node_harness.h: runs a nosa-serve node as real processes for the integration and fault
 * tests (tests/e2e, tests/fault): a private run directory, unique kv-host names (so the
 * /dev/shm arena is unique), every child a process of ours (killed with us: PDEATHSIG), logs
 * per process, the `nosa` CLI run with --json and its output parsed (cJSON).
 *
 * This module owns every process it starts and the run directory: nh_node_free() (also
 * registered with atexit and run from SIGALRM/SIGINT/SIGTERM) kills what still runs, reaps
 * it, unlinks the arenas and removes the run directory, so no exit path leaks a process or a
 * /dev/shm object. The flags it passes are those of docs/PROCESSES.md. */
#ifndef NOSA_NODE_HARNESS_H
#define NOSA_NODE_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NH_MAX_PROCS 160
#define NH_PATH 512
#define NH_DIR 256 /* the run directory's path: the rest is built from it */
#define NH_NAME 64
#define NH_MAX_TOKENS 4096
#define NH_MAX_EXTRA_KVHOSTS 4

struct nh_proc {
    char name[NH_NAME]; /* "kvh", "coordinator", "cpu0", "job3", "gen" */
    pid_t pid;          /* 0 once reaped */
    int status;         /* wait status once reaped */
    char log[NH_PATH];  /* stdout + stderr */
};

struct nh_node {
    char bin_dir[NH_DIR];
    char run_dir[NH_DIR];
    char model[NH_PATH];
    char tag[NH_NAME];          /* unique: "<test>-<pid>"; kv-host name is "kvh-<tag>" */
    char kvhost_name[NH_NAME + 8];
    char extra_kvhosts[NH_MAX_EXTRA_KVHOSTS][NH_NAME + 24]; /* names (nh_start_kvhost_extra) */
    int n_extra_kvhosts;
    char kvhost_ep[NH_PATH], workers_ep[NH_PATH], clients_ep[NH_PATH], journal[NH_PATH];
    uint32_t block_size;        /* from the model's config.json */
    int heartbeat_timeout_ms;   /* passed to the coordinator (short, so a hang is seen fast) */
    int metrics_port;           /* the coordinator's --metrics-port (0: off, the default) */
    char backend[8];            /* workers' and nosa-generate's --backend: "cpu" (default,
                                 * or $NOSA_TEST_BACKEND) or "cuda" (GPU 0) */
    struct nh_proc procs[NH_MAX_PROCS];
    int n_procs;
    unsigned n_spawned;         /* every start so far: numbers the logs */
    int keep;                   /* NOSA_TEST_KEEP=1: leave the run directory for a look */
};

/* The result of one `nosa --json submit`, or of one nosa-generate. */
struct nh_job {
    int done;                   /* the final line was seen */
    uint64_t job_id;
    char reason[32];            /* "length", "eos", "cancelled", "error", ... */
    char error[256];            /* non-empty when the job failed */
    int32_t tokens[NH_MAX_TOKENS];
    int n_tokens;
    long recomputed;            /* recomputed_tokens, -1 when absent */
    int exit_status;            /* the CLI's exit code, -1 when killed */
};

/* Sets up node (static storage: the atexit cleanup uses it after main returns): bin_dir from argv (or $NOSA_BIN), a private run dir under $TMPDIR or /tmp,
 * endpoints, a tiny model generated there with nosa-mkmodel (model_config: "tiny" or a
 * file). Arms the cleanup and an overall deadline of deadline_s seconds. Returns 0, 77
 * (a binary is not built: the caller exits 77 with the message printed) or -1. */
int nh_node_init(struct nh_node *node, const char *test_name, const char *bin_dir,
                 const char *model_config, unsigned deadline_s);
/* The same, skipping only when one of needed (NULL-terminated binary names; NULL = the six
 * of a whole node: kv-host, worker, coordinator, nosa, nosa-generate, nosa-mkmodel) is
 * missing. nosa-mkmodel is always needed (the model). */
int nh_node_init_needing(struct nh_node *node, const char *test_name, const char *bin_dir,
                         const char *model_config, unsigned deadline_s,
                         const char *const *needed);
void nh_node_free(struct nh_node *node);

/* Starts a process: argv[0] is a binary name looked up in bin_dir; env_extra is a
 * NULL-terminated list of "K=V" added to the environment (fault arming), or NULL. Returns
 * the proc index or -1. fsize_limit > 0 sets RLIMIT_FSIZE (bytes) in the child. */
int nh_spawn(struct nh_node *node, const char *name, char *const env_extra[], long fsize_limit,
             const char *const argv[]);

/* The node's processes, with the contract's flags; each waits until the process is ready
 * (socket present; workers: listed by `nosa status`) or returns -1 pointing at its log. */
int nh_start_kvhost(struct nh_node *node, int recover, char *const env_extra[]);
/* Another kv-host of the node (as one per NUMA node): process "kvh-<suffix>", kv-host name
 * "<kvhost_name>-<suffix>", endpoint ipc://<run dir>/kvh-<suffix>.sock (into endpoint), an
 * arena of arena_size bytes (nosa-kvhost --arena), unlinked by the cleanup as the first's. */
int nh_start_kvhost_extra(struct nh_node *node, const char *suffix, const char *arena_size,
                          char *endpoint, size_t endpoint_len);
int nh_start_coordinator(struct nh_node *node, char *const env_extra[], long fsize_limit);
int nh_start_worker(struct nh_node *node, const char *name, char *const env_extra[]);
/* Waits until `nosa --json status` lists n live workers. */
int nh_wait_workers(struct nh_node *node, int n, unsigned timeout_ms);
/* Waits until the process at proc index has bound the ipc endpoint (its socket file exists);
 * 0, or -1 (it exited, or timeout_ms passed) with a line naming its log. */
int nh_wait_socket(struct nh_node *node, int idx, const char *endpoint, unsigned timeout_ms);

struct nh_proc *nh_find(struct nh_node *node, const char *name); /* the running one */
/* The last process started under name, running or reaped (its wait status), or NULL. */
struct nh_proc *nh_find_last(struct nh_node *node, const char *name);
int nh_signal(struct nh_node *node, const char *name, int sig);
/* Reaps name if it exited within timeout_ms: 1 exited, 0 still runs, -1 error. */
int nh_wait_exit(struct nh_node *node, const char *name, unsigned timeout_ms);
/* SIGTERM every process still running (clients, workers, coordinator, kv-host), then
 * SIGKILL after timeout_ms; reaps all. Returns how many needed SIGKILL. */
int nh_stop_all(struct nh_node *node, unsigned timeout_ms);

/* Submits a job with the CLI in the background: returns the proc index of the CLI. */
int nh_submit(struct nh_node *node, const char *name, const char *prompt, int max_tokens,
              double temperature, double top_p, uint64_t seed);
/* Reads what the CLI at proc index wrote so far (job may be not done yet). */
int nh_job_read(struct nh_node *node, int proc, struct nh_job *job);
/* Waits for the CLI at proc index to exit (timeout_ms), then reads its result. */
int nh_job_wait(struct nh_node *node, int proc, unsigned timeout_ms, struct nh_job *job);
/* The reference: nosa-generate over the same model, prompt, sampling and backend. */
int nh_generate(struct nh_node *node, const char *prompt, int max_tokens, double temperature,
                double top_p, uint64_t seed, struct nh_job *out);
/* The same with flags (NULL-terminated, or NULL) after --mode nosa: a later --mode wins. */
int nh_generate_flags(struct nh_node *node, const char *const *flags, const char *prompt,
                      int max_tokens, double temperature, double top_p, uint64_t seed,
                      struct nh_job *out);

/* Runs a binary of bin_dir to completion (timeout_ms), stdout+stderr into *out (malloc'd,
 * NUL-terminated). Returns its exit code, or -1. */
int nh_run(struct nh_node *node, const char *const argv[], unsigned timeout_ms, char **out);

/* Drops reaped processes from the table (between rounds of a soak; indices change). */
void nh_forget_reaped(struct nh_node *node);
/* Waits until the log of the last process started under name holds text: 0, or -1 after
 * timeout_ms (with a line naming the log). */
int nh_log_wait(struct nh_node *node, const char *name, const char *text, unsigned timeout_ms);
/* Prints the last lines of every log (on a failure). */
void nh_dump_logs(struct nh_node *node, int lines);
/* Names of /dev/shm entries that carry the node's tag, and processes of ours still alive:
 * the leak check. Returns how many leaks it printed. */
int nh_leaks(struct nh_node *node);
/* The arena's /dev/shm path. */
void nh_arena_path(const struct nh_node *node, char *out, size_t len);
/* Monotonic milliseconds. */
uint64_t nh_now_ms(void);
void nh_sleep_ms(unsigned ms);

#endif
