/* Pushed frames for a thread that waits for no reply: the host-function
 * runner must see HOST_CALL frames as soon as they come, also while no
 * application thread waits for a reply (it may wait on a condition its own
 * callback sets). It takes the reader role the way the drainer (replies.c)
 * does, only when the stream is readable and nobody else reads. */
#include <poll.h>

#include "../../generated/gw_ops.h"
#include "pushed_pump.h"
#include "stream.h"

#define BUSY_MS 20 /* another thread reads: look again after this (or at a wake) */

static gw_rep scratch; /* a reply with seq 0, which no request has: only the pumping thread uses it */

int gw_pushed_pump(int wake_fd, int timeout_ms)
{
    int fd = gw_conn_fd;
    if (fd < 0 || gw_conn_lost) {
        struct pollfd w = {.fd = wake_fd, .events = POLLIN};
        poll(&w, 1, timeout_ms);
        return -1;
    }
    struct pollfd p[2] = {{.fd = wake_fd, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
    if (gw_io_poll_in(p, 2, timeout_ms) <= 0 || !(p[1].revents & (POLLIN | POLLHUP | POLLERR)))
        return 0;
    pthread_mutex_lock(&gw_recv_lock);
    if (gw_reader_busy) { /* its reader hands our frames on */
        pthread_mutex_unlock(&gw_recv_lock);
        poll(p, 1, BUSY_MS);
        return 0;
    }
    struct pollfd again = {.fd = fd, .events = POLLIN};
    int rc = 0;
    if (!gw_conn_lost && gw_io_poll_in(&again, 1, 0) > 0) { /* a waiter may have read it meanwhile */
        gw_reader_busy = 1;
        pthread_mutex_unlock(&gw_recv_lock);
        int got = 0;
        rc = gw_stream_read_one(0, &scratch, &got);
        pthread_mutex_lock(&gw_recv_lock);
        gw_reader_release_locked(rc != 0);
    }
    pthread_mutex_unlock(&gw_recv_lock);
    return rc;
}

static __thread int in_host_code;

void gw_pushed_host_code(int running)
{
    if (running)
        gw_after_reply(GW_OP_HOST_CALL);
    in_host_code = running;
}

int gw_pushed_in_host_code(void) { return in_host_code; }
