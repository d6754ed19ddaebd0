/* test_kvh_bad_input.c: nosa-kvhost answers what it cannot serve with an Error naming the
 * problem and keeps serving: garbage bytes, a wrong protocol version, no body, an oversized
 * frame (ERROR_TOO_LARGE; one past the frame limit is dropped unbuffered), too many sequences, unknown sequence ids, out of space; and --recover refuses a
 * truncated or corrupted arena with one line naming it. argv[1]: the nosa-kvhost binary. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "common.pb-c.h"
#include "kvh_client.h"
#include "kvh_proc.h"
#include "kvh_raw.h"
#include "kvh_server.h"
#include "kvhost.pb-c.h"
#include "nosa_msg.h"
#include "test_util.h"

static struct kvh_proc g_kvh;

static void expect_error(Nosa__Kvh__KvhReply *rep, Nosa__ErrorCode code, const char *needle,
                         const char *what)
{
    char why[512] = "";
    CHECK(kvh_raw_error_is(rep, code, needle, why, sizeof why) == 0, "%s: %s", what, why);
}

static void test_protocol_errors(void *sock)
{
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34, 0x00};
    expect_error(kvh_raw_call(sock, garbage, sizeof(garbage)), NOSA__ERROR_CODE__ERROR_BAD_MESSAGE,
                 "undecodable", "garbage bytes");

    Nosa__Kvh__KvhRequest req = NOSA__KVH__KVH_REQUEST__INIT;
    Nosa__Kvh__StatsRequest stats = NOSA__KVH__STATS_REQUEST__INIT;
    req.version = 7;
    req.request_id = 42;
    req.body_case = NOSA__KVH__KVH_REQUEST__BODY_STATS;
    req.stats = &stats;
    Nosa__Kvh__KvhReply *rep = kvh_raw_msg_call(sock, &req);
    CHECK(rep && rep->request_id == 42, "request id echoed");
    expect_error(rep, NOSA__ERROR_CODE__ERROR_BAD_VERSION, "version 7", "wrong version");

    req.version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    req.body_case = NOSA__KVH__KVH_REQUEST__BODY__NOT_SET;
    expect_error(kvh_raw_msg_call(sock, &req), NOSA__ERROR_CODE__ERROR_BAD_MESSAGE, "no body",
                 "missing body");

    /* Over the request limit, up to the frame limit: ERROR_TOO_LARGE naming the limit. */
    uint8_t *huge = calloc(1, KVH_MAX_FRAME_BYTES + 1);
    REQUIRE(huge, "calloc");
    expect_error(kvh_raw_call(sock, huge, KVH_MAX_REQUEST_BYTES + 1),
                 NOSA__ERROR_CODE__ERROR_TOO_LARGE, "exceeds the limit of 1048576",
                 "a frame one byte over the request limit");
    expect_error(kvh_raw_call(sock, huge, KVH_MAX_FRAME_BYTES), NOSA__ERROR_CODE__ERROR_TOO_LARGE,
                 "exceeds", "a frame at the frame limit");
    free(huge);

    /* A frame split in two parts is malformed: the reply names it. */
    REQUIRE(zmq_send(sock, "a", 1, ZMQ_SNDMORE) == 1, "send part");
    expect_error(kvh_raw_call(sock, "b", 1), NOSA__ERROR_CODE__ERROR_BAD_MESSAGE, "frame",
                 "two-part message");
}

/* A frame over KVH_MAX_FRAME_BYTES is not even buffered: ZeroMQ drops the connection (no
 * reply); the kv-host serves the same socket's next request over a new connection. */
static void test_gigantic_frame(void)
{
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    char err[512];
    REQUIRE(ctx && sock && nosa_msg_socket_defaults(sock, 1000, err, sizeof(err)) == 0 &&
                zmq_connect(sock, g_kvh.endpoint) == 0, "socket: %s", err);
    size_t len = 17u << 20; /* past NOSA_MSG_MAX_BYTES too */
    uint8_t *gigantic = calloc(1, len);
    REQUIRE(gigantic, "calloc");
    Nosa__Kvh__KvhReply *rep = kvh_raw_call(sock, gigantic, len);
    free(gigantic);
    CHECK(rep == NULL, "a %zu-byte frame got a reply", len);
    if (rep) nosa__kvh__kvh_reply__free_unpacked(rep, NULL);
    Nosa__Kvh__KvhRequest req = NOSA__KVH__KVH_REQUEST__INIT;
    Nosa__Kvh__StatsRequest stats = NOSA__KVH__STATS_REQUEST__INIT;
    req.version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    req.request_id = 7;
    req.body_case = NOSA__KVH__KVH_REQUEST__BODY_STATS;
    req.stats = &stats;
    rep = kvh_raw_msg_call(sock, &req);
    CHECK(rep && !rep->error && rep->body_case == NOSA__KVH__KVH_REPLY__BODY_STATS &&
              rep->request_id == 7, "stats on the same socket after the dropped frame");
    if (rep) nosa__kvh__kvh_reply__free_unpacked(rep, NULL);
    zmq_close(sock);
    zmq_ctx_term(ctx);
}

