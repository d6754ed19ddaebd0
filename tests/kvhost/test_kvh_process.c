/* test_kvh_process.c: a real nosa-kvhost and client processes (kv-host/kvh_client.h):
 * two clients attach and map the arena; the first allocates and writes blocks, the second
 * reads the first's table and blocks through its own mapping, allocates and writes its own;
 * stats, free, stats. Then SIGTERM (exit 0, arena kept), --recover (same tables, same bytes,
 * next generation), --destroy. The start line (one, naming the arena and the endpoint), the
 * arena pre-faulted (resident in the kv-host), --numa-node's CPU affinity, tcp off loopback
 * only with --insecure. argv[1]: the nosa-kvhost binary. */
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvh_client.h"
#include "kvh_proc.h"
#include "test_util.h"

#define SEQS_PER_CLIENT 4
#define GROUPS_PER_SEQ 3

static struct kvh_proc g_kvh;

static uint8_t pattern(uint64_t seq, uint32_t block, uint32_t layer, uint32_t head, size_t i)
{
    return (uint8_t)(seq * 131 + block * 31 + layer * 7 + head * 3 + i);
}

static void write_blocks(const struct kvh_mapping *m, uint64_t seq, const uint32_t *groups,
                         uint32_t n)
{
    for (uint32_t b = 0; b < n; b++)
        for (uint32_t l = 0; l < m->geom.n_layers; l++)
            for (uint32_t h = 0; h < m->geom.n_kv_heads; h++) {
                uint8_t *p = kvh_mapping_block(m, groups[b], l, h);
                for (size_t i = 0; i < m->block_bytes; i++) p[i] = pattern(seq, b, l, h, i);
            }
}

static int blocks_match(const struct kvh_mapping *m, uint64_t seq, const uint32_t *groups,
                        uint32_t n)
{
    for (uint32_t b = 0; b < n; b++)
        for (uint32_t l = 0; l < m->geom.n_layers; l++)
            for (uint32_t h = 0; h < m->geom.n_kv_heads; h++) {
                const uint8_t *p = kvh_mapping_block(m, groups[b], l, h);
                for (size_t i = 0; i < m->block_bytes; i++)
                    if (p[i] != pattern(seq, b, l, h, i)) return 0;
            }
    return 1;
}

static void attach_and_map(struct kvh_client **c, struct kvh_attach_info *info,
                           struct kvh_mapping *m, const char *name)
{
    char err[512];
    struct kvh_client_options opts = {.timeout_ms = 3000, .client_name = name};
    REQUIRE(kvh_client_connect(g_kvh.endpoint, &opts, c, err, sizeof(err)) == 0, "%s", err);
    REQUIRE(kvh_client_attach(*c, NULL, info, err, sizeof(err)) == 0, "%s", err);
    REQUIRE(kvh_mapping_open(info, m, err, sizeof(err)) == 0, "%s", err);
    CHECK(kvh_client_attach(*c, &info->geom, info, err, sizeof(err)) == 0,
          "attach with the arena's own geometry: %s", err);
    struct nosa_kv_geometry wrong = info->geom;
    wrong.head_dim *= 2;
    struct kvh_attach_info dummy;
    CHECK(kvh_client_attach(*c, &wrong, &dummy, err, sizeof(err)) == -EPROTO,
          "attach with another geometry refused");
    CHECK(strstr(err, "head_dim") != NULL, "err names the field: %s", err);
}

/* Client process 1: allocates seqs 1..4 and writes their blocks. */
static int client_writer(void)
{
    struct kvh_client *c;
    struct kvh_attach_info info;
    struct kvh_mapping m;
    attach_and_map(&c, &info, &m, "writer");
    char err[512];
    struct kvh_seq_alloc reqs[SEQS_PER_CLIENT];
    for (int i = 0; i < SEQS_PER_CLIENT; i++) reqs[i] = (struct kvh_seq_alloc){1 + i, GROUPS_PER_SEQ};
    uint32_t first[SEQS_PER_CLIENT], groups[SEQS_PER_CLIENT * GROUPS_PER_SEQ];
    REQUIRE(kvh_client_alloc(c, reqs, SEQS_PER_CLIENT, first, groups, err, sizeof(err)) == 0,
            "%s", err);
    for (int i = 0; i < SEQS_PER_CLIENT; i++) {
        CHECK(first[i] == 0, "first index %u", first[i]);
        write_blocks(&m, reqs[i].seq_id, groups + i * GROUPS_PER_SEQ, GROUPS_PER_SEQ);
    }
    kvh_mapping_close(&m);
    kvh_client_close(c);
    return test_report("client writer");
}

