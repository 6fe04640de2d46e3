/* Lanes: extra connections that carry the bytes of large copies, both ways,
 * beside the session's own (docs/protocol.md "Lanes"). One TCP stream on a host moves
 * roughly what one core can copy through the kernel; a large copy spread over
 * several streams, each read by its own thread here, is not held to that.
 *
 * The server passes each lane's socket over a Unix socket (--lane-fd) with
 * the client's gw_lane_hello; the token must be this session's. A lane's
 * reader takes its data frames (in order, seq counting from 0) into buffers
 * the reader of the main connection asks for, one per GW_F_LANE copy frame,
 * in the lane's order. Only a few frames per lane wait here: beyond that the
 * lane's socket fills and the client's sender waits.
 *
 * The other way, a device-to-host piece asked for on a lane is copied by the
 * job's thread into a buffer here and written by the lane's writer thread, so
 * the next piece's copy overlaps this one's sending; every such piece gets one
 * frame on its lane (its bytes, or flags GW_LANE_PIECE_FAILED and no bytes if it failed). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../common/session_stats.h"
#include "core.h"

#define LANE_DEPTH 3 /* data frames read ahead per lane */

typedef struct lane_item {
    struct lane_item *next;
    void *owner; /* what the allocator returned */
    uint32_t len;
} lane_item;

typedef struct out_item {
    struct out_item *next;
    uint8_t *buf; /* NULL: the piece failed */
    uint32_t len, tag;
    /* a delivery's piece (deliveries.c): a DELIVERED frame from memory not ours, done(arg) once written */
    const uint8_t *ext;
    uint64_t delivery, offset;
    void (*done)(void *);
    void *arg;
} out_item;

typedef struct lane {
    int fd;               /* -1 until attached */
    pthread_t th, wth;
    lane_item *head, *tail; /* under lock */
    unsigned queued;      /* under lock */
    int closed;           /* the reader ended; why says how */
    char why[160];
    out_item *ohead, *otail; /* device-to-host pieces to write, under lock */
    unsigned oqueued;
    int wbroken;          /* a write failed: nothing more is written */
} lane;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER; /* an item arrived, one was taken, a lane closed */
static lane lanes[GW_LANES_MAX];
static unsigned granted;
static uint32_t session_id;
static uint8_t token[GW_LANE_TOKEN_SIZE];
static int chan = -1;
static gw_lane_alloc_fn alloc_item;
static gw_lane_free_fn free_item;

unsigned gw_lanes_granted(void) { return granted; }

/* Buffers of device-to-host pieces, kept: a fresh 4 MiB allocation per piece
 * would fault in every page again. */
#define OUT_KEEP 8
static uint8_t *out_free[OUT_KEEP]; /* under lock */

uint8_t *gw_lane_buffer(void)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < OUT_KEEP; i++)
        if (out_free[i]) {
            uint8_t *b = out_free[i];
            out_free[i] = NULL;
            pthread_mutex_unlock(&lock);
            return b;
        }
    pthread_mutex_unlock(&lock);
    return malloc(GW_COPY_CHUNK);
}

static void buffer_back_locked(uint8_t *b)
{
    for (int i = 0; b && i < OUT_KEEP; i++)
        if (!out_free[i]) {
            out_free[i] = b;
            return;
        }
    free(b);
}

