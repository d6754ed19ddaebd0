/* kvh_server.c: the ROUTER loop and request dispatch (kvh_server.h). */
#include "kvh_server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "common.pb-c.h"
#include "fault.h"
#include "kvh_validate.h"
#include "kvhost.pb-c.h"
#include "log.h"
#include "nosa_msg.h"

#define KVH_POLL_MS 200 /* how often the loop looks at the stop flag */

struct kvh_server {
    void *ctx;
    void *sock;
    struct nosa_msg_security *sec;
    struct kvh_store *store;
    const struct kvh_arena *arena;
    uint64_t requests, errors;
};

/* The reply being built for one request, and what it owns. A table reply points into the
 * store's index: serve_one sends it before handling anything else. */
struct kvh_reply_buf {
    Nosa__Kvh__KvhReply rep;
    Nosa__Error error;
    char message[512];
    union {
        Nosa__Kvh__AttachReply attach;
        Nosa__Kvh__AllocReply alloc;
        Nosa__Kvh__FreeReply free;
        Nosa__Kvh__StatsReply stats;
        Nosa__Kvh__TableReply table;
    } body;
    Nosa__Kvh__Geometry geom;
    /* alloc */
    Nosa__Kvh__SeqGroups *seq_groups;
    Nosa__Kvh__SeqGroups **seq_group_ptrs;
    uint32_t *groups;
};

int kvh_server_start(const struct kvh_server_config *cfg, struct kvh_store *store,
                     const struct kvh_arena *arena, struct kvh_server **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    struct kvh_server *s = calloc(1, sizeof(*s));
    if (!s) {
        nosa_set_error(err, errlen, "kvh server: out of memory");
        return -ENOMEM;
    }
    s->store = store;
    s->arena = arena;
    int rc = -EIO;
    s->ctx = zmq_ctx_new();
    if (!s->ctx) {
        nosa_set_error(err, errlen, "zmq_ctx_new: %s", zmq_strerror(errno));
        goto fail;
    }
    if ((rc = nosa_msg_security_init(s->ctx, cfg->run_dir, cfg->insecure, &s->sec, err,
                                     errlen)))
        goto fail;
    s->sock = zmq_socket(s->ctx, ZMQ_ROUTER);
    if (!s->sock) {
        nosa_set_error(err, errlen, "zmq_socket(ROUTER): %s", zmq_strerror(errno));
        rc = -EIO;
        goto fail;
    }
    if (nosa_msg_socket_defaults(s->sock, -1, err, errlen)) {
        rc = -EIO;
        goto fail;
    }
    int64_t max_frame = KVH_MAX_FRAME_BYTES;
    if (zmq_setsockopt(s->sock, ZMQ_MAXMSGSIZE, &max_frame, sizeof(max_frame))) {
        nosa_set_error(err, errlen, "zmq_setsockopt(ZMQ_MAXMSGSIZE): %s", zmq_strerror(errno));
        rc = -EIO;
        goto fail;
    }
    if ((rc = nosa_msg_bind_secure(s->sec, s->sock, cfg->endpoint, err, errlen))) goto fail;
    *out = s;
    return 0;
fail:
    kvh_server_free(s);
    return rc < 0 ? rc : -EIO;
}

void kvh_server_free(struct kvh_server *s)
{
    if (!s) return;
    if (s->sock) zmq_close(s->sock);
    if (s->ctx) zmq_ctx_term(s->ctx);
    nosa_msg_security_free(s->sec);
    free(s);
}

static void reply_error(struct kvh_reply_buf *b, Nosa__ErrorCode code)
{
    b->rep.error = &b->error;
    b->error.code = code;
    b->error.message = b->message;
    b->rep.body_case = NOSA__KVH__KVH_REPLY__BODY__NOT_SET;
}

