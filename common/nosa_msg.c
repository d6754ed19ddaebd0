/* nosa_msg.c: see nosa_msg.h. */
#include "nosa_msg.h"

#include <errno.h>
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
    mode_t old = umask(077); /* the socket file is created by bind: owner only */
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
