/* kvh_client.c: requests to nosa-kvhost over a DEALER socket, and the arena mapping
 * (kvh_client.h). */
#include "kvh_client.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "common.pb-c.h"
#include "kvhost.pb-c.h"
#include "log.h"
#include "nosa_msg.h"

/* Replies are small except a table: 5 bytes per group id at most. */
#define KVH_CLIENT_MAX_REPLY_BYTES (64u << 20)

struct kvh_client {
    void *ctx;
    int own_ctx;
    void *sock;
    int timeout_ms;
    uint64_t next_request_id;
    char endpoint[256];
    char name[64];
};

/* ZeroMQ connects lazily and retries for ever, so a socket file this user may not reach
 * (another user's run directory or socket: docs/SECURITY.md) would only show as a timeout of
 * the first request. Say so at once; a socket that is not there yet (ENOENT) is fine. */
static int ipc_reachable(const char *endpoint, char *err, size_t errlen)
{
    if (strncmp(endpoint, "ipc://", 6) != 0) return 0;
    const char *path = endpoint + 6;
    if (faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) == 0 || (errno != EACCES && errno != EPERM))
        return 0;
    int e = errno;
    nosa_set_error(err, errlen, "kv-host %s: %s (the socket or its run directory belongs to "
                   "another user)", endpoint, strerror(e));
    return -e;
}

int kvh_client_connect(const char *endpoint, const struct kvh_client_options *opts,
                       struct kvh_client **out, char *err, size_t errlen)
{
    *out = NULL;
    int reach = ipc_reachable(endpoint, err, errlen);
    if (reach) return reach;
    struct kvh_client *c = calloc(1, sizeof(*c));
    if (!c) {
        nosa_set_error(err, errlen, "kvh client: out of memory");
        return -ENOMEM;
    }
    int rc = -1;
    c->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms
                                                  : KVH_CLIENT_DEFAULT_TIMEOUT_MS;
    snprintf(c->name, sizeof(c->name), "%s",
             opts && opts->client_name ? opts->client_name : "client");
    if ((size_t)snprintf(c->endpoint, sizeof(c->endpoint), "%s", endpoint) >=
        sizeof(c->endpoint)) {
        nosa_set_error(err, errlen, "kvh client: endpoint too long: %s", endpoint);
        rc = -ENAMETOOLONG;
        goto fail;
    }
    c->ctx = opts ? opts->zmq_ctx : NULL;
    if (!c->ctx) {
        c->ctx = zmq_ctx_new();
        if (!c->ctx) {
            nosa_set_error(err, errlen, "kvh client: zmq_ctx_new: %s", zmq_strerror(errno));
            rc = -ENOMEM;
            goto fail;
        }
        c->own_ctx = 1;
    }
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (!c->sock) {
        nosa_set_error(err, errlen, "kvh client: zmq_socket(DEALER): %s", zmq_strerror(errno));
        rc = -EIO;
        goto fail;
    }
    if (nosa_msg_socket_defaults(c->sock, -1, err, errlen)) {
        rc = -EIO;
        goto fail;
    }
    rc = nosa_msg_connect_secure(opts ? opts->sec : NULL, c->sock, endpoint, err, errlen);
    if (rc) {
        rc = rc < 0 ? rc : -EIO;
        goto fail;
    }
    c->next_request_id = 1;
    *out = c;
    return 0;
fail:
    kvh_client_close(c);
    return rc;
}

