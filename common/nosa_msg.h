/* nosa_msg.h: one protobuf message per ZeroMQ frame, the framing every nosa-serve link uses
 * (the proto folder). Servers bind ROUTER sockets, peers connect DEALER sockets; a ROUTER
 * message is [identity][payload], a DEALER message is [payload]. No empty delimiter frames.
 *
 * This module owns: packing/sending, receiving with a size limit (anything larger, or with
 * an unexpected number of frames, is drained and reported, never half-read), and binding
 * endpoints safely (ipc socket files mode 0600 in the run directory). */
#ifndef NOSA_MSG_H
#define NOSA_MSG_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#define NOSA_MSG_MAX_IDENTITY 255
/* Default limit on one frame; a receiver may pass a smaller or larger one. */
#define NOSA_MSG_MAX_BYTES (16u << 20)

/* A ROUTER peer's identity frame, copied out so it can be kept (a worker, a CLI client). */
struct nosa_msg_peer {
    uint8_t id[NOSA_MSG_MAX_IDENTITY];
    size_t len;
};

/* A received payload: malloc'd bytes, owned by the caller (nosa_msg_frame_free). */
struct nosa_msg_frame {
    uint8_t *data;
    size_t len;
};

enum nosa_msg_recv_status {
    NOSA_MSG_OK = 0,
    NOSA_MSG_AGAIN = 1,     /* nothing to read (ZMQ_DONTWAIT) or the receive timeout ran out */
    NOSA_MSG_MALFORMED = 2, /* wrong frame count or over max_bytes: drained, err says why;
                             * peer is still filled in when the identity frame was read */
    NOSA_MSG_FAILED = -1,   /* socket error (err says which), e.g. context terminated */
};

/* Receives one message. peer != NULL for a ROUTER socket (identity frame expected first).
 * flags: 0 or ZMQ_DONTWAIT. */
enum nosa_msg_recv_status nosa_msg_recv(void *sock, struct nosa_msg_peer *peer,
                                        struct nosa_msg_frame *out, size_t max_bytes,
                                        int flags, char *err, size_t errlen);
void nosa_msg_frame_free(struct nosa_msg_frame *f);

/* Packs msg and sends it (to peer on a ROUTER socket, peer NULL on a DEALER). 0 or -1 with
 * err set. A ROUTER send to a vanished peer is dropped by ZeroMQ, not an error. */
int nosa_msg_send(void *sock, const struct nosa_msg_peer *peer, const ProtobufCMessage *msg,
                  char *err, size_t errlen);

/* Decodes a received payload as desc (e.g. &nosa__kvh__kvh_request__descriptor). Unknown
 * fields (a newer peer's, or junk) are dropped: protobuf-c keeps them and re-encodes them,
 * and it keeps some (field number 0, behind an overlong tag) that it then refuses to decode,
 * so a message re-sent or journaled as received could be unreadable (fuzz/ found it).
 * Returns the message (free with protobuf_c_message_free_unpacked(msg, NULL)), or NULL with
 * err naming the message type and size. Decoding says nothing of the version or the body:
 * the receiver checks those. */
ProtobufCMessage *nosa_msg_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                                  size_t len, char *err, size_t errlen);

/* Binds sock to endpoint ("ipc://PATH" or "tcp://HOST:PORT"). For ipc, a stale socket file
 * left by a killed process is removed first and the new file is made mode 0600. */
int nosa_msg_bind(void *sock, const char *endpoint, char *err, size_t errlen);

/* Sets linger 0 and a receive timeout (ms, -1 = none) on a socket. */
int nosa_msg_socket_defaults(void *sock, int rcvtimeo_ms, char *err, size_t errlen);

#endif