static Nosa__ErrorCode errno_to_code(int rc)
{
    switch (rc) {
    case -ENOSPC: return NOSA__ERROR_CODE__ERROR_NO_SPACE;
    case -ENOENT: return NOSA__ERROR_CODE__ERROR_UNKNOWN_ID;
    case -EINVAL: return NOSA__ERROR_CODE__ERROR_BAD_MESSAGE;
    case -E2BIG: return NOSA__ERROR_CODE__ERROR_TOO_LARGE;
    case -EPROTONOSUPPORT: return NOSA__ERROR_CODE__ERROR_BAD_VERSION;
    default: return NOSA__ERROR_CODE__ERROR_INTERNAL;
    }
}

static void handle_attach(struct kvh_server *s, const Nosa__Kvh__AttachRequest *req,
                          struct kvh_reply_buf *b)
{
    const struct nosa_kv_geometry *g = &s->store->geom;
    const Nosa__Kvh__Geometry *want = req->geometry;
    if (want) {
        const char *field = want->n_layers != g->n_layers       ? "n_layers"
                            : want->n_kv_heads != g->n_kv_heads ? "n_kv_heads"
                            : want->block_size != g->block_size ? "block_size"
                            : want->head_dim != g->head_dim     ? "head_dim"
                            : want->dtype != g->dtype           ? "dtype"
                                                                : NULL;
        if (field) {
            snprintf(b->message, sizeof(b->message),
                     "attach: geometry %s differs: the arena holds n_layers=%u n_kv_heads=%u "
                     "block_size=%u head_dim=%u dtype=%u", field, g->n_layers, g->n_kv_heads,
                     g->block_size, g->head_dim, g->dtype);
            reply_error(b, NOSA__ERROR_CODE__ERROR_BAD_MESSAGE);
            return;
        }
    }
    nosa__kvh__geometry__init(&b->geom);
    b->geom.n_layers = g->n_layers;
    b->geom.n_kv_heads = g->n_kv_heads;
    b->geom.block_size = g->block_size;
    b->geom.head_dim = g->head_dim;
    b->geom.dtype = g->dtype;
    b->geom.block_bytes = s->store->hdr->block_bytes;
    b->geom.group_bytes = s->store->hdr->group_bytes;
    Nosa__Kvh__AttachReply *a = &b->body.attach;
    nosa__kvh__attach_reply__init(a);
    a->shm_name = (char *)s->arena->shm_name;
    a->arena_bytes = s->arena->bytes;
    a->blocks_offset = s->store->hdr->blocks_offset;
    a->n_groups = s->store->n_groups;
    a->geometry = &b->geom;
    a->generation = kvh_store_generation(s->store);
    b->rep.body_case = NOSA__KVH__KVH_REPLY__BODY_ATTACH;
    b->rep.attach = a;
}

static void handle_alloc(struct kvh_server *s, const Nosa__Kvh__AllocRequest *req,
                         struct kvh_reply_buf *b)
{
    size_t n = req->n_seqs; /* <= KVH_MAX_SEQS_PER_REQUEST (kvh_request_validate) */
    struct kvh_seq_alloc reqs[KVH_MAX_SEQS_PER_REQUEST];
    uint32_t first_index[KVH_MAX_SEQS_PER_REQUEST];
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        reqs[i] = (struct kvh_seq_alloc){req->seqs[i]->seq_id, req->seqs[i]->n_groups};
        total += reqs[i].n_groups;
    }
    if (total > s->store->n_groups) {
        snprintf(b->message, sizeof(b->message),
                 "alloc: out of space: %" PRIu64 " groups asked, the arena holds %" PRIu64,
                 total, s->store->n_groups);
        reply_error(b, NOSA__ERROR_CODE__ERROR_NO_SPACE);
        return;
    }
    b->groups = malloc((total ? total : 1) * sizeof(*b->groups));
    b->seq_groups = calloc(n ? n : 1, sizeof(*b->seq_groups));
    b->seq_group_ptrs = calloc(n ? n : 1, sizeof(*b->seq_group_ptrs));
    if (!b->groups || !b->seq_groups || !b->seq_group_ptrs) {
        snprintf(b->message, sizeof(b->message), "alloc: out of memory for the reply");
        reply_error(b, NOSA__ERROR_CODE__ERROR_INTERNAL);
        return;
    }
    char err[400];
    int rc = kvh_store_alloc(s->store, reqs, n, first_index, b->groups, err, sizeof(err));
    if (rc) {
        snprintf(b->message, sizeof(b->message), "alloc: %s", err);
        reply_error(b, errno_to_code(rc));
        return;
    }
    Nosa__Kvh__AllocReply *a = &b->body.alloc;
    nosa__kvh__alloc_reply__init(a);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        Nosa__Kvh__SeqGroups *sg = &b->seq_groups[i];
        nosa__kvh__seq_groups__init(sg);
        sg->seq_id = reqs[i].seq_id;
        sg->first_index = first_index[i];
        sg->n_groups = reqs[i].n_groups;
        sg->groups = b->groups + at;
        at += reqs[i].n_groups;
        b->seq_group_ptrs[i] = sg;
    }
    a->n_seqs = n;
    a->seqs = b->seq_group_ptrs;
    b->rep.body_case = NOSA__KVH__KVH_REPLY__BODY_ALLOC;
    b->rep.alloc = a;
}

