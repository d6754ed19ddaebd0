/* nosa_msg.c: see nosa_msg.h. */
#include "nosa_msg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include "log.h"

void nosa_msg_frame_free(struct nosa_msg_frame *f)
{
    if (!f) return;
    free(f->data);
    f->data = NULL;
    f->len = 0;
}

/* Reads and discards the rest of a multipart message. */
static void drain_parts(void *sock)
{
    int more = 1;
    size_t sz = sizeof(more);
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        int rc = zmq_msg_recv(&m, sock, 0);
        zmq_msg_close(&m);
        if (rc < 0) break;
        sz = sizeof(more);
    }
}

static int has_more(void *sock)
{
    int more = 0;
    size_t sz = sizeof(more);
    if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) != 0) return 0;
    return more;
}

enum nosa_msg_recv_status nosa_msg_recv(void *sock, struct nosa_msg_peer *peer,
                                        struct nosa_msg_frame *out, size_t max_bytes,
                                        int flags, char *err, size_t errlen)
{
    zmq_msg_t m;
    out->data = NULL;
    out->len = 0;
    if (peer) {
        peer->len = 0;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, flags) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&m);
            if (e == EAGAIN) return NOSA_MSG_AGAIN;
            nosa_set_error(err, errlen, "receive identity: %s", zmq_strerror(e));
            return NOSA_MSG_FAILED;
        }
        size_t n = zmq_msg_size(&m);
        if (n > NOSA_MSG_MAX_IDENTITY) n = NOSA_MSG_MAX_IDENTITY;
        memcpy(peer->id, zmq_msg_data(&m), n);
        peer->len = n;
        zmq_msg_close(&m);
        if (!has_more(sock)) {
            nosa_set_error(err, errlen, "message has an identity frame and no payload");
            return NOSA_MSG_MALFORMED;
        }
        flags = 0; /* the rest of a multipart message is already here */
    }
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, sock, flags) < 0) {
        int e = zmq_errno();
        zmq_msg_close(&m);
        if (e == EAGAIN && !peer) return NOSA_MSG_AGAIN;
        nosa_set_error(err, errlen, "receive payload: %s", zmq_strerror(e));
        return NOSA_MSG_FAILED;
    }
    size_t n = zmq_msg_size(&m);
    if (has_more(sock)) {
        zmq_msg_close(&m);
        drain_parts(sock);
        nosa_set_error(err, errlen, "message has more than one payload frame");
        return NOSA_MSG_MALFORMED;
    }
    if (n > max_bytes) {
        zmq_msg_close(&m);
        nosa_set_error(err, errlen, "message of %zu bytes exceeds the limit of %zu", n,
                       max_bytes);
        return NOSA_MSG_MALFORMED;
    }
    out->data = malloc(n ? n : 1);
    if (!out->data) {
        zmq_msg_close(&m);
        nosa_set_error(err, errlen, "out of memory for a %zu-byte message", n);
        return NOSA_MSG_FAILED;
    }
    memcpy(out->data, zmq_msg_data(&m), n);
    out->len = n;
    zmq_msg_close(&m);
    return NOSA_MSG_OK;
}

int nosa_msg_send(void *sock, const struct nosa_msg_peer *peer, const ProtobufCMessage *msg,
                  char *err, size_t errlen)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        nosa_set_error(err, errlen, "out of memory packing a %zu-byte %s", n,
                       msg->descriptor->name);
        return -1;
    }
    protobuf_c_message_pack(msg, buf);
    int rc = 0;
    if (peer && zmq_send(sock, peer->id, peer->len, ZMQ_SNDMORE) < 0) {
        nosa_set_error(err, errlen, "send identity: %s", zmq_strerror(zmq_errno()));
        rc = -1;
    } else if (zmq_send(sock, buf, n, 0) < 0) {
        nosa_set_error(err, errlen, "send %s (%zu bytes): %s", msg->descriptor->name, n,
                       zmq_strerror(zmq_errno()));
        rc = -1;
    }
    free(buf);
    return rc;
}