/* Client process 2: reads client 1's blocks through its own mapping, then writes its own. */
static int client_reader(void)
{
    struct kvh_client *c;
    struct kvh_attach_info info;
    struct kvh_mapping m;
    attach_and_map(&c, &info, &m, "reader");
    char err[512];
    for (uint64_t seq = 1; seq <= SEQS_PER_CLIENT; seq++) {
        uint32_t groups[GROUPS_PER_SEQ + 1], n;
        CHECK(kvh_client_table(c, seq, groups, GROUPS_PER_SEQ + 1, &n, err, sizeof(err)) == 0,
              "%s", err);
        CHECK(n == GROUPS_PER_SEQ, "seq %lu has %u groups", (unsigned long)seq, n);
        CHECK(blocks_match(&m, seq, groups, n), "seq %lu blocks as the writer wrote them",
              (unsigned long)seq);
        uint32_t small[1];
        CHECK(kvh_client_table(c, seq, small, 1, &n, err, sizeof(err)) == -ENOBUFS && n == 3,
              "short buffer: -ENOBUFS with the length");
    }
    struct kvh_seq_alloc reqs[2] = {{100, 2}, {1, 1}};
    uint32_t first[2], groups[3];
    CHECK(kvh_client_alloc(c, reqs, 2, first, groups, err, sizeof(err)) == 0, "%s", err);
    CHECK(first[0] == 0 && first[1] == GROUPS_PER_SEQ, "first %u %u", first[0], first[1]);
    write_blocks(&m, 100, groups, 2);
    kvh_mapping_close(&m);
    kvh_client_close(c);
    return test_report("client reader");
}

/* Client process 3, after the kv-host's restart: every block still holds what was written. */
static int client_reader_after_recover(void)
{
    struct kvh_client *c;
    struct kvh_attach_info info;
    struct kvh_mapping m;
    attach_and_map(&c, &info, &m, "reader-after-recover");
    CHECK(info.generation == 2, "generation %lu", (unsigned long)info.generation);
    char err[512];
    const uint64_t seqs[] = {1, 2, 3, 4, 100};
    const uint32_t written[] = {GROUPS_PER_SEQ, GROUPS_PER_SEQ, GROUPS_PER_SEQ, GROUPS_PER_SEQ, 2};
    for (int i = 0; i < 5; i++) {
        uint32_t groups[8], n;
        CHECK(kvh_client_table(c, seqs[i], groups, 8, &n, err, sizeof(err)) == 0, "%s", err);
        CHECK(n >= written[i] && blocks_match(&m, seqs[i], groups, written[i]),
              "seq %lu survived the restart", (unsigned long)seqs[i]);
    }
    kvh_mapping_close(&m);
    kvh_client_close(c);
    return test_report("client reader after recover");
}

static void run_client(int (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) { /* its own counts (not the parent's so far), its report flushed */
        g_test_checks_failed = g_test_checks_passed = 0;
        int rc = fn();
        fflush(NULL);
        _exit(rc);
    }
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "client process status 0x%x", status);
}

static void check_stats(struct kvh_client *c, uint64_t want_seqs, uint64_t want_used,
                        uint64_t want_generation, const char *when)
{
    char err[512];
    struct kvh_stats st;
    REQUIRE(kvh_client_stats(c, &st, err, sizeof(err)) == 0, "%s: %s", when, err);
    CHECK(st.n_seqs == want_seqs, "%s: %lu seqs, want %lu", when, (unsigned long)st.n_seqs,
          (unsigned long)want_seqs);
    CHECK(st.n_groups - st.free_groups == want_used, "%s: %lu used, want %lu", when,
          (unsigned long)(st.n_groups - st.free_groups), (unsigned long)want_used);
    CHECK(st.generation == want_generation, "%s: generation %lu", when,
          (unsigned long)st.generation);
    CHECK(st.arena_bytes == 64u << 20 && st.numa_node == -1, "%s: arena %lu numa %d", when,
          (unsigned long)st.arena_bytes, st.numa_node);
}

