/* What kernels printed (device printf): the worker sends the driver's
 * stdout output unasked, flushed by a synchronization, and it is printed
 * here before the call that synchronized returns. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include "api.h"

/* Device printf output (GW_OP_STDOUT, len bytes still on the wire): read in
 * pieces and written to fd 1, after what the application's stdio holds, so
 * host and device lines keep their order. A failed write (stdout closed)
 * drops the bytes; the stream stays in step. 0, or -1 if the read failed. */
static int print_device_output(uint32_t len)
{
    int saved = errno;
    fflush(stdout);
    int out_ok = 1;
    while (len) {
        uint8_t piece[16384];
        size_t k = len < sizeof piece ? len : sizeof piece;
        if (gw_pushed_read(piece, k))
            return -1;
        len -= k;
        for (size_t off = 0; out_ok && off < k;) {
            ssize_t w = write(STDOUT_FILENO, piece + off, k - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { /* the application made fd 1 non-blocking */
                struct pollfd pfd = {.fd = STDOUT_FILENO, .events = POLLOUT};
                if (poll(&pfd, 1, 1000) > 0)
                    continue;
            }
            if (w <= 0) {
                out_ok = 0;
                break;
            }
            off += (size_t)w;
        }
    }
    errno = saved;
    return 0;
}


__attribute__((constructor)) static void device_printf_init(void)
{
    gw_on_pushed(GW_OP_STDOUT, print_device_output);
}