void kvh_client_close(struct kvh_client *c)
{
    if (!c) return;
    if (c->sock) zmq_close(c->sock);
    if (c->own_ctx) zmq_ctx_term(c->ctx);
    free(c);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int error_code_to_errno(Nosa__ErrorCode code)
{
    switch (code) {
    case NOSA__ERROR_CODE__ERROR_NO_SPACE: return -ENOSPC;
    case NOSA__ERROR_CODE__ERROR_UNKNOWN_ID: return -ENOENT;
    case NOSA__ERROR_CODE__ERROR_BAD_MESSAGE:
    case NOSA__ERROR_CODE__ERROR_BAD_VERSION: return -EPROTO;
    case NOSA__ERROR_CODE__ERROR_TOO_LARGE: return -E2BIG;
    case NOSA__ERROR_CODE__ERROR_REFUSED:
    case NOSA__ERROR_CODE__ERROR_UNAUTHORIZED: return -EPERM;
    default: return -EIO;
    }
}

/* Sends req (its version, request_id and client are filled in here) and waits for the reply
 * with the same request_id and the expected body. *out is freed by the caller with
 * nosa__kvh__kvh_reply__free_unpacked. */
static int kvh_call(struct kvh_client *c, Nosa__Kvh__KvhRequest *req, const char *what,
                    Nosa__Kvh__KvhReply__BodyCase expect, Nosa__Kvh__KvhReply **out, char *err,
                    size_t errlen)
{
    *out = NULL;
    req->version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    req->request_id = c->next_request_id++;
    req->client = c->name;
    char msg_err[256];
    if (nosa_msg_send(c->sock, NULL, &req->base, msg_err, sizeof(msg_err))) {
        nosa_set_error(err, errlen, "kv-host %s: sending %s: %s", c->endpoint, what, msg_err);
        return -EIO;
    }
    int64_t deadline = now_ms() + c->timeout_ms;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            nosa_set_error(err, errlen, "kv-host %s did not answer %s in %d ms", c->endpoint,
                           what, c->timeout_ms);
            return -ETIMEDOUT;
        }
        zmq_pollitem_t item = {.socket = c->sock, .events = ZMQ_POLLIN};
        int n = zmq_poll(&item, 1, (long)left);
        if (n < 0) {
            if (errno == EINTR) continue;
            nosa_set_error(err, errlen, "kv-host %s: zmq_poll: %s", c->endpoint,
                           zmq_strerror(errno));
            return -EIO;
        }
        if (n == 0) continue;
        struct nosa_msg_frame frame = {0};
        enum nosa_msg_recv_status st = nosa_msg_recv(c->sock, NULL, &frame,
                                                     KVH_CLIENT_MAX_REPLY_BYTES, ZMQ_DONTWAIT,
                                                     msg_err, sizeof(msg_err));
        if (st == NOSA_MSG_AGAIN) continue;
        if (st != NOSA_MSG_OK) {
            nosa_set_error(err, errlen, "kv-host %s: receiving the reply to %s: %s",
                           c->endpoint, what, msg_err);
            return -EIO;
        }
        Nosa__Kvh__KvhReply *rep = (Nosa__Kvh__KvhReply *)nosa_msg_unpack(
            &nosa__kvh__kvh_reply__descriptor, frame.data, frame.len, msg_err, sizeof(msg_err));
        nosa_msg_frame_free(&frame);
        if (!rep) {
            nosa_set_error(err, errlen, "kv-host %s: reply to %s: %s", c->endpoint, what,
                           msg_err);
            return -EIO;
        }
        if (rep->request_id != req->request_id) {
            /* The late answer to a request that timed out. */
            LOG_DEBUG("kvh-client", "dropping stale reply request_id=%" PRIu64,
                      rep->request_id);
            nosa__kvh__kvh_reply__free_unpacked(rep, NULL);
            continue;
        }
        int rc = 0;
        if (rep->error && rep->error->code != NOSA__ERROR_CODE__ERROR_NONE) {
            nosa_set_error(err, errlen, "kv-host %s refused %s: %s", c->endpoint, what,
                           rep->error->message ? rep->error->message : "(no message)");
            rc = error_code_to_errno(rep->error->code);
        } else if (rep->version != NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT) {
            nosa_set_error(err, errlen, "kv-host %s answered %s with protocol version %u",
                           c->endpoint, what, rep->version);
            rc = -EPROTO;
        } else if (rep->body_case != expect) {
            nosa_set_error(err, errlen, "kv-host %s answered %s with body %d", c->endpoint,
                           what, (int)rep->body_case);
            rc = -EIO;
        }
        if (rc) {
            nosa__kvh__kvh_reply__free_unpacked(rep, NULL);
            return rc;
        }
        *out = rep;
        return 0;
    }
}

