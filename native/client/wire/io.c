/* Bytes in and out of one connection (the session's, a lane's), through
 * TLS where the connection speaks it, and one frame read whole. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tls.h"
#include "wire_api.h"

int gw_io_write_all(int fd, const void *p, size_t n)
{
    gw_tls_conn *tls = gw_tls_of(fd); /* NULL at once without TLS */
    if (__builtin_expect(tls != NULL, 0))
        return gw_tls_write_all(tls, p, n);
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int gw_io_read_all(int fd, void *p, size_t n, int timeout_ms)
{
    gw_tls_conn *tls = gw_tls_of(fd);
    if (__builtin_expect(tls != NULL, 0))
        return gw_tls_read_all(tls, p, n, timeout_ms);
    uint8_t *b = p;
    while (n) {
        if (timeout_ms >= 0) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            int pr = poll(&pfd, 1, timeout_ms);
            if (pr == 0) {
                errno = ETIMEDOUT;
                return -1;
            }
            if (pr < 0) {
                if (errno == EINTR)
                    continue;
                return -1;
            }
        }
        ssize_t r = recv(fd, b, n, 0);
        if (r == 0) {
            errno = ECONNRESET;
            return -1;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += r;
        n -= (size_t)r;
    }
    return 0;
}


/* Close a connection and forget its TLS state; in a forked child the
 * parent's TLS state is not this process's to free (tls.c drops it). */
void gw_io_close(int *fd, int in_child)
{
    if (*fd < 0)
        return;
    if (!in_child)
        gw_tls_forget(*fd);
    close(*fd);
    *fd = -1;
}

/* poll() for readers of connections: a connection whose TLS layer holds
 * bytes already decrypted (a frame that came in one record with the one
 * read before it) is readable now, though its socket may never wake poll(). */
int gw_io_poll_in(struct pollfd *p, unsigned long n, int timeout_ms)
{
    int ready = 0;
    if (__builtin_expect(atomic_load_explicit(&gw_tls_open, memory_order_relaxed) != 0, 0))
        for (nfds_t i = 0; i < n; i++) {
            gw_tls_conn *c = p[i].fd >= 0 ? gw_tls_find(p[i].fd) : NULL;
            p[i].revents = c && (p[i].events & POLLIN) && gw_tls_buffered(c) ? POLLIN : 0;
            ready += p[i].revents != 0;
        }
    if (ready)
        return ready;
    return poll(p, n, timeout_ms);
}

/* Read one frame's header and payload (payload malloc'd, NUL-terminated). */
int gw_io_read_frame(int fd, gw_hdr *h, uint8_t **payload, int timeout_ms)
{
    *payload = NULL;
    if (gw_io_read_all(fd, h, sizeof *h, timeout_ms))
        return -1;
    if (h->len > GW_MAX_PAYLOAD) {
        errno = EPROTO;
        return -1;
    }
    *payload = malloc((size_t)h->len + 1);
    if (!*payload || gw_io_read_all(fd, *payload, h->len, timeout_ms)) {
        free(*payload);
        *payload = NULL;
        return -1;
    }
    (*payload)[h->len] = 0;
    return 0;
}
