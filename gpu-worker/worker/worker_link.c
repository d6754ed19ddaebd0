/* worker_link.c: see worker_link.h.
 *
 * The socket has ZMQ_IMMEDIATE set, so nothing is queued towards a coordinator that is not
 * connected: a send that cannot go now fails at once (send timeout 0) and the message waits
 * in our own outbox. That keeps the order we need after a coordinator restart: Register
 * first, then what was held back. Connection changes come from a socket monitor. */
#include "worker_link.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "fault.h"
#include "log.h"
#include "nosa_msg.h"
#include "worker_clock.h"
#include "worker_validate.h"

/* Beyond this much held-back output worker_link_send fails (a message is lost)... */
#define LINK_OUTBOX_MAX_BYTES (64u << 20)
/* ...long after the worker stopped stepping at this much (worker_link_backlogged). */
#define LINK_BACKLOG_BYTES (1u << 20)
/* While unregistered and connected, Register is sent again this often. */
#define LINK_REGISTER_RESEND_MS 100
/* At close, what was sent last may take this long to leave. */
#define LINK_CLOSE_LINGER_MS 1000
/* The pulse thread looks this often whether a heartbeat is due. */
#define LINK_PULSE_TICK_MS 20

struct link_packed {
    uint8_t *data;
    size_t len;
};

struct worker_link {
    void *zctx;
    const struct nosa_msg_security *sec; /* borrowed */
    void *sock;
    void *monitor;
    char monitor_endpoint[64];
    unsigned sockets; /* made so far: each one's monitor gets its own endpoint */
    char endpoint[512];
    Nosa__Serve__Register reg; /* strings borrowed from the caller */
    uint64_t *running, *finished; /* the job ids the next Register lists */
    size_t n_running, n_finished;
    int connected;
    int registered;
    int ever_registered;
    int heartbeat_ms;
    int64_t last_register_ms;
    struct link_packed *outbox;
    size_t outbox_len, outbox_cap, outbox_head, outbox_bytes;

    /* The pulse thread, and what it sends: the counts of the caller's last Heartbeat. */
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_t pulse;
    int pulse_running;
    int stopping;
    int max_stall_ms;
    int64_t progress_ms;       /* the caller's last worker_link_progress */
    int64_t last_heartbeat_ms; /* the last Heartbeat sent, by either thread */
    uint32_t hb_running, hb_free_slots;
    int pulses;                /* sent since the last Heartbeat of the caller's */
    int left;                  /* the caller sent Heartbeat.leaving: no more pulses */
};

static uint8_t *pack_msg(const ProtobufCMessage *msg, size_t *len, char *err, size_t errlen)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        nosa_set_error(err, errlen, "out of memory packing a %zu-byte %s", n,
                       msg->descriptor->name);
        return NULL;
    }
    protobuf_c_message_pack(msg, buf);
    *len = n;
    return buf;
}

/* 0 sent, 1 not now (no coordinator connected, or its queue is full), -1 failed. */
static int send_bytes(struct worker_link *l, const uint8_t *data, size_t len, char *err,
                      size_t errlen)
{
    if (zmq_send(l->sock, data, len, ZMQ_DONTWAIT) >= 0) return 0;
    int e = zmq_errno();
    if (e == EAGAIN || e == EINTR) return 1;
    nosa_set_error(err, errlen, "send to coordinator %s: %s", l->endpoint, zmq_strerror(e));
    return -1;
}

static int send_now(struct worker_link *l, Nosa__Serve__WorkerMsg *msg, char *err,
                    size_t errlen)
{
    msg->version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    size_t len = 0;
    uint8_t *buf = pack_msg(&msg->base, &len, err, errlen);
    if (!buf) return -1;
    int rc = send_bytes(l, buf, len, err, errlen);
    free(buf);
    return rc;
}

static void send_register(struct worker_link *l)
{
    Nosa__Serve__WorkerMsg msg = NOSA__SERVE__WORKER_MSG__INIT;
    Nosa__Serve__Register reg = l->reg;
    reg.running_jobs = l->running;
    reg.n_running_jobs = l->n_running;
    reg.finished_jobs = l->finished;
    reg.n_finished_jobs = l->n_finished;
    msg.body_case = NOSA__SERVE__WORKER_MSG__BODY_REGISTER;
    msg.register_ = &reg;
    char err[256];
    l->last_register_ms = worker_now_ms();
    int rc = send_now(l, &msg, err, sizeof(err));
    if (rc < 0) LOG_WARN("worker", "register: %s", err);
    else if (rc == 0)
        LOG_INFO("worker", "register sent coordinator=%s running_jobs=%zu", l->endpoint,
                 l->n_running);
}

