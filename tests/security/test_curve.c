/* test_curve.c: tcp security of common/nosa_msg (docs/SECURITY.md). A CURVE server on
 * loopback serves a client holding the authorized keys and hears nothing from a client with
 * no keys, with an unauthorized keypair, or with the wrong server key. Without keys, tcp is
 * refused off loopback unless insecure. Bad key files are refused at load. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "nosa_msg.h"
#include "rundir.h"
#include "test_util.h"

#define GOOD_WAIT_MS 3000
#define BAD_WAIT_MS 600

static char g_base[64];

static void make_run_dir(char *out, size_t cap, const char *name, int with_keys)
{
    char err[512];
    REQUIRE(snprintf(out, cap, "%s/%s", g_base, name) < (int)cap, "path");
    REQUIRE(nosa_rundir_prepare(out, err, sizeof(err)) == 0, "%s", err);
    if (with_keys) REQUIRE(nosa_msg_keys_generate(out, err, sizeof(err)) == 0, "%s", err);
}

static void write_text(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/curve/%s", dir, name);
    unlink(path);
    FILE *fp = fopen(path, "w");
    REQUIRE(fp && fputs(text, fp) >= 0 && fclose(fp) == 0, "write %s", path);
    REQUIRE(chmod(path, mode) == 0, "chmod %s", path);
}

static void copy_key(const char *from_dir, const char *to_dir, const char *name)
{
    char path[512], key[64] = "";
    snprintf(path, sizeof(path), "%s/curve/%s", from_dir, name);
    FILE *fp = fopen(path, "r");
    REQUIRE(fp && fgets(key, sizeof(key), fp) && fclose(fp) == 0, "read %s", path);
    write_text(to_dir, name, key, 0644);
}

/* A DEALER on its own context connecting with the keys of run_dir (NULL: none) sends
 * "hello"; returns 1 if the server received it within wait_ms (and the reply came back). */
