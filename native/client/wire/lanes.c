/* Lanes: extra connections to the session's worker that carry the bytes of
 * large copies, both ways (docs/protocol.md "Lanes"). One TCP stream
 * moves about what one core copies through the kernel; a copy spread over
 * several streams, each written by its own thread here and read by its own
 * thread in the worker, is not held to that.
 *
 * Order stays the session's: each piece of a copy is an ordinary copy frame
 * on the session's connection (flag GW_F_LANE: "your bytes are lane k's next
 * data frame"), so the worker runs it exactly where the application issued
 * it. The lanes are opened at the first large copy, or before it in the
 * background when page-locked memory big enough is made; if that fails the copies
 * go on the session's connection as before. GPUWIRE_LANES=N uses at most N
 * (0: none).
 *
 * Device-to-host copies ask for each piece on the session's connection (the
 * reply carries its result) with a tag; the worker sends the piece's bytes on
 * the lane, where this side's receiver thread reads them straight into the
 * application's buffer. Every tagged piece gets exactly one frame back. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../diag/env.h"
#include "../diag/progress.h"
#include "stream.h"

/* A copy this big goes on the lanes once they are open: one TCP stream moves
 * 3 to 4.5 GB/s on the H100 machine (tools/tcp-speed.py), so a copy of a
 * few MB (llama.cpp's prompt inputs) is held to that on one stream while
 * the GPU waits for it. */
#define LANE_MIN_BYTES ((size_t)1 << 20)
/* One this big opens them itself, inside the copy; a smaller one only starts
 * their opening in the background and goes on the session's connection. */
#define LANE_OPEN_BYTES (2 * (size_t)GW_COPY_CHUNK)
#define LANE_ACK_MS 5000

typedef struct waiter {
    pthread_mutex_t m;
    pthread_cond_t cv;
    size_t left; /* pieces not yet written */
    int failed;
} waiter;

typedef struct piece {
    struct piece *next;
    const uint8_t *p;
    uint32_t len, seq;
    waiter *w;
} piece;

typedef struct lane {
    int fd;
    pthread_mutex_t m;
    pthread_cond_t cv;
    piece *head, *tail;
    uint32_t next_seq; /* under order_lock */
} lane;

/* A device-to-host piece expected on a lane (under in_lock). */
typedef struct expected {
    struct expected *next;
    uint32_t tag, len;
    uint8_t *dst;
    int state; /* 0: waiting, 1: landed, 2: failed on the worker, 3: lane lost, 4: landing now */
} expected;

static pthread_mutex_t in_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t in_cv = PTHREAD_COND_INITIALIZER;
static expected *expecting;
static uint32_t next_tag;
static int in_lost; /* a lane's receiving side broke: no piece lands any more */

static pthread_mutex_t order_lock = PTHREAD_MUTEX_INITIALIZER; /* copy frames and pieces keep one order */
static int state;   /* 0: not tried, 1: open, -1: not used (under order_lock) */
static unsigned nlanes, next_lane;
static lane lanes[GW_LANES_MAX];

static void piece_done(piece *pc, int failed)
{
    waiter *w = pc->w;
    if (!failed)
        gw_progress_sent(pc->len); /* this piece's bytes have left (diag/progress.c) */
    pthread_mutex_lock(&w->m);
    w->failed |= failed;
    if (--w->left == 0)
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->m);
    free(pc);
}

static void *sender(void *arg)
{
    lane *l = arg;
    int broken = 0;
    for (;;) {
        pthread_mutex_lock(&l->m);
        while (!l->head)
            pthread_cond_wait(&l->cv, &l->m);
        piece *pc = l->head;
        l->head = pc->next;
        if (!l->head)
            l->tail = NULL;
        pthread_mutex_unlock(&l->m);
        gw_hdr h = {.len = pc->len, .op = GW_OP_LANE, .seq = pc->seq};
        if (!broken && (gw_io_write_all(l->fd, &h, sizeof h) || gw_io_write_all(l->fd, pc->p, pc->len))) {
            broken = 1; /* the worker lost this lane: the session cannot go on */
            gw_io_lost("lane send");
        }
        if (!broken) {
            GW_WIRE_COUNT(bytes, sizeof h + pc->len, 0);
            GW_WIRE_COUNT(lane_piece, (unsigned)(l - lanes), pc->len); /* which lane: are they all used? */
        }
        piece_done(pc, broken);
    }
    return NULL;
}