static void handle_free(struct kvh_server *s, const Nosa__Kvh__FreeRequest *req,
                        struct kvh_reply_buf *b)
{
    uint64_t freed = 0;
    char err[400];
    int rc = kvh_store_free(s->store, req->seq_ids, req->n_seq_ids, &freed, err, sizeof(err));
    if (rc) {
        snprintf(b->message, sizeof(b->message), "free: %s", err);
        reply_error(b, errno_to_code(rc));
        return;
    }
    nosa__kvh__free_reply__init(&b->body.free);
    b->body.free.freed_groups = freed;
    b->rep.body_case = NOSA__KVH__KVH_REPLY__BODY_FREE;
    b->rep.free = &b->body.free;
}

static void handle_table(struct kvh_server *s, const Nosa__Kvh__TableRequest *req,
                         struct kvh_reply_buf *b)
{
    const struct kvh_seq *seq = kvh_store_table(s->store, req->seq_id);
    if (!seq) {
        snprintf(b->message, sizeof(b->message), "table: unknown sequence id %" PRIu64,
                 req->seq_id);
        reply_error(b, NOSA__ERROR_CODE__ERROR_UNKNOWN_ID);
        return;
    }
    Nosa__Kvh__TableReply *t = &b->body.table;
    nosa__kvh__table_reply__init(t);
    t->seq_id = req->seq_id;
    t->n_groups = seq->n_groups;
    t->groups = seq->groups;
    b->rep.body_case = NOSA__KVH__KVH_REPLY__BODY_TABLE;
    b->rep.table = t;
}

static void handle_stats(struct kvh_server *s, struct kvh_reply_buf *b)
{
    Nosa__Kvh__StatsReply *st = &b->body.stats;
    nosa__kvh__stats_reply__init(st);
    st->n_groups = s->store->n_groups;
    st->free_groups = s->store->n_free;
    st->n_seqs = s->store->seqs.count;
    st->arena_bytes = s->arena->bytes;
    st->generation = kvh_store_generation(s->store);
    st->requests = s->requests;
    st->errors = s->errors;
    st->numa_node = s->arena->numa_node;
    b->rep.body_case = NOSA__KVH__KVH_REPLY__BODY_STATS;
    b->rep.stats = st;
}