/* Frees msg's unknown fields and those of every sub-message it holds. */
static void drop_unknown_fields(ProtobufCMessage *msg)
{
    for (unsigned i = 0; i < msg->n_unknown_fields; i++) free(msg->unknown_fields[i].data);
    free(msg->unknown_fields);
    msg->unknown_fields = NULL;
    msg->n_unknown_fields = 0;
    const ProtobufCMessageDescriptor *desc = msg->descriptor;
    for (unsigned i = 0; i < desc->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &desc->fields[i];
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        char *base = (char *)msg;
        /* A oneof member's storage is shared: only the member that is set is a message. */
        if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(base + fd->quantifier_offset) != fd->id)
            continue;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + fd->quantifier_offset);
            ProtobufCMessage **items = *(ProtobufCMessage ***)(base + fd->offset);
            for (size_t k = 0; k < n; k++) drop_unknown_fields(items[k]);
        } else {
            ProtobufCMessage *sub = *(ProtobufCMessage **)(base + fd->offset);
            if (sub) drop_unknown_fields(sub);
        }
    }
}

ProtobufCMessage *nosa_msg_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                  size_t len, char *err, size_t errlen)
{
    ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, len, data);
    if (!msg) {
        nosa_set_error(err, errlen, "undecodable %s (%zu bytes)", desc->name, len);
        return NULL;
    }
    drop_unknown_fields(msg);
    return msg;
}

int nosa_msg_bind(void *sock, const char *endpoint, char *err, size_t errlen)
{
    const char *ipc = strncmp(endpoint, "ipc://", 6) == 0 ? endpoint + 6 : NULL;
    if (ipc) {
        /* A file left by a killed server would make the bind fail; nobody can own it now
         * that we are about to bind (deploy gives each server its own path). */
        if (unlink(ipc) != 0 && errno != ENOENT) {
            nosa_set_error(err, errlen, "remove stale socket %s: %s", ipc, strerror(errno));
            return -1;
        }
    }
    /* The socket file is created by bind: 0600 from its first moment (0777 & ~0177), not
     * 0700 until the chmod below, which a peer checking the mode could see. */
    mode_t old = umask(0177);
    int rc = zmq_bind(sock, endpoint);
    int e = zmq_errno();
    umask(old);
    if (rc != 0) {
        nosa_set_error(err, errlen, "bind %s: %s", endpoint, zmq_strerror(e));
        return -1;
    }
    if (ipc && chmod(ipc, 0600) != 0) {
        nosa_set_error(err, errlen, "chmod 0600 %s: %s", ipc, strerror(errno));
        return -1;
    }
    return 0;
}

int nosa_msg_socket_defaults(void *sock, int rcvtimeo_ms, char *err, size_t errlen)
{
    int linger = 0;
    if (zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger)) != 0 ||
        zmq_setsockopt(sock, ZMQ_RCVTIMEO, &rcvtimeo_ms, sizeof(rcvtimeo_ms)) != 0) {
        nosa_set_error(err, errlen, "set socket options: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- CURVE */

/* The ZAP endpoint libzmq asks about every handshake on the context's sockets (RFC 27). */
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_MAX_FRAMES 8
/* How often the ZAP thread looks at its stop flag. */
#define ZAP_POLL_MS 100

struct nosa_msg_keys {
    int have_server, have_client;
    char server_public[NOSA_MSG_Z85_KEY_LEN + 1], server_secret[NOSA_MSG_Z85_KEY_LEN + 1];
    char client_public[NOSA_MSG_Z85_KEY_LEN + 1], client_secret[NOSA_MSG_Z85_KEY_LEN + 1];
};

struct nosa_msg_security {
    struct nosa_msg_keys keys;
    int insecure;
    uint8_t (*authorized)[32]; /* binary client public keys the ZAP handler admits */
    size_t n_authorized;
    void *zap;                 /* REP socket, used only by the thread once it runs */
    pthread_t zap_thread;
    int zap_running;
    atomic_int stop;
};

/* out = dir/name; -ENAMETOOLONG with err set when it does not fit in cap. */
static int join_path(char *out, size_t cap, const char *dir, const char *name, char *err,
                     size_t errlen)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        nosa_set_error(err, errlen, "path %s/%s is too long", dir, name);
        return -ENAMETOOLONG;
    }
    return 0;
}

static int valid_z85_key(const char *s)
{
    uint8_t bin[32];
    return strlen(s) == NOSA_MSG_Z85_KEY_LEN && zmq_z85_decode(bin, s) != NULL;
}

