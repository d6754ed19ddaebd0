/* kvh_server.h: nosa-kvhost's control socket (proto/kvhost.proto over common/nosa_msg.h).
 *
 * This module owns: the ZeroMQ context and ROUTER socket, decoding and checking each request
 * (undecodable, wrong version, too large, no body: an Error reply naming what was wrong, and
 * the server keeps serving), dispatching it to the store, and the request counters. One
 * thread; requests are served one at a time, in arrival order. */
#ifndef NOSA_KVH_SERVER_H
#define NOSA_KVH_SERVER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "kvh_arena.h"
#include "kvh_store.h"

/* Largest request served (a 4096-sequence alloc is about 60 KiB); larger ones get
 * ERROR_TOO_LARGE. */
#define KVH_MAX_REQUEST_BYTES (1u << 20)
/* Largest frame received at all (ZMQ_MAXMSGSIZE): one above it is never buffered; ZeroMQ
 * drops the connection that sent it, so that client gets no reply (a timeout) and its next
 * request goes over a new connection. Frames between the two limits get ERROR_TOO_LARGE. */
#define KVH_MAX_FRAME_BYTES (4u * KVH_MAX_REQUEST_BYTES)

struct kvh_server_config {
    const char *endpoint; /* ipc://D/kvh0.sock or tcp://HOST:PORT */
    const char *run_dir;  /* CURVE keys for tcp (docs/SECURITY.md) */
    int insecure;         /* allow plain tcp on a non-loopback address */
};

struct kvh_server;

/* Binds the socket (call it once the arena is ready: the socket file means "ready"). */
int kvh_server_start(const struct kvh_server_config *cfg, struct kvh_store *store,
                     const struct kvh_arena *arena, struct kvh_server **out, char *err,
                     size_t errlen);
/* Serves until *stop becomes non-zero (a signal handler sets it). 0, or -1 on a socket
 * failure (err says which). */
int kvh_server_run(struct kvh_server *s, volatile sig_atomic_t *stop, char *err,
                   size_t errlen);
/* Closes the socket and the context. Accepts NULL. */
void kvh_server_free(struct kvh_server *s);

#endif
