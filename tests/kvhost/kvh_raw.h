/* kvh_raw.h: raw frames to a kv-host over a DEALER socket, for the bad-input tests
 * (test_kvh_bad_input, and tests/fault's bad-input fault against a serving node): bytes or a
 * KvhRequest sent as they are (no client library checks in between), the reply decoded, and
 * an Error reply compared with what the kv-host must say. */
#ifndef NOSA_TEST_KVH_RAW_H
#define NOSA_TEST_KVH_RAW_H

#include <stddef.h>

#include "kvhost.pb-c.h"

/* Sends data as one frame and returns the decoded reply; NULL when the send failed, no
 * reply came within the socket's receive timeout, or the reply did not decode. */
Nosa__Kvh__KvhReply *kvh_raw_call(void *sock, const void *data, size_t len);
/* The same for a request packed as it is (its version included). */
Nosa__Kvh__KvhReply *kvh_raw_msg_call(void *sock, const Nosa__Kvh__KvhRequest *req);
/* 0 when rep is an Error with this code, a message containing needle and no body; else -1
 * with why set. Frees rep (NULL: no reply, -1). */
int kvh_raw_error_is(Nosa__Kvh__KvhReply *rep, Nosa__ErrorCode code, const char *needle,
                     char *why, size_t whylen);

#endif
