/* The client's connection: whole frames out under one lock (replies, pushes
 * and errors come from several threads), exact reads and writes on any
 * socket, and the stall timeout that ends a session whose client reads
 * nothing. The engine's reader does its own buffered reads of requests. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/time.h>
#include <time.h>

#include "../../common/session_stats.h"
#include "core.h"

static int fd = -1;

/* Replies, pushes and errors come from several threads: each frame is written whole under this. */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

/* A client that reads nothing would hold the session (and what its queued
 * jobs hold) forever: a write that makes no progress for this long ends it. */
static double stall_s = 60.0; /* the server passes its --client-stall-timeout */
static atomic_int write_stalled; /* a write timed out: nothing more is written */
static void (*on_stall)(void);

void gw_io_set_client(int sock) { fd = sock; }
int gw_io_client(void) { return fd; }
void gw_io_shutdown(void) { shutdown(fd, SHUT_RDWR); }
void gw_io_on_stall(void (*fn)(void)) { on_stall = fn; }
void gw_io_clear_stall(void) { atomic_store(&write_stalled, 0); }

void gw_set_stall_seconds(double s) { stall_s = s; }
double gw_stall_timeout(void) { return stall_s; }

/* Sends on s wake every quarter of stall_s (EAGAIN) so gw_send_all can tell a
 * stall from the time of the last progress, not only the start of a send; 0 or -1. */
int gw_set_stall_timeout(int s)
{
    double q = stall_s / 4 < 0.01 ? 0.01 : stall_s / 4;
    struct timeval tv = {.tv_sec = (time_t)q, .tv_usec = (suseconds_t)((q - (time_t)q) * 1e6)};
    return setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* All the bytes of up to 4 parts to a socket, in one system call where the
 * socket takes them (a frame's header, fields and bytes: one segment, not
 * three, and one wake-up of the reader); 0, or -1 with errno EAGAIN when a
 * socket with a stall timeout took nothing for stall_s. */
int gw_sendv_all(int to, const struct iovec *parts, int cnt)
{
    struct iovec v[4];
    int k = 0;
    if (cnt < 0 || cnt > 4) { /* a caller's mistake: never a frame cut short */
        errno = EINVAL;
        return -1;
    }
    for (int i = 0; i < cnt; i++)
        if (parts[i].iov_len)
            v[k++] = parts[i];
    struct iovec *at = v;
    double progress = mono_s();
    while (k) {
        struct msghdr m = {.msg_iov = at, .msg_iovlen = (size_t)k};
        ssize_t w = sendmsg(to, &m, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (mono_s() - progress < stall_s)
                continue;
            errno = EAGAIN;
        }
        if (w <= 0)
            return -1;
        progress = mono_s();
        while (k && (size_t)w >= at->iov_len) { /* parts sent whole */
            w -= (ssize_t)at->iov_len;
            at++, k--;
        }
        if (k) {
            at->iov_base = (uint8_t *)at->iov_base + w;
            at->iov_len -= (size_t)w;
        }
    }
    return 0;
}

int gw_send_all(int to, const void *p, size_t n)
{
    struct iovec v = {(void *)p, n};
    return gw_sendv_all(to, &v, 1);
}

int gw_recv_all(int from, void *p, size_t n, int count)
{
    uint8_t *b = p;
    while (n) {
        ssize_t r = recv(from, b, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        if (count)
            GW_SSTATS_ADD(bytes_in, r);
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

/* A write to the client made no progress for stall_s (called under write_lock):
 * nothing more is written, and the session's owner ends it (gw_io_on_stall). */
static void end_stalled_session(void)
{
    if (atomic_exchange(&write_stalled, 1))
        return;
    gw_wlog("closing session: the client read nothing for %g s while a frame waited to be sent "
            "(stall timeout): it does not read its replies", stall_s);
    if (on_stall)
        on_stall();
}

static int write_all(const void *p, size_t n)
{
    if (atomic_load(&write_stalled))
        return -1;
    if (gw_send_all(fd, p, n) == 0)
        return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK) /* stall_s without progress (gw_send_all) */
        end_stalled_session();
    return -1;
}

static int write_parts(const struct iovec *v, int cnt)
{
    if (atomic_load(&write_stalled))
        return -1;
    if (gw_sendv_all(fd, v, cnt) == 0)
        return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        end_stalled_session();
    return -1;
}

int gw_send_frame(const void *p, size_t n)
{
    pthread_mutex_lock(&write_lock);
    int lost = write_all(p, n);
    pthread_mutex_unlock(&write_lock);
    return lost;
}

/* A frame nobody asked for (module information after a load). Called from
 * a request's handler, while the reader waits for it, so it cannot cross a reply. */
void gw_push_parts(unsigned op, const void *a, size_t alen, const void *b, size_t blen)
{
    gw_hdr h = {.len = (uint32_t)(alen + blen), .op = (uint16_t)op};
    struct iovec v[3] = {{&h, sizeof h}, {(void *)a, alen}, {(void *)b, blen}};
    pthread_mutex_lock(&write_lock);
    if (write_parts(v, 3) == 0)
        GW_SSTATS_ADD(bytes_out, sizeof h + alen + blen);
    pthread_mutex_unlock(&write_lock);
}

void gw_push(unsigned op, const void *payload, size_t len)
{
    gw_hdr h = {.len = (uint32_t)len, .op = (uint16_t)op};
    struct iovec v[2] = {{&h, sizeof h}, {(void *)payload, len}};
    pthread_mutex_lock(&write_lock);
    if (write_parts(v, 2) == 0)
        GW_SSTATS_ADD(bytes_out, sizeof h + len);
    pthread_mutex_unlock(&write_lock);
}

void gw_send_error(uint32_t code, const char *msg)
{
    size_t n = strlen(msg);
    if (n > 500)
        n = 500;
    gw_hdr h = {.len = (uint32_t)(GW_ERROR_REQ_SIZE + n), .op = GW_OP_ERROR};
    uint8_t buf[sizeof h + GW_ERROR_REQ_SIZE + 512];
    memcpy(buf, &h, sizeof h);
    size_t at = sizeof h + gw_error_req_put(buf + sizeof h, &(gw_error_req){.code = code});
    memcpy(buf + at, msg, n);
    gw_send_frame(buf, at + n);
}
