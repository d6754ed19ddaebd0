/* kvh_validate.c: see kvh_validate.h. */
#include "kvh_validate.h"

#include <errno.h>

#include "common.pb-c.h"
#include "kvh_client.h"
#include "kvhost.pb-c.h"
#include "log.h"

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
        if (req->alloc->n_seqs > KVH_MAX_SEQS_PER_REQUEST) {
            nosa_set_error(err, errlen, "alloc: %zu sequences, the limit is %u",
                           req->alloc->n_seqs, KVH_MAX_SEQS_PER_REQUEST);
            return -E2BIG;
        }
        return 0;
    case NOSA__KVH__KVH_REQUEST__BODY_FREE:
        if (req->free->n_seq_ids > KVH_MAX_SEQS_PER_REQUEST) {
            nosa_set_error(err, errlen, "free: %zu sequences, the limit is %u",
                           req->free->n_seq_ids, KVH_MAX_SEQS_PER_REQUEST);
            return -E2BIG;
        }
        return 0;
    case NOSA__KVH__KVH_REQUEST__BODY_ATTACH:
    case NOSA__KVH__KVH_REQUEST__BODY_STATS:
    case NOSA__KVH__KVH_REQUEST__BODY_TABLE:
        return 0;
    default:
        nosa_set_error(err, errlen, "request has no body (attach, alloc, free, stats or table)");
        return -EINVAL;
    }
}