static int (*land_delivered)(int fd, uint32_t len);
static void (*delivered_lost)(void);

void gw_lanes_on_delivered(int (*land)(int fd, uint32_t len), void (*lost)(void))
{
    land_delivered = land;
    delivered_lost = lost;
}

int gw_lanes_lost(void)
{
    pthread_mutex_lock(&in_lock);
    int lost = in_lost;
    pthread_mutex_unlock(&in_lock);
    return lost;
}

int gw_lanes_receiving(void)
{
    return __atomic_load_n(&state, __ATOMIC_ACQUIRE) > 0 && land_delivered && !gw_lanes_lost() &&
           (gw_servers_n < 2 || gw_route_now() == 0);
}

static void lose_incoming(const char *why)
{
    pthread_mutex_lock(&in_lock);
    if (!in_lost)
        gw_log("copy lane: %s", why);
    in_lost = 1;
    for (expected *e = expecting; e; e = e->next)
        if (!e->state)
            e->state = 3;
    pthread_cond_broadcast(&in_cv);
    pthread_mutex_unlock(&in_lock);
    if (delivered_lost)
        delivered_lost(); /* a delivery waiting for its pieces waits no more */
    gw_io_lost("lane receive");
}

/* Reads the frames of device-to-host pieces off one lane. A frame for no
 * piece this process waits for, or of another length, is the server's error:
 * the session cannot go on (nothing is written outside a waiting buffer). */
static void *receiver(void *arg)
{
    lane *l = arg;
    for (;;) {
        gw_hdr h;
        if (gw_io_read_all(l->fd, &h, sizeof h, -1)) {
            lose_incoming("the server closed a lane");
            return NULL;
        }
        if (h.op == GW_OP_DELIVERED) { /* a delivery's piece (docs/protocol.md "Lanes") */
            if (h.flags || h.len < GW_DELIVERED_REQ_SIZE || !land_delivered || land_delivered(l->fd, h.len)) {
                lose_incoming("a malformed delivery piece, or the lane closed inside one");
                return NULL;
            }
            GW_WIRE_COUNT(bytes, 0, sizeof h + h.len);
            GW_WIRE_COUNT(lane_piece, (unsigned)(l - lanes), h.len - GW_DELIVERED_REQ_SIZE);
            GW_WIRE_COUNT(lanes, 0, h.len - GW_DELIVERED_REQ_SIZE);
            continue;
        }
        pthread_mutex_lock(&in_lock);
        expected *e = expecting;
        while (e && (e->tag != h.seq || e->state))
            e = e->next;
        int ok = h.op == GW_OP_LANE && e && (h.flags == 0 ? h.len == e->len : h.flags == GW_LANE_PIECE_FAILED && h.len == 0);
        if (ok)
            e->state = 4; /* its copy waits until the bytes are in */
        pthread_mutex_unlock(&in_lock);
        if (!ok) {
            lose_incoming("a frame for no device-to-host piece this client waits for");
            return NULL;
        }
        if (h.len && gw_io_read_all(l->fd, e->dst, h.len, -1)) {
            pthread_mutex_lock(&in_lock);
            e->state = 3;
            pthread_mutex_unlock(&in_lock);
            lose_incoming("the server closed a lane inside a piece");
            return NULL;
        }
        if (h.len) {
            GW_WIRE_COUNT(bytes, 0, sizeof h + h.len);
            GW_WIRE_COUNT(lane_piece, (unsigned)(l - lanes), h.len);
        }
        pthread_mutex_lock(&in_lock);
        e->state = h.flags ? 2 : 1;
        pthread_cond_broadcast(&in_cv);
        pthread_mutex_unlock(&in_lock);
    }
}