/* The start line: once ready, the kv-host has written exactly one line (stdout and stderr
 * together), naming its arena's shm object and its endpoint. */
static void check_start_line(void)
{
    char *log = NULL;
    for (int waited = 0; waited < 2000; waited += 10) { /* printed just after the bind */
        free(log);
        log = test_read_file(g_kvh.log_path);
        if (log && strchr(log, '\n')) break;
        usleep(10000);
    }
    char shm[128], want_shm[160], want_ep[200];
    snprintf(shm, sizeof(shm), "/nosa-%u-%s", (unsigned)getuid(), g_kvh.name);
    snprintf(want_shm, sizeof(want_shm), "created arena %s,", shm);
    snprintf(want_ep, sizeof(want_ep), "; serving %s\n", g_kvh.endpoint);
    const char *nl = log ? strchr(log, '\n') : NULL;
    CHECK(nl && nl[1] == '\0', "the start is one line: %s", log ? log : "(no output)");
    CHECK(log && strstr(log, want_shm) && strstr(log, want_ep),
          "the start line names %s and %s: %s", shm, g_kvh.endpoint, log ? log : "");
    free(log);
}

/* Resident kB of the kv-host's mapping of its arena (/proc/PID/smaps), or -1. */
static long arena_rss_kb(pid_t pid)
{
    char path[64], shm[128], line[512];
    snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
    kvh_proc_shm_path(&g_kvh, shm, sizeof(shm));
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    int in_arena = 0;
    while (fgets(line, sizeof(line), f)) {
        if (strchr(line, '-') && strchr(line, ' ') && strchr(line, '-') < strchr(line, ' ')) {
            in_arena = strstr(line, shm) != NULL; /* a mapping's first line: "lo-hi perms ..." */
        } else if (in_arena && sscanf(line, "Rss: %ld kB", &kb) == 1) {
            break;
        }
    }
    fclose(f);
    return kb;
}

/* With --numa-node N the kv-host runs on node N's CPUs (those of them we may use). */
static void check_affinity(int node)
{
    cpu_set_t got, ours;
    CPU_ZERO(&got);
    CPU_ZERO(&ours);
    REQUIRE(sched_getaffinity(g_kvh.pid, sizeof(got), &got) == 0 &&
                sched_getaffinity(0, sizeof(ours), &ours) == 0,
            "sched_getaffinity: %s", strerror(errno));
    struct bitmask *cpus = numa_allocate_cpumask();
    REQUIRE(cpus && numa_node_to_cpus(node, cpus) == 0, "numa_node_to_cpus(%d)", node);
    int same = 1, n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        int want = CPU_ISSET(cpu, &ours) && cpu < (int)numa_num_possible_cpus() &&
                   numa_bitmask_isbitset(cpus, (unsigned)cpu);
        same &= want == !!CPU_ISSET(cpu, &got);
        n += want;
    }
    numa_free_cpumask(cpus);
    CHECK(same && n > 0, "--numa-node %d: the kv-host may run on %d CPUs, not node %d's %d",
          node, CPU_COUNT(&got), node, n);
}

/* --numa-node 0 (node 0 exists wherever the kernel has NUMA): the stats say so, the
 * arena's pages are on node 0 and the kv-host runs on node 0's CPUs (on a machine of one node
 * all of them). --huge-pages: served where shared-memory transparent huge pages are on,
 * refused (exit 1) where they are off. */