static void geometry_to_msg(const struct nosa_kv_geometry *g, Nosa__Kvh__Geometry *m)
{
    m->n_layers = g->n_layers;
    m->n_kv_heads = g->n_kv_heads;
    m->block_size = g->block_size;
    m->head_dim = g->head_dim;
    m->dtype = g->dtype;
    m->block_bytes = nosa_kv_block_bytes(g);
    m->group_bytes = nosa_kv_group_bytes(g);
}

int kvh_client_attach(struct kvh_client *c, const struct nosa_kv_geometry *expect,
                      struct kvh_attach_info *out, char *err, size_t errlen)
{
    Nosa__Kvh__KvhRequest req = NOSA__KVH__KVH_REQUEST__INIT;
    Nosa__Kvh__AttachRequest body = NOSA__KVH__ATTACH_REQUEST__INIT;
    Nosa__Kvh__Geometry geom = NOSA__KVH__GEOMETRY__INIT;
    if (expect) { /* before out is cleared: expect may be &out->geom */
        geometry_to_msg(expect, &geom);
        body.geometry = &geom;
    }
    memset(out, 0, sizeof(*out));
    req.body_case = NOSA__KVH__KVH_REQUEST__BODY_ATTACH;
    req.attach = &body;
    Nosa__Kvh__KvhReply *rep;
    int rc = kvh_call(c, &req, "attach", NOSA__KVH__KVH_REPLY__BODY_ATTACH, &rep, err, errlen);
    if (rc) return rc;
    const Nosa__Kvh__AttachReply *a = rep->attach;
    if (!a->geometry || !a->shm_name ||
        strlen(a->shm_name) >= sizeof(out->shm_name)) {
        nosa_set_error(err, errlen, "kv-host %s: attach reply lacks geometry or shm name",
                       c->endpoint);
        rc = -EIO;
        goto done;
    }
    snprintf(out->shm_name, sizeof(out->shm_name), "%s", a->shm_name);
    out->arena_bytes = a->arena_bytes;
    out->blocks_offset = a->blocks_offset;
    out->n_groups = a->n_groups;
    out->generation = a->generation;
    out->geom = (struct nosa_kv_geometry){
        .n_layers = a->geometry->n_layers,
        .n_kv_heads = a->geometry->n_kv_heads,
        .block_size = a->geometry->block_size,
        .head_dim = a->geometry->head_dim,
        .dtype = a->geometry->dtype,
    };
    out->block_bytes = a->geometry->block_bytes;
    out->group_bytes = a->geometry->group_bytes;
    if (out->block_bytes != nosa_kv_block_bytes(&out->geom) ||
        out->group_bytes != nosa_kv_group_bytes(&out->geom) ||
        out->group_bytes == 0 || out->blocks_offset > out->arena_bytes ||
        out->n_groups > (out->arena_bytes - out->blocks_offset) / out->group_bytes) {
        nosa_set_error(err, errlen,
                       "kv-host %s: attach reply is inconsistent (block %" PRIu64
                       " B, group %" PRIu64 " B, %" PRIu64 " groups at %" PRIu64
                       " in %" PRIu64 " B)",
                       c->endpoint, out->block_bytes, out->group_bytes, out->n_groups,
                       out->blocks_offset, out->arena_bytes);
        rc = -EIO;
    }
done:
    nosa__kvh__kvh_reply__free_unpacked(rep, NULL);
    return rc;
}