static void *lane_writer(void *arg)
{
    lane *l = arg;
    for (;;) {
        pthread_mutex_lock(&lock);
        while (!l->ohead)
            pthread_cond_wait(&cv, &lock);
        out_item *it = l->ohead;
        l->ohead = it->next;
        if (!l->ohead)
            l->otail = NULL;
        int broken = l->wbroken;
        pthread_mutex_unlock(&lock);
        gw_hdr h = {.len = it->buf ? it->len : 0, .op = GW_OP_LANE, .flags = it->buf ? 0 : GW_LANE_PIECE_FAILED, .seq = it->tag};
        uint8_t fields[GW_DELIVERED_REQ_SIZE];
        size_t fl = 0;
        if (it->ext) {
            fl = gw_delivered_req_put(fields, &(gw_delivered_req){.delivery = it->delivery, .offset = it->offset});
            h = (gw_hdr){.len = (uint32_t)(fl + it->len), .op = GW_OP_DELIVERED};
        }
        const uint8_t *body = it->ext ? it->ext : it->buf;
        struct iovec v[3] = {{&h, sizeof h}, {fields, fl}, {(void *)body, body ? it->len : 0}};
        if (!broken && gw_sendv_all(l->fd, v, 3)) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                gw_wlog("lane %u: closing it: the client read nothing on it for %g s (stall timeout)",
                        (unsigned)(l - lanes), gw_stall_timeout());
            else
                gw_wlog("lane %u: could not send a device-to-host piece: %s", (unsigned)(l - lanes), strerror(errno));
            broken = 1;
        } else if (!broken) {
            GW_SSTATS_ADD(bytes_out, sizeof h + h.len); /* what the server shows: lanes do not show on the session's socket */
        }
        if (it->done)
            it->done(it->arg);
        pthread_mutex_lock(&lock);
        l->wbroken |= broken;
        l->oqueued--;
        buffer_back_locked(it->buf);
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&lock);
        free(it);
    }
    return NULL;
}

int gw_lane_open(unsigned k)
{
    pthread_mutex_lock(&lock);
    int open = k < granted && lanes[k].fd >= 0;
    pthread_mutex_unlock(&lock);
    return open;
}

/* Queues it on lane k, waiting while the lane's writer is LANE_DEPTH behind;
 * -1 if the lane is broken or the client reads nothing (then the lane ends). */
static int put_item(unsigned k, out_item *it)
{
    pthread_mutex_lock(&lock);
    lane *l = &lanes[k];
    struct timespec deadline = {0};
    /* the writer is behind only while the client does not read the lane:
     * bounded (GPUWIRE_WORKER_STUCK_S), the lane then ends as when broken */
    while (it && l->oqueued >= LANE_DEPTH && !l->wbroken)
        if (gw_cond_wait_bounded(&cv, &lock, &deadline) == ETIMEDOUT) {
            gw_wlog("lane %u: the client read no data frame for %d s (GPUWIRE_WORKER_STUCK_S): the lane ends", k,
                   gw_stuck_seconds());
            break;
        }
    if (!it || l->wbroken || l->oqueued >= LANE_DEPTH) {
        /* the client waits for this piece's frame: the lane ends instead, which it sees */
        l->wbroken = 1;
        shutdown(l->fd, SHUT_RDWR);
        if (it)
            buffer_back_locked(it->buf);
        pthread_mutex_unlock(&lock);
        if (it && it->done)
            it->done(it->arg);
        free(it);
        return -1;
    }
    if (l->otail)
        l->otail->next = it;
    else
        l->ohead = it;
    l->otail = it;
    l->oqueued++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&lock);
    return 0;
}

int gw_lane_put(unsigned k, uint32_t tag, uint8_t *buf, uint32_t len)
{
    out_item *it = malloc(sizeof *it);
    if (it)
        *it = (out_item){.buf = buf, .len = len, .tag = tag};
    else {
        pthread_mutex_lock(&lock);
        buffer_back_locked(buf);
        pthread_mutex_unlock(&lock);
    }
    return put_item(k, it);
}

int gw_lane_put_delivery(uint64_t id, uint64_t off, const uint8_t *p, uint32_t len, void (*done)(void *), void *arg)
{
    static unsigned next; /* the lanes in turn (one sending thread at a time: the replies') */
    pthread_mutex_lock(&lock);
    unsigned n = granted, k = n;
    for (unsigned i = 0; i < n && k == n; i++) {
        unsigned c = (next + i) % n;
        if (lanes[c].fd >= 0 && !lanes[c].wbroken)
            k = c;
    }
    next = k + 1;
    pthread_mutex_unlock(&lock);
    out_item *it = k < n ? malloc(sizeof *it) : NULL;
    if (!it) {
        done(arg);
        return -1;
    }
    *it = (out_item){.ext = p, .len = len, .delivery = id, .offset = off, .done = done, .arg = arg};
    return put_item(k, it);
}