/* Reads dir/name into buf (at most cap-1 bytes, NUL-terminated). secret: refuse a file that
 * is not ours or that group/others can read. Returns 0, -ENOENT (absent) or another error. */
static int read_key_file(const char *dir, const char *name, int secret, char *buf, size_t cap,
                         size_t *len, char *err, size_t errlen)
{
    char path[4096];
    int rc = join_path(path, sizeof(path), dir, name, err, errlen);
    if (rc) return rc;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e != ENOENT) nosa_set_error(err, errlen, "open %s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    ssize_t n = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        nosa_set_error(err, errlen, "stat %s: %s", path, strerror(errno));
    } else if (secret && (st.st_uid != geteuid() || (st.st_mode & 077))) {
        nosa_set_error(err, errlen,
                       "%s: a secret key must be ours and mode 0600 (uid %u, mode %04o)", path,
                       (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
        rc = -EPERM;
    } else if ((n = read(fd, buf, cap - 1)) < 0) {
        rc = -errno;
        nosa_set_error(err, errlen, "read %s: %s", path, strerror(errno));
    } else if ((size_t)n == cap - 1) {
        nosa_set_error(err, errlen, "%s: larger than %zu bytes", path, cap - 2);
        rc = -EINVAL;
    }
    close(fd);
    if (rc) return rc;
    buf[n] = '\0';
    *len = (size_t)n;
    return 0;
}

/* Loads one Z85 key file: 40 characters and at most one newline. */
static int load_key(const char *dir, const char *name, int secret, char out[41], char *err,
                    size_t errlen)
{
    char buf[64];
    size_t n;
    int rc = read_key_file(dir, name, secret, buf, sizeof(buf), &n, err, errlen);
    if (rc) return rc;
    if (n > 0 && buf[n - 1] == '\n') buf[--n] = '\0';
    if (!valid_z85_key(buf)) {
        nosa_set_error(err, errlen, "%s/%s: not a Z85 CURVE key (40 characters)", dir, name);
        return -EINVAL;
    }
    memcpy(out, buf, NOSA_MSG_Z85_KEY_LEN + 1);
    return 0;
}

/* Loads a keypair: both files or neither (*have = 0). */
static int load_pair(const char *dir, const char *role, char pub[41], char sec[41], int *have,
                     char *err, size_t errlen)
{
    char pub_name[32], sec_name[32];
    snprintf(pub_name, sizeof(pub_name), "%s.public", role);
    snprintf(sec_name, sizeof(sec_name), "%s.secret", role);
    int rp = load_key(dir, pub_name, 0, pub, err, errlen);
    if (rp && rp != -ENOENT) return rp;
    int rs = load_key(dir, sec_name, 1, sec, err, errlen);
    if (rs && rs != -ENOENT) return rs;
    if ((rp == 0) != (rs == 0)) {
        nosa_set_error(err, errlen, "%s: %s without %s", dir, rp == 0 ? pub_name : sec_name,
                       rp == 0 ? sec_name : pub_name);
        return -EINVAL;
    }
    *have = rp == 0;
    return 0;
}

static int load_authorized(const char *dir, struct nosa_msg_security *sec, char *err,
                           size_t errlen)
{
    char buf[64 * 1024];
    size_t n;
    int rc = read_key_file(dir, "authorized_clients", 0, buf, sizeof(buf), &n, err, errlen);
    if (rc == -ENOENT)
        nosa_set_error(err, errlen,
                       "%s: server keys but no authorized_clients: no client could connect",
                       dir);
    if (rc) return rc;
    size_t cap = n / NOSA_MSG_Z85_KEY_LEN + 1;
    sec->authorized = calloc(cap, sizeof(*sec->authorized));
    if (!sec->authorized) {
        nosa_set_error(err, errlen, "out of memory for authorized_clients");
        return -ENOMEM;
    }
    int line_no = 0;
    for (char *line = buf, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        line_no++;
        size_t len = strlen(line);
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0 || line[0] == '#') continue;
        if (!valid_z85_key(line) || sec->n_authorized == cap) {
            nosa_set_error(err, errlen,
                           "%s/authorized_clients line %d: not a Z85 CURVE public key", dir,
                           line_no);
            return -EINVAL;
        }
        zmq_z85_decode(sec->authorized[sec->n_authorized++], line);
    }
    return 0;
}