int kvh_mapping_open(const struct kvh_attach_info *info, struct kvh_mapping *out, char *err,
                     size_t errlen)
{
    memset(out, 0, sizeof(*out));
    int fd = shm_open(info->shm_name, O_RDWR, 0);
    if (fd < 0) {
        int e = errno;
        nosa_set_error(err, errlen, "kvh mapping: shm_open %s: %s", info->shm_name,
                       strerror(e));
        return -e;
    }
    int rc = 0;
    struct stat st;
    if (fstat(fd, &st)) {
        rc = -errno;
        nosa_set_error(err, errlen, "kvh mapping: fstat %s: %s", info->shm_name,
                       strerror(-rc));
        goto done;
    }
    if ((uint64_t)st.st_size != info->arena_bytes) {
        nosa_set_error(err, errlen, "kvh mapping: %s is %lld bytes, the kv-host says %" PRIu64,
                       info->shm_name, (long long)st.st_size, info->arena_bytes);
        rc = -EINVAL;
        goto done;
    }
    size_t map_bytes = (size_t)(info->n_groups * info->group_bytes);
    void *p = mmap(NULL, map_bytes ? map_bytes : 1, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
                   (off_t)info->blocks_offset);
    if (p == MAP_FAILED) {
        rc = -errno;
        nosa_set_error(err, errlen, "kvh mapping: mmap %s (%zu bytes at %" PRIu64 "): %s",
                       info->shm_name, map_bytes, info->blocks_offset, strerror(-rc));
        goto done;
    }
    out->blocks = p;
    out->map_bytes = map_bytes ? map_bytes : 1;
    out->n_groups = info->n_groups;
    out->group_bytes = info->group_bytes;
    out->block_bytes = info->block_bytes;
    out->geom = info->geom;
done:
    close(fd);
    return rc;
}

void kvh_mapping_close(struct kvh_mapping *m)
{
    if (m->blocks) munmap(m->blocks, m->map_bytes);
    memset(m, 0, sizeof(*m));
}

int kvh_client_alloc(struct kvh_client *c, const struct kvh_seq_alloc *seqs, size_t n_seqs,
                     uint32_t *first_index, uint32_t *groups, char *err, size_t errlen)
{
    Nosa__Kvh__SeqAlloc *items = calloc(n_seqs ? n_seqs : 1, sizeof(*items));
    Nosa__Kvh__SeqAlloc **ptrs = calloc(n_seqs ? n_seqs : 1, sizeof(*ptrs));
    if (!items || !ptrs) {
        free(items);
        free(ptrs);
        nosa_set_error(err, errlen, "kvh client: out of memory for %zu sequences", n_seqs);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n_seqs; i++) {
        nosa__kvh__seq_alloc__init(&items[i]);
        items[i].seq_id = seqs[i].seq_id;
        items[i].n_groups = seqs[i].n_groups;
        ptrs[i] = &items[i];
    }
    Nosa__Kvh__KvhRequest req = NOSA__KVH__KVH_REQUEST__INIT;
    Nosa__Kvh__AllocRequest body = NOSA__KVH__ALLOC_REQUEST__INIT;
    body.n_seqs = n_seqs;
    body.seqs = ptrs;
    req.body_case = NOSA__KVH__KVH_REQUEST__BODY_ALLOC;
    req.alloc = &body;
    Nosa__Kvh__KvhReply *rep;
    int rc = kvh_call(c, &req, "alloc", NOSA__KVH__KVH_REPLY__BODY_ALLOC, &rep, err, errlen);
    free(items);
    free(ptrs);
    if (rc) return rc;
    const Nosa__Kvh__AllocReply *a = rep->alloc;
    if (a->n_seqs != n_seqs) {
        nosa_set_error(err, errlen, "kv-host %s: alloc reply has %zu sequences, asked %zu",
                       c->endpoint, a->n_seqs, n_seqs);
        rc = -EIO;
        goto done;
    }
    size_t at = 0;
    for (size_t i = 0; i < n_seqs; i++) {
        const Nosa__Kvh__SeqGroups *s = a->seqs[i];
        if (s->seq_id != seqs[i].seq_id || s->n_groups != seqs[i].n_groups) {
            nosa_set_error(err, errlen,
                           "kv-host %s: alloc reply entry %zu is seq %" PRIu64
                           " with %zu groups, asked seq %" PRIu64 " with %u",
                           c->endpoint, i, s->seq_id, s->n_groups, seqs[i].seq_id,
                           seqs[i].n_groups);
            rc = -EIO;
            goto done;
        }
        first_index[i] = s->first_index;
        if (s->n_groups) /* a 0-group entry has no array: memcpy(NULL) is undefined */
            memcpy(groups + at, s->groups, s->n_groups * sizeof(*groups));
        at += s->n_groups;
    }
done:
    nosa__kvh__kvh_reply__free_unpacked(rep, NULL);
    return rc;
}