/* Dials lane k and waits for the worker to accept it; the fd or -1 (logged). */
static int open_lane(const gw_lane_grant *g, unsigned k)
{
    char why[160];
    int fd = gw_io_dial_server(why, sizeof why);
    if (fd < 0) {
        gw_log("cannot open copy lane %u (%s): large copies use the session's connection only", k, why);
        return -1;
    }
    struct {
        gw_hdr h;
        gw_lane_hello hi;
    } m = {.h = {.len = sizeof(gw_lane_hello), .op = GW_OP_LANE}, .hi = {.session = g->session, .lane = k}};
    memcpy(m.hi.magic, GW_HELLO_MAGIC, 8);
    memcpy(m.hi.token, g->token, sizeof m.hi.token);
    gw_hdr a;
    uint8_t *p = NULL;
    gw_error_req refusal;
    size_t at;
    if (gw_io_write_all(fd, &m, sizeof m) || gw_io_read_frame(fd, &a, &p, LANE_ACK_MS)) {
        gw_log("copy lane %u was not accepted (%s): large copies use the session's connection only", k,
               errno == EAGAIN || errno == ETIMEDOUT ? "no answer" : strerror(errno));
    } else if (a.op == GW_OP_ERROR && (at = gw_error_req_get(p, a.len, &refusal))) {
        gw_log("copy lane %u refused: %.*s; large copies use the session's connection only", k, (int)(a.len - at),
               (const char *)p + at);
    } else if (a.op != GW_OP_LANE || a.len || a.seq != k) {
        gw_log("copy lane %u: unexpected answer (op %u); large copies use the session's connection only", k, a.op);
    } else {
        free(p);
        return fd;
    }
    free(p);
    close(fd);
    return -1;
}

/* Under order_lock: opens the lanes the worker granted (at most GPUWIRE_LANES). */
static void open_lanes_locked(void)
{
    state = -1;
    const gw_lane_grant *g = gw_handshake_lanes();
    unsigned long long want = GW_LANES_MAX;
    gw_env_int("GPUWIRE_LANES", 0, GW_LANES_MAX, "using the default, as many as the server grants", &want);
    unsigned n = g ? (g->lanes < want ? g->lanes : want) : 0;
    if (!n)
        return;
    for (unsigned k = 0; k < n; k++) {
        int fd = open_lane(g, k);
        if (fd < 0) {
            for (unsigned j = 0; j < k; j++)
                close(lanes[j].fd);
            return;
        }
        lanes[k] = (lane){.fd = fd};
        pthread_mutex_init(&lanes[k].m, NULL);
        pthread_cond_init(&lanes[k].cv, NULL);
    }
    /* the lanes' threads must not take part in the application's signals */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    unsigned started = 0;
    for (pthread_t t; started < n; started++)
        if (pthread_create(&t, &a, sender, &lanes[started]) ||
            pthread_create(&t, &a, receiver, &lanes[started]))
            break;
    pthread_attr_destroy(&a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < n) { /* lanes whose threads all run are used; one with a thread is left open, unused */
        gw_log("could not start copy lane threads: large copies use %u lane(s)", started);
        for (unsigned k = started + 1; k < n; k++)
            close(lanes[k].fd);
        n = started;
    }
    nlanes = n;
    __atomic_store_n(&state, n ? 1 : -1, __ATOMIC_RELEASE); /* read unlocked by gw_lanes_for */
    GW_WIRE_COUNT(lanes, n, 0);
    if (gw_debug())
        gw_log("%u copy lanes open", n);
}

int gw_lanes_for(size_t n)
{
    if (n < LANE_MIN_BYTES || (gw_servers_n > 1 && gw_route_now() != 0)) /* lanes are server 0's only */
        return 0;
    if (n < LANE_OPEN_BYTES) { /* never waits for an opening (it holds order_lock) */
        int st = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
        if (!st)
            gw_lanes_prepare(LANE_OPEN_BYTES);
        return st > 0;
    }
    pthread_mutex_lock(&order_lock);
    if (!state)
        open_lanes_locked();
    int on = state > 0;
    pthread_mutex_unlock(&order_lock);
    return on;
}

/* Opening the lanes costs, for each, a connection, the server's hand-over and
 * the worker's acceptance, one after the other: done at the first large copy,
 * all of it falls inside that copy (an event-timed first 16 MiB copy from
 * page-locked memory, simpleMultiCopy's, measured well below the transport's
 * rate). Page-locked memory big enough for a lane is made for such copies, so
 * its allocation opens them in the background; a copy that comes meanwhile
 * waits for the opening under order_lock as it would have opened them. */
static atomic_int prepare_started;

static void *prepare_lanes(void *arg)
{
    (void)arg;
    gw_lanes_for(LANE_OPEN_BYTES);
    return NULL;
}

