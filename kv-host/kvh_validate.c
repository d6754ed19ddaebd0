/* kvh_validate.c: see kvh_validate.h. */
#include "kvh_validate.h"

#include <errno.h>

#include "common.pb-c.h"
#include "kvh_client.h"
#include "kvhost.pb-c.h"
#include "log.h"

static int seq_count_check(const char *what, size_t n, char *err, size_t errlen)
{
    if (n <= KVH_MAX_SEQS_PER_REQUEST) return 0;
    nosa_set_error(err, errlen, "%s: %zu sequences, the limit is %u", what, n,
                   KVH_MAX_SEQS_PER_REQUEST);
    return -E2BIG;
}

int kvh_request_validate(const ProtobufCMessage *msg, char *err, size_t errlen)
{
    if (!msg || msg->descriptor != &nosa__kvh__kvh_request__descriptor) {
        nosa_set_error(err, errlen, "not a KvhRequest");
        return -EINVAL;
    }
    const Nosa__Kvh__KvhRequest *req = (const Nosa__Kvh__KvhRequest *)msg;
    if (req->version != NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT) {
        nosa_set_error(err, errlen, "protocol version %u, this kv-host speaks version %d",
                       req->version, NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT);
        return -EPROTONOSUPPORT;
    }
    switch (req->body_case) {
    case NOSA__KVH__KVH_REQUEST__BODY_ALLOC:
        return seq_count_check("alloc", req->alloc->n_seqs, err, errlen);
    case NOSA__KVH__KVH_REQUEST__BODY_FREE:
        return seq_count_check("free", req->free->n_seq_ids, err, errlen);
    case NOSA__KVH__KVH_REQUEST__BODY_ATTACH:
    case NOSA__KVH__KVH_REQUEST__BODY_STATS:
    case NOSA__KVH__KVH_REQUEST__BODY_TABLE:
        return 0;
    default:
        nosa_set_error(err, errlen, "request has no body (attach, alloc, free, stats or table)");
        return -EINVAL;
    }
}