static void test_numa_and_huge_pages(void)
{
    char err[512];
    struct stat sst;
    if (numa_available() < 0 || stat("/sys/devices/system/node/node0", &sst) != 0) {
        printf("test_kvh_process: --numa-node not checked: this kernel has no NUMA\n");
    } else {
        const char *args[] = {"--arena", "64M", "--numa-node", "0", "--remove", NULL};
        REQUIRE(kvh_proc_start(&g_kvh, args, NULL, 1, NULL) == 0, "kv-host --numa-node 0");
        struct kvh_client *c;
        REQUIRE(kvh_client_connect(g_kvh.endpoint, NULL, &c, err, sizeof(err)) == 0, "%s", err);
        struct kvh_stats st;
        CHECK(kvh_client_stats(c, &st, err, sizeof(err)) == 0 && st.numa_node == 0,
              "--numa-node 0: stats say node %d (%s)", st.numa_node, err);
        kvh_client_close(c);
        check_affinity(0);
        char shm[128];
        kvh_proc_shm_path(&g_kvh, shm, sizeof(shm));
        int fd = open(shm, O_RDONLY);
        void *base = fd >= 0 ? mmap(NULL, 64u << 20, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
        if (fd >= 0) close(fd);
        REQUIRE(base != MAP_FAILED, "map %s", shm);
        void *pages[2] = {base, (char *)base + (32u << 20)};
        int where[2] = {-1, -1};
        volatile char touch = *(volatile char *)pages[0] + *(volatile char *)pages[1];
        (void)touch;
        CHECK(numa_move_pages(0, 2, pages, NULL, where, 0) == 0 && where[0] == 0 && where[1] == 0,
              "--numa-node 0: arena pages on nodes %d and %d", where[0], where[1]);
        munmap(base, 64u << 20);
        int status = kvh_proc_stop(&g_kvh, SIGTERM);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "--numa-node 0: SIGTERM exit 0");
    }
    char mode[128] = "";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/shmem_enabled", "r");
    if (f) {
        if (!fgets(mode, sizeof(mode), f)) mode[0] = '\0';
        fclose(f);
    }
    int thp_on = strstr(mode, "[advise]") || strstr(mode, "[always]") ||
                 strstr(mode, "[within_size]") || strstr(mode, "[force]");
    const char *huge[] = {"--arena", "64M", "--huge-pages", "--remove", NULL};
    int status = 0;
    int rc = kvh_proc_start(&g_kvh, huge, NULL, 1, &status);
    if (thp_on) {
        CHECK(rc == 0, "--huge-pages refused though shmem THP is on (%s)", mode);
        if (rc == 0) kvh_proc_stop(&g_kvh, SIGTERM);
    } else {
        CHECK(rc == -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1,
              "--huge-pages with shmem THP off (%s): want exit 1, got 0x%x", mode, status);
    }
}

/* tcp off loopback without CURVE keys: refused (exit 1) naming --insecure, leaving no arena
 * behind; served with --insecure (docs/SECURITY.md). */