void gw_lanes_prepare(size_t n)
{
    if (n < LANE_OPEN_BYTES || !gw_handshake_lanes() || gw_route_now() != 0 ||
        atomic_exchange(&prepare_started, 1))
        return;
    if (gw_start_helper_thread(prepare_lanes)) /* the first large copy opens them */
        atomic_store(&prepare_started, 0);
}

/* The size of a copy's pieces (at most a cache chunk). A copy of a few chunks
 * left one lane with more of them than another (16 MiB over 3 lanes: 8, 4 and
 * 4 MiB), and a copy ends when its busiest lane does: such a copy goes in
 * equal pieces, the same number on every lane. A stored copy's pieces stay the
 * cache's chunks (the worker names them so); a long copy's imbalance is at
 * most one chunk of many. */
#define BALANCE_CHUNKS_PER_LANE 4
static size_t piece_bytes(size_t n, int store)
{
    size_t chunks = (n + GW_COPY_CHUNK - 1) / GW_COPY_CHUNK;
    if (store || nlanes < 2 || chunks % nlanes == 0 || chunks > BALANCE_CHUNKS_PER_LANE * nlanes)
        return GW_COPY_CHUNK;
    size_t k = (chunks + nlanes - 1) / nlanes * nlanes;
    size_t len = ((n + k - 1) / k + 4095) & ~(size_t)4095; /* whole pages: never more than a chunk */
    return len;
}

CUresult gw_lanes_htod(unsigned op, CUdeviceptr dst, const void *src, size_t n, uint64_t stream, int store)
{
    size_t chunk = piece_bytes(n, store);
    size_t pieces = (n + chunk - 1) / chunk;
    waiter w = {.left = pieces};
    pthread_mutex_init(&w.m, NULL);
    pthread_cond_init(&w.cv, NULL);
    CUresult rc = CUDA_SUCCESS;
    size_t queued = 0;
    pthread_mutex_lock(&order_lock);
    for (size_t off = 0; off < n && rc == CUDA_SUCCESS; off += chunk) {
        uint32_t len = (uint32_t)(n - off < chunk ? n - off : chunk);
        unsigned k = next_lane++ % nlanes;
        piece *pc = malloc(sizeof *pc);
        if (!pc) {
            rc = CUDA_ERROR_OUT_OF_MEMORY;
            break;
        }
        gw_req *q = gw_req_begin_quiet(op);
        gw_put_fields(q, gw_lane_htod_req, {.dst = dst + off, .stream = stream, .lane = k, .bytes = len});
        /* STORE: a cold upload's piece, one cache chunk, stored by the worker as a plain frame's */
        gw_req_set_flags(q, GW_F_LANE | (store ? GW_F_STORE : 0));
        rc = gw_req_post(q);
        if (rc != CUDA_SUCCESS) {
            free(pc);
            break;
        }
        /* the worker now waits for lane k's next data frame: it must be this piece */
        *pc = (piece){.p = (const uint8_t *)src + off, .len = len, .seq = lanes[k].next_seq++, .w = &w};
        lane *l = &lanes[k];
        pthread_mutex_lock(&l->m);
        if (l->tail)
            l->tail->next = pc;
        else
            l->head = pc;
        l->tail = pc;
        pthread_cond_signal(&l->cv);
        pthread_mutex_unlock(&l->m);
        queued++;
    }
    pthread_mutex_unlock(&order_lock);
    /* the copy frames go now: the worker takes the lanes' bytes in their order */
    if (gw_flush() && rc == CUDA_SUCCESS)
        rc = CUDA_ERROR_DEVICE_UNAVAILABLE;
    pthread_mutex_lock(&w.m);
    w.left -= pieces - queued; /* pieces never handed to a lane */
    while (w.left)
        pthread_cond_wait(&w.cv, &w.m);
    pthread_mutex_unlock(&w.m);
    pthread_mutex_destroy(&w.m);
    pthread_cond_destroy(&w.cv);
    if (w.failed && rc == CUDA_SUCCESS)
        rc = CUDA_ERROR_DEVICE_UNAVAILABLE;
    if (rc == CUDA_SUCCESS)
        GW_WIRE_COUNT(lanes, 0, n);
    return rc;
}