unsigned gw_lanes_usable(void)
{
    pthread_mutex_lock(&lock);
    unsigned n = 0;
    for (unsigned k = 0; k < granted; k++)
        n += lanes[k].fd >= 0 && !lanes[k].wbroken;
    pthread_mutex_unlock(&lock);
    return n;
}

static void close_lane(lane *l, const char *fmt, unsigned v, unsigned w)
{
    pthread_mutex_lock(&lock);
    l->closed = 1;
    snprintf(l->why, sizeof l->why, fmt, v, w);
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&lock);
}

static void *lane_reader(void *arg)
{
    lane *l = arg;
    unsigned k = (unsigned)(l - lanes);
    for (uint32_t expect = 0;; expect++) {
        gw_hdr h; /* bytes counted as they come: the server's idle check sees lane traffic */
        if (gw_recv_all(l->fd, &h, sizeof h, 1)) {
            close_lane(l, "lane %u closed after %u data frames", k, expect);
            return NULL;
        }
        if (h.op != GW_OP_LANE || h.flags || !h.len || h.len > GW_COPY_CHUNK || h.seq != expect) {
            close_lane(l, "lane %u: malformed data frame %u", k, expect);
            return NULL;
        }
        pthread_mutex_lock(&lock);
        while (l->queued >= LANE_DEPTH)
            pthread_cond_wait(&cv, &lock);
        pthread_mutex_unlock(&lock);
        uint8_t *bytes;
        void *owner = alloc_item(h.len, &bytes);
        lane_item *it = owner ? malloc(sizeof *it) : NULL;
        if (!it) {
            if (owner)
                free_item(owner);
            close_lane(l, "lane %u: out of memory for data frame %u", k, expect);
            return NULL;
        }
        if (gw_recv_all(l->fd, bytes, h.len, 1)) {
            free_item(owner);
            free(it);
            close_lane(l, "lane %u closed inside data frame %u", k, expect);
            return NULL;
        }
        *it = (lane_item){.owner = owner, .len = h.len};
        pthread_mutex_lock(&lock);
        if (l->tail)
            l->tail->next = it;
        else
            l->head = it;
        l->tail = it;
        l->queued++;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&lock);
    }
}

/* Tokens compared in constant time: a wrong guess learns nothing of the right one. */
static int token_ok(const uint8_t *t)
{
    uint8_t d = 0;
    for (int i = 0; i < GW_LANE_TOKEN_SIZE; i++)
        d |= (uint8_t)(t[i] ^ token[i]);
    return d == 0;
}

/* One socket from the server with the client's hello: attached, or closed. */
static void attach(int fd, const gw_lane_hello *hi)
{
    unsigned k = hi->lane;
    const char *bad = memcmp(hi->magic, GW_HELLO_MAGIC, 8) ? "bad magic"
                      : hi->session != session_id      ? "another session's"
                      : !token_ok(hi->token)           ? "wrong token"
                      : k >= granted                   ? "lane number out of range"
                                                       : NULL;
    pthread_mutex_lock(&lock);
    if (!bad && lanes[k].fd >= 0)
        bad = "lane already open";
    if (!bad)
        lanes[k].fd = fd;
    pthread_mutex_unlock(&lock);
    if (bad) {
        gw_wlog("refused a lane connection: %s", bad);
        close(fd);
        return;
    }
    /* without both threads the lane is not acknowledged: the client then uses none */
    int writer = pthread_create(&lanes[k].wth, NULL, lane_writer, &lanes[k]) == 0;
    if (writer)
        pthread_detach(lanes[k].wth);
    if (!writer || pthread_create(&lanes[k].th, NULL, lane_reader, &lanes[k])) {
        pthread_mutex_lock(&lock);
        lanes[k].wbroken = 1;
        pthread_mutex_unlock(&lock);
        close_lane(&lanes[k], writer ? "lane %u: no thread to read it (%u)" : "lane %u: no thread to write it (%u)",
                   k, 0);
        shutdown(fd, SHUT_RDWR);
        return;
    }
    pthread_detach(lanes[k].th);
    if (gw_stall_timeout() > 0) /* a lane the client stops reading must not hold its copies forever */
        gw_set_stall_timeout(fd);
    gw_pinned_lane_opened();
    /* the client sends nothing on a lane before this */
    gw_hdr ack = {.len = 0, .op = GW_OP_LANE, .seq = k};
    if (send(fd, &ack, sizeof ack, MSG_NOSIGNAL) != (ssize_t)sizeof ack)
        gw_wlog("lane %u: could not acknowledge it", k);
}