static int zap_admits(const struct nosa_msg_security *sec, const zmq_msg_t *mech,
                      const zmq_msg_t *cred, int n_frames)
{
    size_t mlen = zmq_msg_size(mech);
    const char *m = zmq_msg_data((zmq_msg_t *)mech);
    /* Plain sockets (ipc; tcp on loopback or --insecure) were allowed at bind time. */
    if (mlen == 4 && memcmp(m, "NULL", 4) == 0) return 1;
    if (!(mlen == 5 && memcmp(m, "CURVE", 5) == 0) || n_frames < 7 ||
        zmq_msg_size(cred) != 32)
        return 0;
    for (size_t i = 0; i < sec->n_authorized; i++)
        if (memcmp(sec->authorized[i], zmq_msg_data((zmq_msg_t *)cred), 32) == 0) return 1;
    char z85[NOSA_MSG_Z85_KEY_LEN + 1];
    zmq_z85_encode(z85, zmq_msg_data((zmq_msg_t *)cred), 32);
    LOG_WARN("msg", "refused a CURVE client whose key is not authorized key=%s", z85);
    return 0;
}

/* Answers one ZAP request (frames: version, request id, domain, address, identity,
 * mechanism, credentials...). Returns -1 when the context is terminating. */
static int zap_serve_one(struct nosa_msg_security *sec)
{
    zmq_msg_t f[ZAP_MAX_FRAMES];
    int n = 0, more = 1, rc = 0;
    while (more && n < ZAP_MAX_FRAMES) {
        zmq_msg_init(&f[n]);
        if (zmq_msg_recv(&f[n], sec->zap, 0) < 0) {
            rc = zmq_errno() == ETERM ? -1 : 0;
            zmq_msg_close(&f[n]);
            break;
        }
        more = zmq_msg_more(&f[n]);
        n++;
    }
    if (more && n == ZAP_MAX_FRAMES) drain_parts(sec->zap);
    if (n >= 6) {
        int ok = zap_admits(sec, &f[5], &f[6], n);
        const char *status = ok ? "200" : "400", *text = ok ? "OK" : "client key not authorized";
        size_t id_len = zmq_msg_size(&f[1]);
        if (zmq_send(sec->zap, "1.0", 3, ZMQ_SNDMORE) < 0 ||
            zmq_send(sec->zap, zmq_msg_data(&f[1]), id_len, ZMQ_SNDMORE) < 0 ||
            zmq_send(sec->zap, status, 3, ZMQ_SNDMORE) < 0 ||
            zmq_send(sec->zap, text, strlen(text), ZMQ_SNDMORE) < 0 ||
            zmq_send(sec->zap, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(sec->zap, "", 0, 0) < 0)
            rc = zmq_errno() == ETERM ? -1 : 0;
    }
    for (int i = 0; i < n; i++) zmq_msg_close(&f[i]);
    return rc;
}

static void *zap_thread_main(void *arg)
{
    struct nosa_msg_security *sec = arg;
    while (!atomic_load(&sec->stop)) {
        zmq_pollitem_t item = {sec->zap, 0, ZMQ_POLLIN, 0};
        int rc = zmq_poll(&item, 1, ZAP_POLL_MS);
        if (rc < 0 && zmq_errno() == EINTR) continue;
        if (rc < 0 || (rc > 0 && zap_serve_one(sec) < 0)) break; /* context terminated */
    }
    zmq_close(sec->zap); /* lets zmq_ctx_term finish */
    sec->zap = NULL;
    return NULL;
}

int nosa_msg_security_init(void *zmq_ctx, const char *run_dir, int insecure,
                           struct nosa_msg_security **out, char *err, size_t errlen)
{
    struct nosa_msg_security *sec = calloc(1, sizeof(*sec));
    if (!sec) {
        nosa_set_error(err, errlen, "out of memory");
        return -ENOMEM;
    }
    sec->insecure = insecure;
    atomic_init(&sec->stop, 0);
    char dir[4096];
    struct stat st;
    int rc = 0;
    if (!run_dir) goto done; /* no keys */
    if ((rc = join_path(dir, sizeof(dir), run_dir, NOSA_MSG_CURVE_DIR, err, errlen))) goto fail;
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT) goto done; /* no keys */
        rc = -errno;
        nosa_set_error(err, errlen, "%s: %s", dir, strerror(errno));
        goto fail;
    }
    struct nosa_msg_keys *k = &sec->keys;
    if ((rc = load_pair(dir, "server", k->server_public, k->server_secret, &k->have_server, err,
                        errlen)))
        goto fail;
    if ((rc = load_pair(dir, "client", k->client_public, k->client_secret, &k->have_client, err,
                        errlen)))
        goto fail;
    if (k->have_client && !k->have_server) {
        /* A client-only node has the servers' public key and no server secret. */
        if ((rc = load_key(dir, "server.public", 0, k->server_public, err, errlen))) goto fail;
    }
    if (!k->have_server) goto done;
    if ((rc = load_authorized(dir, sec, err, errlen))) goto fail;
    if (!(sec->zap = zmq_socket(zmq_ctx, ZMQ_REP)) || zmq_bind(sec->zap, ZAP_ENDPOINT) != 0) {
        nosa_set_error(err, errlen, "start the CURVE authenticator (%s): %s", ZAP_ENDPOINT,
                       zmq_strerror(zmq_errno()));
        rc = -1;
        goto fail;
    }
    if ((rc = pthread_create(&sec->zap_thread, NULL, zap_thread_main, sec)) != 0) {
        nosa_set_error(err, errlen, "start the CURVE authenticator thread: %s", strerror(rc));
        rc = -rc;
        goto fail;
    }
    sec->zap_running = 1;
