/* nosa_msg.h: one protobuf message per ZeroMQ frame, the framing every nosa-serve link uses
 * (the proto folder). Servers bind ROUTER sockets, peers connect DEALER sockets; a ROUTER
 * message is [identity][payload], a DEALER message is [payload]. No empty delimiter frames.
 *
 * This module owns: packing/sending, receiving with a size limit (anything larger, or with
 * an unexpected number of frames, is drained and reported, never half-read), and binding
 * endpoints safely (ipc socket files mode 0600 in the run directory; tcp endpoints with ZeroMQ
 * CURVE keys, docs/SECURITY.md). */
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

/* ---------------------------------------------------------------- CURVE (docs/SECURITY.md)
 * Keys live in <run-dir>/curve/, as Z85 text (40 characters, one optional newline):
 *   server.public, server.secret   the keypair of every server (coordinator, kv-host)
 *   client.public, client.secret   the keypair peers connect with
 *   authorized_clients             client public keys servers admit, one a line ('#' comments)
 * Secret files must be owned by us and mode 0600 or stricter. nosa_msg_keys_generate writes
 * a complete set; copy it to every node's run directory. */
#define NOSA_MSG_CURVE_DIR "curve"
#define NOSA_MSG_Z85_KEY_LEN 40

/* A process's transport security: its keys (if any), the ZAP handler that admits only the
 * authorized client keys on its CURVE server sockets, and whether --insecure was given. */
struct nosa_msg_security;

/* Loads run_dir/curve/ (run_dir NULL or no curve folder: no keys) and, when the server keys
 * are there, starts the ZAP handler on zmq_ctx (one per context, before any bind). A partial
 * keypair, a malformed key, or a secret readable by others is an error. insecure: allow
 * plain-text tcp on non-loopback addresses (logged as a warning at each bind/connect). */
int nosa_msg_security_init(void *zmq_ctx, const char *run_dir, int insecure,
                           struct nosa_msg_security **out, char *err, size_t errlen);
/* Stops the ZAP handler (before or after zmq_ctx_term) and frees. Accepts NULL. */
void nosa_msg_security_free(struct nosa_msg_security *sec);
/* 1 when the server keys (and so the ZAP handler) or the client keys are loaded. */
int nosa_msg_security_has_server_keys(const struct nosa_msg_security *sec);
int nosa_msg_security_has_client_keys(const struct nosa_msg_security *sec);

/* Binds (connects) sock to endpoint under the policy of docs/SECURITY.md. ipc and inproc:
 * as nosa_msg_bind / zmq_connect. tcp with keys in sec: CURVE server (client). tcp without
 * keys: only a loopback address (127.0.0.0/8, ::1, localhost), refused for any other unless
 * sec says insecure. Other transports need insecure. sec may be NULL (no keys, not insecure).
 * Returns 0, -EPERM when refused (err says why and what to do), or -1. */
int nosa_msg_bind_secure(const struct nosa_msg_security *sec, void *sock, const char *endpoint,
                         char *err, size_t errlen);
int nosa_msg_connect_secure(const struct nosa_msg_security *sec, void *sock,
                            const char *endpoint, char *err, size_t errlen);

/* Writes a fresh key set into run_dir/curve/ (created mode 0700): a server keypair, a client
 * keypair, and authorized_clients holding the client's public key. Refuses to overwrite. */
int nosa_msg_keys_generate(const char *run_dir, char *err, size_t errlen);

/* Sets linger 0 and a receive timeout (ms, -1 = none) on a socket. */
int nosa_msg_socket_defaults(void *sock, int rcvtimeo_ms, char *err, size_t errlen);

#endif
