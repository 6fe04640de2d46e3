/* Device printf output, forwarded to the client's stdout.
 *
 * The driver writes a kernel's printf output to the process's stdout (through
 * libc's stdout FILE) at synchronization points. The worker's stdout would be
 * the server's log; instead, for a session, fd 1 becomes the write end of a
 * pipe. A reader thread keeps the pipe empty (into a bounded buffer, so the
 * driver never blocks on a full pipe), and what was written travels to the
 * client as unasked GW_OP_STDOUT frames:
 *   - before every reply (gw_stdout_flush() from run_job()), so output a
 *     synchronization flushed is printed before the call returns in the client.
 * Not on a timer: the client reads only while it waits for a reply, so an
 * earlier frame would not print sooner, and a writer blocked on a client busy
 * sending would hold the socket's write lock.
 * Frames leave in the order the bytes were written (push_lock). The worker's
 * own log lines (gw_wlog) stay on stderr. Not used by the fuzz harness:
 * without gw_stdout_start() every entry point here does nothing. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

#define FWD_CAP (4u << 20)   /* output kept for the client; beyond it, bytes are dropped with a note */
#define FWD_FRAME (1u << 20) /* payload bytes per GW_OP_STDOUT frame (<= GW_MAX_PAYLOAD) */
#define FWD_POLL_MS 100      /* the reader's poll timeout */

_Static_assert(FWD_FRAME <= GW_MAX_PAYLOAD, "a STDOUT frame fits the payload limit");

static int rfd = -1;           /* read end of the pipe that is fd 1; -1 when not forwarding */
static atomic_int active;      /* gw_stdout_start() succeeded */
static pthread_mutex_t buf_lock = PTHREAD_MUTEX_INITIALIZER;  /* the buffer; held only briefly */
static pthread_mutex_t push_lock = PTHREAD_MUTEX_INITIALIZER; /* taking and sending: keeps frames in order */
static uint8_t *buf;           /* under buf_lock */
static size_t blen, bcap;      /* under buf_lock */
static unsigned long long dropped; /* under buf_lock: bytes dropped since the last send */

/* Reads what the pipe holds into the buffer, without blocking. buf_lock held. */
static void pull_locked(void)
{
    for (;;) {
        uint8_t scratch[16384];
        uint8_t *dst = scratch;
        size_t room = sizeof scratch;
        if (blen < FWD_CAP) {
            if (bcap - blen < sizeof scratch && bcap < FWD_CAP) {
                size_t ncap = bcap ? bcap * 2 : 65536;
                if (ncap > FWD_CAP)
                    ncap = FWD_CAP;
                uint8_t *nb = realloc(buf, ncap);
                if (nb) {
                    buf = nb;
                    bcap = ncap;
                }
            }
            if (bcap > blen) {
                dst = buf + blen;
                room = bcap - blen;
            }
        }
        ssize_t r = read(rfd, dst, room);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return; /* EAGAIN: the pipe is empty */
        if (dst == scratch) {
            dropped += (size_t)r; /* over the cap (or out of memory): dropped, noted when sent */
        } else {
            blen += (size_t)r;
        }
    }
}

static void *reader_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd p = {.fd = rfd, .events = POLLIN};
        int n = poll(&p, 1, FWD_POLL_MS);
        if (n < 0 && errno != EINTR)
            return NULL;
        if (n > 0) {
            pthread_mutex_lock(&buf_lock);
            pull_locked();
            pthread_mutex_unlock(&buf_lock);
            if (p.revents & (POLLHUP | POLLERR | POLLNVAL))
                return NULL;
        }
    }
}

void gw_stdout_flush(void)
{
    if (!atomic_load_explicit(&active, memory_order_acquire))
        return;
    fflush(stdout); /* what libc still holds goes into the pipe first */
    pthread_mutex_lock(&push_lock);
    pthread_mutex_lock(&buf_lock);
    pull_locked();
    uint8_t *out = buf;
    size_t n = blen;
    unsigned long long lost = dropped;
    buf = NULL;
    blen = bcap = 0;
    dropped = 0;
    pthread_mutex_unlock(&buf_lock);
    for (size_t off = 0; off < n;) {
        size_t k = n - off < FWD_FRAME ? n - off : FWD_FRAME;
        gw_push(GW_OP_STDOUT, out + off, k);
        off += k;
    }
    free(out);
    if (lost) {
        char note[160];
        int k = snprintf(note, sizeof note,
                         "\n[gpuwire: %llu bytes of device output dropped: the client did not read them in time]\n",
                         lost);
        if (k > 0)
            gw_push(GW_OP_STDOUT, note, (size_t)k < sizeof note ? (size_t)k : sizeof note - 1);
        gw_wlog("dropped %llu bytes of device output the client did not read in time", lost);
    }
    pthread_mutex_unlock(&push_lock);
}

int gw_stdout_start(void)
{
    int p[2];
    fflush(stdout); /* anything written before the session stays where it was going */
    if (pipe2(p, O_CLOEXEC)) {
        gw_wlog("cannot forward device printf output (pipe: %s)", strerror(errno));
        return -1;
    }
    if (fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK) || dup2(p[1], STDOUT_FILENO) < 0) {
        gw_wlog("cannot forward device printf output (%s)", strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    close(p[1]);
    rfd = p[0];
    setvbuf(stdout, NULL, _IOLBF, 0); /* a pipe would make it fully buffered */
    pthread_t th;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 256u << 10);
    int bad = pthread_create(&th, &a, reader_main, NULL);
    if (!bad)
        atomic_store_explicit(&active, 1, memory_order_release);
    pthread_attr_destroy(&a);
    if (bad) {
        /* without a reader a full pipe would block the driver: stdout goes nowhere instead */
        gw_wlog("cannot start the device printf reader: device output is discarded");
        int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (nul >= 0) {
            dup2(nul, STDOUT_FILENO);
            close(nul);
        }
        close(rfd);
        rfd = -1;
        return -1;
    }
    return 0;
}