static void *acceptor(void *arg)
{
    (void)arg;
    for (;;) {
        gw_lane_hello hi;
        char ctl[CMSG_SPACE(sizeof(int))];
        struct iovec iov = {.iov_base = &hi, .iov_len = sizeof hi};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
        ssize_t r = recvmsg(chan, &m, MSG_CMSG_CLOEXEC);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return NULL; /* the server closed its end: no more lanes */
        int lfd = -1;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int)))
                memcpy(&lfd, CMSG_DATA(c), sizeof lfd);
        if (lfd < 0)
            continue;
        if (r != (ssize_t)sizeof hi || (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
            gw_wlog("refused a lane connection: malformed hand-over from the server");
            close(lfd);
            continue;
        }
        attach(lfd, &hi);
    }
}

int gw_lanes_start(int chan_fd, uint32_t session, unsigned n, gw_lane_alloc_fn alloc, gw_lane_free_fn release,
                   gw_lane_grant *grant)
{
    if (n > GW_LANES_MAX)
        n = GW_LANES_MAX;
    if (!n || getrandom(token, sizeof token, 0) != (ssize_t)sizeof token)
        return -1;
    for (unsigned i = 0; i < GW_LANES_MAX; i++)
        lanes[i].fd = -1;
    chan = chan_fd;
    session_id = session;
    alloc_item = alloc;
    free_item = release;
    granted = n;
    pthread_t t;
    if (pthread_create(&t, NULL, acceptor, NULL)) {
        granted = 0;
        return -1;
    }
    pthread_detach(t);
    grant->session = session;
    grant->lanes = n;
    memcpy(grant->token, token, sizeof token);
    return 0;
}

void gw_lanes_shutdown(void)
{
    pthread_mutex_lock(&lock);
    for (unsigned k = 0; k < granted; k++)
        if (lanes[k].fd >= 0)
            shutdown(lanes[k].fd, SHUT_RDWR); /* its reader closes the lane: gw_lane_next returns */
    pthread_mutex_unlock(&lock);
}

void *gw_lane_next(unsigned k, uint32_t *len, char *why, size_t whycap)
{
    if (k >= granted) {
        snprintf(why, whycap, "lane %u was never granted (%u granted)", k, granted);
        return NULL;
    }
    lane *l = &lanes[k];
    pthread_mutex_lock(&lock);
    if (l->fd < 0) {
        pthread_mutex_unlock(&lock);
        snprintf(why, whycap, "lane %u is not open", k);
        return NULL;
    }
    struct timespec deadline = {0, 0};
    while (!l->head && !l->closed) {
        if (gw_cond_wait_bounded(&cv, &lock, &deadline) == ETIMEDOUT) {
            /* the reader waits for this lane alone: a client that never sends the data would hold the session */
            snprintf(why, whycap, "lane %u: no data frame arrived within %d s for a copy frame (GPUWIRE_WORKER_STUCK_S)",
                     k, gw_stuck_seconds());
            pthread_mutex_unlock(&lock);
            return NULL;
        }
    }
    lane_item *it = l->head;
    if (!it) {
        snprintf(why, whycap, "%s", l->why);
        pthread_mutex_unlock(&lock);
        return NULL;
    }
    l->head = it->next;
    if (!l->head)
        l->tail = NULL;
    l->queued--;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&lock);
    void *owner = it->owner;
    *len = it->len;
    free(it);
    return owner;
}
