/* The reply reader. A thread that waits for a reply sends its request, lets
 * go of gw_conn_lock and waits on its own: other threads keep sending (their
 * calls run on their own worker threads), and one synchronize never stalls
 * another thread's work. Whichever waiting thread finds no reader becomes the
 * reader: it reads frames and hands each reply to the thread registered for
 * its seq, each pushed frame to its handler (pushed.c). A waiter leaves only
 * once answered or when no reader is active, so no reader ever writes to a
 * waiter that has gone. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../generated/gw_ops.h"
#include "../diag/env.h"
#include "stream.h"
#include "tls.h"

typedef struct waiter {
    struct waiter *next;
    uint32_t seq;
    gw_rep *rep;
    int done, failed;
    unsigned op;  /* what it waits for, since when (long_waits.c) */
    uint64_t t0;
    int noticed;  /* a long-wait line named it: its answer gets one too */
} waiter;

pthread_mutex_t gw_recv_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t gw_recv_cv = PTHREAD_COND_INITIALIZER;
static waiter *waiters; /* under gw_recv_lock */
int gw_reader_busy; /* under gw_recv_lock */
static int drainer_running;

static void waiter_add(waiter *w)
{
    pthread_mutex_lock(&gw_recv_lock);
    w->next = waiters;
    waiters = w;
    pthread_mutex_unlock(&gw_recv_lock);
}

static void waiter_unlink_locked(waiter *w)
{
    for (waiter **pp = &waiters; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            return;
        }
    }
}

/* The oldest waiter (the list is newest first): 1 and its call, or 0 if none. */
int gw_replies_oldest(uint64_t *t0, unsigned *op, uint32_t *seq)
{
    pthread_mutex_lock(&gw_recv_lock);
    waiter *old = NULL;
    for (waiter *w = waiters; w; w = w->next)
        old = w;
    if (old)
        *t0 = old->t0, *op = old->op, *seq = old->seq;
    pthread_mutex_unlock(&gw_recv_lock);
    return old != NULL;
}

/* Waiter seq was named by a long-wait line; 0 if it has been answered meanwhile. */
int gw_replies_mark_noticed(uint32_t seq)
{
    pthread_mutex_lock(&gw_recv_lock);
    waiter *w = waiters;
    while (w && w->seq != seq)
        w = w->next;
    if (w)
        w->noticed = 1;
    pthread_mutex_unlock(&gw_recv_lock);
    return w != NULL;
}

/* The reader is done (gw_recv_lock held): after a failure nobody will be answered. */
void gw_reader_release_locked(int failed)
{
    gw_reader_busy = 0;
    if (failed) {
        for (waiter *w = waiters; w; w = w->next)
            w->done = w->failed = 1;
        waiters = NULL;
    }
    pthread_cond_broadcast(&gw_recv_cv);
}

static int grow_rep(gw_rep *r, size_t n)
{
    if (r->cap >= n)
        return 0;
    uint8_t *b = realloc(r->buf, n);
    if (!b)
        return -1;
    r->buf = b;
    r->cap = n;
    return 0;
}

/* Reads one frame as the reader and hands it on: a reply with seq `mine` into
 * `own` (*got set), another reply to its registered waiter, a pushed frame to
 * its handler (pushed.c). 0, or -1 with the connection lost. */
int gw_stream_read_one(uint32_t mine, gw_rep *own, int *got)
{
    gw_hdr h;
    if (gw_io_read_all(gw_conn_fd, &h, sizeof h, -1)) {
        gw_stream_lose("receive");
        return -1;
    }
    int pushed = gw_pushed_dispatch(&h);
    if (pushed)
        return pushed < 0 ? -1 : 0;
    waiter *w = NULL;
    if (h.op == GW_OP_REPLY && h.seq != mine) {
        pthread_mutex_lock(&gw_recv_lock);
        for (w = waiters; w && w->seq != h.seq; w = w->next)
            ;
        pthread_mutex_unlock(&gw_recv_lock);
    }
    if (h.op != GW_OP_REPLY || (h.seq != mine && !w) || h.len < GW_REPLY_REQ_SIZE || h.len > GW_MAX_PAYLOAD) {
        uint8_t msg[512] = {0};
        size_t n = h.len < sizeof msg - 1 ? h.len : sizeof msg - 1;
        gw_error_req e;
        size_t at;
        if (h.op == GW_OP_ERROR && n >= GW_ERROR_REQ_SIZE && gw_io_read_all(gw_conn_fd, msg, n, 1000) == 0 &&
            (at = gw_error_req_get(msg, n, &e)))
            gw_log("the server ended the session: %s", (const char *)msg + at);
        else
            gw_log("malformed reply from the server (op %u, seq %u, %u bytes, no request waits for it)", h.op,
                   h.seq, h.len);
        errno = EPROTO;
        gw_stream_lose("reply");
        return -1;
    }
    gw_rep *r = w ? w->rep : own;
    int direct = r->direct && h.len == GW_REPLY_REQ_SIZE + r->direct_len;
    size_t keep = direct ? GW_REPLY_REQ_SIZE : h.len;
    if (grow_rep(r, keep)) {
        gw_stream_lose("reply buffer");
        return -1;
    }
    if (gw_io_read_all(gw_conn_fd, r->buf, keep, -1) ||
        (direct && gw_io_read_all(gw_conn_fd, r->direct, r->direct_len, -1))) {
        gw_stream_lose("receive");
        return -1;
    }
    r->len = keep;
    r->direct_used = direct;
    GW_WIRE_COUNT(bytes, 0, sizeof h + h.len);
    GW_WIRE_COUNT(reply); /* beside the round trips: the worker counts the replies it sends, a second witness */
    if (w) {
        pthread_mutex_lock(&gw_recv_lock);
        waiter_unlink_locked(w);
        w->done = 1;
        pthread_cond_broadcast(&gw_recv_cv);
        pthread_mutex_unlock(&gw_recv_lock);
    } else {
        *got = 1;
    }
    return 0;
}

