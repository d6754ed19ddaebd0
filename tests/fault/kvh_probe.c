/* kvh_probe.c: stats and block tables from a kv-host (kvh_probe.h). */
#include "kvh_probe.h"

#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include "common.pb-c.h"
#include "kvhost.pb-c.h"
#include "log.h"
#include "nosa_msg.h"

/* One request, one reply (bounded wait). Returns the reply (caller frees) or NULL. */
static Nosa__Kvh__KvhReply *kvh_call(void *sock, Nosa__Kvh__KvhRequest *req, char *err,
                                     size_t errlen)
{
    if (nosa_msg_send(sock, NULL, &req->base, err, errlen) != 0) return NULL;
    struct nosa_msg_frame frame = {0};
    enum nosa_msg_recv_status st =
        nosa_msg_recv(sock, NULL, &frame, NOSA_MSG_MAX_BYTES, 0, err, errlen);
    if (st != NOSA_MSG_OK) {
        if (st == NOSA_MSG_AGAIN) nosa_set_error(err, errlen, "kv-host did not answer in time");
        nosa_msg_frame_free(&frame);
        return NULL;
    }
    Nosa__Kvh__KvhReply *rep = (Nosa__Kvh__KvhReply *)nosa_msg_unpack(
        &nosa__kvh__kvh_reply__descriptor, frame.data, frame.len, err, errlen);
    nosa_msg_frame_free(&frame);
    return rep;
}

static int get_stats(void *sock, struct kvh_probe_snapshot *out, char *err, size_t errlen)
{
    Nosa__Kvh__KvhRequest req = NOSA__KVH__KVH_REQUEST__INIT;
    Nosa__Kvh__StatsRequest stats = NOSA__KVH__STATS_REQUEST__INIT;
    req.version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    req.request_id = 1;
    req.client = "fault-harness";
    req.body_case = NOSA__KVH__KVH_REQUEST__BODY_STATS;
    req.stats = &stats;
    Nosa__Kvh__KvhReply *rep = kvh_call(sock, &req, err, errlen);
    if (!rep) return -1;
    int rc = -1;
    if (rep->body_case == NOSA__KVH__KVH_REPLY__BODY_STATS) {
        out->n_groups = rep->stats->n_groups;
        out->free_groups = rep->stats->free_groups;
        out->n_seqs = rep->stats->n_seqs;
        out->generation = rep->stats->generation;
        rc = 0;
    } else {
        nosa_set_error(err, errlen, "stats: %s", rep->error ? rep->error->message : "no body");
    }
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return rc;
}

static int get_table(void *sock, uint64_t seq_id, struct kvh_probe_table *t, char *err,
                     size_t errlen)
{
    Nosa__Kvh__KvhRequest req = NOSA__KVH__KVH_REQUEST__INIT;
    Nosa__Kvh__TableRequest table = NOSA__KVH__TABLE_REQUEST__INIT;
    req.version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    req.request_id = 2;
    req.client = "fault-harness";
    req.body_case = NOSA__KVH__KVH_REQUEST__BODY_TABLE;
    table.seq_id = seq_id;
    req.table = &table;
    Nosa__Kvh__KvhReply *rep = kvh_call(sock, &req, err, errlen);
    if (!rep) return -1;
    int rc = 0;
    memset(t, 0, sizeof *t);
    t->seq_id = seq_id;
    if (rep->body_case == NOSA__KVH__KVH_REPLY__BODY_TABLE) {
        t->known = 1;
        t->n_groups = rep->table->n_groups < KVH_PROBE_MAX_GROUPS ? (uint32_t)rep->table->n_groups
                                                                  : KVH_PROBE_MAX_GROUPS;
        memcpy(t->groups, rep->table->groups, sizeof(uint32_t) * t->n_groups);
    } else if (!rep->error || rep->error->code != NOSA__ERROR_CODE__ERROR_UNKNOWN_ID) {
        nosa_set_error(err, errlen, "table of %llu: %s", (unsigned long long)seq_id,
                       rep->error ? rep->error->message : "no body");
        rc = -1;
    }
    protobuf_c_message_free_unpacked(&rep->base, NULL);
    return rc;
}

int kvh_probe_snapshot(const char *endpoint, const uint64_t *seq_ids, int n,
                       struct kvh_probe_snapshot *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
    int rc = -1;
    if (!sock) {
        nosa_set_error(err, errlen, "zmq socket: %s", zmq_strerror(zmq_errno()));
        goto out;
    }
    if (nosa_msg_socket_defaults(sock, 3000, err, errlen) != 0) goto out;
    if (zmq_connect(sock, endpoint) != 0) {
        nosa_set_error(err, errlen, "connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto out;
    }
    if (get_stats(sock, out, err, errlen) != 0) goto out;
    if (n > KVH_PROBE_MAX_SEQS) n = KVH_PROBE_MAX_SEQS;
    for (int i = 0; i < n; i++)
        if (get_table(sock, seq_ids[i], &out->tables[i], err, errlen) != 0) goto out;
    out->n_tables = n;
    rc = 0;
out:
    if (sock) zmq_close(sock);
    if (ctx) zmq_ctx_term(ctx);
    return rc;
}

int kvh_probe_compare(const struct kvh_probe_snapshot *before,
                      const struct kvh_probe_snapshot *after)
{
    int diffs = 0;
#define KVH_SAME(field)                                                                    \
    if (before->field != after->field) {                                                   \
        fprintf(stderr, "kv-host after --recover: " #field " %llu, before %llu\n",          \
                (unsigned long long)after->field, (unsigned long long)before->field);      \
        diffs++;                                                                           \
    }
    KVH_SAME(n_groups)
    KVH_SAME(free_groups)
    KVH_SAME(n_seqs)
#undef KVH_SAME
    for (int i = 0; i < before->n_tables && i < after->n_tables; i++) {
        const struct kvh_probe_table *b = &before->tables[i], *a = &after->tables[i];
        if (b->known != a->known || b->n_groups != a->n_groups ||
            memcmp(b->groups, a->groups, sizeof(uint32_t) * b->n_groups) != 0) {
            fprintf(stderr, "kv-host after --recover: sequence %llu: %s %u groups, before %s %u\n",
                    (unsigned long long)b->seq_id, a->known ? "known," : "unknown,", a->n_groups,
                    b->known ? "known," : "unknown,", b->n_groups);
            diffs++;
        }
    }
    return diffs;
}