static int outbox_push(struct worker_link *l, uint8_t *data, size_t len, char *err,
                       size_t errlen)
{
    if (l->outbox_bytes + len > LINK_OUTBOX_MAX_BYTES) {
        nosa_set_error(err, errlen, "coordinator %s unreachable: %zu bytes of output held back",
                       l->endpoint, l->outbox_bytes);
        return -1;
    }
    if (l->outbox_head > 0 && l->outbox_len == l->outbox_cap) {
        size_t live = l->outbox_len - l->outbox_head;
        memmove(l->outbox, l->outbox + l->outbox_head, live * sizeof(*l->outbox));
        l->outbox_len = live;
        l->outbox_head = 0;
    }
    if (l->outbox_len == l->outbox_cap) {
        size_t cap = l->outbox_cap ? 2 * l->outbox_cap : 16;
        struct link_packed *p = realloc(l->outbox, cap * sizeof(*p));
        if (!p) {
            nosa_set_error(err, errlen, "out of memory holding back coordinator output");
            return -1;
        }
        l->outbox = p;
        l->outbox_cap = cap;
    }
    l->outbox[l->outbox_len].data = data;
    l->outbox[l->outbox_len].len = len;
    l->outbox_len++;
    l->outbox_bytes += len;
    return 0;
}

/* Sends held-back output in order until the socket would block. */
static int outbox_flush(struct worker_link *l, char *err, size_t errlen)
{
    while (l->outbox_head < l->outbox_len) {
        struct link_packed *p = &l->outbox[l->outbox_head];
        int rc = send_bytes(l, p->data, p->len, err, errlen);
        if (rc < 0) return -1;
        if (rc > 0) return 0;
        l->outbox_bytes -= p->len;
        free(p->data);
        p->data = NULL;
        l->outbox_head++;
    }
    l->outbox_head = l->outbox_len = 0;
    return 0;
}

/* A Heartbeat from the pulse thread (mutex held): the caller's last counts, no statistics
 * (the coordinator keeps the last ones it had). */
static void send_pulse(struct worker_link *l, int64_t now)
{
    Nosa__Serve__Heartbeat hb = NOSA__SERVE__HEARTBEAT__INIT;
    hb.worker_name = l->reg.worker_name;
    hb.running = l->hb_running;
    hb.free_slots = l->hb_free_slots;
    Nosa__Serve__WorkerMsg msg = NOSA__SERVE__WORKER_MSG__INIT;
    msg.body_case = NOSA__SERVE__WORKER_MSG__BODY_HEARTBEAT;
    msg.heartbeat = &hb;
    char err[256];
    int rc = send_now(l, &msg, err, sizeof(err));
    if (rc < 0) {
        LOG_WARN("worker", "pulse: %s", err);
        return;
    }
    if (rc > 0) return; /* not now: the next tick tries again */
    if (l->pulses++ == 0)
        LOG_INFO("worker", "step running for %lld ms: heartbeats from the pulse thread",
                 (long long)(now - l->progress_ms));
    l->last_heartbeat_ms = now;
}