done:
    *out = sec;
    return 0;
fail:
    nosa_msg_security_free(sec);
    return rc;
}

void nosa_msg_security_free(struct nosa_msg_security *sec)
{
    if (!sec) return;
    atomic_store(&sec->stop, 1);
    if (sec->zap_running) pthread_join(sec->zap_thread, NULL);
    else if (sec->zap) zmq_close(sec->zap);
    free(sec->authorized);
    /* The secrets should not outlive their use in freed heap memory. (The whole object:
     * gcc -O3 misreads the size of the keys member once this is inlined into init.) */
    explicit_bzero(sec, sizeof(*sec));
    free(sec);
}

int nosa_msg_security_has_server_keys(const struct nosa_msg_security *sec)
{
    return sec && sec->keys.have_server;
}

int nosa_msg_security_has_client_keys(const struct nosa_msg_security *sec)
{
    return sec && sec->keys.have_client;
}

/* 1 when a tcp endpoint's address (after "tcp://", for connect the part after any "src;")
 * is a loopback address: 127.0.0.0/8, ::1, localhost, or the "lo" interface. */
static int tcp_is_loopback(const char *addr)
{
    const char *semi = strrchr(addr, ';');
    if (semi) addr = semi + 1;
    const char *colon = strrchr(addr, ':'); /* the port */
    if (!colon) return 0;
    char host[256];
    size_t n = (size_t)(colon - addr);
    if (n >= sizeof(host)) return 0;
    memcpy(host, addr, n);
    host[n] = '\0';
    if (strcmp(host, "localhost") == 0 || strcmp(host, "lo") == 0) return 1;
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, host, &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host[n - 1] = '\0';
        return inet_pton(AF_INET6, host + 1, &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
    }
    return 0;
}

static int set_key(void *sock, int opt, const char *z85)
{
    return zmq_setsockopt(sock, opt, z85, NOSA_MSG_Z85_KEY_LEN + 1);
}

/* Applies the policy for endpoint on sock (server: about to bind; else about to connect):
 * sets the CURVE options when it will use them. Returns 0 or -EPERM/-1 with err set. */