static int client_reaches_server(void *server, const char *endpoint, const char *run_dir,
                                 int wait_ms)
{
    char err[512];
    void *ctx = zmq_ctx_new();
    struct nosa_msg_security *sec = NULL;
    REQUIRE(nosa_msg_security_init(ctx, run_dir, 0, &sec, err, sizeof(err)) == 0, "%s", err);
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    REQUIRE(nosa_msg_socket_defaults(sock, GOOD_WAIT_MS, err, sizeof(err)) == 0, "%s", err);
    REQUIRE(nosa_msg_connect_secure(sec, sock, endpoint, err, sizeof(err)) == 0, "%s", err);
    REQUIRE(zmq_send(sock, "hello", 5, 0) == 5, "send");
    REQUIRE(nosa_msg_socket_defaults(server, wait_ms, err, sizeof(err)) == 0, "%s", err);
    struct nosa_msg_peer peer;
    struct nosa_msg_frame frame;
    int reached = nosa_msg_recv(server, &peer, &frame, 64, 0, err, sizeof(err)) == NOSA_MSG_OK;
    if (reached) {
        CHECK(frame.len == 5 && memcmp(frame.data, "hello", 5) == 0, "payload");
        nosa_msg_frame_free(&frame);
        char reply[8];
        REQUIRE(zmq_send(server, peer.id, peer.len, ZMQ_SNDMORE) >= 0 &&
                    zmq_send(server, "ok", 2, 0) == 2, "reply");
        CHECK(zmq_recv(sock, reply, sizeof(reply), 0) == 2, "the client gets the reply");
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    nosa_msg_security_free(sec);
    return reached;
}

static void test_curve_server(void)
{
    char server_dir[256], stranger_dir[256], impostor_dir[256], endpoint[256], err[512];
    make_run_dir(server_dir, sizeof(server_dir), "server", 1);
    /* An unauthorized client keypair that knows the real server's public key. */
    make_run_dir(stranger_dir, sizeof(stranger_dir), "stranger", 1);
    copy_key(server_dir, stranger_dir, "server.public");
    /* Authorized client keys, but another server key (a man in the middle's, say). */
    make_run_dir(impostor_dir, sizeof(impostor_dir), "impostor", 1);
    copy_key(server_dir, impostor_dir, "client.public");
    char other_secret[512];
    snprintf(other_secret, sizeof(other_secret), "%s/curve/client.secret", impostor_dir);
    unlink(other_secret);
    copy_key(server_dir, impostor_dir, "client.secret");
    REQUIRE(chmod(other_secret, 0600) == 0, "chmod");

    void *ctx = zmq_ctx_new();
    struct nosa_msg_security *sec = NULL;
    REQUIRE(nosa_msg_security_init(ctx, server_dir, 0, &sec, err, sizeof(err)) == 0, "%s", err);
    CHECK(nosa_msg_security_has_server_keys(sec) && nosa_msg_security_has_client_keys(sec),
          "generated keys load");
    void *server = zmq_socket(ctx, ZMQ_ROUTER);
    REQUIRE(nosa_msg_bind_secure(sec, server, "tcp://127.0.0.1:*", err, sizeof(err)) == 0,
            "%s", err);
    size_t len = sizeof(endpoint);
    REQUIRE(zmq_getsockopt(server, ZMQ_LAST_ENDPOINT, endpoint, &len) == 0, "endpoint");
    int mech = 0;
    len = sizeof(mech);
    CHECK(zmq_getsockopt(server, ZMQ_MECHANISM, &mech, &len) == 0 && mech == ZMQ_CURVE,
          "the server socket uses CURVE");

    CHECK(client_reaches_server(server, endpoint, server_dir, GOOD_WAIT_MS),
          "a client with the authorized keys is served");
    CHECK(!client_reaches_server(server, endpoint, NULL, BAD_WAIT_MS),
          "a client without keys is refused");
    CHECK(!client_reaches_server(server, endpoint, stranger_dir, BAD_WAIT_MS),
          "a client with an unauthorized keypair is refused");
    CHECK(!client_reaches_server(server, endpoint, impostor_dir, BAD_WAIT_MS),
          "a client expecting another server key does not talk to this one");
    CHECK(client_reaches_server(server, endpoint, server_dir, GOOD_WAIT_MS),
          "the server still serves good clients after refusing bad ones");
    zmq_close(server);
    zmq_ctx_term(ctx); /* before freeing sec: the handler must let the context end */
    nosa_msg_security_free(sec);
}

static void test_policy_without_keys(void)
{
    char err[512];
    void *ctx = zmq_ctx_new();
    struct nosa_msg_security *insecure = NULL;
    REQUIRE(nosa_msg_security_init(ctx, NULL, 1, &insecure, err, sizeof(err)) == 0, "%s", err);
    void *s1 = zmq_socket(ctx, ZMQ_ROUTER), *s2 = zmq_socket(ctx, ZMQ_ROUTER);
    void *s3 = zmq_socket(ctx, ZMQ_DEALER);
    int on = 1;
    REQUIRE(zmq_setsockopt(s3, ZMQ_IPV6, &on, sizeof(on)) == 0, "ipv6");
    err[0] = '\0';
    CHECK(nosa_msg_bind_secure(NULL, s1, "tcp://0.0.0.0:*", err, sizeof(err)) == -EPERM &&
              strstr(err, "--insecure"), "wildcard bind without keys refused: %s", err);
    CHECK(nosa_msg_bind_secure(NULL, s1, "tcp://*:*", err, sizeof(err)) == -EPERM,
          "'*' bind without keys refused");
    CHECK(nosa_msg_connect_secure(NULL, s3, "tcp://192.0.2.1:5555", err, sizeof(err)) == -EPERM,
          "connect to a remote address without keys refused");
    CHECK(nosa_msg_connect_secure(NULL, s3, "tcp://127.0.0.1:1;192.0.2.1:5555", err,
                                  sizeof(err)) == -EPERM,
          "a loopback source does not make a remote destination local");
    CHECK(nosa_msg_connect_secure(NULL, s3, "udp://127.0.0.1:5555", err, sizeof(err)) == -EPERM,
          "other transports refused without --insecure");
    CHECK(nosa_msg_bind_secure(NULL, s1, "tcp://127.0.0.1:*", err, sizeof(err)) == 0,
          "loopback bind without keys: %s", err);
    CHECK(nosa_msg_connect_secure(NULL, s3, "tcp://localhost:1", err, sizeof(err)) == 0,
          "localhost: %s", err);
    CHECK(nosa_msg_connect_secure(NULL, s3, "tcp://[::1]:1", err, sizeof(err)) == 0,
          "[::1]: %s", err);
    CHECK(nosa_msg_bind_secure(insecure, s2, "tcp://0.0.0.0:*", err, sizeof(err)) == 0,
          "--insecure allows a plain wildcard bind: %s", err);
    zmq_close(s1);
    zmq_close(s2);
    zmq_close(s3);
    nosa_msg_security_free(insecure);
    zmq_ctx_term(ctx);
}

static int init_fails(const char *run_dir, const char *want, int want_rc)
{
    char err[512] = "";
    void *ctx = zmq_ctx_new();
    struct nosa_msg_security *sec = NULL;
    int rc = nosa_msg_security_init(ctx, run_dir, 0, &sec, err, sizeof(err));
    nosa_msg_security_free(sec);
    zmq_ctx_term(ctx);
    if (rc != want_rc || !strstr(err, want))
        fprintf(stderr, "security_curve: init gave %d '%s', want %d '%s'\n", rc, err, want_rc,
                want);
    return rc == want_rc && strstr(err, want) != NULL;
}

static void test_bad_key_files(void)
{
    char dir[256], path[512];
    make_run_dir(dir, sizeof(dir), "badkeys", 1);
    snprintf(path, sizeof(path), "%s/curve/server.secret", dir);
    REQUIRE(chmod(path, 0640) == 0, "chmod");
    CHECK(init_fails(dir, "mode 0600", -EPERM), "a group-readable secret key is refused");
    REQUIRE(chmod(path, 0600) == 0, "chmod");
    write_text(dir, "client.public", "not a key\n", 0644);
    CHECK(init_fails(dir, "not a Z85 CURVE key", -EINVAL), "a malformed key is refused");
    unlink(path);
    CHECK(init_fails(dir, "server.public without server.secret", -EINVAL),
          "half a keypair is refused");
    make_run_dir(dir, sizeof(dir), "noauth", 1);
    snprintf(path, sizeof(path), "%s/curve/authorized_clients", dir);
    unlink(path);
    CHECK(init_fails(dir, "no authorized_clients", -ENOENT),
          "server keys without authorized_clients are refused");
    write_text(dir, "authorized_clients", "# comment\n\nshort\n", 0644);
    CHECK(init_fails(dir, "line 3", -EINVAL), "a bad authorized_clients line is named");
}

int main(void)
{
    snprintf(g_base, sizeof(g_base), "/tmp/nosa-test-curve-XXXXXX");
    REQUIRE(mkdtemp(g_base), "mkdtemp: %s", strerror(errno));
    test_curve_server();
    test_policy_without_keys();
    test_bad_key_files();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_base);
    REQUIRE(system(cmd) == 0, "cleanup");
    return test_report("security_curve");
}