static void test_request_errors(struct kvh_client *c)
{
    char err[512];
    uint64_t freed, unknown[2] = {1, 999};
    struct kvh_seq_alloc one = {1, 2};
    uint32_t first[4], groups[8];
    REQUIRE(kvh_client_alloc(c, &one, 1, first, groups, err, sizeof(err)) == 0, "%s", err);
    CHECK(kvh_client_free(c, unknown, 2, &freed, err, sizeof(err)) == -ENOENT, "unknown free");
    CHECK(strstr(err, "999") != NULL, "err names the id: %s", err);
    uint32_t n;
    CHECK(kvh_client_table(c, 999, groups, 8, &n, err, sizeof(err)) == -ENOENT, "unknown table");
    CHECK(kvh_client_table(c, 1, groups, 8, &n, err, sizeof(err)) == 0 && n == 2,
          "seq 1 untouched by the refused free");

    struct kvh_stats st;
    REQUIRE(kvh_client_stats(c, &st, err, sizeof(err)) == 0, "%s", err);
    struct kvh_seq_alloc too_many[2] = {{2, 1}, {3, (uint32_t)st.free_groups}};
    CHECK(kvh_client_alloc(c, too_many, 2, first, groups, err, sizeof(err)) == -ENOSPC,
          "no space");
    CHECK(strstr(err, "out of space") != NULL, "err: %s", err);
    struct kvh_stats after;
    REQUIRE(kvh_client_stats(c, &after, err, sizeof(err)) == 0, "%s", err);
    CHECK(after.free_groups == st.free_groups && after.n_seqs == 1, "nothing allocated");

    struct kvh_seq_alloc dup[2] = {{5, 1}, {5, 1}};
    CHECK(kvh_client_alloc(c, dup, 2, first, groups, err, sizeof(err)) == -EPROTO, "dup ids");

    enum { N = KVH_MAX_SEQS_PER_REQUEST + 1 };
    static struct kvh_seq_alloc many[N];
    static uint64_t many_ids[N];
    static uint32_t many_first[N];
    for (int i = 0; i < N; i++) {
        many[i] = (struct kvh_seq_alloc){(uint64_t)i + 10, 0};
        many_ids[i] = (uint64_t)i + 10;
    }
    CHECK(kvh_client_alloc(c, many, N, many_first, groups, err, sizeof(err)) == -E2BIG,
          "too many sequences in an alloc");
    CHECK(kvh_client_free(c, many_ids, N, &freed, err, sizeof(err)) == -E2BIG,
          "too many sequences in a free");
}

/* --recover on a damaged arena: exit 1 and one error line naming the arena. */
static void test_refused_recovery(void)
{
    char shm[128];
    kvh_proc_shm_path(&g_kvh, shm, sizeof(shm));
    const char *recover_args[] = {"--recover", NULL};
    struct {
        const char *what;
        off_t offset;     /* byte to flip, or -1 */
        off_t truncate_to; /* or -1 */
    } cases[] = {
        {"magic", 0, -1}, {"geometry", 20, -1}, {"offsets", 63, -1}, {"truncated", -1, 1 << 20},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int fd = open(shm, O_RDWR);
        REQUIRE(fd >= 0, "open %s", shm);
        uint8_t b = 0;
        if (cases[i].offset >= 0) {
            REQUIRE(pread(fd, &b, 1, cases[i].offset) == 1, "pread");
            b ^= 0x10;
            REQUIRE(pwrite(fd, &b, 1, cases[i].offset) == 1, "pwrite");
        } else {
            REQUIRE(ftruncate(fd, cases[i].truncate_to) == 0, "ftruncate");
        }
        int status = 0;
        CHECK(kvh_proc_start(&g_kvh, recover_args, NULL, 1, &status) == -1 &&
                  WIFEXITED(status) && WEXITSTATUS(status) == 1,
              "%s: --recover refused (status 0x%x)", cases[i].what, status);
        if (cases[i].offset >= 0) {
            b ^= 0x10;
            REQUIRE(pwrite(fd, &b, 1, cases[i].offset) == 1, "pwrite");
        }
        close(fd);
    }
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2, "usage: test_kvh_bad_input NOSA_KVHOST");
    kvh_proc_setup(&g_kvh, argv[1]);
    const char *args[] = {"--arena", "64M", NULL};
    REQUIRE(kvh_proc_start(&g_kvh, args, NULL, 1, NULL) == 0, "kv-host did not start");

    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    char err[512];
    REQUIRE(nosa_msg_socket_defaults(sock, 3000, err, sizeof(err)) == 0, "%s", err);
    REQUIRE(zmq_connect(sock, g_kvh.endpoint) == 0, "connect");
    test_protocol_errors(sock);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    test_gigantic_frame();

    struct kvh_client *c;
    REQUIRE(kvh_client_connect(g_kvh.endpoint, NULL, &c, err, sizeof(err)) == 0, "%s", err);
    test_request_errors(c);
    struct kvh_stats st;
    CHECK(kvh_client_stats(c, &st, err, sizeof(err)) == 0, "still serving: %s", err);
    CHECK(st.errors >= 10 && st.requests > st.errors, "counted %lu errors of %lu requests",
          (unsigned long)st.errors, (unsigned long)st.requests);

    /* With the kv-host gone, a request times out with a clear error. */
    int status = kvh_proc_stop(&g_kvh, SIGTERM);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "SIGTERM exit 0");
    kvh_client_close(c);
    struct kvh_client_options quick = {.timeout_ms = 200};
    REQUIRE(kvh_client_connect(g_kvh.endpoint, &quick, &c, err, sizeof(err)) == 0, "%s", err);
    CHECK(kvh_client_stats(c, &st, err, sizeof(err)) == -ETIMEDOUT, "no kv-host: timeout");
    CHECK(strstr(err, "did not answer stats in 200 ms") != NULL, "err: %s", err);
    kvh_client_close(c);

    test_refused_recovery();
    return test_report("test_kvh_bad_input");
}