static int secure_endpoint(const struct nosa_msg_security *sec, void *sock, const char *endpoint,
                           int server, char *err, size_t errlen)
{
    const char *verb = server ? "bind" : "connect";
    if (strncmp(endpoint, "ipc://", 6) == 0 || strncmp(endpoint, "inproc://", 9) == 0) return 0;
    int tcp = strncmp(endpoint, "tcp://", 6) == 0;
    int have = server ? nosa_msg_security_has_server_keys(sec)
                      : nosa_msg_security_has_client_keys(sec);
    if (tcp && have) {
        const struct nosa_msg_keys *k = &sec->keys;
        int on = 1, rc;
        if (server)
            rc = zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &on, sizeof(on)) ||
                 set_key(sock, ZMQ_CURVE_SECRETKEY, k->server_secret) ||
                 zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, "nosa", 4);
        else
            rc = set_key(sock, ZMQ_CURVE_SERVERKEY, k->server_public) ||
                 set_key(sock, ZMQ_CURVE_PUBLICKEY, k->client_public) ||
                 set_key(sock, ZMQ_CURVE_SECRETKEY, k->client_secret);
        if (rc) {
            nosa_set_error(err, errlen, "%s %s: set CURVE options: %s", verb, endpoint,
                           zmq_strerror(zmq_errno()));
            return -1;
        }
        return 0;
    }
    if (tcp && tcp_is_loopback(endpoint + 6)) return 0;
    if (sec && sec->insecure) {
        LOG_WARN("msg", "%s %s in plain text: --insecure, no CURVE keys", verb, endpoint);
        return 0;
    }
    nosa_set_error(err, errlen,
                   tcp ? "refusing to %s %s without CURVE keys: not a loopback address (put "
                         "keys in <run-dir>/" NOSA_MSG_CURVE_DIR "/, docs/SECURITY.md, or pass "
                         "--insecure)"
                       : "refusing to %s %s: only ipc, inproc and tcp are allowed without "
                         "--insecure",
                   verb, endpoint);
    return -EPERM;
}

int nosa_msg_bind_secure(const struct nosa_msg_security *sec, void *sock, const char *endpoint,
                         char *err, size_t errlen)
{
    int rc = secure_endpoint(sec, sock, endpoint, 1, err, errlen);
    return rc ? rc : nosa_msg_bind(sock, endpoint, err, errlen);
}

int nosa_msg_connect_secure(const struct nosa_msg_security *sec, void *sock,
                            const char *endpoint, char *err, size_t errlen)
{
    int rc = secure_endpoint(sec, sock, endpoint, 0, err, errlen);
    if (rc) return rc;
    if (zmq_connect(sock, endpoint) != 0) {
        nosa_set_error(err, errlen, "connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

/* Writes dir/name (mode 0600 or 0644) containing line, failing if it exists. */
static int write_key_file(const char *dir, const char *name, const char *text, int secret,
                          char *err, size_t errlen)
{
    char path[4096];
    int rc = join_path(path, sizeof(path), dir, name, err, errlen);
    if (rc) return rc;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, secret ? 0600 : 0644);
    if (fd < 0) {
        int e = errno;
        nosa_set_error(err, errlen, "create %s: %s", path, strerror(e));
        return -e;
    }
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    rc = n == (ssize_t)len ? 0 : -EIO;
    if (rc) nosa_set_error(err, errlen, "write %s: %s", path, n < 0 ? strerror(errno) : "short");
    if (close(fd) != 0 && !rc) {
        nosa_set_error(err, errlen, "close %s: %s", path, strerror(errno));
        rc = -EIO;
    }
    return rc;
}

int nosa_msg_keys_generate(const char *run_dir, char *err, size_t errlen)
{
    char dir[4096];
    int rc = join_path(dir, sizeof(dir), run_dir, NOSA_MSG_CURVE_DIR, err, errlen);
    if (rc) return rc;
    if (mkdir(dir, 0700) != 0) {
        int e = errno;
        nosa_set_error(err, errlen, "create %s: %s", dir, strerror(e));
        return -e;
    }
    char sp[41], ss[41], cp[41], cs[41], line[64];
    if (zmq_curve_keypair(sp, ss) != 0 || zmq_curve_keypair(cp, cs) != 0) {
        nosa_set_error(err, errlen, "generate CURVE keys: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    const struct {
        const char *name, *key;
        int secret;
    } files[] = {{"server.public", sp, 0}, {"server.secret", ss, 1}, {"client.public", cp, 0},
                 {"client.secret", cs, 1}, {"authorized_clients", cp, 0}};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]) && !rc; i++) {
        snprintf(line, sizeof(line), "%s\n", files[i].key);
        rc = write_key_file(dir, files[i].name, line, files[i].secret, err, errlen);
    }
    explicit_bzero(ss, sizeof(ss));
    explicit_bzero(cs, sizeof(cs));
    return rc;
}