static void test_tcp_insecure(void)
{
    char tcp[64], local[64], want[160], shm[128], err[512];
    int port = 30000 + (int)(getpid() % 20000);
    snprintf(tcp, sizeof(tcp), "tcp://0.0.0.0:%d", port);
    snprintf(local, sizeof(local), "tcp://127.0.0.1:%d", port);
    kvh_proc_shm_path(&g_kvh, shm, sizeof(shm));
    const char *plain[] = {"--arena", "64M", "--endpoint", tcp, "--remove", NULL};
    g_kvh.capture = 1;
    REQUIRE(kvh_proc_start(&g_kvh, plain, NULL, 0, NULL) == 0, "spawn");
    int status = kvh_proc_stop(&g_kvh, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1, "%s without keys: exit 1, got 0x%x",
          tcp, status);
    snprintf(want, sizeof(want), "refusing to bind %s without CURVE keys: not a loopback address",
             tcp);
    char *log = test_read_file(g_kvh.log_path);
    CHECK(log && strstr(log, want) && strstr(log, "--insecure"), "no clear error (%s): %s", want,
          log ? log : "");
    free(log);
    struct stat sst;
    CHECK(stat(shm, &sst) != 0, "the refused kv-host left its new arena %s", shm);
    const char *insecure[] = {"--arena", "64M", "--endpoint", tcp, "--insecure", "--remove", NULL};
    REQUIRE(kvh_proc_start(&g_kvh, insecure, NULL, 0, NULL) == 0, "spawn");
    g_kvh.capture = 0;
    struct kvh_client_options quick = {.timeout_ms = 100};
    struct kvh_client *c;
    REQUIRE(kvh_client_connect(local, &quick, &c, err, sizeof(err)) == 0, "%s", err);
    struct kvh_stats st;
    int rc = -1;
    for (int i = 0; i < 50 && rc; i++) rc = kvh_client_stats(c, &st, err, sizeof(err));
    CHECK(rc == 0, "%s --insecure: stats over %s: %s", tcp, local, err);
    kvh_client_close(c);
    status = kvh_proc_stop(&g_kvh, SIGTERM);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "--insecure: SIGTERM exit 0");
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2, "usage: test_kvh_process NOSA_KVHOST");
    kvh_proc_setup(&g_kvh, argv[1]);
    const char *args[] = {"--arena", "64M", NULL};
    g_kvh.capture = 1;
    REQUIRE(kvh_proc_start(&g_kvh, args, NULL, 1, NULL) == 0, "kv-host did not start");
    g_kvh.capture = 0;
    check_start_line();
    long rss = arena_rss_kb(g_kvh.pid);
    CHECK(rss == (64 << 20) / 1024, "pre-faulted: %ld kB of the 64 MiB arena resident in the "
          "kv-host", rss);
    char shm[128];
    kvh_proc_shm_path(&g_kvh, shm, sizeof(shm));
    struct stat sst;
    CHECK(stat(shm, &sst) == 0 && (sst.st_mode & 0777) == 0600, "arena %s mode 0600", shm);
    CHECK(stat(g_kvh.sock_path, &sst) == 0 && (sst.st_mode & 0777) == 0600, "socket mode 0600");

    run_client(client_writer);
    run_client(client_reader);

    struct kvh_client *c;
    char err[512];
    REQUIRE(kvh_client_connect(g_kvh.endpoint, NULL, &c, err, sizeof(err)) == 0, "%s", err);
    uint64_t used = SEQS_PER_CLIENT * GROUPS_PER_SEQ + 3;
    check_stats(c, SEQS_PER_CLIENT + 1, used, 1, "after the clients");

    /* Graceful stop keeps the arena; --recover serves the same tables and bytes. */
    int status = kvh_proc_stop(&g_kvh, SIGTERM);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "SIGTERM: exit 0 (0x%x)", status);
    CHECK(stat(shm, &sst) == 0, "arena kept after SIGTERM");
    const char *no_recover[] = {"--arena", "64M", NULL};
    CHECK(kvh_proc_start(&g_kvh, no_recover, NULL, 1, &status) == -1 && WIFEXITED(status) &&
              WEXITSTATUS(status) == 1, "a new kv-host refuses to overwrite the arena");
    const char *recover[] = {"--recover", NULL};
    REQUIRE(kvh_proc_start(&g_kvh, recover, NULL, 1, NULL) == 0, "recover did not start");
    check_stats(c, SEQS_PER_CLIENT + 1, used, 2, "after --recover");
    run_client(client_reader_after_recover);
    uint64_t ids[SEQS_PER_CLIENT + 1] = {1, 2, 3, 4, 100}, freed = 0;
    CHECK(kvh_client_free(c, ids, SEQS_PER_CLIENT + 1, &freed, err, sizeof(err)) == 0, "%s", err);
    CHECK(freed == used, "freed %lu", (unsigned long)freed);
    check_stats(c, 0, 0, 2, "after free");

    const char *destroy[] = {"--destroy", g_kvh.name, NULL};
    status = kvh_proc_run(&g_kvh, destroy);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 1, "--destroy refuses a running arena");
    status = kvh_proc_stop(&g_kvh, SIGTERM);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "SIGTERM: exit 0");
    status = kvh_proc_run(&g_kvh, destroy);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "--destroy");
    CHECK(stat(shm, &sst) != 0, "arena removed");
    kvh_client_close(c);

    /* tcp on loopback, and --remove: the arena goes with a clean stop. */
    char tcp[64];
    snprintf(tcp, sizeof(tcp), "tcp://127.0.0.1:%d", 20000 + (int)(getpid() % 20000));
    const char *tcp_args[] = {"--arena", "64M", "--endpoint", tcp, "--remove", NULL};
    REQUIRE(kvh_proc_start(&g_kvh, tcp_args, NULL, 0, NULL) == 0, "tcp kv-host");
    struct kvh_client_options quick = {.timeout_ms = 100};
    REQUIRE(kvh_client_connect(tcp, &quick, &c, err, sizeof(err)) == 0, "%s", err);
    struct kvh_stats st;
    int rc = -1;
    for (int i = 0; i < 50 && rc; i++) rc = kvh_client_stats(c, &st, err, sizeof(err));
    CHECK(rc == 0 && st.generation == 1, "stats over tcp: %s", err);
    kvh_client_close(c);
    status = kvh_proc_stop(&g_kvh, SIGTERM);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "SIGTERM: exit 0");
    CHECK(stat(shm, &sst) != 0, "--remove: arena removed at exit");
    test_numa_and_huge_pages();
    test_tcp_insecure();
    return test_report("test_kvh_process");
}