/* Frames the worker sends unasked (module information, delivered copies, device
 * printf output) are read by whichever thread waits for a reply. An
 * application that waits for nothing for a long while (CPU work after an
 * asynchronous copy into pinned memory) would leave them unread, the worker's
 * writes would stall, and the server ends a session that reads nothing for its
 * stall timeout. So every DRAIN_MS, while no thread reads, the drainer takes
 * the reader role and reads what has arrived: one wake-up a second, none per call. */
#define DRAIN_MS 1000

static void *drainer(void *arg)
{
    (void)arg;
    gw_rep scratch = {0}; /* for a reply with seq 0, which no request has */
    for (;;) {
        struct timespec pause = {DRAIN_MS / 1000, (DRAIN_MS % 1000) * 1000000L};
        nanosleep(&pause, NULL);
        pthread_mutex_lock(&gw_recv_lock);
        for (;;) {
            struct pollfd pfd = {.fd = gw_conn_fd, .events = POLLIN};
            if (gw_reader_busy || waiters || gw_conn_lost || gw_conn_fd < 0 || gw_io_poll_in(&pfd, 1, 0) <= 0)
                break;
            gw_reader_busy = 1;
            pthread_mutex_unlock(&gw_recv_lock);
            int got = 0;
            int rc = gw_stream_read_one(0, &scratch, &got);
            pthread_mutex_lock(&gw_recv_lock);
            gw_reader_release_locked(rc != 0);
            if (rc)
                break;
        }
        int lost = gw_conn_lost;
        pthread_mutex_unlock(&gw_recv_lock);
        if (lost)
            break;
    }
    free(scratch.buf);
    return NULL;
}

void gw_replies_start_drainer(void)
{
    if (!drainer_running)
        drainer_running = gw_start_helper_thread(drainer) == 0;
}

/* GPUWIRE_SPIN_US=N: a thread about to read its reply first polls the
 * connection for up to N us before sleeping in the read, as the driver's
 * synchronize spins by default (CU_CTX_SCHED_AUTO: when the machine has more
 * cores than contexts). A sleeping thread's wake-up is paid after the reply
 * arrives, and the worker's send of delivered bytes likely waits for the
 * reader too (a worker timeline on the H100 machine: 80 us to send 200 KB). Default: 10000 on a machine
 * of 8 or more cores (llama.cpp tg128 on an H100, client and server spinning:
 * 0.96 of native against 0.89-0.93, bench/results.md), else 0 (on a small
 * machine the spin takes the core the server or the application needs). */
#define SPIN_DEFAULT_US 10000
#define SPIN_MIN_CPUS 8
static uint64_t spin_ns(void)
{
    static int64_t v = -1;
    if (v < 0) {
        unsigned long long us = sysconf(_SC_NPROCESSORS_ONLN) >= SPIN_MIN_CPUS ? SPIN_DEFAULT_US : 0;
        char then[64];
        snprintf(then, sizeof then, "using the default, %llu", us);
        gw_env_int("GPUWIRE_SPIN_US", 0, 1000000, then, &us);
        v = (int64_t)us * 1000;
    }
    return (uint64_t)v;
}

static void spin_until_readable(void)
{
    uint64_t ns = spin_ns();
    if (!ns || gw_tls_of(gw_conn_fd)) /* TLS may hold decrypted bytes poll cannot see */
        return;
    uint64_t until = gw_now_ns() + ns;
    struct pollfd pfd = {.fd = gw_conn_fd, .events = POLLIN};
    while (poll(&pfd, 1, 0) == 0 && gw_now_ns() < until)
        ;
}

