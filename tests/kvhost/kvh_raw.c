/* kvh_raw.c: see kvh_raw.h. */
#include "kvh_raw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "nosa_msg.h"

Nosa__Kvh__KvhReply *kvh_raw_call(void *sock, const void *data, size_t len)
{
    if (zmq_send(sock, data, len, 0) != (int)len) return NULL;
    struct nosa_msg_frame f = {0};
    char err[256];
    if (nosa_msg_recv(sock, NULL, &f, 1u << 20, 0, err, sizeof err) != NOSA_MSG_OK) return NULL;
    Nosa__Kvh__KvhReply *rep = (Nosa__Kvh__KvhReply *)nosa_msg_unpack(
        &nosa__kvh__kvh_reply__descriptor, f.data, f.len, err, sizeof err);
    nosa_msg_frame_free(&f);
    return rep;
}

Nosa__Kvh__KvhReply *kvh_raw_msg_call(void *sock, const Nosa__Kvh__KvhRequest *req)
{
    size_t n = protobuf_c_message_get_packed_size(&req->base);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return NULL;
    protobuf_c_message_pack(&req->base, buf);
    Nosa__Kvh__KvhReply *rep = kvh_raw_call(sock, buf, n);
    free(buf);
    return rep;
}

int kvh_raw_error_is(Nosa__Kvh__KvhReply *rep, Nosa__ErrorCode code, const char *needle,
                     char *why, size_t whylen)
{
    if (!rep) {
        snprintf(why, whylen, "no reply");
        return -1;
    }
    const char *msg = rep->error && rep->error->message ? rep->error->message : "";
    int rc = 0;
    if (!rep->error || rep->error->code != code)
        snprintf(why, whylen, "error code %d, want %d (%s)", rep->error ? (int)rep->error->code : -1,
                 (int)code, msg);
    else if (!strstr(msg, needle))
        snprintf(why, whylen, "message '%s' does not name '%s'", msg, needle);
    else if (rep->body_case != NOSA__KVH__KVH_REPLY__BODY__NOT_SET)
        snprintf(why, whylen, "an Error reply with a body");
    else
        rc = 1;
    nosa__kvh__kvh_reply__free_unpacked(rep, NULL);
    return rc ? 0 : -1;
}