/* Fills b for one received payload. */
static void handle_payload(struct kvh_server *s, const struct nosa_msg_frame *frame,
                           struct kvh_reply_buf *b)
{
    if (frame->len > KVH_MAX_REQUEST_BYTES) {
        snprintf(b->message, sizeof(b->message), "request of %zu bytes exceeds the limit of %u",
                 frame->len, KVH_MAX_REQUEST_BYTES);
        reply_error(b, NOSA__ERROR_CODE__ERROR_TOO_LARGE);
        return;
    }
    char err[256];
    Nosa__Kvh__KvhRequest *req = (Nosa__Kvh__KvhRequest *)nosa_msg_unpack(
        &nosa__kvh__kvh_request__descriptor, frame->data, frame->len, err, sizeof(err));
    if (!req) {
        snprintf(b->message, sizeof(b->message), "undecodable request: %s", err);
        reply_error(b, NOSA__ERROR_CODE__ERROR_BAD_MESSAGE);
        return;
    }
    b->rep.request_id = req->request_id;
    int rc = kvh_request_validate(&req->base, b->message, sizeof(b->message));
    if (rc) {
        reply_error(b, errno_to_code(rc));
    } else {
        switch (req->body_case) {
        case NOSA__KVH__KVH_REQUEST__BODY_ATTACH: handle_attach(s, req->attach, b); break;
        case NOSA__KVH__KVH_REQUEST__BODY_ALLOC: handle_alloc(s, req->alloc, b); break;
        case NOSA__KVH__KVH_REQUEST__BODY_FREE: handle_free(s, req->free, b); break;
        case NOSA__KVH__KVH_REQUEST__BODY_TABLE: handle_table(s, req->table, b); break;
        default: handle_stats(s, b); break; /* the validator admits no other body */
        }
    }
    /* An unknown sequence id is an ordinary answer (the coordinator frees a job's sequence
     * after its worker did; a resuming worker asks for a table nobody wrote): not a warning. */
    const char *who = req->client && req->client[0] ? req->client : "-";
    if (b->rep.error && b->rep.error->code == NOSA__ERROR_CODE__ERROR_UNKNOWN_ID)
        LOG_INFO("kvhost", "request_id=%" PRIu64 " client=%s: %s", req->request_id, who,
                 b->message);
    else if (b->rep.error)
        LOG_WARN("kvhost", "request_id=%" PRIu64 " client=%s refused: %s", req->request_id, who,
                 b->message);
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void serve_one(struct kvh_server *s)
{
    struct nosa_msg_peer peer = {0};
    struct nosa_msg_frame frame = {0};
    char err[256];
    enum nosa_msg_recv_status st =
        nosa_msg_recv(s->sock, &peer, &frame, KVH_MAX_FRAME_BYTES, ZMQ_DONTWAIT, err, sizeof(err));
    if (st == NOSA_MSG_AGAIN || st == NOSA_MSG_FAILED) {
        if (st == NOSA_MSG_FAILED) LOG_WARN("kvhost", "receive failed: %s", err);
        return;
    }
    struct kvh_reply_buf b;
    memset(&b, 0, sizeof(b));
    nosa__kvh__kvh_reply__init(&b.rep);
    nosa__error__init(&b.error);
    b.rep.version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    if (st == NOSA_MSG_MALFORMED) {
        snprintf(b.message, sizeof(b.message), "malformed message: %s", err);
        reply_error(&b, NOSA__ERROR_CODE__ERROR_BAD_MESSAGE);
        LOG_WARN("kvhost", "%s", b.message);
    } else {
        handle_payload(s, &frame, &b);
    }
    s->requests++;
    if (b.rep.error) s->errors++;
    if (peer.len && nosa_msg_send(s->sock, &peer, &b.rep.base, err, sizeof(err)))
        LOG_WARN("kvhost", "sending a reply: %s", err);
    if (b.rep.body_case == NOSA__KVH__KVH_REPLY__BODY_ALLOC)
        NOSA_FAULT_POINT("kvhost.alloc.replied");
    nosa_msg_frame_free(&frame);
    free(b.groups);
    free(b.seq_groups);
    free(b.seq_group_ptrs);
}

int kvh_server_run(struct kvh_server *s, volatile sig_atomic_t *stop, char *err,
                   size_t errlen)
{
    while (!*stop) {
        zmq_pollitem_t item = {.socket = s->sock, .events = ZMQ_POLLIN};
        int n = zmq_poll(&item, 1, KVH_POLL_MS);
        if (n < 0) {
            if (errno == EINTR) continue;
            nosa_set_error(err, errlen, "zmq_poll: %s", zmq_strerror(errno));
            return -1;
        }
        if (n > 0) serve_one(s);
    }
    return 0;
}