static void *pulse_thread(void *arg)
{
    struct worker_link *l = arg;
    int stall_reported = 0;
    pthread_mutex_lock(&l->mu);
    while (!l->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += LINK_PULSE_TICK_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&l->wake, &l->mu, &until);
        if (l->stopping) break;
        int64_t now = worker_now_ms();
        if (now - l->progress_ms >= l->max_stall_ms) {
            if (!stall_reported)
                LOG_ERROR("worker", "no progress for %lld ms (--max-stall-ms %d): heartbeats "
                          "stop, the coordinator will move this worker's jobs",
                          (long long)(now - l->progress_ms), l->max_stall_ms);
            stall_reported = 1;
            continue;
        }
        stall_reported = 0;
        if (l->registered && !l->left && now - l->last_heartbeat_ms >= l->heartbeat_ms)
            send_pulse(l, now);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* A new DEALER socket (so a new ZeroMQ identity at the coordinator), its connection monitor,
 * and the connection to l->endpoint. On failure what was made stays for link_disconnect. */
static int link_connect(struct worker_link *l, char *err, size_t errlen)
{
    int one = 1, zero = 0;
    l->sock = zmq_socket(l->zctx, ZMQ_DEALER);
    if (!l->sock) {
        nosa_set_error(err, errlen, "coordinator link: zmq_socket: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    if (nosa_msg_socket_defaults(l->sock, -1, err, errlen)) return -1;
    if (zmq_setsockopt(l->sock, ZMQ_IMMEDIATE, &one, sizeof(one)) ||
        zmq_setsockopt(l->sock, ZMQ_SNDTIMEO, &zero, sizeof(zero))) {
        nosa_set_error(err, errlen, "coordinator link: setsockopt: %s",
                       zmq_strerror(zmq_errno()));
        return -1;
    }
    snprintf(l->monitor_endpoint, sizeof(l->monitor_endpoint), "inproc://worker-link-%p-%u",
             (void *)l, l->sockets++);
    if (zmq_socket_monitor(l->sock, l->monitor_endpoint,
                           ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED)) {
        nosa_set_error(err, errlen, "coordinator link: monitor: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    l->monitor = zmq_socket(l->zctx, ZMQ_PAIR);
    if (!l->monitor || nosa_msg_socket_defaults(l->monitor, -1, err, errlen) ||
        zmq_connect(l->monitor, l->monitor_endpoint)) {
        nosa_set_error(err, errlen, "coordinator link: monitor socket: %s",
                       zmq_strerror(zmq_errno()));
        return -1;
    }
    char why[512];
    if (nosa_msg_connect_secure(l->sec, l->sock, l->endpoint, why, sizeof(why))) {
        nosa_set_error(err, errlen, "coordinator link: connect %s: %s", l->endpoint, why);
        return -1;
    }
    return 0;
}

/* Closes the socket and its monitor; what the socket still holds gets linger_ms to leave. */
static void link_disconnect(struct worker_link *l, int linger_ms)
{
    if (l->sock) {
        if (zmq_setsockopt(l->sock, ZMQ_LINGER, &linger_ms, sizeof(linger_ms)))
            LOG_WARN("worker", "coordinator link: linger: %s", zmq_strerror(zmq_errno()));
        zmq_socket_monitor(l->sock, NULL, 0);
        zmq_close(l->sock);
        l->sock = NULL;
    }
    if (l->monitor) zmq_close(l->monitor);
    l->monitor = NULL;
    l->connected = 0;
    l->registered = 0;
}

/* The fault point worker.link.drop (docs/FAULTS.md): the connection breaks as in a network
 * drop while the process runs on. The socket goes with what it held (lost, as on a real
 * drop); the new one registers, and the worker sends every token again after the ack. */
static int link_drop(struct worker_link *l, char *err, size_t errlen)
{
    LOG_WARN("worker", "coordinator link dropped (fault point): a new connection registers");
    link_disconnect(l, 0);
    if (link_connect(l, err, errlen) == 0) return 0;
    link_disconnect(l, 0); /* what half got made; link_poll then fails the worker */
    return -1;
}

int worker_link_open(void *zctx, const struct nosa_msg_security *sec, const char *endpoint,
                     const Nosa__Serve__Register *reg, int heartbeat_ms, int max_stall_ms,
                     struct worker_link **out, char *err, size_t errlen)
{
    *out = NULL;
    struct worker_link *l = calloc(1, sizeof(*l));
    if (!l) {
        nosa_set_error(err, errlen, "out of memory");
        return -ENOMEM;
    }
    l->reg = *reg;
    l->heartbeat_ms = heartbeat_ms;
    l->max_stall_ms = max_stall_ms;
    l->progress_ms = worker_now_ms();
    snprintf(l->endpoint, sizeof(l->endpoint), "%s", endpoint);
    int e = pthread_mutex_init(&l->mu, NULL);
    if (e) {
        nosa_set_error(err, errlen, "coordinator link: mutex: %s", strerror(e));
        free(l);
        return -e;
    }
    pthread_condattr_t attr;
    if ((e = pthread_condattr_init(&attr)) == 0) {
        e = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* the clock of worker_now_ms */
        if (e == 0) e = pthread_cond_init(&l->wake, &attr);
        pthread_condattr_destroy(&attr);
    }
    if (e) {
        nosa_set_error(err, errlen, "coordinator link: condition: %s", strerror(e));
        pthread_mutex_destroy(&l->mu);
        free(l);
        return -e;
    }
    l->zctx = zctx;
    l->sec = sec;
    if (link_connect(l, err, errlen)) goto fail;
    if ((e = pthread_create(&l->pulse, NULL, pulse_thread, l))) {
        nosa_set_error(err, errlen, "coordinator link: pulse thread: %s", strerror(e));
        goto fail;
    }
    l->pulse_running = 1;
    *out = l;
    return 0;
fail:
    worker_link_close(l);
    return -EIO;
}

void worker_link_close(struct worker_link *l)
{
    if (!l) return;
    if (l->pulse_running) {
        pthread_mutex_lock(&l->mu);
        l->stopping = 1;
        pthread_cond_signal(&l->wake);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->pulse, NULL);
    }
    pthread_cond_destroy(&l->wake);
    pthread_mutex_destroy(&l->mu);
    /* The last messages (JobFinished, Heartbeat.leaving) were only handed to ZeroMQ: they get
     * this long to go out (the context's termination waits for them, at most that). */
    link_disconnect(l, LINK_CLOSE_LINGER_MS);
    for (size_t i = l->outbox_head; i < l->outbox_len; i++) free(l->outbox[i].data);
    free(l->outbox);
    free(l->running);
    free(l->finished);
    free(l);
}

static int set_ids(struct worker_link *l, uint64_t **list, size_t *len, const uint64_t *job_ids,
                   size_t n, char *err, size_t errlen)
{
    uint64_t *copy = NULL;
    if (n) {
        copy = malloc(n * sizeof(*copy));
        if (!copy) {
            nosa_set_error(err, errlen, "out of memory");
            return -ENOMEM;
        }
        memcpy(copy, job_ids, n * sizeof(*copy));
    }
    pthread_mutex_lock(&l->mu);
    free(*list);
    *list = copy;
    *len = n;
    pthread_mutex_unlock(&l->mu);
    return 0;
}

int worker_link_set_running(struct worker_link *l, const uint64_t *job_ids, size_t n,
                            char *err, size_t errlen)
{
    return set_ids(l, &l->running, &l->n_running, job_ids, n, err, errlen);
}

int worker_link_set_finished(struct worker_link *l, const uint64_t *job_ids, size_t n,
                             char *err, size_t errlen)
{
    return set_ids(l, &l->finished, &l->n_finished, job_ids, n, err, errlen);
}

static int link_send(struct worker_link *l, Nosa__Serve__WorkerMsg *msg, char *err,
                     size_t errlen)
{
    msg->version = NOSA__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    if (msg->body_case == NOSA__SERVE__WORKER_MSG__BODY_HEARTBEAT) { /* what pulses repeat */
        l->hb_running = msg->heartbeat->running;
        l->hb_free_slots = msg->heartbeat->free_slots;
        l->last_heartbeat_ms = worker_now_ms();
        l->pulses = 0;
        l->left = msg->heartbeat->leaving;
    }
    size_t len = 0;
    uint8_t *buf = pack_msg(&msg->base, &len, err, errlen);
    if (!buf) return -1;
    if (l->registered && l->outbox_head == l->outbox_len) {
        int rc = send_bytes(l, buf, len, err, errlen);
        if (rc <= 0) {
            free(buf);
            if (rc == 0 && msg->body_case == NOSA__SERVE__WORKER_MSG__BODY_TOKENS &&
                NOSA_FAULT_ACTION("worker.link.drop"))
                return link_drop(l, err, errlen);
            return rc;
        }
    }
    if (outbox_push(l, buf, len, err, errlen)) {
        free(buf);
        return -1;
    }
    return 0;
}

int worker_link_send(struct worker_link *l, Nosa__Serve__WorkerMsg *msg, char *err,
                     size_t errlen)
{
    pthread_mutex_lock(&l->mu);
    int rc = link_send(l, msg, err, errlen);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

static int link_send_error(struct worker_link *l, Nosa__ErrorCode code, const char *message,
                           char *err, size_t errlen)
{
    Nosa__Serve__WorkerMsg msg = NOSA__SERVE__WORKER_MSG__INIT;
    Nosa__Error e = NOSA__ERROR__INIT;
    e.code = code;
    e.message = (char *)message;
    msg.body_case = NOSA__SERVE__WORKER_MSG__BODY_ERROR;
    msg.error = &e;
    LOG_WARN("worker", "error to coordinator: %s", message);
    return send_now(l, &msg, err, errlen) < 0 ? -1 : 0;
}

int worker_link_send_error(struct worker_link *l, Nosa__ErrorCode code, const char *message,
                           char *err, size_t errlen)
{
    pthread_mutex_lock(&l->mu);
    int rc = link_send_error(l, code, message, err, errlen);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

static void handle_monitor_event(struct worker_link *l)
{
    zmq_msg_t ev, addr;
    zmq_msg_init(&ev);
    zmq_msg_init(&addr);
    if (zmq_msg_recv(&ev, l->monitor, ZMQ_DONTWAIT) < 0) goto done;
    /* Frame 1: event (u16) + value (u32); frame 2: the endpoint. */
    if (zmq_msg_more(&ev)) zmq_msg_recv(&addr, l->monitor, 0);
    if (zmq_msg_size(&ev) < 2) goto done;
    uint16_t event;
    memcpy(&event, zmq_msg_data(&ev), sizeof(event));
    if (event == ZMQ_EVENT_CONNECTED) {
        l->connected = 1;
        LOG_INFO("worker", "coordinator connected endpoint=%s", l->endpoint);
        if (!l->registered) send_register(l);
    } else if (event == ZMQ_EVENT_DISCONNECTED) {
        l->connected = 0;
        if (l->registered)
            LOG_WARN("worker", "coordinator went away endpoint=%s: holding jobs until it is "
                     "back", l->endpoint);
        /* A coordinator that comes back may be a new process: it must hear Register again. */
        l->registered = 0;
    }
done:
    zmq_msg_close(&ev);
    zmq_msg_close(&addr);
}

/* Handles what the link itself answers; returns WORKER_LINK_IDLE/REGISTERED for those, or
 * WORKER_LINK_MESSAGE when the caller gets msg. */
static int handle_coord_msg(struct worker_link *l, Nosa__Serve__CoordMsg *msg, char *err,
                            size_t errlen)
{
    char why[320];
    Nosa__ErrorCode code;
    if (worker_coord_msg_check_envelope(msg, &code, why, sizeof(why))) {
        link_send_error(l, code, why, err, errlen);
        return WORKER_LINK_IDLE;
    }
    switch (msg->body_case) {
    case NOSA__SERVE__COORD_MSG__BODY_REGISTER_ACK: {
        const Nosa__Serve__RegisterAck *ack = msg->register_ack;
        if (ack->heartbeat_ms) l->heartbeat_ms = (int)ack->heartbeat_ms;
        int again = l->ever_registered;
        l->registered = 1;
        l->ever_registered = 1;
        LOG_INFO("worker", "registered%s name=%s heartbeat_ms=%d", again ? " again" : "",
                 ack->worker_name, l->heartbeat_ms);
        if (outbox_flush(l, err, errlen)) return -1;
        return WORKER_LINK_REGISTERED;
    }
    case NOSA__SERVE__COORD_MSG__BODY_ERROR: {
        const Nosa__Error *e = msg->error;
        LOG_WARN("worker", "coordinator error code=%d: %s", (int)e->code,
                 e->message ? e->message : "");
        /* The coordinator does not know us (it restarted, or declared us dead): register. */
        if (e->code == NOSA__ERROR_CODE__ERROR_UNKNOWN_ID ||
            e->code == NOSA__ERROR_CODE__ERROR_UNAUTHORIZED) {
            if (l->registered) {
                l->registered = 0;
                send_register(l);
            }
        }
        return WORKER_LINK_IDLE;
    }
    default: return WORKER_LINK_MESSAGE; /* Assign, CancelJob, Shutdown */
    }
}

static int receive_one(struct worker_link *l, Nosa__Serve__CoordMsg **out, char *err,
                       size_t errlen)
{
    struct nosa_msg_frame frame;
    char why[256];
    enum nosa_msg_recv_status st =
        nosa_msg_recv(l->sock, NULL, &frame, NOSA_MSG_MAX_BYTES, ZMQ_DONTWAIT, why, sizeof(why));
    if (st == NOSA_MSG_AGAIN) return WORKER_LINK_IDLE;
    if (st == NOSA_MSG_FAILED) {
        nosa_set_error(err, errlen, "coordinator link: %s", why);
        return -1;
    }
    if (st == NOSA_MSG_MALFORMED) {
        /* Too large or more than one frame: why says which. */
        link_send_error(l, NOSA__ERROR_CODE__ERROR_BAD_MESSAGE, why, err, errlen);
        return WORKER_LINK_IDLE;
    }
    Nosa__Serve__CoordMsg *msg = (Nosa__Serve__CoordMsg *)nosa_msg_unpack(
        &nosa__serve__coord_msg__descriptor, frame.data, frame.len, why, sizeof(why));
    nosa_msg_frame_free(&frame);
    if (!msg) {
        link_send_error(l, NOSA__ERROR_CODE__ERROR_BAD_MESSAGE, why, err, errlen);
        return WORKER_LINK_IDLE;
    }
    int rc = handle_coord_msg(l, msg, err, errlen);
    if (rc == WORKER_LINK_MESSAGE) *out = msg;
    else nosa__serve__coord_msg__free_unpacked(msg, NULL);
    return rc;
}

static int link_poll(struct worker_link *l, int timeout_ms, Nosa__Serve__CoordMsg **out,
                     char *err, size_t errlen)
{
    if (!l->sock) {
        nosa_set_error(err, errlen, "coordinator link: no socket (a reconnect failed)");
        return -1;
    }
    if (l->registered && outbox_flush(l, err, errlen)) return -1;
    if (!l->registered && l->connected &&
        worker_now_ms() - l->last_register_ms >= LINK_REGISTER_RESEND_MS)
        send_register(l);
    /* Held-back output goes as soon as the socket takes it again. */
    short out_events = l->registered && l->outbox_head < l->outbox_len ? ZMQ_POLLOUT : 0;
    zmq_pollitem_t items[2] = {
        {.socket = l->sock, .events = ZMQ_POLLIN | out_events},
        {.socket = l->monitor, .events = ZMQ_POLLIN},
    };
    if (!l->registered && timeout_ms > LINK_REGISTER_RESEND_MS)
        timeout_ms = LINK_REGISTER_RESEND_MS;
    int n = zmq_poll(items, 2, timeout_ms);
    if (n < 0) {
        int e = zmq_errno();
        if (e == EINTR) return WORKER_LINK_IDLE;
        nosa_set_error(err, errlen, "coordinator link: poll: %s", zmq_strerror(e));
        return -1;
    }
    if (items[1].revents & ZMQ_POLLIN) handle_monitor_event(l);
    if ((items[0].revents & ZMQ_POLLOUT) && outbox_flush(l, err, errlen)) return -1;
    if (items[0].revents & ZMQ_POLLIN) return receive_one(l, out, err, errlen);
    return WORKER_LINK_IDLE;
}

/* The mutex is held while it waits: the pulse thread waits at most timeout_ms, and the
 * caller polls that long only while it does not step (then it sends heartbeats itself). */
int worker_link_poll(struct worker_link *l, int timeout_ms, Nosa__Serve__CoordMsg **out,
                     char *err, size_t errlen)
{
    *out = NULL;
    pthread_mutex_lock(&l->mu);
    int rc = link_poll(l, timeout_ms, out, err, errlen);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

void worker_link_progress(struct worker_link *l)
{
    pthread_mutex_lock(&l->mu);
    l->progress_ms = worker_now_ms();
    pthread_mutex_unlock(&l->mu);
}

/* No lock: only the caller's thread writes these (the pulse thread only reads them). */
int worker_link_registered(const struct worker_link *l) { return l->registered; }
int worker_link_backlogged(const struct worker_link *l)
{
    return l->outbox_bytes > LINK_BACKLOG_BYTES;
}
int worker_link_ever_registered(const struct worker_link *l) { return l->ever_registered; }
int worker_link_heartbeat_ms(const struct worker_link *l) { return l->heartbeat_ms; }