/* Waits until w is answered, reading for everyone while no one else does. */
static int wait_reply(waiter *w)
{
    pthread_mutex_lock(&gw_recv_lock);
    while (!w->done) {
        if (gw_reader_busy) {
            pthread_cond_wait(&gw_recv_cv, &gw_recv_lock);
            continue;
        }
        if (gw_conn_lost) {
            waiter_unlink_locked(w);
            w->done = w->failed = 1;
            break;
        }
        gw_reader_busy = 1;
        pthread_mutex_unlock(&gw_recv_lock);
        spin_until_readable();
        int got = 0;
        int rc = gw_stream_read_one(w->seq, w->rep, &got);
        pthread_mutex_lock(&gw_recv_lock);
        if (got) {
            waiter_unlink_locked(w);
            w->done = 1;
        }
        gw_reader_release_locked(rc != 0);
    }
    pthread_mutex_unlock(&gw_recv_lock);
    return w->failed ? -1 : 0;
}

/* GPUWIRE_TRACE_RT=1: one stderr line per round trip (op, first arguments,
 * time waited), to see which calls still wait and in what order. */
static int trace_round_trips(void) { return gw_trace_rt_level() > 0; }

/* set on a thread of gpuwire's own (state/preload.c): its round trips are
 * traced as such, since the application never waits for them */
static __thread int background;
void gw_mark_background_thread(void) { background = 1; }

static void trace_round_trip(const gw_req *q, uint64_t t0, int32_t res)
{
    uint64_t a[4] = {0};
    size_t n = q->len > sizeof(gw_hdr) ? q->len - sizeof(gw_hdr) : 0;
    memcpy(a, q->buf + sizeof(gw_hdr), n < sizeof a ? n : sizeof a);
    gw_log("%s %s args %llx %llx %llx %llx -> %d after %.1f us", background ? "rt-background" : "rt",
           q->op >= 256 ? gw_op_name(q->op) : "control op",
           (unsigned long long)a[0], (unsigned long long)a[1], (unsigned long long)a[2], (unsigned long long)a[3],
           res, (gw_now_ns() - t0) / 1e3);
}

CUresult gw_req_call(gw_req *q, gw_rep **out)
{
    gw_rep *r = &gw_tls_rep;
    r->len = r->pos = 0;
    r->short_read = 0;
    *out = r;
#ifndef GW_NVML_CLIENT
    if (gw_servers_n > 1) { /* several servers: maybe another's (servers.c) */
        int k = gw_route_of(q);
        r->route = k;
        if (k != 0)
            return gw_link_call(k, q, r);
    }
#endif
    CUresult rc = gw_stream_usable(q);
    if (rc != CUDA_SUCCESS)
        return rc;
    uint64_t t0 = gw_now_ns();
    waiter w = {.rep = r, .op = q->op, .t0 = t0};
#ifndef GW_NVML_CLIENT
    gw_long_waits_start();
#endif
    gw_stream_lock();
    w.seq = gw_next_seq++;
    waiter_add(&w); /* before it leaves: its reply may come at once */
    (void)(gw_stream_queue_locked(q, w.seq) || gw_stream_flush_locked()); /* a failure shows in wait_reply */
    pthread_mutex_unlock(&gw_conn_lock);
    int lost = wait_reply(&w);
#ifndef GW_NVML_CLIENT
    if (w.noticed) /* set under gw_recv_lock before the reader unlinked it */
        gw_long_wait_ended(q->op, t0);
#endif
    if (lost)
        return CUDA_ERROR_DEVICE_UNAVAILABLE;
    GW_WIRE_COUNT(round_trip, q->op, gw_now_ns() - t0);
    gw_reply_req rep = {0};
    r->pos = gw_reply_req_get(r->buf, r->len, &rep); /* every reply read holds its result */
    if (trace_round_trips())
        trace_round_trip(q, t0, rep.result);
    if (rep.result != CUDA_SUCCESS && gw_debug())
        gw_log("%s returned %d", q->op >= 256 ? gw_op_name(q->op) : "control op", rep.result);
    gw_after_reply(q->op); /* a round trip may have seen device work finish */
    gw_batch_note_synchronized(q->op);
    return (CUresult)rep.result;
}


/* A forked child: no reader, nobody waiting, no drainer (session.c). */
void gw_replies_after_fork(void)
{
    drainer_running = 0;
    pthread_mutex_init(&gw_recv_lock, NULL);
    pthread_cond_init(&gw_recv_cv, NULL);
    waiters = NULL;
    gw_reader_busy = 0;
#ifndef GW_NVML_CLIENT
    gw_long_waits_after_fork();
#endif
}