CUresult gw_lanes_dtoh(unsigned op, void *dst, CUdeviceptr src, size_t n, uint64_t stream)
{
    size_t chunk = piece_bytes(n, 0);
    size_t pieces = (n + chunk - 1) / chunk;
    expected *e = calloc(pieces, sizeof *e);
    if (!e)
        return CUDA_ERROR_OUT_OF_MEMORY;
    /* expected before asked for: a piece's bytes may come before its reply */
    pthread_mutex_lock(&in_lock);
    int lost = in_lost;
    for (size_t k = 0; k < pieces; k++) {
        size_t off = k * chunk;
        e[k] = (expected){.tag = next_tag++, .dst = (uint8_t *)dst + off,
                          .len = (uint32_t)(n - off < chunk ? n - off : chunk), .next = expecting};
        expecting = &e[k];
    }
    pthread_mutex_unlock(&in_lock);
    pthread_mutex_lock(&order_lock); /* lanes are taken in turn by every copy (before conn_lock) */
    unsigned k0 = next_lane;
    next_lane += (unsigned)pieces;
    pthread_mutex_unlock(&order_lock);
    CUresult rc = lost ? CUDA_ERROR_DEVICE_UNAVAILABLE : gw_burst_begin(op);
    size_t asked = 0;
    uint32_t first = 0;
    if (rc == CUDA_SUCCESS) {
        for (; asked < pieces && rc == CUDA_SUCCESS; asked++) {
            gw_req *q = gw_req_begin_quiet(op);
            gw_put_fields(q, gw_lane_dtoh_req,
                          {.src = src + asked * chunk, .n = e[asked].len, .stream = stream,
                           .lane = (k0 + (unsigned)asked) % nlanes, .tag = e[asked].tag});
            gw_req_set_flags(q, GW_F_COLLECT | GW_F_LANE);
            uint32_t seq;
            rc = gw_burst_queue(q, &seq);
            if (asked == 0)
                first = seq;
        }
        if (rc != CUDA_SUCCESS)
            asked--; /* that one never left */
        /* every reply is read, and every asked piece's frame awaited, even after a failure */
        for (size_t k = 0; k < asked; k++) {
            gw_rep *r;
            CUresult pr = gw_burst_reply(first + (uint32_t)k, &r);
            gw_rep_end(r);
            if (rc == CUDA_SUCCESS)
                rc = pr;
            if (pr == CUDA_ERROR_DEVICE_UNAVAILABLE)
                break; /* the session is gone: no frame will come */
        }
        gw_burst_end();
    }
    /* wait for the frames of the pieces asked for (with the session gone, only
     * for those landing now); then none is expected any more */
    pthread_mutex_lock(&in_lock);
    for (size_t k = 0; k < asked; k++)
        while (e[k].state == 4 || (!e[k].state && rc != CUDA_ERROR_DEVICE_UNAVAILABLE))
            pthread_cond_wait(&in_cv, &in_lock);
    for (size_t k = 0; k < asked && rc == CUDA_SUCCESS; k++)
        if (e[k].state != 1)
            rc = e[k].state == 3 ? CUDA_ERROR_DEVICE_UNAVAILABLE : CUDA_ERROR_UNKNOWN;
    for (expected **pp = &expecting; *pp;) {
        if (*pp >= e && *pp < e + pieces)
            *pp = (*pp)->next;
        else
            pp = &(*pp)->next;
    }
    pthread_mutex_unlock(&in_lock);
    free(e);
    if (rc == CUDA_SUCCESS)
        GW_WIRE_COUNT(lanes, 0, n);
    return rc;
}

/* A forked child has a session of its own (session.c): the parent's lanes
 * and their threads are not its. */
static void lanes_after_fork_child(void)
{
    for (unsigned k = 0; k < nlanes; k++)
        close(lanes[k].fd);
    memset(lanes, 0, sizeof lanes);
    nlanes = next_lane = 0;
    state = 0;
    atomic_store(&prepare_started, 0);
    pthread_mutex_init(&order_lock, NULL);
    expecting = NULL; /* the parent's waiting copies are not the child's */
    in_lost = 0;
    pthread_mutex_init(&in_lock, NULL);
    pthread_cond_init(&in_cv, NULL);
}

__attribute__((constructor)) static void lanes_init(void)
{
    pthread_atfork(NULL, NULL, lanes_after_fork_child);
}