int kvh_client_free(struct kvh_client *c, const uint64_t *seq_ids, size_t n_seqs,
                    uint64_t *freed_groups, char *err, size_t errlen)
{
    Nosa__Kvh__KvhRequest req = NOSA__KVH__KVH_REQUEST__INIT;
    Nosa__Kvh__FreeRequest body = NOSA__KVH__FREE_REQUEST__INIT;
    body.n_seq_ids = n_seqs;
    body.seq_ids = (uint64_t *)seq_ids; /* protobuf-c packs it, never writes */
    req.body_case = NOSA__KVH__KVH_REQUEST__BODY_FREE;
    req.free = &body;
    Nosa__Kvh__KvhReply *rep;
    int rc = kvh_call(c, &req, "free", NOSA__KVH__KVH_REPLY__BODY_FREE, &rep, err, errlen);
    if (rc) return rc;
    if (freed_groups) *freed_groups = rep->free->freed_groups;
    nosa__kvh__kvh_reply__free_unpacked(rep, NULL);
    return 0;
}

int kvh_client_table(struct kvh_client *c, uint64_t seq_id, uint32_t *groups, uint32_t cap,
                     uint32_t *n_groups, char *err, size_t errlen)
{
    *n_groups = 0;
    Nosa__Kvh__KvhRequest req = NOSA__KVH__KVH_REQUEST__INIT;
    Nosa__Kvh__TableRequest body = NOSA__KVH__TABLE_REQUEST__INIT;
    body.seq_id = seq_id;
    req.body_case = NOSA__KVH__KVH_REQUEST__BODY_TABLE;
    req.table = &body;
    Nosa__Kvh__KvhReply *rep;
    int rc = kvh_call(c, &req, "table", NOSA__KVH__KVH_REPLY__BODY_TABLE, &rep, err, errlen);
    if (rc) return rc;
    const Nosa__Kvh__TableReply *t = rep->table;
    if (t->seq_id != seq_id || t->n_groups > UINT32_MAX) {
        nosa_set_error(err, errlen, "kv-host %s: table reply is for seq %" PRIu64
                       " with %zu groups, asked seq %" PRIu64,
                       c->endpoint, t->seq_id, t->n_groups, seq_id);
        rc = -EIO;
        goto done;
    }
    *n_groups = (uint32_t)t->n_groups;
    size_t n_copy = t->n_groups < cap ? t->n_groups : cap;
    memcpy(groups, t->groups, n_copy * sizeof(*groups));
    if (t->n_groups > cap) {
        nosa_set_error(err, errlen, "kvh client: table of seq %" PRIu64
                       " has %zu groups, room for %u", seq_id, t->n_groups, cap);
        rc = -ENOBUFS;
    }
done:
    nosa__kvh__kvh_reply__free_unpacked(rep, NULL);
    return rc;
}

int kvh_client_stats(struct kvh_client *c, struct kvh_stats *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    Nosa__Kvh__KvhRequest req = NOSA__KVH__KVH_REQUEST__INIT;
    Nosa__Kvh__StatsRequest body = NOSA__KVH__STATS_REQUEST__INIT;
    req.body_case = NOSA__KVH__KVH_REQUEST__BODY_STATS;
    req.stats = &body;
    Nosa__Kvh__KvhReply *rep;
    int rc = kvh_call(c, &req, "stats", NOSA__KVH__KVH_REPLY__BODY_STATS, &rep, err, errlen);
    if (rc) return rc;
    const Nosa__Kvh__StatsReply *s = rep->stats;
    *out = (struct kvh_stats){
        .n_groups = s->n_groups,
        .free_groups = s->free_groups,
        .n_seqs = s->n_seqs,
        .arena_bytes = s->arena_bytes,
        .generation = s->generation,
        .requests = s->requests,
        .errors = s->errors,
        .numa_node = s->numa_node,
    };
    nosa__kvh__kvh_reply__free_unpacked(rep, NULL);
    return 0;
}
